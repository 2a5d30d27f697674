"""While a stock point is empty, its use is a lower bound on demand, not an observation: a
stockout must not pull the demand estimate down (it is when the policy should be raising
stock). A quiet stretch with stock on the shelf still lowers it."""

from __future__ import annotations

from datetime import timedelta

from unit_world import ADMIN, SKU, WARD, World

from domain.aggregates import stock_point_id
from online_models.demand import DailyDemand


def _estimate(w: World) -> float:
    model = w.p.planner.models[stock_point_id(SKU, WARD)]
    return model.estimate().mean


def _history(w: World, stock: float) -> None:
    """21 days of 6 uses a day, with ``stock`` received first."""
    start = w.now - timedelta(days=30)
    w.post(w.receipt(stock, at=start))
    for day in range(21):
        for k in range(6):
            w.post(w.usage(1, at=start + timedelta(days=day, hours=8 + k)))


def test_days_without_stock_do_not_lower_the_demand_estimate(world: World) -> None:
    w = world
    _history(w, stock=126)  # exactly used up on day 21: then five empty days
    before = _estimate(w)
    assert w.lots() == {}
    restock = w.now - timedelta(days=3, hours=12)
    w.post(w.receipt(100, at=restock), w.usage(1, at=restock + timedelta(hours=1)))
    after = _estimate(w)
    model = w.p.planner.models[stock_point_id(SKU, WARD)]
    assert model.demand.censored_days >= 5
    assert after >= 0.98 * before
    decision = w.view()["last_decisions"][0]
    assert decision["policy"]["inputs"]["demand_censored_days"] >= 5


def test_the_same_quiet_days_with_stock_on_the_shelf_do_lower_it(world: World) -> None:
    w = world
    _history(w, stock=500)
    before = _estimate(w)
    later = w.now - timedelta(days=3, hours=11)
    w.post(w.usage(1, at=later))
    assert _estimate(w) < 0.9 * before
    assert w.p.planner.models[stock_point_id(SKU, WARD)].demand.censored_days == 0


def test_a_day_empty_but_busier_than_the_forecast_is_still_learned() -> None:
    m = DailyDemand(alpha=0.1)
    for day in range(30):
        m.learn_one(day, day % 7, 4.0)
    m.stocked_out(True, 30)  # ran out late on a day with 9 uses: the bound says demand is higher
    m.learn_one(30, 30 % 7, 9.0)
    m.stocked_out(False, 30)
    m.learn_one(31, 31 % 7, 4.0)
    assert m.censored_days == 0 and m.predict_one()[0] > 4.0


def test_a_negative_book_balance_is_not_an_empty_shelf(world: World) -> None:
    """Uses scanned with no receipt posted drive the balance below zero: a book error, not a
    stockout; its days are observations, so the estimate does not climb above the truth."""
    w = world
    start = w.now - timedelta(days=40)
    for day in range(35):
        for k in range(4):
            w.post(w.usage(1, at=start + timedelta(days=day, hours=8 + k)))
    model = w.p.planner.models[stock_point_id(SKU, WARD)]
    assert model.demand.censored_days == 0
    assert _estimate(w) <= 4.5


def test_demand_the_empty_shelf_could_not_meet_counts_as_demand_seen(world: World) -> None:
    """Issue 20: a scanner or cabinet that reports the uses it could not serve
    (``demand_unmet``) tells the model what an empty shelf hides: the demand estimate after a
    week empty at a ward now wanting 10 a day rises well above the 6 a day of before (towards
    what was really wanted), and the fact moves no stock and opens no lot."""
    w = world
    _history(w, stock=126)  # 6 a day, used up on day 21
    before = _estimate(w)
    start = w.now - timedelta(days=9)
    for day in range(6):  # the ward now wants 10 a day, none there
        w.post(w.stock("demand_unmet", 10, lot=None, at=start + timedelta(days=day, hours=12)))
    assert w.lots() == {} and not w.p.ledger.lot(SKU, "")
    assert _estimate(w) > 1.2 * before
    refused = w.post(w.stock("demand_unmet", 2, lot="L1"))
    assert refused.outcomes[0].status == "rejected"
    assert refused.outcomes[0].errors[0]["field"] == "lot"


def test_quiet_days_on_the_shelf_before_the_first_use_count_as_days_without_use(world: World) -> None:
    """A kit received and first used three weeks later, at a ward whose uses are recorded all
    along (another item used every day): the kit's demand clock starts at its receipt, so one
    use of 6 reads as about 6/22 a day, not 6 a day (which once ordered a year of an
    intermittent item in the simulator)."""
    w = world
    start = w.now - timedelta(days=25)
    w.post(w.item(sku="KIT-1"), by=ADMIN)
    w.post(w.receipt(6, sku="KIT-1", at=start), w.receipt(500, at=start))
    for day in range(23):  # the ward's gloves, used every day: the ward scans
        w.post(w.usage(1, at=start + timedelta(days=day, hours=9)))
    w.post(w.usage(6, sku="KIT-1", at=start + timedelta(days=21, hours=10)))
    w.post(w.usage(1, sku="KIT-1", at=start + timedelta(days=22, hours=10)))  # closes the day of the 6
    model = w.p.planner.models[stock_point_id("KIT-1", WARD)]
    assert 0.05 < model.estimate().mean < 1.0
    assert model.demand.n_days == 22


def test_stock_received_before_a_go_live_is_judged_from_the_go_live(world: World) -> None:
    """Stock received twelve days before the ward starts scanning (a go-live): the quiet days
    before the ward's first use are not days without use; 10 a day from the go-live reads as
    about 10 a day after two days, not as 10 in fourteen."""
    w = world
    stocked = w.now - timedelta(days=20)
    w.post(w.receipt(500, at=stocked))
    live = (stocked + timedelta(days=12)).replace(hour=0, minute=0, second=0, microsecond=0)  # (UTC midnight)
    for day in range(3):
        for k in range(10):
            w.post(w.usage(1, at=live + timedelta(days=day, hours=8 + k)))
    model = w.p.planner.models[stock_point_id(SKU, WARD)]
    assert model.demand.n_days == 2 and model.estimate().mean > 8


def test_the_demand_clock_starts_at_the_earliest_stock_and_runs_from_the_first_use() -> None:
    m = DailyDemand()
    m.start(10)
    m.start(3)  # a receipt posted later but dated earlier: stock was there from day 3
    m.start(12)
    m.learn_one(20, 20 % 7, 5.0)
    m.learn_one(21, 21 % 7, 0.0)
    assert m.n_days == 18  # days 3..20 closed
    assert abs(m.predict_one()[0] - 5.0 / 18) < 0.01
    m.start(0)  # once the clock runs, nothing moves it back
    m.learn_one(22, 22 % 7, 0.0)
    assert m.n_days == 19


def test_history_posted_receipts_first_then_uses_counts_each_use_on_its_own_day() -> None:
    """An import of a year's history by kind (every receipt, then every use): receipts do
    not open the clock, so the uses are not all lumped into the day of the last receipt."""
    m = DailyDemand()
    for day in range(0, 100, 10):
        m.start(day)
        m.stocked_out(False, day)
    for day in range(100):
        m.learn_one(day, day % 7, 2.0)
    m.advance(100)
    assert m.n_days == 100
    assert abs(m.predict_one()[0] - 2.0) < 1e-9
