"""Signed checkpoints of the whole event log (issue 16, section 1): a Merkle tree over every
stored event in recording order (``domain.merkle``; the leaf is the event's stored ``hash``,
the one its stream's chain carries), and a checkpoint ``{tree_size, root_hash, timestamp}``
signed with Ed25519 (``cryptography``), so that a copy held outside the store (the checkpoint
file, an auditor's mailbox) shows whether anything was removed, changed or reordered since.

A checkpoint is one JSON object a line:
``{"format": 1, "tree_size", "root_hash" (hex), "last_notification_id", "timestamp",
"key_id", "signature" (hex)}``; the signature covers the bytes of ``signed_bytes`` (the
format, size, root, last notification id, timestamp and key id, one a line). ``key_id`` is the
first 16 hex digits of the SHA-256 of the raw public key, so keys can rotate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.merkle import (
    Frontier,
    consistency_proof,
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    root,
)
from streams.store import EventStore

FORMAT = 1


def leaf_of(state: bytes) -> bytes:
    """The leaf of one stored event: its chain ``hash`` (hex) as bytes; an event without a
    readable hash is its stored bytes' SHA-256 (the chain check names it)."""
    try:
        h = orjson.loads(state).get("hash")
        return bytes.fromhex(h)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return hashlib.sha256(state).digest()


def leaves(store: EventStore) -> Iterator[tuple[int, bytes]]:
    """(notification id, leaf) of every stored event, in recording order."""
    for n in store.notifications():
        yield n.id, leaf_of(n.state)


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    root_hash: str
    last_notification_id: int
    timestamp: str
    key_id: str
    signature: str = ""
    format: int = FORMAT

    def signed_bytes(self) -> bytes:
        return (f"replenish-checkpoint/{self.format}\n{self.tree_size}\n{self.root_hash}\n"
                f"{self.last_notification_id}\n{self.timestamp}\n{self.key_id}\n").encode()

    def as_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str | dict[str, Any]) -> Checkpoint:
        d = raw if isinstance(raw, dict) else orjson.loads(raw)
        return cls(int(d["tree_size"]), str(d["root_hash"]), int(d["last_notification_id"]), str(d["timestamp"]),
                   str(d["key_id"]), str(d.get("signature", "")), int(d.get("format", FORMAT)))


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file (``REPLENISH_AUDIT_SIGNING_KEY``)."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def new_signing_key(path: Path) -> Ed25519PrivateKey:
    """Make an Ed25519 key and write it to ``path`` (PEM, mode 600)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return key


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key but a {type(key).__name__}")
    return key


def make(store: EventStore, key: Ed25519PrivateKey, now: datetime | None = None) -> Checkpoint:
    """A checkpoint of everything stored now, signed."""
    return Checkpointer(store, key, None).take(now)


class Checkpointer:
    """A running service's checkpoints: the log's frontier kept up to date from the
    notifications after the last one it saw (each checkpoint reads only what is new), made
    every ``every_events`` events or ``every_minutes`` minutes once the log has moved on, and
    appended to ``file``."""

    def __init__(self, store: EventStore, key: Ed25519PrivateKey, file: Path | None,
                 every_events: int = 10_000, every_minutes: float = 5.0, clock: Any = None) -> None:
        import time
        self.store, self.key, self.file = store, key, file
        self.every_events, self.every_minutes = every_events, every_minutes
        self._clock = clock or time.monotonic
        self.frontier, self.last_id = Frontier(), 0
        self.last: Checkpoint | None = None
        self.last_at = self._clock()

    def catch_up(self) -> None:
        for n in self.store.notifications(start=self.last_id + 1):
            self.frontier.append(leaf_of(n.state))
            self.last_id = n.id

    def age(self) -> float:
        """Seconds since the last one was made (or since start, before the first)."""
        return max(0.0, self._clock() - self.last_at)

    def due(self, position: int) -> bool:
        moved = position - (self.last.last_notification_id if self.last else 0)
        return moved > 0 and (moved >= self.every_events
                              or self._clock() - self.last_at >= self.every_minutes * 60)

    def take(self, now: datetime | None = None) -> Checkpoint:
        """A checkpoint of everything stored now, signed, appended to the file."""
        self.catch_up()
        unsigned = Checkpoint(self.frontier.size, self.frontier.root().hex(), self.last_id,
                              (now or datetime.now(UTC)).isoformat(), key_id(self.key))
        checkpoint = Checkpoint(**{**asdict(unsigned), "signature": self.key.sign(unsigned.signed_bytes()).hex()})
        if self.file is not None:
            append_to_file(self.file, checkpoint)
        self.last, self.last_at = checkpoint, self._clock()
        return checkpoint


def _first_leaves(store: EventStore, size: int) -> tuple[list[int], list[bytes]]:
    ids: list[int] = []
    found: list[bytes] = []
    for nid, leaf in leaves(store):
        if len(found) == size:
            break
        ids.append(nid)
        found.append(leaf)
    return ids, found


def inclusion(store: EventStore, notification_id: int, size: int) -> dict[str, Any]:
    """The proof that the stored event ``notification_id`` is a leaf of the tree of the log's
    first ``size`` events (RFC 9162 2.1.3): its leaf index and hash, the root and the audit path
    (hex). ``LookupError`` when the event is not among them. (It reads the log up to ``size``.)"""
    ids, found = _first_leaves(store, size)
    if len(found) < size:
        raise LookupError(f"the log holds {len(found)} events, not {size}")
    if notification_id not in ids:
        raise LookupError(f"notification {notification_id} is not among the first {size} events")
    index = ids.index(notification_id)
    return {"notification_id": notification_id, "leaf_index": index, "tree_size": size,
            "leaf_hash": leaf_hash(found[index]).hex(), "root_hash": root(found).hex(),
            "proof": [p.hex() for p in inclusion_proof(found, index)]}


def consistency(store: EventStore, first: int, second: int) -> dict[str, Any]:
    """The proof that the tree of the log's first ``first`` events is a prefix of the tree of
    its first ``second`` (RFC 9162 2.1.4): both roots and the proof (hex)."""
    if not 0 < first <= second:
        raise LookupError(f"no consistency proof from {first} to {second} events")
    _, found = _first_leaves(store, second)
    if len(found) < second:
        raise LookupError(f"the log holds {len(found)} events, not {second}")
    return {"first": first, "second": second, "first_root": root(found[:first]).hex(),
            "second_root": root(found).hex(), "proof": [p.hex() for p in consistency_proof(found, first)]}


SIDECAR_FORMAT = 1


def sidecar(store: EventStore, checkpoint: Checkpoint, notification_ids: list[int],
            public: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """What an export's sidecar holds (``replenish audit export``; README, "Signed
    checkpoints"): the signed ``checkpoint``, the public key that signed it (when given), and
    for each exported event (by notification id) its leaf index and audit path in the
    checkpoint's tree (RFC 9162 2.1.3), so an outside party can check that each line of the
    export is in the log the checkpoint signed, without the store. Events recorded after the
    checkpoint are listed in ``not_covered``. Raises ``ValueError`` when the store no longer
    matches the checkpoint (``check`` says what)."""
    ids, found = _first_leaves(store, checkpoint.tree_size)
    index = {nid: i for i, nid in enumerate(ids)}
    covered = [nid for nid in notification_ids if nid in index]
    top, paths = inclusion_proofs(found, [index[nid] for nid in covered])
    if len(found) < checkpoint.tree_size or top.hex() != checkpoint.root_hash:
        raise ValueError("the store no longer holds the log this checkpoint signed: "
                         + "; ".join(check(store, checkpoint)))
    return {"format": SIDECAR_FORMAT, "checkpoint": orjson.loads(checkpoint.as_json()),
            "public_key": public_pem(public) if public is not None else None,
            "proofs": [{"notification_id": nid, "leaf_index": index[nid],
                        "audit_path": [h.hex() for h in paths[index[nid]]]} for nid in covered],
            "not_covered": [nid for nid in notification_ids if nid not in index]}


def append_to_file(path: Path, checkpoint: Checkpoint) -> None:
    with path.open("ab") as f:
        f.write(checkpoint.as_json() + b"\n")


def read_file(path: Path) -> list[Checkpoint]:
    return [Checkpoint.from_json(line) for line in path.read_bytes().splitlines() if line.strip()]


def check(store: EventStore, checkpoint: Checkpoint, public: Ed25519PublicKey | None = None) -> list[str]:
    """What no longer matches ``checkpoint`` (``check_all`` of one)."""
    return check_all(store, [checkpoint], public)[0]


def check_all(store: EventStore, held: list[Checkpoint], public: Ed25519PublicKey | None = None) -> list[list[str]]:
    """For each checkpoint, what no longer matches it (empty: the store still holds exactly
    the log it signed, as its first ``tree_size`` events, and perhaps more after): a bad
    signature; fewer events than it covers (the newest removed); another root over its first
    ``tree_size`` events (an event changed, removed or reordered, or a stream removed). The
    log is read once, up to the largest checkpoint."""
    problems: list[list[str]] = []
    for cp in held:
        found = []
        if public is not None:
            if key_id(public) != cp.key_id:
                found.append(f"the checkpoint was signed by key {cp.key_id}, not by {key_id(public)}")
            else:
                try:
                    public.verify(bytes.fromhex(cp.signature), cp.signed_bytes())
                except (InvalidSignature, ValueError):
                    found.append("the checkpoint's signature does not verify: the checkpoint itself was changed")
        problems.append(found)
    sizes = {cp.tree_size for cp in held}
    frontier, last = Frontier(), 0
    seen = {0: (frontier.root().hex(), 0)} if 0 in sizes else {}
    largest = max(sizes, default=0)
    if largest > 0:
        for nid, leaf in leaves(store):
            frontier.append(leaf)
            last = nid
            if frontier.size in sizes:
                seen[frontier.size] = (frontier.root().hex(), last)
            if frontier.size == largest:
                break
    for cp, found in zip(held, problems, strict=True):
        if cp.tree_size not in seen:
            found.append(f"the store holds {frontier.size} events where the checkpoint covers "
                         f"{cp.tree_size}: {cp.tree_size - frontier.size} are missing "
                         f"(the newest removed, or others)")
            continue
        root_hash, at = seen[cp.tree_size]
        if root_hash != cp.root_hash:
            found.append(f"the store's first {cp.tree_size} events do not hash to the checkpoint's "
                         f"root: an event was changed, removed or reordered, or a stream removed")
        elif at != cp.last_notification_id:
            found.append(f"the checkpoint's last event was notification {cp.last_notification_id}; "
                         f"the store's is {at}")
    return problems


__all__ = ["FORMAT", "Checkpoint", "Checkpointer", "append_to_file", "check", "check_all", "consistency", "inclusion", "key_id", "leaf_of", "leaves", "load_public_key",
           "load_signing_key", "make", "new_signing_key", "public_pem", "read_file"]
