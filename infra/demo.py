"""The demo: a small simulated ward fed to a running service through its HTTP API."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from domain.intake import Principal

SITE = "H1"
ITEMS = [
    # sku, base GTIN, box GTIN, units per box, criticality, description, uses per hour
    ("GLV-M", "09501101020917", "19501101020914", 100, "normal", "Nitrile gloves M", 6.0),
    ("IVC-20G", "04006381333931", "14006381333938", 50, "critical", "IV catheter 20G", 2.0),
    ("SUT-KIT", "00012345600012", None, 1, "high", "Suture kit", 0.6),
]


def _key(principals: dict[str, Principal], role: str) -> str:
    return next(k for k, p in principals.items() if p.role == role)


def run_demo(base: str, principals: dict[str, Principal], scans: int, console: Console,
             seed: int = 7) -> dict[str, Any]:
    """Register a ward, receive stock, stream usage scans (one of a lot recalled on the way)
    and show what the service made of them. Returns the counts of outcomes."""
    rng = random.Random(seed)
    admin = {"Authorization": f"Bearer {_key(principals, 'admin')}"}
    scanner = {"Authorization": f"Bearer {_key(principals, 'scanner')}"}
    now = datetime.now(UTC)
    start = now - timedelta(minutes=50)
    run = now.strftime("%Y%m%d%H%M%S")
    counts: dict[str, int] = {}

    def post(headers: dict[str, str], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        r = httpx.post(f"{base}/v1/events", json=events, headers=headers, timeout=60)
        r.raise_for_status()
        results = r.json()["results"]
        for res in results:
            counts[res["status"]] = counts.get(res["status"], 0) + 1
        return results

    t0 = (start - timedelta(minutes=5)).isoformat()
    master: list[dict[str, Any]] = [
        {"event_id": f"demo-{run}-loc-cs", "type": "location_registered", "occurred_at": t0,
         "location": "CS", "site": SITE, "name": "Central store", "kind": "central_store",
         "timezone": "Europe/Paris"},
        {"event_id": f"demo-{run}-loc-w3", "type": "location_registered", "occurred_at": t0,
         "location": "W3", "site": SITE, "name": "Ward 3 cabinet", "kind": "ward",
         "timezone": "Europe/Paris", "restocked_from": "CS"},
        {"event_id": f"demo-{run}-sup", "type": "supplier_registered", "occurred_at": t0,
         "supplier": "MEDSUP", "name": "MedSupply SA"},
    ]
    for sku, gtin, box_gtin, per_box, crit, desc, _ in ITEMS:
        item = {"event_id": f"demo-{run}-item-{sku}", "type": "item_registered", "occurred_at": t0,
                "sku": sku, "gtin": gtin, "description": desc, "base_unit": "each",
                "units": {"box": per_box} if per_box > 1 else {}, "pack_size": per_box,
                "criticality": crit, "lead_time_days": 3, "supplier": "MEDSUP", "unit_cost": 1.5,
                "currency": "EUR"}
        if box_gtin:
            item["gtins"] = {"box": box_gtin}
        master.append(item)
    post(admin, master)
    console.print(f"registered 2 locations, 1 supplier, {len(ITEMS)} items")

    expiry = (now + timedelta(days=200)).date().isoformat()
    receipts = [{"event_id": f"demo-{run}-rcv-{sku}", "type": "receipt", "occurred_at": start.isoformat(),
                 "site": SITE, "location": "W3", "sku": sku, "lot": f"{sku}-L1", "expiry": expiry,
                 "quantity": 2 if per_box > 1 else 20, "unit": "box" if per_box > 1 else "each",
                 "supplier": "MEDSUP", "po_id": f"PO-{run}"}
                for sku, _, _, per_box, *_ in ITEMS]
    post(scanner, receipts)
    console.print("received one lot of each item into ward 3")

    rates = [rate for *_, rate in ITEMS]
    recall_at = scans * 2 // 3
    with Progress(console=console) as progress:
        task = progress.add_task("streaming usage scans", total=scans)
        for i in range(scans):
            at = start + timedelta(seconds=(i + 1) * 2900 / scans)
            sku, gtin, *_ = rng.choices(ITEMS, weights=rates)[0]
            if i == recall_at:
                post(admin, [{"event_id": f"demo-{run}-recall", "type": "recall_issued",
                              "occurred_at": at.isoformat(), "sku": "IVC-20G", "lots": ["IVC-20G-L1"],
                              "reference": f"FSCA-{run}", "recall_class": "II"}])
                progress.console.print("[yellow]manufacturer recall of lot IVC-20G-L1 posted[/yellow]")
            event = {"event_id": f"demo-{run}-scan-{i}", "type": "usage", "occurred_at": at.isoformat(),
                     "site": SITE, "location": "W3", "gtin": gtin, "lot": f"{sku}-L1", "quantity": 1}
            if sku == "SUT-KIT" and rng.random() < 0.5:
                event["case_id"] = f"OR-CASE-{rng.randint(1000, 9999)}"
            post(scanner, [event])
            progress.advance(task)

    # A re-sent batch changes nothing: every event answers "duplicate".
    post(scanner, receipts)

    reader = {"Authorization": f"Bearer {_key(principals, 'auditor')}"}
    table = Table(title="Ward 3 after the demo")
    for col in ("sku", "on hand", "quarantined", "inventory position", "safety stock",
                "reorder point", "flags"):
        table.add_column(col)

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    for sku, *_ in ITEMS:
        sp = httpx.get(f"{base}/v1/stock-points/{sku}/W3", headers=reader, timeout=30).json()
        table.add_row(sku, f"{sp['on_hand']:g}", f"{sp['quarantined']:g}",
                      f"{sp['inventory_position']:g}", num(sp.get("safety_stock")),
                      num(sp.get("reorder_point")), ", ".join(sp["flags"]))
    console.print(table)
    alerts = httpx.get(f"{base}/v1/alerts", headers=reader, timeout=30).json()["alerts"]
    alert_table = Table(title=f"Alerts ({len(alerts)})")
    for col in ("kind", "severity", "sku", "message"):
        alert_table.add_column(col)
    for a in alerts[:10]:
        alert_table.add_row(a["kind"], a["severity"], a["sku"], a["message"])
    console.print(alert_table)
    # Ward 3 is restocked from the central store: its needs become transfer requests there.
    reqs = httpx.get(f"{base}/v1/requisitions", headers=reader, timeout=30).json()["requisitions"]
    req_table = Table(title=f"Requisitions and transfer requests ({len(reqs)})")
    for col in ("id", "kind", "status", "from", "lines", "quantity"):
        req_table.add_column(col)
    for q in reqs[:10]:
        req_table.add_row(q["id"], q["kind"], q["status"], q["supplier"] or q["source"] or "-",
                          ", ".join(f"{line['sku']}@{line['location']}" for line in q["lines"]),
                          f"{q['quantity']:g}")
    console.print(req_table)
    verify = httpx.get(f"{base}/v1/audit/verify", headers=reader, timeout=60).json()
    console.print(f"outcomes: {counts}; hash chains: {'ok' if verify['ok'] else verify}")
    return counts
