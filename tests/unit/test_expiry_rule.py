"""The expiry rule: a lot is expired from the start of the day after its expiry date in its
location's time zone; a GS1 expiry with day 00 is the last day of that month."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from unit_world import NY_WARD, SKU, WARD, World, iso

from domain.expiry import is_expired


@pytest.mark.parametrize(("tz", "last_ok_utc", "first_expired_utc"), [
    # Europe/Paris on 31 March 2026 is on summer time (UTC+2): 1 April starts at 22:00 UTC.
    ("Europe/Paris", datetime(2026, 3, 31, 21, 59, 59, tzinfo=UTC), datetime(2026, 3, 31, 22, 0, tzinfo=UTC)),
    # America/New_York in spring (UTC-4): midnight local is 04:00 UTC on 1 April.
    ("America/New_York", datetime(2026, 4, 1, 3, 59, 59, tzinfo=UTC), datetime(2026, 4, 1, 4, 0, tzinfo=UTC)),
    ("UTC", datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 4, 1, 0, 0, tzinfo=UTC)),
])
def test_lot_is_expired_from_the_start_of_the_next_local_day(
        tz: str, last_ok_utc: datetime, first_expired_utc: datetime) -> None:
    expiry = date(2026, 3, 31)
    # In winter Paris is UTC+1: the day after 15 January starts at 23:00 UTC.
    winter = date(2026, 1, 15)
    assert not is_expired(winter, datetime(2026, 1, 15, 22, 59, 59, tzinfo=UTC), "Europe/Paris")
    assert is_expired(winter, datetime(2026, 1, 15, 23, 0, tzinfo=UTC), "Europe/Paris")
    assert not is_expired(expiry, last_ok_utc, tz)
    assert is_expired(expiry, first_expired_utc, tz)


timezones = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo",
                             "Pacific/Kiritimati", "Pacific/Pago_Pago", "Australia/Lord_Howe"])
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                        timezones=st.just(UTC))


@given(instants, timezones)
def test_lot_is_usable_all_through_its_expiry_day_and_expired_the_day_after(at: datetime, tz: str) -> None:
    local_day = at.astimezone(ZoneInfo(tz)).date()
    assert not is_expired(local_day, at, tz)           # expires today: still usable
    assert not is_expired(local_day + timedelta(days=1), at, tz)
    assert is_expired(local_day - timedelta(days=1), at, tz)  # expired yesterday


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2034, 12, 1)), instants, instants, timezones)
def test_once_expired_a_lot_stays_expired(expiry: date, a: datetime, b: datetime, tz: str) -> None:
    early, late = sorted((a, b))
    if is_expired(expiry, early, tz):
        assert is_expired(expiry, late, tz)


@given(instants)
def test_expiry_depends_on_the_location_time_zone(at: datetime) -> None:
    # Tokyo is always ahead of New York by at least 13 hours: at some instants they are on
    # different calendar days, and then exactly those instants disagree.
    tokyo = at.astimezone(ZoneInfo("Asia/Tokyo")).date()
    ny = at.astimezone(ZoneInfo("America/New_York")).date()
    assert is_expired(ny, at, "Asia/Tokyo") == (tokyo > ny)
    assert not is_expired(ny, at, "America/New_York")


# -- through the processor --------------------------------------------------------------

def _world_at(now: datetime) -> World:
    w = World(now=now)
    w.post(w.receipt(100, lot="EXP", expiry="2026-03-09", at=now - timedelta(days=5)))
    return w


def test_scan_on_the_last_local_minute_of_expiry_day_is_accepted() -> None:
    # 22:59 UTC on 9 March = 23:59 in Paris, still the expiry day.
    w = _world_at(datetime(2026, 3, 9, 23, 5, tzinfo=UTC))
    o = w.one(w.usage(1, lot="EXP", at=datetime(2026, 3, 9, 22, 59, tzinfo=UTC)))
    assert o.status == "accepted"
    assert "expired_lot_used" not in o.flags


def test_scan_from_local_midnight_after_expiry_day_is_refused_as_expired_lot() -> None:
    # 23:00 UTC on 9 March = 00:00 on 10 March in Paris.
    w = _world_at(datetime(2026, 3, 9, 23, 5, tzinfo=UTC))
    o = w.one(w.usage(1, lot="EXP", at=datetime(2026, 3, 9, 23, 0, tzinfo=UTC)))
    assert o.status == "rejected"
    assert [e["code"] for e in o.errors] == ["expired_lot"]


def test_same_instant_same_lot_expired_in_paris_but_not_yet_in_new_york() -> None:
    now = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)  # 02:00 on the 10th in Paris, 21:00 on the 9th in NY
    w = World(now=now)
    w.post(w.receipt(5, lot="EXP", expiry="2026-03-09", at=now - timedelta(days=1)),
           w.receipt(5, lot="EXP", expiry="2026-03-09", at=now - timedelta(days=1), location=NY_WARD))
    paris = w.one(w.usage(1, lot="EXP", at=now - timedelta(minutes=1)))
    new_york = w.one(w.usage(1, lot="EXP", at=now - timedelta(minutes=1), location=NY_WARD))
    assert paris.status == "rejected" and paris.errors[0]["code"] == "expired_lot"
    assert new_york.status == "accepted"
    assert w.lots(SKU, NY_WARD) == {"EXP": 4.0}
    assert w.lots(SKU, WARD) == {"EXP": 5.0}


def test_expiry_is_judged_at_the_usage_occurred_at_not_at_arrival() -> None:
    # A usage that happened on the expiry day but reaches us two days later is not a scan of
    # an expired lot.
    now = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
    w = _world_at(now)
    o = w.one(w.usage(1, lot="EXP", at=datetime(2026, 3, 9, 10, 0, tzinfo=UTC)))
    assert o.status == "accepted"
    assert "late" in o.flags and "expired_lot_used" not in o.flags


def test_gs1_scan_with_day_00_expiry_is_usable_through_the_last_day_of_the_month() -> None:
    barcode = "]d2" + "0109501101020917" + "17260200" + "10FEB"  # expiry 2026-02-00 -> 28 Feb
    now = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)  # 01:00 on 1 March in Paris
    w = World(now=now)
    last_day = w.one({"event_id": "s1", "type": "usage", "site": "H1", "location": WARD,
                      "barcode": barcode, "quantity": 1,
                      "occurred_at": iso(datetime(2026, 2, 28, 22, 30, tzinfo=UTC))})  # 23:30 Paris
    assert last_day.status == "accepted", last_day
    first_of_march = w.one({"event_id": "s2", "type": "usage", "site": "H1", "location": WARD,
                            "barcode": barcode, "quantity": 1,
                            "occurred_at": iso(datetime(2026, 2, 28, 23, 30, tzinfo=UTC))})
    assert first_of_march.status == "rejected"
    assert [e["code"] for e in first_of_march.errors] == ["expired_lot"]
    assert w.p.ledger.lot(SKU, "FEB").expiry == "2026-02-28"
