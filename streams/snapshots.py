"""Snapshots of the write model: the processor's whole derived state (ledger, planner and
purchasing models, who posted each event) as of a notification id, so that a start is the
newest valid snapshot plus the log after it instead of the whole log (issue 15).

eventsourcing's snapshots are per aggregate; this format is ours:

- a file ``snapshot-<notification id, 12 digits>.bin`` in ``<data dir>/snapshots``;
- its first line a JSON header: ``format`` (``SNAPSHOT_FORMAT``), ``model`` (the planner's
  ``MODEL_VERSION``: the online models' state is theirs), ``position`` (the last
  notification id the state includes), ``events`` (how many events the log held then),
  ``created_at``, ``bytes`` and ``hmac`` (HMAC-SHA-256 of the other header fields and the
  body, keyed by the service's case-id key: a file changed by anyone without the key is
  refused, as is a corrupt one);
- then the body: the state pickled (protocol 5) and zlib-compressed.

A snapshot of another format or model version, or one whose HMAC does not match, is ignored with a log line
saying why, and the next older one is tried (none: a full replay). Files are written to a
temporary name and renamed, so a crash never leaves a half snapshot under a real name; the
newest ``KEEP`` are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from streams.planning import MODEL_VERSION

log = logging.getLogger(__name__)
SNAPSHOT_FORMAT = 2  # 2: the HMAC covers the header's fields too (1: the body only)
KEEP = 2
PREFIX, SUFFIX = "snapshot-", ".bin"


@dataclass(frozen=True)
class Snapshot:
    position: int
    events: int
    state: Any
    path: Path


def _mac(key: bytes, header: dict[str, Any], body: bytes) -> str:
    """HMAC-SHA-256 of the header's fields (but ``hmac``, keys sorted) and the body."""
    fields = orjson.dumps({k: v for k, v in header.items() if k != "hmac"}, option=orjson.OPT_SORT_KEYS)
    return hmac.new(hashlib.sha256(b"replenish-snapshot:" + key).digest(), fields + b"\n" + body,
                    hashlib.sha256).hexdigest()


def write(directory: Path, key: bytes, position: int, events: int, state: Any) -> Path:
    """Write ``state`` as of ``position``; returns the file. Older files beyond ``KEEP`` go."""
    directory.mkdir(parents=True, exist_ok=True)
    body = zlib.compress(pickle.dumps(state, protocol=5), 1)
    header = {"format": SNAPSHOT_FORMAT, "model": MODEL_VERSION, "position": position, "events": events,
              "created_at": datetime.now(UTC).isoformat(), "bytes": len(body)}
    header["hmac"] = _mac(key, header, body)
    path = directory / f"{PREFIX}{position:012d}{SUFFIX}"
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(orjson.dumps(header) + b"\n" + body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in sorted(directory.glob(f"{PREFIX}*{SUFFIX}"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def read(path: Path, key: bytes) -> Snapshot:
    """One snapshot file, checked; ``ValueError`` saying why it cannot be used."""
    raw = path.read_bytes()
    first, _, body = raw.partition(b"\n")
    try:
        header = orjson.loads(first)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"unreadable header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise ValueError(f"format {fmt!r}, not {SNAPSHOT_FORMAT}")
    if header.get("model") != MODEL_VERSION:
        raise ValueError(f"made by model {header.get('model')!r}, not {MODEL_VERSION!r}")
    if len(body) != header.get("bytes") or not hmac.compare_digest(str(header.get("hmac")), _mac(key, header, body)):
        raise ValueError("its checksum does not match its contents (corrupt, or not written with this key)")
    return Snapshot(int(header["position"]), int(header["events"]), pickle.loads(zlib.decompress(body)), path)


def newest(directory: Path, key: bytes, at_most: int | None = None) -> Snapshot | None:
    """The newest usable snapshot (at most at position ``at_most``: the store's end), or None;
    each one skipped is logged with the reason."""
    for path in sorted(directory.glob(f"{PREFIX}*{SUFFIX}"), reverse=True):
        try:
            snap = read(path, key)
        except (OSError, ValueError, pickle.UnpicklingError, zlib.error, EOFError, AttributeError,
                ImportError, KeyError, TypeError) as exc:
            log.warning("snapshot %s ignored: %s", path.name, exc)
            continue
        if at_most is not None and snap.position > at_most:
            log.warning("snapshot %s ignored: it is ahead of the store (position %d > %d)",
                        path.name, snap.position, at_most)
            continue
        return snap
    return None


class Snapshotter:
    """When and where a running service writes snapshots: every ``every_events`` events or
    ``every_minutes`` minutes (whichever comes first) once the log has moved on."""

    def __init__(self, directory: Path, key: bytes, every_events: int = 100_000,
                 every_minutes: float = 15.0, clock: Any = None) -> None:
        import time
        self.directory, self.key = directory, key
        self.every_events, self.every_minutes = every_events, every_minutes
        self._clock = clock or time.monotonic
        self.last_position: int | None = None
        self.last_at = self._clock()
        self.written = 0

    def due(self, position: int) -> bool:
        if self.last_position is None:
            self.last_position = position  # (start: the state was just read)
            return False
        moved = position - self.last_position
        return moved > 0 and (moved >= self.every_events
                              or self._clock() - self.last_at >= self.every_minutes * 60)

    def take(self, processor: Any) -> Path:
        """Write the processor's state now (on its thread: the state must not change meanwhile)."""
        path = write(self.directory, self.key, processor.position, processor.position,
                     processor.snapshot_state())
        self.last_position, self.last_at = processor.position, self._clock()
        self.written += 1
        log.info("snapshot %s written", path.name)
        return path


__all__ = ["KEEP", "SNAPSHOT_FORMAT", "Snapshot", "Snapshotter", "newest", "read", "write"]
