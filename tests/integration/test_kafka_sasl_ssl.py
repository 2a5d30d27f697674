"""The distributed profile over a secured cluster (issue 16, section 2): a broker whose only
client listener is SASL_SSL (SASL PLAIN over TLS, a CA made for the test) refuses a client
without credentials, and the API, a worker and its relay, given REPLENISH_KAFKA_SECURITY_PROTOCOL
and the SASL and TLS settings, run the whole path over it: events in through HTTP, stored by the
worker, outcomes answered, decisions and alerts relayed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from .distributed_world import SKU, Api, Deployment, free_port, master_data, stock, wait_for
from .secured_kafka import SecuredBroker, start_secured_broker


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    broker = start_secured_broker(tmp_path_factory.mktemp("sasl-ssl"), free_port(), free_port())
    try:
        yield broker
    finally:
        broker.stop()


def test_the_secured_broker_refuses_a_client_without_credentials(secured: SecuredBroker) -> None:
    plain = {"bootstrap.servers": secured.bootstrap}
    tls_only = {"bootstrap.servers": secured.bootstrap, "security.protocol": "SSL", "ssl.ca.location": str(secured.ca)}
    wrong = secured.client(**{"sasl.password": "not-the-password"})
    for config in (plain, tls_only, wrong):
        with pytest.raises(KafkaException):
            AdminClient(config | {"socket.timeout.ms": "3000"}).list_topics(timeout=6)
    assert AdminClient(secured.client()).list_topics(timeout=10).brokers  # (the right one is let in)


def test_api_worker_and_relay_run_the_distributed_path_over_sasl_ssl(
        secured: SecuredBroker, pg_database: str, tmp_path: Path) -> None:
    settings = secured.settings()
    settings.pop("REPLENISH_KAFKA_BOOTSTRAP")
    kafka = {k: v for k, v in secured.client().items() if k != "bootstrap.servers"}
    d = Deployment(secured.bootstrap, pg_database, tmp_path, kafka=kafka, **settings)
    try:
        worker = d.start_worker()
        worker.wait_assigned()
        api = Api(d.env, tmp_path / "api.log")
        d.processes.append(api)
        api.wait_ready()
        with api.client("admin") as admin, api.client("scanner") as scanner:
            r = admin.post("/v1/events", json=master_data())
            assert r.status_code == 200 and {x["status"] for x in r.json()["results"]} <= {"accepted", "queued"}, r.text
            wait_for(lambda: {e["event_id"] for e in master_data()} <= d.stored_ids(), 60, f"master data\n{d.logs()}")
            expired = (date.today() - timedelta(days=2)).isoformat()
            events = [stock("s-1", "receipt", "W1", 10), stock("s-2", "usage", "W1", 9),
                      stock("s-3", "usage", "W1", 1, lot="OLD", expiry=expired)]
            answer = scanner.post("/v1/events", json=events)
            assert answer.status_code == 200, answer.text
            wait_for(lambda: {"s-1", "s-2", "s-3"} <= d.stored_ids(), 60, f"the events\n{d.logs()}")
            outcome = scanner.get("/v1/events/s-3")
            assert outcome.status_code == 200 and outcome.json()["status"] == "rejected", outcome.text
        decisions = [orjson.loads(m.value()) for m in d.read_topic(d.topics.decisions, 1, timeout=60)]
        alerts = [orjson.loads(m.value()) for m in d.read_topic(d.topics.alerts, 1, timeout=60)]
        assert any(x["decision"]["sku"] == SKU for x in decisions)
        assert any((x.get("alert") or {}).get("kind") == "expired_lot_scanned" for x in alerts), alerts
        log = worker.log() + api.log()
        assert secured.password not in log
    finally:
        d.close()
