"""Recalls: open recalls and their progress per location, with the cases that used the lots."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, status

from api.deps import READERS, Runner, require
from api.responses import JSON
from domain.aggregates import Recall
from domain.intake import Principal
from streams import traceability

router = APIRouter(prefix="/v1/recalls", tags=["recalls"])


@router.get("", response_class=JSON)
async def list_recalls(runner: Runner, _: Annotated[Principal, Depends(require(*READERS))],
                       status: Literal["open", "closed", "all"] = "open") -> JSON:
    """Recalls (default: the open ones), each with its tasks per location (units quarantined,
    returned, destroyed, not found) and the pseudonymised case ids that used its lots."""
    found = await runner.read(traceability.recalls, runner.processor, status)
    return JSON({"recalls": found})


@router.get("/{reference}", response_class=JSON)
async def get_recall(reference: str, runner: Runner,
                     _: Annotated[Principal, Depends(require(*READERS))]) -> JSON:
    """One recall and its progress."""
    def view() -> dict | None:
        recall = runner.processor.ledger.streams.get(f"recall:{reference}")
        return traceability.recall_view(runner.processor, recall) if isinstance(recall, Recall) else None

    found = await runner.read(view)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no recall with reference {reference!r}")
    return JSON(found)
