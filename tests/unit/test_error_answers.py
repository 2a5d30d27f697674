"""The answers every route gives when the queue has no room (429), Kafka does not take the
events (503) or the store cannot write (503): one handler each, in ``api.errors``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import errors
from streams.embedded import Overloaded
from streams.kafka_ingest import IngestUnavailable
from streams.store import StoreUnavailable


def app_raising(exc: Exception) -> TestClient:
    app = FastAPI()
    errors.install(app)

    @app.post("/x")
    async def x() -> None:
        raise exc

    return TestClient(app, raise_server_exceptions=False)


def test_no_room_is_429_overloaded_with_its_retry_after() -> None:
    r = app_raising(Overloaded(10, 50_000, 50_000, 7)).post("/x")
    assert (r.status_code, r.json()["code"], r.headers["Retry-After"]) == (429, "overloaded", "7")
    assert "send them again in 7 s" in r.json()["detail"]


def test_kafka_not_taking_events_is_503_unavailable() -> None:
    r = app_raising(IngestUnavailable("Kafka did not take the events")).post("/x")
    assert (r.status_code, r.json()) == (503, {"detail": "Kafka did not take the events", "code": "unavailable"})


def test_a_store_that_cannot_write_is_503_store_unavailable() -> None:
    r = app_raising(StoreUnavailable("database or disk is full")).post("/x")
    assert (r.status_code, r.json()["code"], r.headers["Retry-After"]) == (503, "store_unavailable", "5")
