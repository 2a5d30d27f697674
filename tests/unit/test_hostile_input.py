"""Input that must not be stored as sent: identifiers of a megabyte or holding control or
surrogate characters (``malformed``, stored redacted: a truncated id and its hash), stock
events dated long ago (``stale_timestamp``), fractions of a unit counted in whole pieces
(``invalid_quantity``, judged after conversion to the base unit)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_refusal_codes import assert_refused_and_stored
from unit_world import ADMIN, KEY, SCANNER, World

from domain import codes as c
from domain.events import (
    IDENTIFIER_FIELDS,
    MAX_EVENT_AGE,
    MAX_IDENTIFIER_LENGTH,
    check_identifiers,
    identifier_problem,
    is_whole,
    redacted_identifier,
)


@pytest.fixture
def stocked(world: World) -> World:
    world.post(world.receipt(10, lot="L1", expiry="2027-06-30"))
    return world


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _refusals_holding(w: World, text: str) -> int:
    """How many stored events hold ``text`` in any of their strings (decoded)."""
    return sum(any(text in s for s in _strings(state)) for _, _, _, state in w.stored())


def test_an_event_id_of_a_million_characters_is_refused_and_only_its_redacted_form_is_stored(
        stocked: World) -> None:
    w = stocked
    huge = "X" * 1_000_000
    event = dict(w.usage(), event_id=huge)
    (outcome,) = w.post(event).outcomes
    assert outcome.status == c.REJECTED
    assert [(e["field"], e["code"]) for e in outcome.errors] == [("event_id", c.MALFORMED)]
    assert "1,000,000 characters" in outcome.errors[0]["message"]
    assert outcome.event_id == redacted_identifier(huge)
    assert len(outcome.event_id) < 64
    stored = [state for _, _, topic, state in w.stored() if topic.endswith("Refused")]
    assert stored[-1]["event"]["event_id"] == redacted_identifier(huge)
    assert max(len(orjson.dumps(s)) for _, _, _, s in w.stored()) < 10_000  # never the megabyte
    assert w.lots() == {"L1": 10.0}
    # The same event sent again gets the same refusal.
    (again,) = w.post(event).outcomes
    assert again.status == c.REJECTED and again.errors == outcome.errors


@pytest.mark.parametrize("bad", ["cab\x00001", "cab\n001", "cab\x7f", "lot\udb8e"])
def test_identifiers_holding_control_or_surrogate_characters_are_refused_as_malformed(
        stocked: World, bad: str) -> None:
    w = stocked
    refused = w.one(dict(w.usage(), event_id=bad))
    assert refused.status == c.REJECTED and refused.errors[0]["field"] == "event_id"
    assert w.stored_refusals(redacted_identifier(bad))  # stored, under its redacted id
    assert_refused_and_stored(w, w.usage(lot=bad), c.MALFORMED, "lot")
    assert_refused_and_stored(w, dict(w.usage(), location=bad), c.MALFORMED, "location")
    assert _refusals_holding(w, bad) == 0


def test_every_identifier_field_is_limited_to_128_characters() -> None:
    ok = "A" * MAX_IDENTIFIER_LENGTH
    assert identifier_problem(ok) is None
    for name in IDENTIFIER_FIELDS:
        errors = check_identifiers({name: ok + "B"})
        assert [(e.field, e.code) for e in errors] == [(name, c.MALFORMED)], name
    assert [e.field for e in check_identifiers({"lots": ["L1", "\x01"], "lines": [{"sku": "S" * 200}]})] == \
        ["lots[1]", "lines[0].sku"]
    assert identifier_problem("Lot-é 12 ü") is None  # letters of any script are fine


def test_a_case_id_refused_as_malformed_keeps_no_part_of_it_in_clear(stocked: World) -> None:
    w = stocked
    case = "PATIENT-4711-" + "9" * 200
    (outcome,) = w.post(w.usage(case_id=case)).outcomes
    assert outcome.status == c.REJECTED and outcome.errors[0]["field"] == "case_id"
    assert _refusals_holding(w, "PATIENT-4711") == 0


@given(st.text(min_size=1, max_size=300))
@settings(max_examples=200, deadline=None)
def test_an_identifier_passes_exactly_when_short_and_free_of_control_and_surrogate_characters(value: str) -> None:
    import unicodedata
    expected = len(value) <= MAX_IDENTIFIER_LENGTH and not any(
        unicodedata.category(ch) in ("Cc", "Cs") for ch in value)
    assert (identifier_problem(value) is None) == expected
    redacted = redacted_identifier(value)
    assert identifier_problem(redacted) is None  # what is stored is itself a clean identifier


def test_a_stock_event_older_than_the_maximum_age_is_refused_as_stale(stocked: World) -> None:
    w = stocked
    assert_refused_and_stored(w, w.usage(at="0001-01-01T00:00:00+00:00"), c.STALE_TIMESTAMP, "occurred_at")
    assert_refused_and_stored(w, w.usage(at=w.now - MAX_EVENT_AGE - timedelta(hours=1)),
                              c.STALE_TIMESTAMP, "occurred_at")
    assert w.one(w.usage(at=w.now - MAX_EVENT_AGE + timedelta(hours=1))).status == c.ACCEPTED


def test_master_data_are_effective_dated_and_never_stale(world: World) -> None:
    w = world
    old = w.now - timedelta(days=5 * 365)
    assert w.one(w.item("OLD-1", at=old), by=ADMIN).status == c.ACCEPTED
    assert w.one(w.location("W9", at=old), by=ADMIN).status == c.ACCEPTED


def test_the_maximum_age_is_a_setting(tmp_path: Any) -> None:
    from streams.processor import Processor
    from streams.store import EventStore, memory_env
    w = World()
    p = Processor(EventStore(env=memory_env()), b"k" * 32, clock=lambda: w.now, max_event_age=timedelta(days=30))
    for e in (w.item(), w.location("W3")):
        p.process([(e, ADMIN)])
    (outcome,) = p.process([(w.receipt(at=w.now - timedelta(days=31), location="W3"), SCANNER)]).outcomes
    assert outcome.errors[0]["code"] == c.STALE_TIMESTAMP


def test_half_a_piece_is_refused_but_half_a_box_of_ten_is_five_pieces(stocked: World) -> None:
    w = stocked
    out = assert_refused_and_stored(w, w.usage(0.5), c.INVALID_QUANTITY, "quantity")
    assert "whole" in out["errors"][0]["message"]
    assert w.one(w.usage(0.5, unit="box")).status == c.ACCEPTED  # 5 each
    assert w.lots() == {"L1": 5.0}
    assert_refused_and_stored(w, w.usage(0.25, unit="box"), c.INVALID_QUANTITY, "quantity")  # 2.5 each


def test_items_measured_in_ml_move_in_fractions_and_divisible_can_be_set(world: World) -> None:
    w = world
    assert w.one(w.item("SALINE", base_unit="ml", gtin=None, gtins={}, units={}), by=ADMIN).status == c.ACCEPTED
    assert w.one(w.receipt(12.5, sku="SALINE")).status == c.ACCEPTED
    assert w.one(w.item("GAUZE", gtin=None, gtins={}, units={}, divisible=True), by=ADMIN).status == c.ACCEPTED
    assert w.one(w.receipt(0.5, sku="GAUZE")).status == c.ACCEPTED
    assert w.one(w.item("PUMP", base_unit="ml", gtin=None, gtins={}, units={}, divisible=False),
                 by=ADMIN).status == c.ACCEPTED
    assert w.one(w.receipt(0.5, sku="PUMP")).status == c.REJECTED
    bad = w.one(w.item("X", divisible="yes"), by=ADMIN)
    assert bad.status == c.REJECTED and bad.errors[0]["field"] == "divisible"


@pytest.mark.parametrize("q,whole", [(3.0, True), (0.1 * 10, True), (0.3 * 10, True), (2.5, False),
                                     (1e9 + 0.5, False), (1e9, True), (0.999999, False)])
def test_is_whole_takes_float_error_for_whole_and_halves_for_not(q: float, whole: bool) -> None:
    assert is_whole(q) is whole


def test_a_refused_identifier_sent_again_is_refused_once_and_answered_the_same(stocked: World) -> None:
    w = stocked
    event = w.usage(lot="L1\n")
    first = w.one(event)
    before = len(w.stored())
    again = w.one(event)
    assert again.status == c.REJECTED and again.errors == first.errors
    assert len(w.stored()) == before  # nothing stored the second time


def test_replay_of_refused_hostile_input_equals_live(stocked: World) -> None:
    from streams.processor import Processor
    w = stocked
    w.post(dict(w.usage(), event_id="Y" * 5000), w.usage(lot="a\x00b"), w.usage(0.5),
           w.usage(at="0001-01-01T00:00:00+00:00"))
    again = Processor(w.store, KEY, clock=lambda: w.now)
    assert again.ledger.seen.keys() == w.p.ledger.seen.keys()
    assert again.state_digest() == w.p.state_digest()
