"""What a batch did, in the service's log (issue 16, section 3): each refused event (its id,
its refusal codes, the stock point it names) and each alert raised, one record each, with
``event_id`` and ``stock_point`` carried on the record so ``REPLENISH_LOG_FORMAT=json`` puts
them in fields of their own (``infra.logs``). Never the event itself: a record holds ids and
codes only (an event may hold a case's pseudonym and free text), and an id or name that is not
a plain identifier (too long, control characters) is left out.

The embedded runner logs its batches here; a worker its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from domain import codes as c
from domain.intake import Outcome

MAX_ID = 128


def _plain(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID and value.isprintable() else None


def stock_point_of(raw: Any) -> str | None:
    """``sku@location`` of a raw event, when both are plain identifiers."""
    if not isinstance(raw, dict):
        return None
    sku, location = _plain(raw.get("sku")), _plain(raw.get("location") or raw.get("to_location"))
    return f"{sku}@{location}" if sku and location else None


def log_refusals(log: logging.Logger, raws: Iterable[Any], outcomes: Sequence[Outcome]) -> None:
    """Log the refusals among ``outcomes`` (each beside the raw event it answers) at INFO."""
    for raw, outcome in zip(raws, outcomes, strict=False):
        if outcome.status != c.REJECTED:
            continue
        codes = sorted({str(e.get("code")) for e in outcome.errors})
        log.info("refused event %s: %s", _plain(outcome.event_id) or "(no plain id)", ", ".join(codes),
                 extra={"event_id": _plain(outcome.event_id), "stock_point": stock_point_of(raw)})


def log_alerts(log: logging.Logger, alerts: Iterable[dict[str, Any]]) -> None:
    """Log each alert raised at INFO or, when critical, WARNING."""
    for alert in alerts:
        sku, location = _plain(alert.get("sku")), _plain(alert.get("location"))
        point = f"{sku}@{location}" if sku and location else None
        where = point or _plain(alert.get("supplier")) or _plain(alert.get("key")) or "(no plain name)"
        level = logging.WARNING if alert.get("severity") == c.SEVERITY_CRITICAL else logging.INFO
        log.log(level, "alert %s (%s) raised at %s", _plain(alert.get("kind")), _plain(alert.get("severity")), where,
                extra={"event_id": _plain(alert.get("event_id")), "stock_point": point,
                       "alert_id": _plain(alert.get("id"))})
