"""Webhooks for alert subscribers, registered by admins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, status

from api.deps import ADMINS, Runner, require
from api.responses import JSON
from domain.intake import Principal
from streams.webhooks import WebhookDispatcher

router = APIRouter(prefix="/v1/webhooks", tags=["alerts"])


def _dispatcher(request: Request) -> WebhookDispatcher:
    return request.app.state.webhooks


@router.post("", response_class=JSON, status_code=201, openapi_extra={
    "responses": {"201": {"description": "The webhook, with its secret (shown once)", "links": {
        "RemoveWebhook": {"operationId": "remove_v1_webhooks__hook_id__delete",
                          "parameters": {"hook_id": "$response.body#/id"},
                          "description": "Remove the webhook just registered"}}}}})
async def register(request: Request, runner: Runner,
                   principal: Annotated[Principal, Depends(require(*ADMINS))],
                   body: Annotated[dict[str, Any], Body(examples=[{"url": "https://alerts.example.org/hook",
                                                                    "kinds": ["stockout", "recalled_lot_scanned"]}])],
                   ) -> JSON:
    """Register a webhook for alert changes from now on. The answer holds the ``secret``
    (shown once) that signs each body: header ``X-Replenish-Signature: sha256=<HMAC-SHA-256>``.
    Failed deliveries are retried with exponential back-off and listed by ``GET``."""
    url = body.get("url")
    kinds = body.get("kinds") or []
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "'url' must be an http(s) URL")
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "'kinds' must be a list of alert kinds")
    position = len(await runner.read(lambda: runner.processor.ledger.alert_feed))
    hook = _dispatcher(request).register(url, kinds, principal.name, position, body.get("secret"))
    return JSON(dict(hook.public(), secret=hook.secret), status_code=status.HTTP_201_CREATED)


@router.get("", response_class=JSON)
async def list_webhooks(request: Request, _: Annotated[Principal, Depends(require(*ADMINS))]) -> JSON:
    """Registered webhooks with their delivery state: position, failures, last error, and
    the deliveries given up after the last retry."""
    return JSON({"webhooks": [h.public() for h in _dispatcher(request).hooks.values()]})


@router.delete("/{hook_id}", status_code=204)
async def remove(request: Request, hook_id: str, _: Annotated[Principal, Depends(require(*ADMINS))]) -> None:
    if not _dispatcher(request).remove(hook_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook {hook_id}")
