"""Traceability: which stored events concern each lot and each serial, kept as an index.

``TraceIndex.note`` is called by ``Ledger.index`` for every event, live and on replay, so the
index is a pure function of the log. It keeps, per (sku, lot) and per (sku, serial), the
(stream, version) of every stored event about it, in recording order, so a trace reads only
those events from the store instead of scanning it; the stock points that ever held a lot
(where a recall must look); the pseudonymised case ids that used it; and where each
serialised unit is now.

``trace_row`` turns one stored event into a line of a lot's life, and ``TRACE_COLUMNS`` are
the columns of its CSV form.
"""

from __future__ import annotations

from typing import Any

Key = tuple[str, str]
Ref = tuple[str, int]

# What a stock fact does to a serialised unit: where it is afterwards.
_SERIAL_STATE = {"receipt": "in_stock", "return": "in_stock", "stock_count": "in_stock",
                 "usage": "used", "waste": "wasted", "implied_transfer": "in_stock",
                 "recall_confirmed": "recalled_out", "lot_changed": "in_stock"}

TRACE_COLUMNS = ("recorded_at", "occurred_at", "what", "location", "quantity", "lot", "serial",
                 "supplier", "po_id", "case_id", "reference", "codes", "reason", "event_id",
                 "recorded_by", "stream", "version", "hash")


class TraceIndex:
    def __init__(self) -> None:
        self.lot_events: dict[Key, list[Ref]] = {}
        self.serial_events: dict[Key, list[Ref]] = {}
        self.points: dict[Key, set[str]] = {}  # (sku, lot) -> stock point ids that recorded it
        self.cases: dict[Key, dict[str, list[str]]] = {}  # (sku, lot) -> case id -> usage event ids
        self.serials: dict[Key, dict[str, Any]] = {}  # (sku, serial) -> where the unit is now
        self.relabelled_from: dict[Key, str] = {}  # (sku, new lot) -> the lot it was relabelled from
        self.serials_at: dict[Key, set[str]] = {}  # (sku, location) -> serials in stock there

    def _lot(self, sku: str, lot: Any, ref: Ref) -> None:
        if isinstance(lot, str) and lot:
            refs = self.lot_events.get((sku, lot))
            if refs is None:
                self.lot_events[(sku, lot)] = [ref]
            elif refs[-1] != ref:
                refs.append(ref)

    def _serial(self, sku: str, serial: Any, ref: Ref) -> None:
        if isinstance(serial, str | int) and not isinstance(serial, bool) and serial != "":
            refs = self.serial_events.setdefault((sku, str(serial)), [])
            if not refs or refs[-1] != ref:
                refs.append(ref)

    def note(self, event: Any, agg: Any) -> None:
        """Index one stored event (``agg``: its aggregate, already holding it)."""
        name = type(event).__qualname__
        ref = (event.originator_id, event.originator_version)
        sku: str = getattr(agg, "sku", None) or ""
        if name == "StockPoint.Recorded":
            e = event.event
            for _, lot, _ in event.moves:
                self._lot(sku, lot, ref)
                if lot:
                    holders = self.points.get((sku, lot))
                    if holders is None:
                        holders = self.points[(sku, lot)] = set()
                    holders.add(event.originator_id)
            lot = e.get("lot")
            self._lot(sku, lot, ref)
            if e["type"] == "usage" and e.get("case_id") and lot:
                self.cases.setdefault((sku, lot), {}).setdefault(e["case_id"], []).append(e["event_id"])
            serial = e.get("serial")
            if serial:
                self._serial(sku, serial, ref)
                state = "in_transit" if e.get("side") == "out" else _SERIAL_STATE.get(e["type"], "in_stock")
                before = self.serials.get((sku, str(serial)))
                if before is not None:
                    self.serials_at.get((sku, before["location"]), set()).discard(str(serial))
                if state == "in_stock":
                    self.serials_at.setdefault((sku, agg.location), set()).add(str(serial))
                self.serials[(sku, str(serial))] = {
                    "serial": str(serial), "lot": lot or None, "location": agg.location,
                    "state": state, "since": e["occurred_at"], "event_id": e["event_id"],
                    "case_id": e.get("case_id")}
        elif name == "StockPoint.Refused":
            e = event.event if isinstance(event.event, dict) else {}
            self._lot(sku, e.get("lot"), ref)
            self._serial(sku, e.get("serial"), ref)
        elif name == "StockPoint.Decided":
            d = event.decision
            if d.get("type") == "quarantined":
                for lot in d["lots"]:
                    self._lot(sku, lot, ref)
                for serial in d.get("serials") or ():
                    self._serial(sku, serial, ref)
        elif name == "StockPoint.AlertRaised":
            self._lot(sku, event.alert.get("lot"), ref)
        elif name.startswith("Lot."):
            self._lot(agg.sku, agg.lot, ref)
            if name == "Lot.Changed" and event.event["change"] == "relabelled":
                new = event.event["new_lot"]
                self._lot(agg.sku, new, ref)
                self.relabelled_from[(agg.sku, new)] = agg.lot
        elif name.startswith("Recall.") and agg.sku is not None:
            for lot in agg.lots:
                self._lot(agg.sku, lot, ref)
            for serial in agg.serials:
                self._serial(agg.sku, serial, ref)

    def refs(self, sku: str, lot: str | None = None, serial: str | None = None) -> list[Ref]:
        if serial:
            return list(self.serial_events.get((sku, serial), ()))
        return list(self.lot_events.get((sku, lot or ""), ()))


def trace_row(event: Any, sku: str, lot: str | None, serial: str | None) -> dict[str, Any]:
    """One stored event as a line of the life of a lot (or serial) of ``sku``."""
    name = type(event).__qualname__
    row: dict[str, Any] = {"recorded_at": event.timestamp.isoformat(), "stream": event.originator_id,
                           "version": event.originator_version, "hash": event.hash}
    body = getattr(event, "event", None)
    e = body if isinstance(body, dict) else {}
    row.update(occurred_at=e.get("occurred_at"), event_id=e.get("event_id"),
               recorded_by=getattr(event, "recorded_by", None))
    if name == "StockPoint.Recorded":
        target = lot or e.get("lot") or ""
        net = sum(d for lt, d in event.effects if lt == target)
        moved = sum(q for op, lt, q in event.moves if op == "add" and lt == target)
        what = e["type"]
        if what == "transfer":
            what = f"transfer_{e.get('side')}"
        row.update(what=what, location=e.get("location"),
                   quantity=moved if e["type"] != "stock_count" else e.get("quantity"),
                   balance_change=net, lot=e.get("lot"), serial=e.get("serial"),
                   supplier=e.get("supplier"), po_id=e.get("po_id"), case_id=e.get("case_id"),
                   flags=list(event.flags), from_location=e.get("from_location"),
                   to_location=e.get("to_location"))
        if e["type"] == "recall_confirmed":
            row.update(reference=e.get("reference"), returned=e.get("returned"),
                       destroyed=e.get("destroyed"), not_found=e.get("not_found"))
        if e["type"] == "lot_changed":
            row.update(what="relabelled", reason=e.get("reason"), new_lot=e.get("new_lot"))
    elif name == "StockPoint.Refused":
        row.update(what="refused", location=e.get("location"), quantity=e.get("quantity"),
                   lot=e.get("lot"), serial=e.get("serial"), case_id=e.get("case_id"),
                   codes=[err["code"] for err in event.errors])
    elif name == "StockPoint.Decided":
        d = event.decision
        row.update(what="quarantined", location=d.get("location"), reference=d.get("reference"),
                   quantity=d["lots"].get(lot) if lot else sum(d["lots"].values()),
                   occurred_at=d.get("decided_at"), recorded_by="system")
    elif name == "StockPoint.AlertRaised":
        a = event.alert
        row.update(what=f"alert:{a['kind']}", location=a.get("location"), lot=a.get("lot"),
                   event_id=a.get("event_id"), occurred_at=a.get("raised_at"), recorded_by="system")
    elif name.startswith("Lot."):
        if name == "Lot.Changed":
            row.update(what=f"lot_{e['change']}", lot=e.get("lot"), reason=e.get("reason"),
                       new_expiry=e.get("new_expiry"), new_lot=e.get("new_lot"))
        elif name == "Lot.ExpiryLearned":
            row.update(what="expiry_learned", expiry=event.expiry, event_id=event.event_id)
        else:
            row.update(what="lot_first_seen", expiry=event.key.get("expiry"), lot=event.key.get("lot"))
    elif name.startswith("Recall."):
        row.update(what=e.get("type") or "recall_opened", reference=e.get("reference"),
                   location=e.get("location"), recall_class=e.get("recall_class"),
                   returned=e.get("returned"), destroyed=e.get("destroyed"),
                   not_found=e.get("not_found"))
    else:
        row.update(what=name)
    return {k: v for k, v in row.items() if v is not None}


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
