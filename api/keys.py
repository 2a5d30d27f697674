"""API keys: in clear (``REPLENISH_API_KEYS``) or as SHA-256 hashes (``REPLENISH_API_KEYS_FILE``,
entries ``sha256=HEX``), matched in constant time against every entry; the file is re-read
when it changes and on SIGHUP (``KeyWatcher``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from domain.intake import Principal

log = logging.getLogger(__name__)
HASHED = "sha256="
WATCH_SECONDS = 2.0


def digest(key: str) -> str:
    """The SHA-256 (hex) a key file holds for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def entry_digest(entry: str) -> str:
    """The SHA-256 of a configured entry's key: the hash a hashed entry holds, or the key's own."""
    return entry[len(HASHED):].lower() if entry.startswith(HASHED) else digest(entry)


def find(principals: dict[str, Principal], given: str) -> Principal | None:
    """The principal of API key ``given``: every entry is compared (constant time each), a
    hashed entry against the key's SHA-256."""
    found = None
    given_digest = digest(given).encode()
    for entry, principal in principals.items():
        if entry.startswith(HASHED):
            same = hmac.compare_digest(entry[len(HASHED):].lower().encode(), given_digest)
        else:
            same = hmac.compare_digest(entry.encode(), given.encode())
        if same:
            found = principal
    return found


class KeyWatcher:
    """Re-reads the principals (``load``) when the key file's modification time or size changes
    (checked every ``WATCH_SECONDS``) and on SIGHUP, and puts them on the app (``apply``). A file
    that cannot be read keeps the keys in force, with a log line saying why (never a key)."""

    def __init__(self, path: Path, load: Callable[[], Any], apply: Callable[[Any], None]) -> None:
        self.path, self.load, self.apply = path, load, apply
        self._seen = self._stamp()
        self._task: asyncio.Task[None] | None = None
        self._stopped = threading.Event()
        self.reloads = 0

    def _stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def reload(self) -> None:
        try:
            principals = self.load()
        except Exception as exc:  # (its message names the entry's first characters at most)
            log.warning("API key file %s not re-read: %s; the keys in force stay", self.path, exc)
            return
        self.apply(principals)
        self.reloads += 1
        log.info("API key file %s re-read: %d entries", self.path, len(principals))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            stamp = self._stamp()
            if stamp != self._seen:
                self._seen = stamp
                self.reload()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="api-key-file")
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    def start_thread(self) -> None:
        """Watch from a daemon thread instead (a process whose event loop is not ours, as a
        Faust worker's): the file checked every ``WATCH_SECONDS``, and SIGHUP when called on
        the main thread."""
        def watch() -> None:
            while not self._stopped.wait(WATCH_SECONDS):
                stamp = self._stamp()
                if stamp != self._seen:
                    self._seen = stamp
                    self.reload()

        self._stopped.clear()
        threading.Thread(target=watch, name="api-key-file", daemon=True).start()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, lambda *_: self.reload())

    def stop_thread(self) -> None:
        self._stopped.set()

    async def stop(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def parse_key_file(text: str, roles: tuple[str, ...] | frozenset[str]) -> dict[str, Principal]:
    """``KEY-OR-HASH role [principal]`` a line (``#`` comments, blank lines skipped); a hash is
    written ``sha256=HEX`` (64 hex digits). Raises ValueError naming the line (never its key)."""
    out: dict[str, Principal] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (2, 3):
            raise ValueError(f"line {n}: not 'KEY-OR-HASH role [principal]'")
        key, role = parts[0], parts[1]
        if role not in roles:
            raise ValueError(f"line {n}: unknown role {role!r} (roles: {', '.join(sorted(roles))})")
        if key.startswith(HASHED):
            hexpart = key[len(HASHED):]
            if len(hexpart) != 64 or any(ch not in "0123456789abcdefABCDEF" for ch in hexpart):
                raise ValueError(f"line {n}: a hash is sha256= and 64 hex digits")
        out[key] = Principal(parts[2] if len(parts) == 3 else role, role)
    return out


__all__ = ["HASHED", "KeyWatcher", "digest", "entry_digest", "find", "parse_key_file"]


