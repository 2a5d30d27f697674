"""Throughput of the HL7 v2 MLLP listener (issue 17: at least 1,000 SIU messages a second on one
process): ``replenish serve`` with ``REPLENISH_HL7_PORT``, ``--messages`` SIU^S12 bookings (each a
new case) sent by ``--connections`` python-hl7 MLLP clients at once, each waiting for its ACK
before the next, as an interface engine does. The baseline, in the same run and the same
service: the same bookings as our JSON, one event per ``POST /v1/events``, over as many
connections.

Run: ``.venv/bin/python -m bench.hl7`` (``--messages``, ``--connections``). Prints its figures;
asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from hl7.client import MLLPClient

from bench.ingest import ADMIN_KEY, SCANNER_KEY, Service, free_port


def siu(i: int, at: datetime) -> str:
    stamp = at.strftime("%Y%m%d%H%M%S") + "+0000"
    start = (at + timedelta(days=2, minutes=i % 600)).strftime("%Y%m%d%H%M%S") + "+0000"
    return "\r".join([
        f"MSH|^~\\&|ORIS|HOSP1|REPLENISH|HOSP1|{stamp}||SIU^S12^SIU_S12|BENCH{i}|P|2.5",
        f"SCH|CASE-{i}||||||Elective|||60|min|^^60^{start}",
        "PID|1||PAT-1^^^HOSP^MR||DOE^JANE",
        "RGS|1",
        "AIS|1||HIP-REPLACEMENT^Total hip replacement^L|" + start,
        "AIL|1||OR1^^^HOSP1",
    ]) + "\r"


def event(i: int, at: datetime) -> dict[str, str]:
    return {"event_id": f"json-{i}", "type": "surgery_scheduled", "occurred_at": at.isoformat(),
            "case_id": f"JCASE-{i}", "procedure": "HIP-REPLACEMENT", "location": "OR1",
            "scheduled_for": (at + timedelta(days=2, minutes=i % 600)).isoformat()}


def run(n: int, connections: int, send: Callable[[int, list[float]], Callable[[int], bool]]) -> tuple[float, list[float], int]:
    """(seconds, latencies, answers that were not accepted) of ``n`` messages over ``connections``."""
    latencies: list[float] = []
    bad = [0]
    lock = threading.Lock()

    def worker(k: int) -> None:
        mine: list[float] = []
        one = send(k, mine)
        fails = sum(0 if one(i) else 1 for i in range(k, n, connections))
        with lock:
            latencies.extend(mine)
            bad[0] += fails

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, bad[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args()
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        port = free_port()
        service = Service(data, {"REPLENISH_HL7_PORT": str(port), "REPLENISH_HL7_SENDERS": "ORIS@HOSP1:scanner"}).start()
        try:
            r = httpx.post(f"{service.base}/v1/events", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, json=[
                {"event_id": "loc-or1", "type": "location_registered", "occurred_at": (at - timedelta(days=1)).isoformat(),
                 "location": "OR1", "site": "H1"}])
            assert r.status_code == 200 and r.json()["results"][0]["status"] == "accepted", r.text

            def over_mllp(_k: int, lat: list[float]) -> Callable[[int], bool]:
                client = MLLPClient("127.0.0.1", port)

                def one(i: int) -> bool:
                    t0 = time.perf_counter()
                    answer = client.send_message(siu(i, at))
                    while not answer.endswith(b"\x1c\r"):
                        answer += client.socket.recv(65536)
                    lat.append(time.perf_counter() - t0)
                    return b"MSA|AA|" in answer
                return one

            def over_json(_k: int, lat: list[float]) -> Callable[[int], bool]:
                client = httpx.Client(base_url=service.base, headers={"Authorization": f"Bearer {SCANNER_KEY}"})

                def one(i: int) -> bool:
                    t0 = time.perf_counter()
                    r = client.post("/v1/events", json=event(i, at))
                    lat.append(time.perf_counter() - t0)
                    return r.status_code == 200 and r.json()["results"][0]["status"] == "accepted"
                return one

            for name, send in (("HL7 SIU^S12 over MLLP", over_mllp), ("JSON POST /v1/events (baseline)", over_json)):
                seconds, lat, bad = run(args.messages, args.connections, send)
                lat.sort()
                print(f"{name:34} {args.messages / seconds:8.0f} messages/s over {args.connections} connections; "
                      f"p50 {statistics.median(lat) * 1e3:.1f} ms, p99 {lat[int(0.99 * (len(lat) - 1))] * 1e3:.1f} ms; "
                      f"{bad} not accepted", flush=True)
        finally:
            service.stop()


if __name__ == "__main__":
    main()
