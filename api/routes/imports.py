"""Master data from CSV through the running service (``streams.csv_import``; the CLI's
``replenish import --url`` posts events instead, either way the same rows are stored)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from api.deps import ADMINS, Runner, require
from api.errors import MALFORMED_BODY, ApiError
from api.responses import JSON
from domain.intake import Principal
from streams import csv_import

router = APIRouter(prefix="/v1/import", tags=["import"])


@router.post("/{kind}", response_class=JSON, openapi_extra={
    "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}})
async def import_csv(kind: str, request: Request, runner: Runner,
                     principal: Annotated[Principal, Depends(require(*ADMINS))],
                     partial: Annotated[bool, Query(description="Store the good rows even when some are refused")] = False,
                     name: Annotated[str, Query(max_length=128, description="The file's name: with each row's "
                                                "cells it makes the row's event id, so the same file "
                                                "imported again stores nothing twice")] = "upload.csv") -> JSON:
    """Import ``items``, ``locations``, ``suppliers`` or ``contracts`` from a CSV body (README,
    "CSV master data"). Answers the report: ``rows``, ``stored``, ``already`` (stored by an
    earlier import), ``stored_nothing`` (a row is refused and ``partial`` is false) and each
    refused row with its ``line`` and errors."""
    if kind not in csv_import.KINDS:
        raise ApiError(status.HTTP_404_NOT_FOUND, f"no import of {kind!r}: one of {', '.join(csv_import.KINDS)}",
                       "not_found")
    try:
        text = (await request.body()).decode("utf-8")
        rows = csv_import.parse(kind, text, name, datetime.now(UTC))
    except (UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_ENTITY, f"not a CSV file of {kind}: {exc}", MALFORMED_BODY) from None
    processor = runner.processor

    def known(event_id: str) -> bool:
        outcome = processor.event_outcome(event_id)
        return outcome is not None and outcome.get("status") == "accepted"

    ids = {r.event["event_id"] for r in rows}
    stored = await runner.read(lambda: {i for i in ids if known(i)})
    report, todo = csv_import.plan(kind, rows, partial, stored.__contains__)
    outcomes = [o.as_dict() for o in await runner.submit([r.event for r in todo], principal)] if todo else []
    return JSON(csv_import.settle(report, todo, outcomes).as_dict())
