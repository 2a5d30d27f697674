"""The service's log of a batch (``streams.outcome_log``): each refusal and each alert one
record, whose JSON form (``REPLENISH_LOG_FORMAT=json``) carries the event id and the stock
point in fields of their own, and never the event or an identifier that is not plain."""

from __future__ import annotations

import logging

import orjson
import pytest
from unit_world import ADMIN, SCANNER, World

from domain import codes as c
from infra.logs import JsonFormatter
from streams.outcome_log import log_alerts, log_refusals


def json_records(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [orjson.loads(JsonFormatter().format(r)) for r in caplog.records]


def test_refusals_and_alerts_of_a_batch_are_logged_with_event_id_and_stock_point(
        caplog: pytest.LogCaptureFixture) -> None:
    w = World()
    w.post(w.receipt(5, lot="L1"))
    w.post(w.recall(["L1"]), by=ADMIN)
    raws = [w.usage(1, lot="L1"), dict(w.usage(1), sku="X" * 200, event_id="u-long-sku"),
            dict(w.usage(1), event_id="bad\x00id"), w.usage(1, location="NOWHERE")]
    result = w.p.process([(r, SCANNER) for r in raws])
    assert [o.status for o in result.outcomes] == [c.REJECTED] * 4
    log = logging.getLogger("test.outcomes")
    with caplog.at_level(logging.INFO, logger="test.outcomes"):
        log_refusals(log, raws, result.outcomes)
        log_alerts(log, result.alerts)
    records = json_records(caplog)
    refused = [r for r in records if r["message"].startswith("refused event")]
    assert [(r.get("event_id"), r.get("stock_point")) for r in refused] == [
        (raws[0]["event_id"], f"{raws[0]['sku']}@{raws[0]['location']}"), ("u-long-sku", None),
        (result.outcomes[2].event_id, f"{raws[2]['sku']}@{raws[2]['location']}"),
        (raws[3]["event_id"], f"{raws[3]['sku']}@NOWHERE")]
    assert "\x00" not in str(result.outcomes[2].event_id)  # (the refusal's id is the redacted one)
    assert c.RECALLED_LOT in refused[0]["message"] and c.UNKNOWN_LOCATION in refused[3]["message"]
    (alert,) = [r for r in records if r["message"].startswith("alert recalled_lot_scanned")]
    assert alert["level"] == "warning" and alert["event_id"] == raws[0]["event_id"]
    assert alert["stock_point"] == f"{raws[0]['sku']}@{raws[0]['location']}" and alert["alert_id"].startswith("al_")
    text = "\n".join(r["message"] for r in records)
    assert "X" * 200 not in text and "\x00" not in text
