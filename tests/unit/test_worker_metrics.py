"""The Kafka worker's metrics port (``infra.worker_metrics``): the API's rule for ``/metrics``
(no key from ``REPLENISH_METRICS_ALLOW``'s addresses, an auditor's or admin's key from
anywhere else), over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from domain.intake import Principal
from infra.worker_metrics import MetricsServer
from streams.metrics import WorkerMetrics

KEYS = {"k-aud": Principal("aud", "auditor"), "k-scan": Principal("scan", "scanner"),
        "sha256=" + "0" * 64: Principal("nobody", "admin")}


@pytest.fixture
def served() -> Iterator[tuple[WorkerMetrics, dict[str, MetricsServer]]]:
    metrics = WorkerMetrics()
    metrics.dead_letters.inc(3)
    servers = {"open": MetricsServer(metrics, "127.0.0.1", 0, "127.0.0.1/32", lambda: KEYS).start(),
               "keyed": MetricsServer(metrics, "127.0.0.1", 0, "10.0.0.0/8", lambda: KEYS).start()}
    yield metrics, servers
    for s in servers.values():
        s.stop()


def get(server: MetricsServer, key: str | None = None, path: str = "/metrics") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", headers=headers, timeout=5)


def test_an_allowed_address_reads_the_metrics_without_a_key(served: tuple[WorkerMetrics, dict]) -> None:
    _, servers = served
    answer = get(servers["open"])
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert "replenish_dead_letters_total 3.0" in answer.text


def test_from_elsewhere_only_an_auditors_or_admins_key_reads_them(served: tuple[WorkerMetrics, dict]) -> None:
    _, servers = served
    keyed = servers["keyed"]
    missing = get(keyed)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert get(keyed, "wrong").status_code == 401
    assert get(keyed, "sha256=" + "0" * 64).status_code == 401  # a hashed entry is not a key
    refused = get(keyed, "k-scan")
    assert refused.status_code == 403 and "scanner" in refused.text
    assert get(keyed, "k-aud").status_code == 200
    assert get(keyed, "k-aud", "/other").status_code == 404


def test_keys_are_read_again_at_each_scrape() -> None:
    keys: dict[str, Principal] = {}
    server = MetricsServer(WorkerMetrics(), "127.0.0.1", 0, "", lambda: keys).start()
    try:
        assert get(server, "k-new").status_code == 401
        keys["k-new"] = Principal("ops", "admin")  # (a changed key file)
        assert get(server, "k-new").status_code == 200
    finally:
        server.stop()


def test_keys_that_cannot_be_read_answer_503_and_the_log_holds_no_key(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, Principal]:
        raise ValueError("REPLENISH_API_KEYS_FILE: line 2 is not KEY role")

    server = MetricsServer(WorkerMetrics(), "127.0.0.1", 0, "", broken).start()
    try:
        answer = get(server, "k-secret-value")
        assert answer.status_code == 503 and "cannot be read" in answer.text
        assert "k-secret-value" not in caplog.text
    finally:
        server.stop()
