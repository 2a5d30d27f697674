"""Case ids are pseudonymised on the way in: never stored in clear, the same case always maps
to the same pseudonym."""

from __future__ import annotations

from pathlib import Path

from unit_world import ADMIN, KEY, World, sqlite_store

from domain.events import pseudonymise

CLEAR = "OR-CASE-93177-SMITH"
OTHER = "OR-CASE-40404-JONES"


def all_stored_bytes(w: World) -> bytes:
    return b"\n".join(n.state + n.topic.encode() + n.originator_id.encode()
                      for n in w.store.recorder.select_notifications(start=1, limit=1_000_000))


def data_dir_bytes(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(path.iterdir()) if f.is_file())


def post_case_events(w: World) -> None:
    w.post(w.receipt(10, lot="L1"), w.receipt(5, lot="OLD", expiry="2026-01-01"))
    w.post(w.recall(["RC"]), by=ADMIN)
    w.post(w.receipt(5, lot="RC"))
    w.post(
        w.usage(1, lot="L1", case_id=CLEAR),                     # accepted
        w.usage(1, lot="OLD", case_id=CLEAR),                    # accepted, expired_lot_used
        w.usage(1, lot="RC", case_id=OTHER),                     # accepted, recalled_lot_used
        w.usage(1, lot="L1", case_id=CLEAR, sku="UNKNOWN"),      # refused (unknown item)
        w.usage(0, lot="L1", case_id=OTHER),                     # refused (invalid quantity)
        {"type": "usage", "case_id": CLEAR},                     # refused (no event id)
        w.usage(1, lot="NEW", case_id=CLEAR, patient_id="PAT-556677"),  # lot not received
    )


def test_clear_case_id_never_appears_in_stored_events(world: World) -> None:
    post_case_events(world)
    stored = all_stored_bytes(world)
    assert len(stored) > 1000
    for secret in (CLEAR, OTHER, "PAT-556677"):
        assert secret.encode() not in stored
    assert pseudonymise(CLEAR, KEY).encode() in stored
    assert pseudonymise(OTHER, KEY).encode() in stored


def test_clear_case_id_is_nowhere_in_the_sqlite_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    w = World(store=sqlite_store(data / "es.sqlite"))
    post_case_events(w)
    w.p.rebuild()
    raw = data_dir_bytes(data)
    assert len(raw) > 10_000
    for secret in (CLEAR, OTHER, "PAT-556677"):
        assert secret.encode() not in raw
        assert secret.encode("utf-16-le") not in raw
    assert pseudonymise(CLEAR, KEY).encode() in raw


def test_case_id_is_not_in_outcomes_or_alerts(world: World) -> None:
    w = world
    w.post(w.receipt(5, lot="OLD", expiry="2026-01-01"))
    result = w.post(w.usage(1, lot="OLD", case_id=CLEAR), w.usage(1, sku="NOPE", case_id=CLEAR))
    text = repr(result) + repr(w.p.alerts()) + repr(w.view())
    assert CLEAR not in text


def test_same_case_maps_to_the_same_pseudonym_across_events_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "es.sqlite"
    w = World(store=sqlite_store(path))
    w.post(w.receipt(10))
    w.post(w.usage(1, case_id=CLEAR), w.usage(1, case_id=OTHER))
    again = World(store=sqlite_store(path), seed_catalog=False)
    again._ids = w._ids  # fresh event ids
    again.post(again.usage(1, case_id=CLEAR))
    pseudonyms = [s["event"]["case_id"] for _, _, topic, s in again.stored()
                  if topic.endswith("Recorded") and "case_id" in s["event"]]
    assert len(pseudonyms) == 3
    assert pseudonyms[0] == pseudonyms[2] != pseudonyms[1]
    assert pseudonyms[0] == pseudonymise(CLEAR, KEY)
    assert all(p.startswith("ps_") for p in pseudonyms)


def test_refused_payload_is_stored_with_its_case_id_already_pseudonymised(world: World) -> None:
    w = world
    event = w.usage(1, sku="NOPE", case_id=CLEAR)
    assert w.one(event).status == "rejected"
    (record,) = w.stored_refusals(event["event_id"])
    assert record["event"]["case_id"] == pseudonymise(CLEAR, KEY)
    assert record["event"]["sku"] == "NOPE"  # otherwise the payload as sent
    assert event["case_id"] == CLEAR  # the caller's object is untouched
