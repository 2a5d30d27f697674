"""Procurement on the read side (issue 8): a hospital whose needs become requisitions and
purchase orders through the real processor (procurement on), followed live into the embedded
projections. The engine flattens requisitions, supplier scorecards, supplier notices and
bill-only order lines as the Python processors do, and the KPIs ``requisitions`` and
``supplier_scorecard`` say what the processor's own views (``purchasing.requisitions()``,
``purchasing.scorecards()``) say; bill-only orders are neither due nor in transit."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest import approx

from domain.intake import Principal
from projections import queries
from projections.follower import Follower, json_state, rebuild
from projections.processors import COLUMNS, process_batch, stored_event
from projections.schema import DERIVED_TABLES, SOURCE_TABLES, SUMMARY_TABLES, contents
from streams.processor import Processor
from streams.procurement import ProcurementSettings
from streams.store import EventStore, memory_env

from .test_projections_follower import rounded
from .test_projections_kpi_tables import _normal

ADMIN = Principal("admin-ana", "admin")
BUYER = Principal("buyer-bo", "buyer")
SCANNER = Principal("scanner-7", "scanner")
KEY = b"k" * 32
START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday
NEW_TABLES = ("requisitions", "requisition_lines", "requisition_status", "supplier_scores")


@pytest.fixture(scope="session")
def servers() -> dict[str, str]:
    """These tests need ClickHouse only: not the Kafka and PostgreSQL servers of conftest."""
    return {}


def iso(t: datetime) -> str:
    return t.isoformat()


class Purchasing:
    """Site H1: an operating room (OR1) supplied from outside, a ward (W1) restocked from the
    central store (CS). Catheters on contract with two certified suppliers (CHEAP: cheaper and
    late; RELY: on time), stents on consignment from RELY, gauze only quoted by an uncertified
    supplier (QUOTY), gloves at the ward."""

    def __init__(self) -> None:
        self.now = START - timedelta(days=160)
        self.store = EventStore(env=memory_env())
        settings = ProcurementSettings(enabled=True, auto_approve_limit=400.0)
        self.p = Processor(self.store, KEY, clock=lambda: self.now, procurement=settings)
        self._ids = itertools.count(1)

    def eid(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def post(self, *events: dict[str, Any], by: Principal = ADMIN) -> None:
        outcomes = self.p.process([(e, by) for e in events]).outcomes
        assert [o.status for o in outcomes] == ["accepted"] * len(events), outcomes

    def stock(self, etype: str, at: datetime, location: str, sku: str, quantity: float, lot: str,
              **extra: Any) -> dict[str, Any]:
        return {"event_id": self.eid(etype[:3]), "type": etype, "occurred_at": iso(at), "site": "H1",
                "location": location, "sku": sku, "lot": lot, "quantity": quantity, **extra}

    def setup(self) -> None:
        at = iso(self.now - timedelta(days=10))
        certified = [{"name": "ISO13485", "valid_until": "2027-12-31"}]
        self.post(
            {"event_id": "sup-1", "type": "supplier_registered", "occurred_at": at, "supplier": "CHEAP",
             "certificates": certified},
            {"event_id": "sup-2", "type": "supplier_registered", "occurred_at": at, "supplier": "RELY",
             "certificates": certified},
            {"event_id": "sup-3", "type": "supplier_registered", "occurred_at": at, "supplier": "QUOTY"},
            {"event_id": "loc-1", "type": "location_registered", "occurred_at": at, "location": "CS",
             "site": "H1", "kind": "central_store"},
            {"event_id": "loc-2", "type": "location_registered", "occurred_at": at, "location": "W1",
             "site": "H1", "restocked_from": "CS"},
            {"event_id": "loc-3", "type": "location_registered", "occurred_at": at, "location": "OR1", "site": "H1"},
            {"event_id": "item-1", "type": "item_registered", "occurred_at": at, "sku": "CATH",
             "base_unit": "each", "criticality": "critical", "lead_time_days": 3, "supplier": "RELY",
             "unit_cost": 10},
            {"event_id": "item-2", "type": "item_registered", "occurred_at": at, "sku": "STENT",
             "base_unit": "each", "criticality": "high", "lead_time_days": 2, "supplier": "RELY",
             "unit_cost": 500, "consignment": True},
            {"event_id": "item-3", "type": "item_registered", "occurred_at": at, "sku": "GAUZE",
             "base_unit": "each", "lead_time_days": 2, "supplier": "QUOTY", "unit_cost": 1},
            {"event_id": "item-4", "type": "item_registered", "occurred_at": at, "sku": "GLV",
             "base_unit": "each", "lead_time_days": 1, "unit_cost": 0.1})
        self.post(
            {"event_id": "k-1", "type": "supplier_contract", "occurred_at": at, "supplier": "CHEAP", "sku": "CATH",
             "price": 8, "lead_time_days": 3, "contract_id": "C-CHEAP"},
            {"event_id": "k-2", "type": "supplier_contract", "occurred_at": at, "supplier": "RELY", "sku": "CATH",
             "price": 10, "lead_time_days": 3, "contract_id": "C-RELY"},
            {"event_id": "k-3", "type": "supplier_contract", "occurred_at": at, "supplier": "RELY", "sku": "STENT",
             "price": 480, "lead_time_days": 2, "contract_id": "C-STENT"},
            {"event_id": "k-4", "type": "supplier_quote", "occurred_at": at, "supplier": "QUOTY", "sku": "GAUZE",
             "price": 0.9, "lead_time_days": 2}, by=BUYER)

    def history(self) -> Iterator[None]:
        """ERP orders of catheters and their receipts over five months: CHEAP late (and once
        short of its inspection), RELY on time; some receipts priced."""
        for n, (supplier, days) in enumerate([("CHEAP", 9), ("RELY", 3), ("CHEAP", 11), ("RELY", 3.2),
                                              ("CHEAP", 8), ("RELY", 2.9), ("CHEAP", 12), ("RELY", 3)], 1):
            issued = START - timedelta(days=150 - n * 15)
            self.now = issued
            self.post({"event_id": f"erp-{n}", "type": "po_issued", "occurred_at": iso(issued), "po_id": f"H{n}",
                       "supplier": supplier, "location": "OR1", "expected_at": iso(issued + timedelta(days=3)),
                       "lines": [{"sku": "CATH", "quantity": 10, "unit_price": 8 if supplier == "CHEAP" else 10}]})
            self.now = issued + timedelta(days=days)
            price = {"unit_price": 8.5} if supplier == "CHEAP" else {"unit_price": 10.0} if n % 4 == 2 else {}
            self.post(self.stock("receipt", self.now, "OR1", "CATH", 10, f"LH{n}", po_id=f"H{n}",
                                 expiry="2028-01-01", **price), by=SCANNER)
            if n == 3:
                self.post({"event_id": "insp-1", "type": "inspection_result", "occurred_at": iso(self.now),
                           "po_id": "H3", "location": "OR1", "sku": "CATH", "lot": "LH3", "accepted": 8,
                           "rejected": 2, "reason": "damaged packaging"})
            yield

    def fortnight(self) -> Iterator[None]:
        """Two weeks of use: catheters at OR1 (needs become requisitions, ordered and received),
        consigned stents (bill-only orders and replacements), gauze (a quote with no
        certificate: a buyer rejects, then approves by an admin), gloves at the ward (transfer
        requests); yields after each day."""
        self.now = START - timedelta(days=1)
        self.post(self.stock("receipt", self.now, "OR1", "STENT", 4, "S1", expiry="2028-01-01"),
                  self.stock("receipt", self.now, "OR1", "GAUZE", 20, "G1", expiry="2028-01-01", supplier="QUOTY"),
                  self.stock("receipt", self.now, "CS", "GLV", 300, "GL1", expiry="2028-01-01"),
                  self.stock("receipt", self.now, "W1", "GLV", 40, "GL1", expiry="2028-01-01"), by=SCANNER)
        received: set[str] = set()
        for day in range(14):
            self.now = START + timedelta(days=day, hours=2)
            use = [self.stock("usage", self.now, "OR1", "CATH", 4 + day % 3, "LH8"),
                   self.stock("usage", self.now, "OR1", "GAUZE", 2, "G1"),
                   self.stock("usage", self.now, "W1", "GLV", 5, "GL1")]
            if day % 4 == 1:
                use.append(self.stock("usage", self.now, "OR1", "STENT", 1, "S1"))
            self.post(*use, by=SCANNER)
            self.now += timedelta(hours=6)
            for po in self.p.purchasing.purchase_orders(status="open"):
                issued = datetime.fromisoformat(po["issued_at"])
                if po["po_id"].startswith("PO-") and po["po_id"] not in received and self.now - issued > timedelta(days=2):
                    received.add(po["po_id"])
                    self.post(*[self.stock("receipt", self.now, line["location"], line["sku"], line["quantity"],
                                           f"R{po['po_id'][-4:]}", po_id=po["po_id"], expiry="2028-01-01")
                                for line in po["lines"]], by=SCANNER)
            for req in self.p.purchasing.requisitions(status="open", kind="transfer"):
                self.post(*[{"event_id": self.eid("tr"), "type": "transfer", "occurred_at": iso(self.now),
                             "site": "H1", "from_location": req["source"], "to_location": line["location"],
                             "sku": line["sku"], "lot": "GL1", "quantity": line["quantity"]}
                            for line in req["lines"]], by=SCANNER)
            for req in self.p.purchasing.requisitions(status="pending_approval"):
                if req["supplier"] == "QUOTY" and not any(r["status"] == "rejected"
                                                          for r in self.p.purchasing.requisitions(supplier="QUOTY")):
                    self.p.decide_requisition(req["id"], False, "ask for a certified offer", BUYER)
                else:
                    self.p.decide_requisition(req["id"], True, "checked", ADMIN)
            if day == 6:
                notice = next(a for a in self.p.alerts(kind="contract_breach") if a["status"] == "open")
                self.p.change_alert(notice["id"], "acknowledged", "talking to CHEAP", BUYER)
            yield


@pytest.fixture(scope="module")
def world() -> Purchasing:
    world = Purchasing()
    world.setup()
    return world


@pytest.fixture(scope="module")
def followed(world: Purchasing, clickhouse_dsn: str) -> Iterator[Any]:
    """The projections followed live: a catch-up after every step of the world."""
    from projections.client import drop_database, open_projections
    client = open_projections(clickhouse_dsn, "t_procurement_live")
    from projections.schema import drop_all, migrate
    drop_all(client)
    migrate(client)
    follower = Follower(client, batch_size=13)
    follower.catch_up(world.store.notifications)
    for _ in itertools.chain(world.history(), world.fortnight()):
        follower.catch_up(world.store.notifications)
    yield client
    drop_database(client, "t_procurement_live")
    client.close()


def rows(client: Any, name: str, **filters: Any) -> list[dict[str, Any]]:
    return queries.run(client, name, **filters).rows


def test_the_world_exercises_every_part_of_procurement(world: Purchasing, followed: Any) -> None:
    reqs = world.p.purchasing.requisitions()
    assert {(r["kind"], r["status"]) for r in reqs} >= {
        ("purchase", "ordered"), ("purchase", "rejected"), ("consignment", "ordered"), ("transfer", "fulfilled")}
    orders = world.p.purchasing.purchase_orders()
    assert any(po["bill_only"] for po in orders) and any(po["requisition_id"] for po in orders)
    assert {c["supplier"] for c in world.p.purchasing.scorecards()} == {"CHEAP", "RELY", "QUOTY"}
    kinds = {n.topic.rpartition(":")[2] for n in world.store.notifications()}
    assert {"SupplierScorecard.AlertRaised", "SupplierScorecard.AlertChanged", "Requisition.Fulfilled",
            "PurchaseOrder.Inspected"} <= kinds


def test_the_engine_flattens_procurement_as_the_python_processors_do(world: Purchasing, followed: Any) -> None:
    notifications = list(world.store.notifications())
    reference = process_batch(stored_event(n, json_state(n)) for n in notifications)
    for table, columns in COLUMNS.items():
        got = sorted((tuple(_normal(v, c) for v, c in zip(row, columns, strict=True))
                      for row in followed.query(f"SELECT {', '.join(columns)} FROM {table}").result_rows), key=repr)
        want = sorted((tuple(_normal(row[c], c) for c in columns) for row in reference.get(table, [])), key=repr)
        assert got == want, table
    for table in NEW_TABLES:
        assert reference.get(table), table


def test_a_rebuild_gives_the_tables_and_kpis_followed_live(world: Purchasing, followed: Any, databases: Any) -> None:
    # Followed live, a stock point's days with receipts only, past its last use, enter the
    # forecast-vs-actual grid when a later use comes (the summaries recompute them).
    rebuilt = databases.open("rebuilt")
    rebuild(rebuilt, world.store.notifications, json_state)
    for table in SOURCE_TABLES + DERIVED_TABLES + SUMMARY_TABLES:
        assert contents(rebuilt, table) == contents(followed, table), table
    for name in queries.KPIS:
        for filters in ({}, {"start": "2026-03-02", "end": "2026-03-09"}, {"start": "2026-03-04"}):
            assert rounded(rows(rebuilt, name, **filters)) == rounded(rows(followed, name, **filters)), name


def _by_kind_and_status(reqs: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, float]]:
    out: dict[tuple[str, str], tuple[int, float]] = {}
    for r in reqs:
        n, value = out.get((r["kind"], r["status"]), (0, 0.0))
        out[r["kind"], r["status"]] = (n + 1, value + r["value"])
    return out


def test_requisitions_count_and_value_what_the_processor_holds(world: Purchasing, followed: Any) -> None:
    reqs = world.p.purchasing.requisitions()
    got = {(r["kind"], r["status"]): (r["requisitions"], r["value"]) for r in rows(followed, "requisitions")}
    want = _by_kind_and_status(reqs)
    assert got.keys() == want.keys()
    for key, (n, value) in want.items():
        assert got[key] == (n, approx(value)), key
    lines = {(r["kind"], r["status"]): r["lines"] for r in rows(followed, "requisitions")}
    want_lines: Counter[tuple[str, str]] = Counter()
    for r in reqs:
        want_lines[r["kind"], r["status"]] += len(r["lines"])
    assert lines == dict(want_lines)
    # A supplier's requisitions; the lines of one item only.
    rely = {(r["kind"], r["status"]): (r["requisitions"], r["value"]) for r in rows(followed, "requisitions",
                                                                                        supplier="RELY")}
    assert rely == {k: (n, approx(v)) for k, (n, v) in
                    _by_kind_and_status([r for r in reqs if r["supplier"] == "RELY"]).items()}
    cath = rows(followed, "requisitions", sku="CATH")
    assert sum(r["value"] for r in cath) == approx(sum(line["value"] for r in reqs for line in r["lines"]
                                                       if line["sku"] == "CATH"))
    assert {r["kind"] for r in cath} == {"purchase"}
    # Waiting for a buyer, and ordered the same day or later.
    waited = sum(r["waited_for_approval"] for r in rows(followed, "requisitions"))
    assert waited == sum(1 for r in reqs if r["needs_buyer"])
    ordered = [r for r in rows(followed, "requisitions") if r["status"] == "ordered"]
    assert all(r["mean_hours_to_order"] is not None and r["mean_hours_to_order"] >= 0 for r in ordered)


def test_requisitions_of_a_period_stand_as_they_did_at_its_end(world: Purchasing, followed: Any) -> None:
    first_week = {"start": "2026-03-02", "end": "2026-03-09"}
    raised = [r for r in world.p.purchasing.requisitions() if "2026-03-02" <= r["raised_at"][:10] < "2026-03-09"]
    got = rows(followed, "requisitions", **first_week)
    assert sum(r["requisitions"] for r in got) == len(raised)
    assert sum(r["value"] for r in got) == approx(sum(r["value"] for r in raised))
    # Nothing was raised before the fortnight began; the statuses of later days are not seen.
    assert rows(followed, "requisitions", end="2026-03-01") == []
    early = rows(followed, "requisitions", start="2026-03-02", end="2026-03-02T12:00:00+00:00")
    assert all(r["status"] != "fulfilled" for r in early)


def test_supplier_scorecard_is_each_suppliers_latest_card(world: Purchasing, followed: Any) -> None:
    cards = {c["supplier"]: c for c in world.p.purchasing.scorecards()}
    got = {r["supplier"]: r for r in rows(followed, "supplier_scorecard")}
    assert got.keys() == cards.keys()
    for supplier, card in cards.items():
        row = got[supplier]
        for name in ("score", "peak", "on_time_rate", "fill_rate", "batch_pass_rate", "accepted_share",
                     "price_vs_contract", "recalls", "lead_time_mean_days", "lead_time_sd_days"):
            assert row[name] == approx(card[name]) if card[name] is not None else row[name] is None, (supplier, name)
        assert row["contract_breaches"] == card["contract_breaches"]
        assert row["lead_time_receipts"] == card["lead_time_receipts"]
        assert row["review_open"] == int(card["review_open"])
        assert row["scored_at"] == datetime.fromisoformat(card["scored_at"]).replace(tzinfo=None)
    # Lowest score first: CHEAP, late and short, is up for review.
    ranked = rows(followed, "supplier_scorecard")
    assert [r["score"] for r in ranked] == sorted(r["score"] for r in ranked)
    assert ranked[0]["supplier"] == "CHEAP" and ranked[0]["review_open"] == 1
    (rely,) = rows(followed, "supplier_scorecard", supplier="RELY")
    assert rely["score"] == approx(cards["RELY"]["score"])
    assert {r["supplier"] for r in rows(followed, "supplier_scorecard", sku="GAUZE")} == {"QUOTY"}


def test_supplier_scorecard_at_the_end_of_a_period(world: Purchasing, followed: Any) -> None:
    scores = followed.query("SELECT supplier, scored_at, score FROM supplier_scores "
                            "ORDER BY notification_id").result_rows
    cut = START
    before = {s: score for s, at, score in scores if at < cut.replace(tzinfo=None)}
    got = {r["supplier"]: r for r in rows(followed, "supplier_scorecard", end=cut)}
    assert {s: r["score"] for s, r in got.items()} == before
    latest = {s: score for s, _, score in scores}
    since = Counter(s for s, at, _ in scores if at >= cut.replace(tzinfo=None))
    for r in rows(followed, "supplier_scorecard", start=cut):
        assert r["rescored"] == since[r["supplier"]]
        if r["supplier"] in before:
            assert r["score_change"] == approx(latest[r["supplier"]] - before[r["supplier"]])
        else:
            assert r["score_change"] is None


def test_supplier_notices_are_alerts_about_the_supplier(world: Purchasing, followed: Any) -> None:
    notices = followed.query("SELECT alert_id, kind, sku, location, site, status, supplier FROM alerts_current "
                             "WHERE supplier != ''").result_rows
    assert notices and all((sku, location, site) == ("", "", "") for _, _, sku, location, site, _, _ in notices)
    open_notices = {a for c in world.p.purchasing.scorecards() for a in c["open_notices"]}
    assert {a for a, *_, status, _ in notices if status != "resolved"} == open_notices
    assert "acknowledged" in {status for *_, status, _ in notices}
    assert {kind for _, kind, *_ in notices} >= {"contract_breach", "supplier_review_needed", "purchase_order"}


def test_bill_only_orders_are_not_due_nor_in_transit(world: Purchasing, followed: Any) -> None:
    orders = world.p.purchasing.purchase_orders()
    bill_only = {po["po_id"] for po in orders if po["bill_only"]}
    flagged = {po_id for po_id, flag in followed.query("SELECT po_id, max(bill_only) FROM po_lines "
                                                       "GROUP BY po_id").result_rows if flag}
    assert flagged == bill_only
    status = dict(followed.query("SELECT po_id, max(present) FROM po_line_status FINAL GROUP BY po_id").result_rows)
    assert {po_id for po_id in bill_only if status[po_id]} == set()
    assert all(status[po["po_id"]] for po in orders if not po["bill_only"])
    # Every line due is a line of an order that is not bill-only.
    due = sum(r["lines"] for r in rows(followed, "fill_rate"))
    assert due == sum(len({line["sku"] for line in po["lines"]}) for po in orders if not po["bill_only"])
    # Receipts against the requisitions' orders are in transit from their issue.
    from_requisitions = {po["po_id"]: po for po in orders if po["requisition_id"]}
    transit = followed.query("SELECT po_id, days FROM po_receipt_transit FINAL WHERE present = 1").result_rows
    assert {po_id for po_id, _ in transit} & from_requisitions.keys()
    assert not {po_id for po_id, _ in transit} & bill_only
    assert sum(r["receipts"] for r in rows(followed, "in_transit_time")) == len(transit)
    linked = followed.query("SELECT DISTINCT po_id, requisition_id FROM po_lines WHERE requisition_id != ''").result_rows
    assert dict(linked) == {po_id: po["requisition_id"] for po_id, po in from_requisitions.items()}


def test_unit_cost_still_reads_priced_receipts(world: Purchasing, followed: Any) -> None:
    got = rows(followed, "unit_cost", sku="CATH")
    assert sorted(r["mean_unit_cost"] for r in got) == [8.5] * 4 + [10.0] * 2  # a priced receipt a week
    assert {r["supplier"] for r in got} == {""}  # the receipts name their order, not the supplier
