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

On the distributed profile the same bytes (header line and body) are rows of a PostgreSQL
table, ``replenish_snapshots`` (``position`` the primary key, ``data`` the bytes), in the
store's database (``PgSnapshots``): the workers write them (one at a time: a transaction-level
advisory lock, a worker that does not get it skips its turn) and each worker starts from the
newest valid one.
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
    path: Path  # the file, or ``pg/<name>`` for a row of ``replenish_snapshots``

    @property
    def name(self) -> str:
        return self.path.name


def _mac(key: bytes, header: dict[str, Any], body: bytes) -> str:
    """HMAC-SHA-256 of the header's fields (but ``hmac``, keys sorted) and the body."""
    fields = orjson.dumps({k: v for k, v in header.items() if k != "hmac"}, option=orjson.OPT_SORT_KEYS)
    return hmac.new(hashlib.sha256(b"replenish-snapshot:" + key).digest(), fields + b"\n" + body,
                    hashlib.sha256).hexdigest()


def encode(key: bytes, position: int, events: int, state: Any) -> bytes:
    """The snapshot's bytes: the JSON header line, then the compressed body."""
    body = zlib.compress(pickle.dumps(state, protocol=5), 1)
    header = {"format": SNAPSHOT_FORMAT, "model": MODEL_VERSION, "position": position, "events": events,
              "created_at": datetime.now(UTC).isoformat(), "bytes": len(body)}
    header["hmac"] = _mac(key, header, body)
    return orjson.dumps(header) + b"\n" + body


def decode(raw: bytes, key: bytes, path: Path) -> Snapshot:
    """A snapshot's bytes, checked; ``ValueError`` saying why it cannot be used."""
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


def name_of(position: int) -> str:
    """A snapshot's name: ``snapshot-<position, 12 digits>`` (a file adds ``SUFFIX``)."""
    return f"{PREFIX}{position:012d}"


# What reading a snapshot can raise besides ``ValueError`` (a body that does not unpickle).
UNREADABLE = (OSError, ValueError, pickle.UnpicklingError, zlib.error, EOFError, AttributeError,
              ImportError, KeyError, TypeError)


def write(directory: Path, key: bytes, position: int, events: int, state: Any) -> Path:
    """Write ``state`` as of ``position``; returns the file. Older files beyond ``KEEP`` go."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name_of(position)}{SUFFIX}"
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(encode(key, position, events, state))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in sorted(directory.glob(f"{PREFIX}*{SUFFIX}"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def read(path: Path, key: bytes) -> Snapshot:
    """One snapshot file, checked; ``ValueError`` saying why it cannot be used."""
    return decode(path.read_bytes(), key, path)


def newest(directory: Path, key: bytes, at_most: int | None = None) -> Snapshot | None:
    """The newest usable snapshot (at most at position ``at_most``: the store's end), or None;
    each one skipped is logged with the reason."""
    for path in sorted(directory.glob(f"{PREFIX}*{SUFFIX}"), reverse=True):
        try:
            snap = read(path, key)
        except UNREADABLE as exc:
            log.warning("snapshot %s ignored: %s", path.name, exc)
            continue
        if at_most is not None and snap.position > at_most:
            log.warning("snapshot %s ignored: it is ahead of the store (position %d > %d)",
                        path.name, snap.position, at_most)
            continue
        return snap
    return None


class FileSnapshots:
    """The embedded profile's snapshots: files in a directory (``write``, ``newest``)."""

    def __init__(self, directory: Path, key: bytes) -> None:
        self.directory, self.key = directory, key

    def write(self, position: int, events: int, state: Any) -> str | None:
        return write(self.directory, self.key, position, events, state).name

    def newest(self, at_most: int | None = None) -> Snapshot | None:
        return newest(self.directory, self.key, at_most)


TABLE = "replenish_snapshots"
LOCK_KEY = 0x736E_6170_7368  # "snapsh": one writer of snapshots at a time


class PgSnapshots:
    """The distributed profile's snapshots: rows of ``replenish_snapshots`` in the store's
    PostgreSQL database, the same bytes as a file. One worker writes at a time (a
    transaction-level advisory lock; one that does not get it skips, returning None)."""

    def __init__(self, dsn: str, key: bytes) -> None:
        import psycopg
        self.dsn, self.key = dsn, key
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (position BIGINT PRIMARY KEY, "
                         "created_at TIMESTAMPTZ NOT NULL DEFAULT now(), data BYTEA NOT NULL)")

    def write(self, position: int, events: int, state: Any) -> str | None:
        import psycopg
        with psycopg.connect(self.dsn) as conn, conn.transaction():
            if not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,)).fetchone()[0]:  # type: ignore[index]
                return None  # (before the state is pickled: a worker that skips its turn does no work)
            conn.execute(f"INSERT INTO {TABLE} (position, data) VALUES (%s, %s) ON CONFLICT (position) DO NOTHING",
                         (position, encode(self.key, position, events, state)))
            conn.execute(f"DELETE FROM {TABLE} WHERE position NOT IN "
                         f"(SELECT position FROM {TABLE} ORDER BY position DESC LIMIT %s)", (KEEP,))
        return name_of(position)

    def newest(self, at_most: int | None = None) -> Snapshot | None:
        """The newest usable row (at most at ``at_most``, the store's end), or None; each one
        skipped is logged with the reason."""
        import psycopg
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            positions = [r[0] for r in conn.execute(f"SELECT position FROM {TABLE} ORDER BY position DESC")]
            for position in positions:
                name = name_of(position)
                if at_most is not None and position > at_most:
                    log.warning("snapshot %s ignored: it is ahead of the store (position %d > %d)",
                                name, position, at_most)
                    continue
                row = conn.execute(f"SELECT data FROM {TABLE} WHERE position = %s", (position,)).fetchone()
                if row is None:
                    continue
                try:
                    return decode(bytes(row[0]), self.key, Path("pg") / name)
                except UNREADABLE as exc:
                    log.warning("snapshot %s ignored: %s", name, exc)
        return None


class Snapshotter:
    """When and where a running service writes snapshots: every ``every_events`` events or
    ``every_minutes`` minutes (whichever comes first) once the log has moved on. ``target``:
    ``FileSnapshots`` or ``PgSnapshots``."""

    def __init__(self, target: FileSnapshots | PgSnapshots, every_events: int = 100_000,
                 every_minutes: float = 15.0, clock: Any = None) -> None:
        import time
        self.target = target
        self.every_events, self.every_minutes = every_events, every_minutes
        self._clock = clock or time.monotonic
        self.last_position: int | None = None
        self.last_at = self._clock()
        self.written = 0

    def age(self) -> float:
        """Seconds since the last one was made (or since start, before the first)."""
        return max(0.0, self._clock() - self.last_at)

    def due(self, position: int) -> bool:
        if self.last_position is None:
            self.last_position = position  # (start: the state was just read)
            return False
        moved = position - self.last_position
        return moved > 0 and (moved >= self.every_events
                              or self._clock() - self.last_at >= self.every_minutes * 60)

    def take(self, processor: Any) -> str | None:
        """Write the processor's state now (on its thread: the state must not change meanwhile);
        the snapshot's name, or None when another writer holds the turn."""
        name = self.target.write(processor.position, processor.position, processor.snapshot_state())
        self.last_position, self.last_at = processor.position, self._clock()
        if name is not None:
            self.written += 1
            log.info("snapshot %s written", name)
        return name


__all__ = ["KEEP", "SNAPSHOT_FORMAT", "FileSnapshots", "PgSnapshots", "Snapshot", "Snapshotter", "decode", "encode",
           "newest", "read", "write"]
