"""Hostile input through HTTP: the same body gets the same answer on ``/v1/events`` and
``/v1/scans``; every error body is ``{"detail", "code"}``; identifiers, stale timestamps and
fractions of a piece are refused with their codes and nothing of them moves stock."""

from __future__ import annotations

import httpx

from .support import SKU, future_expiry, now, post_events, receipt, setup_master, stock_point, usage


def test_a_lone_surrogate_gets_the_same_clear_422_on_events_and_scans(clients: dict[str, httpx.Client]) -> None:
    body = b'{"code": "\\udb8e"}'
    answers = [clients["scanner"].post(route, content=body, headers={"content-type": "application/json"})
               for route in ("/v1/events", "/v1/scans")]
    assert [a.status_code for a in answers] == [422, 422]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["code"] == "malformed_body"
    for bad in (b"[1, 2]", b'"usage"'):
        r = clients["scanner"].post("/v1/scans", content=bad, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["code"] == "malformed_body"


def test_every_error_answer_has_a_detail_and_a_code(clients: dict[str, httpx.Client],
                                                    service: object) -> None:
    base = str(clients["admin"].base_url)
    cases = [
        (httpx.get(f"{base}/v1/alerts"), 401, "unauthenticated"),
        (clients["scanner"].get("/v1/alerts"), 403, "forbidden"),
        (clients["admin"].get("/v1/requisitions/nope"), 404, "not_found"),
        (clients["buyer"].post("/v1/alerts/al_x/acknowledge", json={"reason": "  "}), 422, "invalid_request"),
        (clients["buyer"].post("/v1/alerts/al_x/acknowledge", content=b"{oops",
                               headers={"content-type": "application/json"}), 422, "malformed_body"),
        (clients["admin"].post("/v1/events", json=[{}] * 10_001), 413, "too_large"),
        (clients["admin"].delete("/v1/events"), 405, "method_not_allowed"),
    ]
    for r, status, code in cases:
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
        assert r.json()["detail"]


def test_hostile_identifiers_stale_timestamps_and_half_pieces_are_refused_with_their_codes(
        clients: dict[str, httpx.Client]) -> None:
    t0 = now()
    setup_master(clients, t0)
    assert post_events(clients["scanner"], [receipt("r1", t0, 10, "L1", future_expiry())])[0]["status"] == "accepted"
    huge = "X" * 1_000_000
    results = post_events(clients["scanner"], [
        usage(huge, t0, 1, "L1"),
        usage("nul\u0000id", t0, 1, "L1"),
        usage("u-lot", t0, 1, "L\u0007"),
        dict(usage("u-old", t0, 1, "L1"), occurred_at="0001-01-01T00:00:00+00:00"),
        usage("u-half", t0, 0.5, "L1"),
    ])
    codes = [(r["status"], r["errors"][0]["field"], r["errors"][0]["code"]) for r in results]
    assert codes == [("rejected", "event_id", "malformed"), ("rejected", "event_id", "malformed"),
                     ("rejected", "lot", "malformed"), ("rejected", "occurred_at", "stale_timestamp"),
                     ("rejected", "quantity", "invalid_quantity")]
    assert len(results[0]["event_id"]) < 100
    assert stock_point(clients["buyer"], SKU, "W3")["on_hand"] == 10
    scan = clients["scanner"].post("/v1/scans", json={"event_id": "s\u0001", "barcode": "x", "location": "W3"})
    assert scan.status_code == 200 and scan.json()["results"][0]["errors"][0]["code"] == "malformed"
