"""The dynamic policy, told through ``Processor.process``: demand moves the safety stock and
the reorder point in the event that reveals it, the OR schedule and purchase orders move
them before anything is scanned, a planner's override is honoured and priced, and replaying
the log gives the same decisions."""

from __future__ import annotations

import math
import pickle
import random
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from unit_world import ADMIN, BUYER, SCANNER, T0, WARD, World, sqlite_store

from domain.aggregates import StockPoint, stock_point_id
from streams.planning import WARM_UP_DAYS, StockPointModel
from streams.processor import BatchResult, Processor
from streams.simulation.hospital import poisson

SUTURE = "SUT-2"  # a consumable used on the ward, one at a time
IMPLANT = "IMPL-HIP"  # used in hip cases in the OR
OR = "OR1"
START = (T0 - timedelta(days=150)).replace(hour=0)  # a midnight (UTC)
PARIS = ZoneInfo("Europe/Paris")  # the ward's time zone (``unit_world``)


# -- a ward whose clock follows the events ---------------------------------------------------

def ward(store: Any = None, **item: Any) -> World:
    """A world with a critical suture (pack of 10 unless given) on the ward, lots in stock,
    and an operating room; the clock starts 150 days ago."""
    w = World(store=store) if store is not None else World()
    spec: dict[str, Any] = {"criticality": "critical", "lead_time_days": 3, "pack_size": 10,
                            "supplier": "MEDSUP"} | item
    w.post(w.item(SUTURE, **spec), w.item(IMPLANT, criticality="critical", lead_time_days=5, supplier="ORTHO"),
           w.location(OR, kind="or_core"), by=ADMIN)
    w.now = START
    w.post(w.receipt(100_000, sku=SUTURE, at=START - timedelta(minutes=5)),
           w.receipt(100, lot="I1", sku=IMPLANT, location=OR, at=START - timedelta(minutes=5)))
    return w


def at(w: World, t: datetime) -> None:
    """Record what happens at ``t`` half a minute later (the clock never goes back)."""
    w.now = max(w.now, t + timedelta(seconds=30))


def use(w: World, t: datetime, qty: float = 1, sku: str = SUTURE, location: str = WARD,
        lot: str = "L1", **extra: Any) -> tuple[str, BatchResult]:
    at(w, t)
    event = w.stock("usage", qty, lot=lot, location=location, at=t, sku=sku, **extra)
    result = w.post(event)
    assert result.outcomes[0].status == "accepted", result.outcomes
    return event["event_id"], result


def post(w: World, event: dict[str, Any], by: Any = SCANNER) -> BatchResult:
    at(w, datetime.fromisoformat(event["occurred_at"]))
    result = w.post(event, by=by)
    assert result.outcomes[0].status == "accepted", result.outcomes
    return result


def daily_uses(rng: random.Random, first_day: int, days: int, per_day: float,
               ratio: float = 1.0) -> Iterator[tuple[datetime, int]]:
    """(instant, quantity) of uses on days ``first_day``.. after START: Poisson uses of one
    unit, or (``ratio`` = variance/mean > 1) negative binomial daily totals made of uses of
    logarithmic sizes; between 06:00 and 20:00 on the ward's clock (Paris: a ward keeps its
    hours through a daylight-saving change)."""
    if ratio > 1.0:
        theta = 1.0 - 1.0 / ratio
        rate = per_day / (ratio - 1.0) * math.log(ratio)
    else:
        theta, rate = 0.0, per_day
    for day in range(first_day, first_day + days):
        n, t = 0, rng.expovariate(rate)
        while t < 1.0:
            n += 1
            t += rng.expovariate(rate)
        moments = sorted(rng.uniform(6, 20) for _ in range(n))
        for hour in moments:
            size, p = 1, (-theta / math.log(1.0 - theta) if theta else 1.0)
            u = rng.random() - p
            while u > 0:
                p *= theta * size / (size + 1)
                size += 1
                u -= p
            midnight = datetime.combine((START + timedelta(days=day)).date(), time(), tzinfo=PARIS)
            yield (midnight + timedelta(hours=hour)).astimezone(UTC), size


def decisions(w: World, sku: str = SUTURE, location: str = WARD, cause: str | None = None,
              kind: str | None = None) -> list[dict[str, Any]]:
    """The stored decisions of a stock point, oldest first."""
    return [e.decision for e in w.store.stream(stock_point_id(sku, location))
            if isinstance(e, StockPoint.Decided)
            and (cause is None or e.decision["cause_event_id"] == cause)
            and (kind is None or e.decision["type"] == kind)]


def spike_alerts(result: BatchResult) -> list[dict[str, Any]]:
    return [a for a in result.alerts if a["kind"] == "demand_spike"]


def evaluated(p: Processor, sku: str = SUTURE, location: str = WARD, now: datetime | None = None,
              ) -> dict[str, Any]:
    """The policy the planner would decide now (``Planner.evaluate``), decided or not."""
    sp = p.ledger.stock_point(sku, location)
    assert sp is not None
    policy = p.planner.evaluate(sp, now or p.clock())
    assert policy is not None
    return policy


def test_service_allocated_by_cost_gives_a_cheap_item_more_and_records_where_it_came_from() -> None:
    """Under ``service_allocation="cost"`` a cheap suture gets a higher service level than
    the same demand priced as a dear item, a critical item never goes below its floor, and
    every policy records the rule its service level came from (and, with an order-line cost,
    that its cycle is the EOQ's)."""
    rng = random.Random(3)
    levels = {}
    for cost in (0.2, 2000.0):
        w = ward(unit_cost=cost)
        for t, qty in daily_uses(rng, 0, 40, per_day=6):
            use(w, t, qty)
        assert evaluated(w.p)["inputs"]["service_level_source"] == "criticality"
        w.p.planner.settings = replace(w.p.planner.settings, service_allocation="cost",
                                       stockout_cost=50.0, order_line_cost=5.0)
        inputs = evaluated(w.p)["inputs"]
        levels[cost] = inputs["service_level"]
        assert inputs["service_level"] >= 0.995  # the critical target is the floor (issue 13)
        assert inputs["service_level_source"] in {"cost", "criticality_floor"}
        assert inputs["stockout_cost"] == 50.0 and inputs["holding_rate"] == 0.25
        assert inputs["cycle_source"] == "eoq" and inputs["order_line_cost"] == 5.0
    assert levels[0.2] > levels[2000.0]


def test_the_safety_factor_scales_the_safety_stock_and_is_recorded() -> None:
    """``PlanningSettings.safety_factor`` (the simulator's tuning knob) multiplies the model's
    safety stock, keeps the lead-time demand it is added to, and is recorded when it is not 1."""
    w = ward()
    for t, qty in daily_uses(random.Random(5), 0, 40, per_day=6):
        use(w, t, qty)
    base = evaluated(w.p)
    assert "safety_factor" not in base["inputs"] and base["model"]["safety_stock"] > 1
    for factor in (0.0, 0.5, 2.0):
        w.p.planner.settings = replace(w.p.planner.settings, safety_factor=factor)
        scaled = evaluated(w.p)
        mean = scaled["inputs"]["lead_time_demand_mean"]
        assert mean == base["inputs"]["lead_time_demand_mean"]
        assert scaled["inputs"]["safety_factor"] == factor
        assert scaled["model"]["reorder_point"] == pytest.approx(mean + factor * (base["model"]["reorder_point"] - mean))
        assert scaled["model"]["safety_stock"] == pytest.approx(factor * base["model"]["safety_stock"])


def reorder_point(w: World, sku: str = SUTURE, location: str = WARD) -> float:
    value = w.view(sku, location)["reorder_point"]
    assert value is not None
    return value


# -- (a) a burst lifts the policy in the event that reveals it; a quiet stretch lowers it ----

def test_a_burst_of_scans_raises_a_spike_and_lifts_the_policy_while_it_happens() -> None:
    w, rng = ward(), random.Random(1)
    for t, qty in daily_uses(rng, 0, 40, per_day=8):
        use(w, t, qty)
    before = w.view(SUTURE)
    assert before["reorder_point"] is not None and not before["open_alerts"]
    steady_rop, steady_ss = before["reorder_point"], before["safety_stock"]

    burst_start = START + timedelta(days=40, hours=9)
    revealed_by, burst = None, []
    for m in range(40):  # 40 sutures in 80 minutes: five days' use
        event_id, result = use(w, burst_start + timedelta(minutes=2 * m))
        burst.append(event_id)
        if spike_alerts(result):
            revealed_by = event_id
            alert = spike_alerts(result)[0]
            break
    assert revealed_by is not None, "no demand_spike during the burst"
    assert burst.index(revealed_by) < 20  # within the first 20 scans of the burst

    # The alert and the lifted policy were recorded by the very event that revealed the spike.
    assert alert["event_id"] == revealed_by and alert["severity"] == "warning"
    lifted = {d["type"]: d for d in decisions(w, cause=revealed_by)}
    assert {"safety_stock_changed", "reorder_point_changed"} <= set(lifted)
    assert lifted["safety_stock_changed"]["new"] > steady_ss
    assert lifted["reorder_point_changed"]["old"] == steady_rop
    assert lifted["reorder_point_changed"]["new"] > 1.5 * steady_rop
    inputs = lifted["reorder_point_changed"]["policy"]["inputs"]
    assert inputs["demand_spike"] is True
    assert inputs["demand_mean_per_day"] > 1.5 * inputs["baseline_mean_per_day"]
    assert w.view(SUTURE)["reorder_point"] == lifted["reorder_point_changed"]["new"]
    # Whether the spike lasts is not known yet: the stock beyond the reorder point is the
    # baseline's cycle (7 days of it in whole packs of 10), not a cycle at the spike's rate.
    cycle = math.ceil(inputs["baseline_mean_per_day"] * inputs["cycle_days"] / 10 - 1e-9) * 10
    assert lifted["reorder_point_changed"]["order_up_to"] == lifted["reorder_point_changed"]["new"] + cycle
    assert cycle < inputs["demand_mean_per_day"] * inputs["cycle_days"]

    # The rest of the burst, then a quiet stretch (three a day): the spike is resolved by the
    # system and the reorder point comes back down to below where it started.
    peak = 0.0
    for m in range(len(burst), 40):
        use(w, burst_start + timedelta(minutes=2 * m))
        peak = max(peak, reorder_point(w))
    for t, qty in daily_uses(rng, 41, 45, per_day=3):
        use(w, t, qty)
    spike = next(a for a in w.p.alerts(kind="demand_spike"))
    assert spike["status"] == "resolved" and spike["resolved_by"] == "system"
    assert reorder_point(w) < steady_rop < peak
    lowered = [d for d in decisions(w, kind="reorder_point_changed") if d["old"] is not None and d["new"] < d["old"]]
    assert lowered and lowered[-1]["policy"]["inputs"]["demand_spike"] is False


# -- (b) no false alarms on long noisy steady demand; a real step is caught ------------------

def caught_after(w: World, uses: Iterator[tuple[datetime, int]]) -> tuple[int, int | None]:
    """(events fed, the number of the event whose processing raised demand_spike, or None)."""
    n = 0
    for t, qty in uses:
        _, result = use(w, t, qty)
        n += 1
        if spike_alerts(result):
            return n, n
    return n, None


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("per_day", "ratio", "stepped"), [(6, 1.0, 30), (8, 3.0, 60)],
                         ids=["poisson", "negative-binomial"])
def test_long_steady_demand_raises_no_spike_alarm_and_a_fivefold_step_is_caught(
        seed: int, per_day: float, ratio: float, stepped: float) -> None:
    """120 days of Poisson (6 a day) or negative binomial (8 a day, variance three times the
    mean, uses of several units) demand: not one demand_spike alert (the detector's false
    alarms are under one per stock point and year, ``bench/detection.py``). Then the use rate
    steps up fivefold: the alert comes within 45 uses, about a day."""
    w, rng = ward(), random.Random(seed)
    n, alarm = caught_after(w, daily_uses(rng, 0, 120, per_day=per_day, ratio=ratio))
    assert n > 350 and alarm is None
    assert not w.p.alerts(kind="demand_spike")
    _, alarm = caught_after(w, daily_uses(rng, 120, 5, per_day=stepped, ratio=ratio))
    assert alarm is not None and alarm <= 45
    inputs = w.view(SUTURE)["last_decisions"][0]["policy"]["inputs"]
    assert inputs["demand_spike"] is True


def test_a_tripled_rate_from_four_uses_a_day_is_caught_within_two_days() -> None:
    """Issue 13's claim, as the planner's model runs: single-unit Poisson use at 4 a day
    through the day for 120 days, then 12 a day. Over 20 seeds: under 1.5 false alarms per
    stock point and year before the step, the step caught in every one, in a median of at most
    two days (over 100 seeds of ``bench/detection.py``: 0.6 false alarms a year, median
    1.5 days, none missed)."""
    delays, false_alarms, years = [], 0, 0.0
    for seed in range(20):
        rng = random.Random(f"step-4/{seed}")
        model, on, delay = StockPointModel(), False, None
        for day in range(150):
            rate = 4.0 if day < 120 else 12.0
            for t in sorted(day + rng.uniform(7 / 24, 21 / 24) for _ in range(poisson(rng, rate))):
                model.learn_use(t, day, day % 7, 1.0)
                now = model.demand.n_days >= WARM_UP_DAYS and model.estimate().spike
                if now and not on:
                    if day < 120:
                        false_alarms += 1
                    elif delay is None:
                        delay = t - 120
                on = now
            if delay is not None:
                break
        years += (120 - WARM_UP_DAYS) / 365
        assert delay is not None, seed
        delays.append(delay)
    assert false_alarms / years < 1.5, (false_alarms, years)
    assert statistics.median(delays) <= 2.0, sorted(delays)


# -- (c) the OR schedule moves the policy before anything is scanned -------------------------

def surgery(w: World, kind: str, case_id: str, t: datetime, **fields: Any) -> dict[str, Any]:
    return {"event_id": w.eid(kind), "type": kind, "occurred_at": t.isoformat(),
            "case_id": case_id, **fields}


def learn_hip_card(w: World, cases: int = 8) -> None:
    """Completed hip cases over past weeks, each using two implants (scanned with the case id)."""
    for k in range(cases):
        day = START + timedelta(days=10 + 7 * k, hours=8)
        case_id = f"HIP-{k}"
        post(w, surgery(w, "surgery_scheduled", case_id, day - timedelta(days=2), procedure="hip",
                        location=OR, scheduled_for=day.isoformat()))
        for m in range(2):
            use(w, day + timedelta(hours=1, minutes=m), sku=IMPLANT, location=OR, lot="I1",
                case_id=case_id)
        post(w, surgery(w, "surgery_completed", case_id, day + timedelta(hours=3)))


def test_scheduled_cases_raise_the_reorder_point_of_their_items_before_any_is_scanned() -> None:
    w = ward()
    learn_hip_card(w)
    card = w.p.planner.procedures
    assert card.cases["hip"] == 8 and card.expected("hip", IMPLANT) == 2.0
    assert card.expected("hip", SUTURE) == 0.0  # the ward's sutures are not on the card
    now = START + timedelta(days=80)
    at(w, now)
    base = reorder_point(w, IMPLANT, OR)
    scans_before = len(w.facts(IMPLANT, OR))

    # Three hip cases within the implant's 5-day lead time, one in five weeks.
    raised, rops = [], [base]
    for k, days_ahead in enumerate((1, 2, 4)):
        event = surgery(w, "surgery_scheduled", f"HIP-NEXT-{k}", now, procedure="hip", location=OR,
                        scheduled_for=(now + timedelta(days=days_ahead)).isoformat())
        post(w, event)
        # Each case is a decision that counts it; the known use replaces part of the
        # uncertain d·L (the schedule's share), so one case may leave the whole-unit 99.5 %
        # quantile where it was, but never lowers it.
        decision = decisions(w, IMPLANT, OR, cause=event["event_id"])[-1]  # (one evaluation's)
        assert decision["policy"]["inputs"]["known_demand"] == 2.0 * (k + 1)
        assert decision["policy"]["reorder_point"] >= rops[-1]
        raised.append(event)
        rops.append(decision["policy"]["reorder_point"])
    far = surgery(w, "surgery_scheduled", "HIP-LATER", now, procedure="hip", location=OR,
                  scheduled_for=(now + timedelta(days=35)).isoformat())
    post(w, far)
    assert not decisions(w, IMPLANT, OR, cause=far["event_id"])  # beyond the lead time
    # Six implants known within the lead time raise it by at least the six less the mean
    # use over the lead time they replace (under 2 here).
    assert reorder_point(w, IMPLANT, OR) == rops[-1] >= base + 4
    assert len(w.facts(IMPLANT, OR)) == scans_before  # nothing was scanned meanwhile
    assert not decisions(w, SUTURE, WARD, cause=raised[0]["event_id"])  # other items unmoved

    # Cancelling the cases lowers it again, one case at a time, back to where it was.
    for k, event in enumerate(raised):
        cancel = surgery(w, "surgery_cancelled", event["case_id"], now + timedelta(minutes=5))
        post(w, cancel)
        decision = decisions(w, IMPLANT, OR, cause=cancel["event_id"])[-1]
        assert decision["policy"]["inputs"]["known_demand"] == 2.0 * (2 - k)
        assert decision["policy"]["reorder_point"] <= rops[-1 - k]
    assert reorder_point(w, IMPLANT, OR) == base


# -- (d) a planner's override is honoured, and its cost is on record -------------------------

def override(w: World, t: datetime, **fields: Any) -> dict[str, Any]:
    return {"event_id": w.eid("ovr"), "type": "policy_override", "occurred_at": t.isoformat(),
            "sku": SUTURE, "location": WARD, "reason": "ward closing for refurbishment", **fields}


def count(w: World, t: datetime, qty: float) -> dict[str, Any]:
    return w.stock("stock_count", qty, lot="L1", sku=SUTURE, at=t)


def test_a_pinned_policy_is_used_for_replenishment_and_the_model_values_are_recorded() -> None:
    w, rng = ward(lead_time_days=3, pack_size=10), random.Random(4)
    for t, qty in daily_uses(rng, 0, 30, per_day=8):
        use(w, t, qty)
    now = START + timedelta(days=30, hours=12)
    at(w, now)
    model_rop = evaluated(w.p)["reorder_point"]
    assert model_rop < 60
    pinned = override(w, now, reorder_point=60, order_up_to=150)
    post(w, pinned, by=BUYER)
    (decision,) = decisions(w, cause=pinned["event_id"], kind="reorder_point_changed")
    assert (decision["new"], decision["order_up_to"]) == (60.0, 150.0)
    policy = decision["policy"]
    assert policy["reorder_point"] == 60.0 and policy["order_up_to"] == 150.0
    assert policy["model"]["reorder_point"] == model_rop  # what the model would have set
    assert policy["override"]["by"] == BUYER.name and policy["override"]["reason"].startswith("ward")
    assert policy["safety_stock"] == pytest.approx(60.0 - policy["inputs"]["lead_time_demand_mean"])

    # The count brings the stock to 62 (above the pin): nothing to order; a use of 2 more
    # brings it to 60 = the pinned reorder point: order up to 150 in packs of 10.
    post(w, count(w, now + timedelta(minutes=10), 62))
    assert not decisions(w, kind="replenishment_needed")
    event_id, _ = use(w, now + timedelta(minutes=20), 2)
    (need,) = decisions(w, cause=event_id, kind="replenishment_needed")
    assert need["inventory_position"] == 60.0 and need["quantity"] == 90.0
    assert need["policy"]["reorder_point"] == 60.0
    assert need["policy"]["model"]["reorder_point"] == model_rop


def test_a_freeze_holds_the_policy_until_its_date_and_clear_ends_an_override() -> None:
    w, rng = ward(), random.Random(5)
    for t, qty in daily_uses(rng, 0, 30, per_day=8):
        use(w, t, qty)
    frozen_rop = reorder_point(w)
    now = START + timedelta(days=30, hours=8)
    post(w, override(w, now, freeze_until=(now + timedelta(days=2)).isoformat()), by=ADMIN)
    before = len(decisions(w))
    for m in range(40):  # a burst that would lift the policy
        use(w, now + timedelta(minutes=2 + 2 * m))
    assert w.p.alerts(kind="demand_spike")  # the model saw the spike ...
    assert reorder_point(w) == frozen_rop  # ... but the frozen policy did not move
    assert not [d for d in decisions(w)[before:] if d["type"] == "reorder_point_changed"]
    policy = evaluated(w.p)
    assert policy["override"]["frozen"] is True
    assert policy["model"]["reorder_point"] > frozen_rop  # the price of the freeze, on record

    # After the freeze date the model's values are used again.
    later = now + timedelta(days=2, hours=1)
    event_id, _ = use(w, later)
    (thawed,) = decisions(w, cause=event_id, kind="reorder_point_changed")
    assert thawed["new"] == thawed["policy"]["model"]["reorder_point"] != frozen_rop
    assert thawed["policy"]["override"]["frozen"] is False

    # A pin, then clear: the override is gone and the model's values are back.
    post(w, override(w, later + timedelta(minutes=5), reorder_point=500), by=BUYER)
    assert reorder_point(w) == 500.0
    clear = override(w, later + timedelta(minutes=10), clear=True)
    post(w, clear, by=BUYER)
    (cleared,) = decisions(w, cause=clear["event_id"], kind="reorder_point_changed")
    assert cleared["policy"]["override"] is None
    assert cleared["new"] == cleared["policy"]["model"]["reorder_point"]
    assert w.view(SUTURE)["override"] is None


def test_only_buyers_and_admins_may_override_a_policy() -> None:
    w = ward()
    result = w.post(override(w, w.now, reorder_point=5), by=SCANNER)
    assert result.outcomes[0].status == "rejected"
    assert result.outcomes[0].errors[0]["code"] == "forbidden_type"


# -- (e) purchase orders are on order, and teach the lead time -------------------------------

def po(w: World, t: datetime, po_id: str, quantity: float, days: float) -> dict[str, Any]:
    return {"event_id": w.eid("po"), "type": "po_issued", "occurred_at": t.isoformat(),
            "po_id": po_id, "supplier": "MEDSUP", "location": WARD,
            "lines": [{"sku": SUTURE, "quantity": quantity, "unit": "each", "unit_price": 0.4}],
            "expected_at": (t + timedelta(days=days)).isoformat()}


def test_an_issued_po_covers_the_need_once_and_its_receipt_teaches_the_lead_time() -> None:
    w, rng = ward(lead_time_days=3, pack_size=10), random.Random(6)
    for t, qty in daily_uses(rng, 0, 30, per_day=8):
        use(w, t, qty)
    now = START + timedelta(days=30, hours=7)
    post(w, count(w, now, 45))  # low: at or below the reorder point
    (need,) = decisions(w, kind="replenishment_needed")
    assert w.view(SUTURE)["replenishment_needed"] is True

    # The buyer's ERP issues the PO: on order, the position is above the reorder point again.
    issued = po(w, now + timedelta(hours=1), "PO-77", need["quantity"], days=4)
    post(w, issued)
    (covered,) = decisions(w, cause=issued["event_id"], kind="replenishment_covered")
    assert covered["on_order"] == need["quantity"]
    view = w.view(SUTURE)
    assert view["on_order"] == need["quantity"] and view["replenishment_needed"] is False
    assert view["inventory_position"] == view["on_hand"] + need["quantity"]

    # Use goes on at its usual pace while the order is out: no second need for the same
    # shortfall. (Fifteen in two and a half hours would be a spike at 8 a day: a new need.)
    for m in range(15):
        use(w, now + timedelta(hours=2 + 3 * m))
    assert len(decisions(w, kind="replenishment_needed")) == 1

    # The delivery, five days after the PO (one day late), is received against it.
    assert evaluated(w.p)["inputs"]["lead_time_source"] == "master_data"
    arrived = now + timedelta(days=5, hours=1)
    at(w, arrived)
    post(w, w.receipt(need["quantity"], lot="L9", sku=SUTURE, at=arrived, po_id="PO-77"))
    view = w.view(SUTURE)
    assert view["on_order"] == 0.0
    assert len(decisions(w, kind="replenishment_needed")) == 1
    inputs = evaluated(w.p)["inputs"]
    assert inputs["lead_time_source"] == "learned"
    assert 3.0 < inputs["lead_time_days"] < 5.0  # one receipt of 5 days against the prior of 3
    learned = w.p.planner.lead_times[("MEDSUP", SUTURE)]
    assert learned.n == 1 and learned.mean == pytest.approx(5.0) and learned.on_time == 0.0


# -- (f) replay gives the same decisions and the same state ----------------------------------

def mixed_run(w: World) -> None:
    """Everything at once: steady and lumpy use, a burst, the OR schedule, an override and a
    freeze, purchase orders and receipts, counts."""
    rng = random.Random(7)
    learn_hip_card(w, cases=4)
    for t, qty in daily_uses(rng, 40, 30, per_day=6, ratio=2.0):
        use(w, t, qty)
    t = START + timedelta(days=70, hours=9)
    for m in range(30):
        use(w, t + timedelta(minutes=3 * m))
    post(w, surgery(w, "surgery_scheduled", "HIP-X", t + timedelta(hours=2), procedure="hip",
                    location=OR, scheduled_for=(t + timedelta(days=2)).isoformat()))
    post(w, override(w, t + timedelta(hours=3), reorder_point=80, order_up_to=200), by=BUYER)
    post(w, count(w, t + timedelta(hours=4), 70))
    post(w, po(w, t + timedelta(hours=5), "PO-1", 130, days=3))
    post(w, override(w, t + timedelta(hours=6), clear=True), by=BUYER)
    for u, qty in daily_uses(rng, 71, 10, per_day=6, ratio=2.0):
        use(w, u, qty)
    post(w, w.receipt(130, lot="L7", sku=SUTURE, at=t + timedelta(days=4), po_id="PO-1"))
    post(w, surgery(w, "surgery_cancelled", "HIP-X", t + timedelta(days=4, hours=1)))
    post(w, override(w, t + timedelta(days=4, hours=2),
                     freeze_until=(t + timedelta(days=6)).isoformat()), by=ADMIN)
    for u, qty in daily_uses(rng, 81, 10, per_day=9):
        use(w, u, qty)


def test_decisions_of_another_model_version_are_skipped_and_counted_not_reported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A decision records the model version that made it; ``check_decisions`` re-evaluates only
    the current version's and counts the others (their numbers were the older model's)."""
    import streams.planning
    w = ward()
    first = len([d for d in decisions(w) if "policy" in d])
    monkeypatch.setattr(streams.planning, "MODEL_VERSION", "an-older-model/1")
    for t, qty in daily_uses(random.Random(9), 0, 20, per_day=6):
        use(w, t, qty)
    old = [d for d in decisions(w) if "policy" in d][first:]
    assert old and all(d["policy"]["inputs"]["model_version"] == "an-older-model/1" for d in old)
    monkeypatch.undo()
    for t, qty in daily_uses(random.Random(10), 20, 20, per_day=12):
        use(w, t, qty)
    new = [d for d in decisions(w) if "policy" in d][first + len(old):]
    assert new and all(d["policy"]["inputs"]["model_version"] == streams.planning.MODEL_VERSION for d in new)
    to_domain = w.store.mapper.to_domain_event
    versions = Counter(e.decision["policy"]["inputs"]["model_version"]
                       for e in map(to_domain, w.store.notifications())
                       if isinstance(e, StockPoint.Decided) and "policy" in e.decision)
    assert versions["an-older-model/1"] == len(old)
    check = w.p.check_decisions()
    assert (check.checked, check.skipped, check.differences) == (
        versions[streams.planning.MODEL_VERSION], len(old), [])
    assert check.checked >= first + len(new)


def test_replaying_the_log_re_derives_every_decision_and_the_same_state(tmp_path: Path) -> None:
    path = tmp_path / "es.sqlite"
    w = ward(store=sqlite_store(path))
    mixed_run(w)
    checked, differences, skipped = w.p.check_decisions()
    kinds = {d["type"] for d in decisions(w)} | {d["type"] for d in decisions(w, IMPLANT, OR)}
    assert kinds == {"safety_stock_changed", "reorder_point_changed", "replenishment_needed",
                     "replenishment_covered"}
    assert checked > 50 and differences == [] and skipped == 0

    fresh = Processor(sqlite_store(path), w.p.case_id_key, clock=lambda: w.now)
    assert fresh.state_digest() == w.p.state_digest()
    assert pickle.dumps(fresh.planner.models) == pickle.dumps(w.p.planner.models)
    assert fresh.planner.lead_times == w.p.planner.lead_times
    assert fresh.planner.procedures == w.p.planner.procedures
    for sku, location in ((SUTURE, WARD), (IMPLANT, OR)):
        assert evaluated(fresh, sku, location) == evaluated(w.p, sku, location)
        assert fresh.stock_point_view(sku, location) == w.p.stock_point_view(sku, location)


# -- daily bulk posting is not a spike ------------------------------------------------------

def test_use_posted_once_a_day_as_one_bulk_quantity_raises_no_spike_over_a_year() -> None:
    """A cabinet's or an ERP's daily feed: the day's use, 20 on average, posted at 06:00 the
    next morning as one quantity. Each post makes the one-day sum jump to about 1.58 times a
    day's use; the detector learns the stock point's own rhythm and stays quiet for a year."""
    w = ward()
    rng = random.Random(11)
    raised = []
    for day in range(1, 366):
        qty = sum(1 for _ in range(40) if rng.random() < 0.5)  # binomial, mean 20
        six = datetime.combine((START + timedelta(days=day)).date(), time(6), tzinfo=PARIS)  # the ward's 06:00
        _, result = use(w, six.astimezone(UTC), qty)
        raised += spike_alerts(result)
    assert raised == []
    assert evaluated(w.p)["inputs"]["demand_spike"] is False



# -- (h) lead-time uncertainty as data (issue 13, item 5) ------------------------------------

def test_a_lead_time_spread_in_the_master_data_replaces_the_twenty_percent_prior() -> None:
    """``lead_time_sd_days`` on the item is the prior spread (recorded in the decision's inputs);
    without it the prior is 20 % of the lead time."""
    spreads = {}
    for sd in (None, 0.1, 3.0):
        w = ward(lead_time_days=5, **({"lead_time_sd_days": sd} if sd is not None else {}))
        for t, qty in daily_uses(random.Random(8), 0, 30, per_day=6):
            use(w, t, qty)
        inputs = evaluated(w.p)["inputs"]
        spreads[sd] = inputs["lead_time_sd_days"]
        assert inputs.get("lead_time_prior_sd_days") == sd
    assert spreads[None] == pytest.approx(0.2 * 5)
    assert spreads[0.1] == pytest.approx(0.1) and spreads[3.0] == pytest.approx(3.0)


def test_receipts_teach_the_spread_whatever_the_prior_said() -> None:
    """Receipts against orders replace the prior's spread: a thirty-fold gap between a tight
    prior (0.1 day) and a wide one (3 days) is under two-fold after a dozen receipts (the
    prior keeps the weight of two receipts, ``LeadTime.predict``)."""
    learned = {}
    for sd in (0.1, 3.0):
        w, rng = ward(lead_time_days=4, lead_time_sd_days=sd), random.Random(11)
        t = START
        for k in range(12):
            days = 4 + rng.choice((-1.0, 0.0, 1.0, 2.0))
            post(w, po(w, t, f"PO-{k}", 20, days=4))
            w.now = t + timedelta(days=days)
            post(w, w.receipt(20, lot=f"R{k}", sku=SUTURE, at=w.now, po_id=f"PO-{k}"))
            t = w.now + timedelta(days=1)
        learned[sd] = evaluated(w.p, now=t)["inputs"]["lead_time_sd_days"]
    assert learned[0.1] > 0.5 and learned[3.0] < 2.0
    assert learned[3.0] / learned[0.1] < 2.0


def test_a_negative_lead_time_spread_is_refused() -> None:
    w = World()
    result = w.post(w.item("SUT-9", lead_time_sd_days=-1), by=ADMIN)
    assert result.outcomes[0].status == "rejected"
    assert result.outcomes[0].errors[0]["field"] == "lead_time_sd_days"
