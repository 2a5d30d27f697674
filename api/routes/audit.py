"""Audit: history, state as of any instant, and chain verification."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.deps import ADMINS, AUDITORS, Runner, require
from api.responses import JSON
from domain.intake import Principal
from streams import traceability

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            f"'{name}' needs an offset, e.g. 2026-11-25T09:00:00+01:00")
    return value


@router.get("/stock-points/{sku}/{location}/events", response_class=JSON)
async def stock_point_history(sku: str, location: str, runner: Runner,
                              _: Annotated[Principal, Depends(require(*AUDITORS))],
                              as_of: datetime | None = None,
                              known_at: datetime | None = None) -> JSON:
    """Every stored event of a stock point with its hash. ``as_of`` (an instant of
    ``occurred_at``) gives the state then and the events up to it; ``known_at`` (an instant of
    recording) limits both to what had been recorded by then."""
    result = await runner.read(runner.processor.audit_stock_point, sku, location,
                               _aware("as_of", as_of), _aware("known_at", known_at))
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no events recorded for {sku} at {location}")
    return JSON(result)


@router.get("/streams/{stream_id:path}", response_class=JSON)
async def stream_history(stream_id: str, runner: Runner,
                         _: Annotated[Principal, Depends(require(*AUDITORS))],
                         as_of: datetime | None = None,
                         known_at: datetime | None = None) -> JSON:
    """Any aggregate's stored events with their hashes (a stock point ``sp:<sku>@<location>``,
    a lot ``lot:<sku>/<lot>``, ``recall:<reference>``, ``item:<sku>``, ``case:<id>``,
    ``po:<id>``, ...) and its state as of an instant: ``as_of`` (of ``occurred_at``) and
    ``known_at`` (of recording) as for a stock point."""
    result = await runner.read(traceability.audit_stream, runner.processor, stream_id,
                               _aware("as_of", as_of), _aware("known_at", known_at))
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no stream {stream_id!r} is stored")
    return JSON(result)


@router.get("/verify", response_class=JSON)
async def verify(runner: Runner, _: Annotated[Principal, Depends(require(*AUDITORS))]) -> JSON:
    """Check the hash chain of every stored stream: ``ok``, or the first broken link."""
    checked, broken = await runner.read(runner.processor.verify)
    if broken is None:
        return JSON({"ok": True, "events_checked": checked})
    return JSON({"ok": False, "events_checked": checked, "broken": {
        "stream": broken.stream, "version": broken.version, "reason": broken.reason,
        "notification_id": broken.notification_id}})


@router.get("/state-digest", response_class=JSON)
async def state_digest(runner: Runner, _: Annotated[Principal, Depends(require(*AUDITORS))]) -> JSON:
    """A digest of the live derived state; ``replenish replay`` compares a rebuild with it."""
    return JSON({"digest": await runner.read(runner.processor.state_digest)})


# -- signed checkpoints of the whole log (streams.checkpoints) ------------------------------

def _checkpointer(runner: Runner) -> Any:
    checkpointer = getattr(runner, "checkpointer", None)
    if checkpointer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no audit signing key is set "
                            "(REPLENISH_AUDIT_SIGNING_KEY): this service makes no checkpoints")
    return checkpointer


@router.get("/public-key", response_class=JSON)
async def public_key(runner: Runner, _: Annotated[Principal, Depends(require(*AUDITORS))]) -> JSON:
    """The public key (PEM) that checks this service's checkpoints, and its ``key_id``."""
    from streams import checkpoints
    key = _checkpointer(runner).key
    return JSON({"key_id": checkpoints.key_id(key), "public_key": checkpoints.public_pem(key)})


@router.post("/checkpoints", response_class=JSON)
async def make_checkpoint(runner: Runner, _: Annotated[Principal, Depends(require(*ADMINS))]) -> JSON:
    """Make a signed checkpoint now, covering everything stored (also appended to
    ``REPLENISH_AUDIT_CHECKPOINT_FILE``): ``{tree_size, root_hash, last_notification_id,
    timestamp, key_id, signature, format}``."""
    checkpointer = _checkpointer(runner)
    checkpoint = await runner.read(checkpointer.take)
    return JSON(orjson.loads(checkpoint.as_json()))


@router.get("/checkpoints/latest", response_class=JSON)
async def latest_checkpoint(runner: Runner, _: Annotated[Principal, Depends(require(*AUDITORS))]) -> JSON:
    """The newest checkpoint this service made (404 before the first)."""
    checkpoint = _checkpointer(runner).last
    if checkpoint is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no checkpoint made yet")
    return JSON(orjson.loads(checkpoint.as_json()))


@router.get("/proof/inclusion", response_class=JSON)
async def inclusion_proof(notification: Annotated[int, Query(ge=1)], size: Annotated[int, Query(ge=1)], runner: Runner,
                          _: Annotated[Principal, Depends(require(*AUDITORS))]) -> JSON:
    """That the stored event ``notification`` (its notification id) is in the tree of the log's
    first ``size`` events (a checkpoint's ``tree_size``): RFC 9162's audit path, with the leaf
    index, the leaf hash and the root, to check against a signed checkpoint."""
    from streams import checkpoints
    try:
        return JSON(await runner.read(checkpoints.inclusion, runner.processor.store, notification, size))
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.get("/proof/consistency", response_class=JSON)
async def consistency_proof(first: Annotated[int, Query(ge=1)], second: Annotated[int, Query(ge=1)], runner: Runner,
                            _: Annotated[Principal, Depends(require(*AUDITORS))]) -> JSON:
    """That the tree of the log's first ``first`` events (an older checkpoint's size) is a
    prefix of the tree of its first ``second`` (a newer one's): RFC 9162's proof and both roots."""
    from streams import checkpoints
    try:
        return JSON(await runner.read(checkpoints.consistency, runner.processor.store, first, second))
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
