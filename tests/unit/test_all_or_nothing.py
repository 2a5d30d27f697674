"""All-or-nothing submissions (FHIR transaction Bundles; EPCIS capture documents):
``Intake.precheck`` gives the refusal ``handle`` gives, recording nothing, and
``Processor.process_all_or_nothing`` stores every event or, when one would be refused, only
the refusals (each stored as every refusal is) and nothing else."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from unit_world import ADMIN, SCANNER, World

from domain import codes as c

# Events that are accepted or refused for each reason a stock fact can be refused for.
KINDS = ("ok_receipt", "ok_usage", "unknown_item", "unknown_location", "unknown_unit", "fraction",
         "expired_scan", "expired_in_case", "recalled_scan", "bad_id", "stale", "future", "not_an_object",
         "reused_id", "resent", "no_type", "forbidden")


def make(w: World, kind: str, k: int) -> Any:
    if kind == "ok_receipt":
        return w.receipt(3, lot="L1")
    if kind == "ok_usage":
        return w.usage(1, lot="L1")
    if kind == "unknown_item":
        return dict(w.usage(1), sku="NO-SUCH")
    if kind == "unknown_location":
        return w.usage(1, location="NOWHERE")
    if kind == "unknown_unit":
        return dict(w.usage(1), unit="pallet")
    if kind == "fraction":
        return w.usage(0.5)
    if kind == "expired_scan":
        return w.usage(1, lot="OLD", expiry="2020-01-01")
    if kind == "expired_in_case":
        return dict(w.usage(1, lot="OLD", expiry="2020-01-01"), case_id=f"C-{k}")
    if kind == "recalled_scan":
        return w.usage(1, lot="RC")
    if kind == "bad_id":
        return dict(w.usage(1), event_id="x" * 300)
    if kind == "stale":
        return w.usage(1, at=w.now - timedelta(days=900))
    if kind == "future":
        return w.usage(1, at=w.now + timedelta(days=3))
    if kind == "not_an_object":
        return ["usage"]
    if kind == "reused_id":
        return dict(w.usage(2), event_id="first-use")
    if kind == "resent":
        return dict(w.FIRST)  # type: ignore[attr-defined]
    if kind == "no_type":
        return {"event_id": f"nt-{k}", "occurred_at": w.ago(minutes=1)}
    return w.item(sku=f"NEW-{k}")  # "forbidden": a scanner may not register items


def world() -> World:
    w = World()
    w.post(w.receipt(50, lot="L1"), w.receipt(5, lot="RC"))
    w.post(w.recall(["RC"]), by=ADMIN)
    first = dict(w.usage(1), event_id="first-use")
    w.post(first)
    w.FIRST = first  # type: ignore[attr-defined]
    return w


def codes(errors: list[dict[str, Any]]) -> list[str]:
    return sorted(str(e["code"]) for e in errors)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(KINDS), min_size=1, max_size=6))
def test_precheck_gives_each_event_the_refusal_handling_it_gives(kinds: list[str]) -> None:
    w = world()
    events = [make(w, kind, k) for k, kind in enumerate(kinds)]
    before = len(w.stored())
    predicted = w.p.precheck([(e, SCANNER) for e in events])
    assert len(w.stored()) == before  # nothing recorded
    for event, expected in zip(events, predicted, strict=True):  # each on its own, as it would be alone
        fresh = world()
        (outcome,) = fresh.p.process([(event, SCANNER)]).outcomes
        assert codes(outcome.errors) == codes(expected), (event, outcome)
        assert (outcome.status == c.REJECTED) == bool(expected)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(KINDS), min_size=1, max_size=6))
def test_all_or_nothing_stores_everything_or_only_the_refusals(kinds: list[str]) -> None:
    w = world()
    events = [make(w, kind, k) for k, kind in enumerate(kinds)]
    lots_before = w.lots()
    known = {str(e.get("event_id")) for e in events if isinstance(e, dict) and w.p.event_outcome(str(e.get("event_id")))}
    refusals = w.p.precheck([(e, SCANNER) for e in events])
    stored, outcomes, _ = w.p.process_all_or_nothing([(e, SCANNER) for e in events])
    assert stored == (not any(refusals))
    if stored:
        assert all(o is not None and o.status != c.REJECTED for o in outcomes)
        return
    assert [o is not None for o in outcomes] == [bool(r) for r in refusals]
    assert all(o.status == c.REJECTED for o in outcomes if o is not None)
    assert w.lots() == lots_before  # no stock moved
    for e, o in zip(events, outcomes, strict=True):  # nothing else stored
        if o is None and isinstance(e, dict) and str(e.get("event_id")) not in known:
            assert w.p.event_outcome(str(e.get("event_id"))) is None


def test_an_id_used_twice_in_one_transaction_for_other_content_is_refused_whole() -> None:
    w = world()
    a, b = dict(w.receipt(2), event_id="twice"), dict(w.receipt(3), event_id="twice")
    stored, outcomes, _ = w.p.process_all_or_nothing([(a, SCANNER), (b, SCANNER)])
    assert not stored and outcomes[0] is None
    assert outcomes[1] is not None and codes(outcomes[1].errors) == [c.EVENT_ID_REUSED]
    (refusal,) = w.stored_refusals("twice")  # the refusal is stored, as every refusal is
    assert codes(refusal["errors"]) == [c.EVENT_ID_REUSED]
    (alone,) = w.p.process([(a, SCANNER)]).outcomes  # and the id is still free
    assert alone.status == c.ACCEPTED


def test_an_event_refused_for_what_another_of_its_submission_brings_stores_nothing_else() -> None:
    """A receipt of a new lot with its (past) expiry, then a use of that lot sent without one:
    alone, neither is refused; together the use is (``expired_lot``, the receipt having taught
    the lot's expiry). Nothing is stored but that refusal, and the model is what the store holds."""
    w = world()
    lots = w.lots()
    receipt = w.receipt(5, lot="NEWOLD", expiry="2020-01-01")
    use = dict(w.usage(1, lot="NEWOLD"))
    use.pop("expiry", None)
    assert w.p.precheck([(receipt, SCANNER), (use, SCANNER)]) == [[], []]
    stored, outcomes, _ = w.p.process_all_or_nothing([(receipt, SCANNER), (use, SCANNER)])
    assert not stored and outcomes[0] is None
    assert outcomes[1] is not None and codes(outcomes[1].errors) == [c.EXPIRED_LOT]
    assert w.lots() == lots and w.p.event_outcome(receipt["event_id"]) is None
    (refusal,) = w.stored_refusals(use["event_id"])
    assert codes(refusal["errors"]) == [c.EXPIRED_LOT]
    again, _, _ = w.p.process_all_or_nothing([(receipt, SCANNER)])  # the receipt alone is taken
    assert again and w.lots()["NEWOLD"] == 5
