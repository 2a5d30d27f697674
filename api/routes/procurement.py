"""Procurement: requisitions and their approval, purchase orders (the ERP export), goods in
transit, transfer requests (pick lists) and supplier scorecards."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, status
from fastapi.responses import Response

from api.bodies import Reason
from api.deps import ACTORS, READERS, Runner, require
from api.responses import JSON
from domain.codes import ADMIN, AUDITOR, BUYER, SCANNER
from domain.intake import Principal
from streams.procurement import ApprovalError

router = APIRouter(tags=["procurement"])

# A pick list is read at the store that picks it (scanners) as well as by buyers and auditors.
PICKERS = (SCANNER, BUYER, AUDITOR, ADMIN)
PO_CSV_COLUMNS = ("po_id", "supplier", "location", "issued_at", "expected_at", "status", "bill_only",
                  "requisition_id", "line", "sku", "line_location", "quantity", "unit", "unit_price",
                  "open_quantity")


def _summary(req: dict[str, Any]) -> dict[str, Any]:
    """A requisition as listed: lines with the chosen supplier and every candidate's score."""
    lines = [{k: line.get(k) for k in ("sku", "location", "source", "quantity", "need_quantity",
                                        "unit_price", "value", "supplier", "reference", "flags")}
             | {"candidates": [{k: cand.get(k) for k in ("supplier", "source", "total", "price", "lateness",
                                                         "quality", "expected_late_days", "excluded",
                                                         "supplier_score", "flags")}
                               for cand in line.get("candidates") or []]}
             for line in req["lines"]]
    quantity = sum(float(line.get("quantity") or 0) for line in req["lines"])
    return {k: v for k, v in req.items() if k != "lines"} | {"quantity": quantity, "lines": lines}


@router.get("/v1/requisitions", response_class=JSON)
async def list_requisitions(runner: Runner, _: Annotated[Principal, Depends(require(*READERS))],
                            status: str | None = None,
                            kind: Literal["purchase", "consignment", "transfer"] | None = None,
                            supplier: str | None = None) -> JSON:
    """Requisitions, newest first: ``status`` (collecting, pending_approval,
    awaiting_second_approval, approved, ordered, rejected; transfer requests: open, fulfilled),
    supplier, quantity, value, why a buyer is needed, and per line every candidate supplier
    with its expected total cost (price, lateness, quality)."""
    found = await runner.read(runner.processor.purchasing.requisitions, status=status, kind=kind,
                              supplier=supplier)
    return JSON({"requisitions": [_summary(r) for r in found]})


@router.get("/v1/requisitions/{requisition_id}", response_class=JSON)
async def get_requisition(requisition_id: str, runner: Runner,
                          _: Annotated[Principal, Depends(require(*READERS))]) -> JSON:
    """One requisition in full: each line's need (inventory position, reorder point, demand,
    days of cover) and candidates, the approvals and the purchase order."""
    found = await runner.read(runner.processor.requisition, requisition_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no requisition {requisition_id}")
    return JSON(found)


async def _decide(requisition_id: str, approve: bool, body: Reason, runner: Runner,
                  principal: Principal) -> JSON:
    try:
        req = await runner.decide_requisition(requisition_id, approve, body.reason.strip(), principal)
    except ApprovalError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return JSON(req)


@router.post("/v1/requisitions/{requisition_id}/approve", response_class=JSON)
async def approve(requisition_id: str, runner: Runner,
                  principal: Annotated[Principal, Depends(require(*ACTORS))],
                  body: Annotated[Reason, Body(examples=[{"reason": "price checked against contract"}])]) -> JSON:
    """Approve a requisition waiting for a buyer (buyers and admins), with a reason. Above the
    second-approval limit a second approval by another principal is needed (409 for the same
    one). The approval that completes it issues the purchase order."""
    return await _decide(requisition_id, True, body, runner, principal)


@router.post("/v1/requisitions/{requisition_id}/reject", response_class=JSON)
async def reject(requisition_id: str, runner: Runner,
                 principal: Annotated[Principal, Depends(require(*ACTORS))],
                 body: Annotated[Reason, Body(examples=[{"reason": "stock borrowed from H2"}])]) -> JSON:
    """Reject a requisition waiting for a buyer (buyers and admins), with a reason; its
    quantity no longer counts as on order."""
    return await _decide(requisition_id, False, body, runner, principal)


@router.get("/v1/purchase-orders", response_model=None)
async def purchase_orders(runner: Runner, _: Annotated[Principal, Depends(require(*READERS))],
                          status: Literal["open", "received", "bill_only"] | None = None,
                          format: Literal["json", "csv"] = "json") -> Response:
    """Purchase orders with their lines and what is still to receive: the ERP export, as
    JSON or CSV (one row per line)."""
    orders = await runner.read(runner.processor.purchasing.purchase_orders, status)
    if format == "json":
        return JSON({"purchase_orders": orders})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(PO_CSV_COLUMNS)
    for po in orders:
        for i, line in enumerate(po["lines"]):
            writer.writerow([po["po_id"], po["supplier"], po["location"], po["issued_at"], po["expected_at"],
                             po["status"], po["bill_only"], po["requisition_id"] or "", i, line["sku"],
                             line["location"], line["quantity"], line.get("unit") or "",
                             "" if line.get("unit_price") is None else line["unit_price"], line["open_quantity"]])
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="purchase-orders.csv"'})


@router.get("/v1/in-transit", response_class=JSON)
async def in_transit(runner: Runner, _: Annotated[Principal, Depends(require(*READERS))],
                     sku: str | None = None, location: str | None = None) -> JSON:
    """Open purchase order lines per item, with the arrival the supplier stated and the one
    expected from its learned lead time (mean, and mean + 2 spreads)."""
    rows = await runner.read(lambda: runner.processor.purchasing.in_transit(sku, location, runner.processor.clock()))
    return JSON({"in_transit": rows})


@router.get("/v1/transfer-requests", response_class=JSON)
async def transfer_requests(runner: Runner, _: Annotated[Principal, Depends(require(*PICKERS))],
                            source: str) -> JSON:
    """The pick list of a location that restocks others: its open transfer requests, each
    line with the lots to pick first (first expiry, first out)."""
    found = await runner.read(runner.processor.pick_list, source)
    return JSON({"source": source, "transfer_requests": found})


@router.get("/v1/suppliers/scorecards", response_class=JSON)
async def scorecards(runner: Runner, _: Annotated[Principal, Depends(require(*READERS))]) -> JSON:
    """Every supplier's latest scorecard: score, on-time rate, fill rate, batch pass rate,
    price against contract, recalls, contract breaches and lead time, per item too."""
    cards = await runner.read(runner.processor.purchasing.scorecards)
    return JSON({"scorecards": sorted(cards, key=lambda card: card["supplier"])})
