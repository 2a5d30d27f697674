"""Tamper evidence: every stored stream is a hash chain.

The rule, so that anyone can re-implement it in a few lines:

    hash(event) = SHA-256 hex of canonical_json({"stream": <originator id>,
                                                 "version": <originator version>,
                                                 "topic": <stored topic>,
                                                 "state": <stored state without "hash">})

where the stored state is the event's JSON object as written in the store, it contains
``prev_hash`` (the hash of the stream's previous event, or 64 zeros for the first), and
canonical_json is JSON with keys sorted, no insignificant whitespace, UTF-8 (not
ASCII-escaped). Changing any byte of a stored event changes its hash, which then no longer
matches the ``hash`` it stores nor the ``prev_hash`` of the event after it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = "0" * 64


def canonical_json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def link_hash(stream: str, version: int, topic: str, state: dict[str, Any]) -> str:
    """The hash of one stored event (``state`` without its ``hash`` key)."""
    doc = {"stream": stream, "version": version, "topic": topic, "state": state}
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def chained_state(stream: str, version: int, topic: str, state: dict[str, Any]) -> tuple[str, bytes]:
    """The hash of one event, and its stored state: ``state`` with ``hash`` added, as compact
    JSON in ``state``'s own key order (so that what is read back iterates as it did live).
    The hashed document's keys sort as ``state``, ``stream``, ``topic``, ``version``, so its
    canonical form is built around the state's without encoding the document.

    >>> state = {"b": [1, 2.5], "a": "x", "prev_hash": GENESIS}
    >>> h, stored = chained_state("sp:s@l", 3, "domain.aggregates:StockPoint.Recorded", state)
    >>> h == link_hash("sp:s@l", 3, "domain.aggregates:StockPoint.Recorded", state)
    True
    >>> list(orjson.loads(stored)) == ["b", "a", "prev_hash", "hash"]
    True
    """
    doc = b"".join((b'{"state":', canonical_json(state), b',"stream":', orjson.dumps(stream),
                    b',"topic":', orjson.dumps(topic), b',"version":', str(version).encode(), b"}"))
    h = hashlib.sha256(doc).hexdigest()
    state["hash"] = h
    try:
        return h, orjson.dumps(state)
    finally:
        del state["hash"]


@dataclass(frozen=True)
class BrokenLink:
    stream: str
    version: int
    reason: str
    notification_id: int | None = None


class ChainVerifier:
    """Checks stored events fed in any interleaving of streams, each stream in version order."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[str, int]] = {}
        self.checked = 0

    def feed(self, stream: str, version: int, topic: str, state_bytes: bytes,
             notification_id: int | None = None) -> BrokenLink | None:
        prev, expected = self.heads.get(stream, (GENESIS, 1))
        self.checked += 1

        def broken(reason: str) -> BrokenLink:
            return BrokenLink(stream, version, reason, notification_id)

        if version != expected:
            return broken(f"version gap: expected version {expected}")
        try:
            state = orjson.loads(state_bytes)
        except orjson.JSONDecodeError:
            return broken("stored state is not valid JSON")
        if not isinstance(state, dict) or not isinstance(state.get("hash"), str):
            return broken("stored state has no hash")
        stored_hash = state.pop("hash")
        if state.get("prev_hash") != prev:
            return broken("prev_hash does not match the hash of the previous event")
        if link_hash(stream, version, topic, state) != stored_hash:
            return broken("content does not match its hash")
        self.heads[stream] = (stored_hash, version + 1)
        return None
