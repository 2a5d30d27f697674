"""Alert subscribers through the real service: buyers act on alerts, a Server-Sent Events
client follows them live and resumes after a disconnect without a gap, and webhooks get
HMAC-signed deliveries, retried when the receiver fails."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from .support import KEYS, Service, now, post_events, setup_master, statuses, usage

pytestmark = pytest.mark.e2e

WARDS = ("W3", "W4", "W5", "W6")


def raise_alerts(clients: dict[str, httpx.Client], location: str, tag: str) -> list[dict[str, Any]]:
    """A use of a lot the ward never received: a data-quality alert for each flag
    (lot_not_received, negative_stock) and a stockout. Returns the ward's open alerts."""
    results = post_events(clients["scanner"], usage(f"stray-{tag}", now() - timedelta(minutes=1), 2,
                                                    f"STRAY-{tag}", location=location))
    assert statuses(results) == ["accepted"], results
    r = clients["buyer"].get("/v1/alerts", params={"location": location, "status": "open"})
    assert r.status_code == 200, r.text
    alerts = r.json()["alerts"]
    assert {a["kind"] for a in alerts} == {"data_quality", "stockout"}
    return alerts


@pytest.fixture
def wards(clients: dict[str, httpx.Client]) -> dict[str, httpx.Client]:
    setup_master(clients, now() - timedelta(days=1), locations=WARDS)
    return clients


def wait_for(check: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {check}")
        time.sleep(every)


# -- acting on alerts -----------------------------------------------------------------------

def test_buyers_acknowledge_and_resolve_alerts_with_a_reason_scanners_and_auditors_may_not(wards):
    alert = next(a for a in raise_alerts(wards, "W3", "a") if a["kind"] == "stockout")
    path = f"/v1/alerts/{alert['id']}"
    for role in ("scanner", "auditor"):
        for action in ("acknowledge", "resolve"):
            r = wards[role].post(f"{path}/{action}", json={"reason": "not mine to say"})
            assert r.status_code == 403, (role, action, r.text)
    assert wards["buyer"].post(f"{path}/acknowledge", json={}).status_code == 422  # a reason is required
    assert wards["buyer"].post("/v1/alerts/al_nope/acknowledge", json={"reason": "x"}).status_code == 404

    r = wards["buyer"].post(f"{path}/acknowledge", json={"reason": "transfer requested from CS"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged" and r.json()["acknowledged_by"] == "e2e-buyer"
    r = wards["buyer"].post(f"{path}/resolve", json={"reason": "stock counted and corrected"})
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    listed = {a["id"]: a for a in wards["auditor"].get("/v1/alerts").json()["alerts"]}
    assert listed[alert["id"]]["status"] == "resolved"
    assert listed[alert["id"]]["resolved_by"] == "e2e-buyer"
    # Every change is an event in the stock point's history, with who and why.
    history = wards["auditor"].get(f"/v1/audit/stock-points/{alert['sku']}/W3/events").json()["events"]
    changes = [(e["status"], e["by"], e["reason"]) for e in history if e["kind"] == "AlertChanged"]
    assert changes == [("acknowledged", "e2e-buyer", "transfer requested from CS"),
                       ("resolved", "e2e-buyer", "stock counted and corrected")]


# -- Server-Sent Events ---------------------------------------------------------------------

class AlertStream:
    """An SSE client on its own thread: each ``event: alert`` as (id, data) on a queue. A plain
    ``http.client`` connection, so that ``close`` can cut the socket like a dropped network."""

    def __init__(self, service: Service, role: str = "buyer", last_event_id: int | None = None) -> None:
        self.headers = {"Authorization": f"Bearer {KEYS[role]}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = str(last_event_id)
        self.conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
        self.events: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.opened = threading.Event()
        self.status: int | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _read(self) -> None:
        try:
            self.conn.request("GET", "/v1/alerts/stream", headers=self.headers)
            response = self.conn.getresponse()
            self.status = response.status
            if response.status != 200:
                return
            fields: dict[str, str] = {}
            while line := response.readline():
                text = line.decode().rstrip("\r\n")
                if text.startswith(":"):
                    self.opened.set()  # the stream's opening comment: it is listening
                elif text == "":
                    if fields.get("event") == "alert":
                        self.events.put((int(fields["id"]), json.loads(fields["data"])))
                    fields = {}
                else:
                    name, _, value = text.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (OSError, http.client.HTTPException):
            pass  # cut by ``close``
        finally:
            self.opened.set()

    def take(self, n: int, timeout: float = 15.0) -> list[tuple[int, dict[str, Any]]]:
        deadline, got = time.monotonic() + timeout, list[tuple[int, dict[str, Any]]]()
        while len(got) < n:
            try:
                got.append(self.events.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                raise AssertionError(f"{len(got)} of {n} events within {timeout} s: {got}") from None
        return got

    def close(self) -> None:
        """Cut the connection (the reader sees the end and stops), then tidy up."""
        if self.conn.sock is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.conn.close()


def test_the_alert_stream_delivers_alerts_live_and_resumes_from_last_event_id_without_a_gap(
        service: Service, wards):
    denied = AlertStream(service, role="scanner")
    assert denied.status == 403
    denied.close()

    stream = AlertStream(service, role="auditor")
    raised = raise_alerts(wards, "W3", "a")
    first = stream.take(len(raised))
    assert sorted(d["id"] for _, d in first) == sorted(a["id"] for a in raised)
    assert all(d["change"] == "raised" and d["seq"] == i for i, d in first)
    last_seen = first[-1][0]
    stream.close()

    # While the subscriber is away: three more alerts and an acknowledgement.
    missed = raise_alerts(wards, "W4", "b")
    ack = wards["buyer"].post(f"/v1/alerts/{missed[0]['id']}/acknowledge", json={"reason": "seen"})
    assert ack.status_code == 200

    resumed = AlertStream(service, role="buyer", last_event_id=last_seen)
    caught_up = resumed.take(len(missed) + 1)
    assert [i for i, _ in caught_up] == list(range(last_seen + 1, last_seen + len(missed) + 2))
    assert sorted(d["id"] for _, d in caught_up[:-1]) == sorted(a["id"] for a in missed)
    assert caught_up[-1][1]["change"] == "acknowledged" and caught_up[-1][1]["reason"] == "seen"
    # ... and it stays live.
    live = raise_alerts(wards, "W5", "c")
    assert [i for i, _ in resumed.take(len(live))] == list(
        range(last_seen + len(missed) + 2, last_seen + len(missed) + 2 + len(live)))
    resumed.close()


# -- webhooks -------------------------------------------------------------------------------

class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST, answers the next scripted status
    (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: queue.Queue[tuple[dict[str, str], bytes, int]] = queue.Queue()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server spelling)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.put(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def take(self, n: int, timeout: float = 20.0) -> list[tuple[dict[str, str], bytes, int]]:
        deadline, got = time.monotonic() + timeout, list[tuple[dict[str, str], bytes, int]]()
        while len(got) < n:
            try:
                got.append(self.requests.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                raise AssertionError(f"{len(got)} of {n} deliveries within {timeout} s") from None
        return got

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def register(clients: dict[str, httpx.Client], url: str, kinds: list[str] | None = None) -> dict[str, Any]:
    r = clients["admin"].post("/v1/webhooks", json={"url": url, "kinds": kinds or []})
    assert r.status_code == 201, r.text
    return r.json()


def hooks(clients: dict[str, httpx.Client]) -> dict[str, dict[str, Any]]:
    r = clients["admin"].get("/v1/webhooks")
    assert r.status_code == 200, r.text
    return {h["id"]: h for h in r.json()["webhooks"]}


def test_an_admins_webhook_receives_each_alert_in_an_hmac_signed_body(wards, receivers):
    for role in ("scanner", "buyer", "auditor"):
        assert wards[role].post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x"}).status_code == 403
        assert wards[role].get("/v1/webhooks").status_code == 403
    everything, stockouts = Receiver(), Receiver()
    receivers += [everything, stockouts]
    hook = register(wards, everything.url)
    assert len(hook["secret"]) >= 32 and "secret" not in hooks(wards)[hook["id"]]
    only = register(wards, stockouts.url, kinds=["stockout"])

    raised = raise_alerts(wards, "W3", "a")
    deliveries = everything.take(len(raised))
    for headers, body, _ in deliveries:
        expected = "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-replenish-signature"], expected)
        assert headers["content-type"] == "application/json"
    bodies = [json.loads(body) for _, body, _ in deliveries]
    assert sorted(b["id"] for b in bodies) == sorted(a["id"] for a in raised)
    assert [b["seq"] for b in bodies] == sorted(b["seq"] for b in bodies)  # in feed order
    (stockout,) = stockouts.take(1)
    assert json.loads(stockout[1])["kind"] == "stockout"
    forged = "sha256=" + hmac.new(b"not the secret", stockout[1], hashlib.sha256).hexdigest()
    assert stockout[0]["x-replenish-signature"] != forged
    assert stockout[0]["x-replenish-signature"].startswith("sha256=")
    wait_for(lambda: hooks(wards)[hook["id"]]["delivered"] == len(raised))
    assert hooks(wards)[only["id"]]["failures"] == 0

    assert wards["admin"].delete(f"/v1/webhooks/{only['id']}").status_code == 204
    assert only["id"] not in hooks(wards)


def test_a_failing_receiver_shows_its_failures_and_gets_the_delivery_again(wards, receivers):
    flaky = Receiver(statuses=[500, 503])  # two failures, then it recovers
    receivers.append(flaky)
    hook = register(wards, flaky.url, kinds=["stockout"])
    raise_alerts(wards, "W3", "a")

    (first,) = flaky.take(1)
    assert first[2] == 500
    state = wait_for(lambda: (h := hooks(wards)[hook["id"]])["failures"] >= 1 and h)
    assert state["last_error"] == "HTTP 500" and state["delivered"] == 0
    assert state["next_attempt_at"] is not None  # a retry is scheduled, with back-off

    retries = flaky.take(2, timeout=30)  # after about 1 s, then 2 s
    assert [status for _, _, status in retries] == [503, 200]
    delivery_ids = {headers["x-replenish-delivery"] for headers, _, _ in [first, *retries]}
    assert len(delivery_ids) == 1  # the same delivery each time
    assert len({body for _, body, _ in [first, *retries]}) == 1
    state = wait_for(lambda: (h := hooks(wards)[hook["id"]])["delivered"] == 1 and h)
    assert state["failures"] == 2 and state["last_status"] == 200 and state["last_error"] is None
    assert state["dead_letters"] == []

    # An alert raised after the recovery goes straight through.
    raise_alerts(wards, "W4", "b")
    (later,) = flaky.take(1)
    assert later[2] == 200 and json.loads(later[1])["location"] == "W4"


def test_the_alert_list_keeps_the_foundation_fields(wards):
    raise_alerts(wards, "W3", "a")
    r = wards["buyer"].get("/v1/alerts", params={"kind": "stockout"})
    (alert,) = r.json()["alerts"]
    assert {"id", "kind", "severity", "sku", "location", "raised_at", "status", "event_id"} <= set(alert)
    assert alert["severity"] == "critical" and alert["event_id"] == "stray-a"


def test_a_clean_stop_ends_open_alert_streams_instead_of_waiting_for_them(service: Service, wards):
    """SSE responses never finish on their own: a stop (SIGTERM) gives requests in flight a few
    seconds, then ends the streams, rather than hanging until the supervisor kills it."""
    stream = AlertStream(service, role="buyer")
    started = time.monotonic()
    service.stop()
    assert time.monotonic() - started < 10
    assert service.proc is not None and service.proc.returncode != -9  # not SIGKILLed
    stream.thread.join(5)
    assert not stream.thread.is_alive()  # the subscriber saw the stream end
    stream.close()
