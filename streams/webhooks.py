"""Alert fan-out to webhooks: HMAC-signed JSON, retried with back-off, failures kept visible.

Each webhook follows the alert feed from its own position, saved (with the registrations)
in ``webhooks.json`` in the data directory after every delivery, so a restart neither skips
nor re-sends more than the one delivery in flight (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

log = logging.getLogger(__name__)

FeedReader = Callable[[int], Awaitable[list[dict[str, Any]]]]


def sign(secret: str, body: bytes) -> str:
    """The ``X-Replenish-Signature`` header: ``sha256=`` + HMAC-SHA-256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Webhook:
    id: str
    url: str
    secret: str
    kinds: list[str] = field(default_factory=list)
    created_by: str = ""
    created_at: str = ""
    position: int = 0
    delivered: int = 0
    failures: int = 0
    attempts_on_current: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: str | None = None
    next_attempt_at: str | None = None
    dead_letters: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("secret")
        return d


class WebhookDispatcher:
    def __init__(self, path: Path, read_feed: FeedReader, max_attempts: int = 8,
                 base_delay: float = 1.0, max_delay: float = 60.0, timeout: float = 10.0) -> None:
        self.path = path
        self.read_feed = read_feed
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.hooks: dict[str, Webhook] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        if path.exists():
            for raw in json.loads(path.read_text()):
                hook = Webhook(**raw)
                self.hooks[hook.id] = hook

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps([asdict(h) for h in self.hooks.values()]))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def register(self, url: str, kinds: list[str], by: str, position: int,
                 secret: str | None = None) -> Webhook:
        """Register a webhook that receives alert changes after feed number ``position``."""
        hook = Webhook(id="wh_" + secrets.token_hex(6), url=url, secret=secret or secrets.token_hex(24),
                       kinds=kinds, created_by=by, created_at=datetime.now(UTC).isoformat(),
                       position=position)
        self.hooks[hook.id] = hook
        self._save()
        self.wake()
        return hook

    def remove(self, hook_id: str) -> bool:
        found = self.hooks.pop(hook_id, None) is not None
        if found:
            self._save()
        return found

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while True:
                self._wake.clear()
                delay = None
                for hook in list(self.hooks.values()):
                    wait = await self._deliver(client, hook)
                    if wait is not None:
                        delay = wait if delay is None else min(delay, wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay if delay is not None else 30.0)

    async def _deliver(self, client: httpx.AsyncClient, hook: Webhook) -> float | None:
        """Deliver what is due; the seconds until the next retry, or None when caught up."""
        now = datetime.now(UTC)
        if hook.next_attempt_at and datetime.fromisoformat(hook.next_attempt_at) > now:
            return (datetime.fromisoformat(hook.next_attempt_at) - now).total_seconds()
        for entry in await self.read_feed(hook.position):
            if hook.kinds and entry["kind"] not in hook.kinds:
                hook.position = entry["seq"]
                continue
            body = orjson.dumps(entry)
            hook.last_attempt_at = now.isoformat()
            try:
                r = await client.post(hook.url, content=body, headers={
                    "content-type": "application/json", "X-Replenish-Signature": sign(hook.secret, body),
                    "X-Replenish-Delivery": f"{hook.id}-{entry['seq']}"})
                hook.last_status, ok = r.status_code, 200 <= r.status_code < 300
                hook.last_error = None if ok else f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                hook.last_status, ok, hook.last_error = None, False, f"{type(exc).__name__}: {exc}"
            if ok:
                hook.position, hook.delivered = entry["seq"], hook.delivered + 1
                hook.attempts_on_current, hook.next_attempt_at = 0, None
                self._save()
                continue
            hook.failures += 1
            hook.attempts_on_current += 1
            if hook.attempts_on_current >= self.max_attempts:
                hook.dead_letters.append({"seq": entry["seq"], "alert_id": entry["id"],
                                          "error": hook.last_error})
                hook.position, hook.attempts_on_current, hook.next_attempt_at = entry["seq"], 0, None
                self._save()
                continue
            wait = min(self.base_delay * 2 ** (hook.attempts_on_current - 1), self.max_delay)
            hook.next_attempt_at = datetime.fromtimestamp(now.timestamp() + wait, UTC).isoformat()
            self._save()
            log.warning("webhook %s: delivery %s failed (%s); retry in %.0f s",
                        hook.id, entry["seq"], hook.last_error, wait)
            return wait
        return None
