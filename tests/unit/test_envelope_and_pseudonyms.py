"""Stateless checks of one event (``check_envelope``) and the keyed pseudonyms of case ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.events import (
    EVENT_TYPES,
    check_envelope,
    fingerprint,
    pseudonymise,
    pseudonymise_event,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def usage(**kw: object) -> dict:
    e = {"event_id": "u1", "type": "usage", "occurred_at": "2026-03-10T12:55:00+01:00",
         "site": "H1", "location": "W1", "sku": "S", "lot": "L", "quantity": 2}
    e.update(kw)
    return {k: v for k, v in e.items() if v is not None}


def codes(errors: list) -> dict[str | None, str]:
    return {e.field: e.code for e in errors}


def test_valid_usage_is_normalised_to_fixed_width_utc() -> None:
    event, errors = check_envelope(usage(), "scanner", NOW)
    assert errors == []
    assert event is not None
    assert event["occurred_at"] == "2026-03-10T11:55:00.000000Z"


def test_unknown_extra_fields_are_kept() -> None:
    event, _ = check_envelope(usage(ward_note="left cabinet", nested={"a": 1}), "scanner", NOW)
    assert event is not None and event["ward_note"] == "left cabinet" and event["nested"] == {"a": 1}


@pytest.mark.parametrize(("kw", "field", "code"), [
    ({"event_id": None}, "event_id", "missing_field"),
    ({"quantity": None}, "quantity", "missing_field"),
    ({"location": None}, "location", "missing_field"),
    ({"occurred_at": None}, "occurred_at", "missing_field"),
    ({"sku": None}, "sku", "missing_field"),
    ({"occurred_at": "2026-03-10T12:00:00"}, "occurred_at", "malformed"),  # no offset
    ({"occurred_at": "yesterday"}, "occurred_at", "malformed"),
    ({"expiry": "2026-02-30"}, "expiry", "malformed"),
    ({"expiry": "31/12/2026"}, "expiry", "malformed"),
    ({"location": ["W1"]}, "location", "malformed"),
    ({"quantity": "2"}, "quantity", "invalid_quantity"),
    ({"quantity": True}, "quantity", "invalid_quantity"),
    ({"quantity": float("nan")}, "quantity", "invalid_quantity"),
    ({"quantity": 0}, "quantity", "invalid_quantity"),
    ({"quantity": -1.5}, "quantity", "invalid_quantity"),
    ({"gtin": "09501101020918", "sku": None}, "gtin", "invalid_gtin"),
    ({"occurred_at": "2026-03-10T12:10:01+00:00"}, "occurred_at", "future_timestamp"),
])
def test_envelope_errors_name_the_field_and_code(kw: dict, field: str, code: str) -> None:
    event, errors = check_envelope(usage(**kw), "scanner", NOW)
    assert event is None
    assert codes(errors).get(field) == code, errors
    assert all(e.message for e in errors)


def test_up_to_ten_minutes_ahead_of_the_clock_is_accepted() -> None:
    at = (NOW + timedelta(minutes=10)).isoformat()
    event, errors = check_envelope(usage(occurred_at=at), "scanner", NOW)
    assert errors == [] and event is not None


@given(st.floats(min_value=-1e9, max_value=0, allow_nan=False) | st.integers(-10**9, 0))
def test_any_non_positive_quantity_is_refused_except_for_a_stock_count_of_zero(q: float) -> None:
    _, errors = check_envelope(usage(quantity=q), "scanner", NOW)
    assert codes(errors) == {"quantity": "invalid_quantity"}
    counted, count_errors = check_envelope(usage(type="stock_count", quantity=q), "scanner", NOW)
    if q == 0:
        assert count_errors == [] and counted is not None
    else:
        assert codes(count_errors) == {"quantity": "invalid_quantity"}


FOUNDATION_TYPES = ["item_registered", "location_registered", "supplier_registered", "receipt", "usage",
                    "return", "waste", "transfer", "stock_count", "lot_changed", "recall_issued",
                    "recall_closed"]


@pytest.mark.parametrize("etype", sorted(EVENT_TYPES))
def test_auditor_may_post_no_event_type(etype: str) -> None:
    event, errors = check_envelope(usage(type=etype), "auditor", NOW)
    assert event is None and [(e.field, e.code) for e in errors] == [("type", "forbidden_type")]


@pytest.mark.parametrize("etype", FOUNDATION_TYPES)
def test_buyer_may_post_no_operational_or_master_data_event(etype: str) -> None:
    event, errors = check_envelope(usage(type=etype), "buyer", NOW)
    assert event is None and [(e.field, e.code) for e in errors] == [("type", "forbidden_type")]


@pytest.mark.parametrize("etype", FOUNDATION_TYPES)
def test_admin_may_post_every_foundation_type(etype: str) -> None:
    _, errors = check_envelope(usage(type=etype), "admin", NOW)
    assert "forbidden_type" not in [e.code for e in errors]


@pytest.mark.parametrize("etype", ["item_registered", "location_registered", "supplier_registered",
                                   "recall_issued", "recall_closed", "lot_changed"])
def test_scanner_may_not_post_master_data_recalls_or_lot_changes(etype: str) -> None:
    _, errors = check_envelope(usage(type=etype), "scanner", NOW)
    assert [(e.field, e.code) for e in errors] == [("type", "forbidden_type")]


def test_role_check_comes_first_and_reveals_nothing_else() -> None:
    _, errors = check_envelope({"event_id": "x", "type": "item_registered"}, "scanner", NOW)
    assert [e.code for e in errors] == ["forbidden_type"]


def test_unknown_type_is_malformed() -> None:
    _, errors = check_envelope(usage(type="teleport"), "admin", NOW)
    assert codes(errors) == {"type": "malformed"}


# -- pseudonyms ----------------------------------------------------------------------------

@given(st.text(min_size=1, max_size=40))
def test_pseudonym_is_stable_keyed_and_never_contains_the_clear_id(case_id: str) -> None:
    a = pseudonymise(case_id, b"k" * 32)
    assert a == pseudonymise(case_id, b"k" * 32)
    assert a != pseudonymise(case_id, b"j" * 32)
    assert a.startswith("ps_") and len(a) == 35
    if len(case_id) >= 4:
        assert case_id not in a


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_different_cases_get_different_pseudonyms(a: str, b: str) -> None:
    if a != b:
        assert pseudonymise(a, b"k" * 32) != pseudonymise(b, b"k" * 32)


def test_pseudonymise_event_replaces_every_identifying_field_and_leaves_the_input_alone() -> None:
    raw = usage(case_id="CASE-2026-0042", patient_id="P77", mrn="MRN123", patient="Jane Doe")
    safe = pseudonymise_event(raw, b"k" * 32)
    for f in ("case_id", "patient_id", "mrn", "patient"):
        assert safe[f] == pseudonymise(raw[f], b"k" * 32)
    assert raw["case_id"] == "CASE-2026-0042"  # the caller's object is not mutated
    assert "CASE-2026-0042" not in str(safe) and "Jane Doe" not in str(safe)


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    a = usage()
    b = dict(reversed(list(a.items())))
    assert list(a) != list(b)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(usage(quantity=3))

