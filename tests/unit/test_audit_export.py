"""The audit export verifies with an independent verifier written here from the README's
"Hashing rule" alone (no code of ours), and fails at the exact line where one byte changed."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

from test_recalls_and_trace import story
from unit_world import ADMIN, WARD, iso

from streams.traceability import export


# -- the independent verifier: README "Hashing rule" ---------------------------------------
def _number(x: float) -> str:
    """JSON numbers as the store writes them: shortest round-trip digits; exponent form below
    1e-5 (``1.5e-7``) and from 1e16 (``1e+16``)."""
    r = repr(x)
    if "e" not in r:
        return r
    mantissa, exp = r.split("e")
    e = int(exp)
    if e == -5:  # written out in full
        sign = "-" if mantissa.startswith("-") else ""
        digits = mantissa.lstrip("-").replace(".", "")
        return f"{sign}0.0000{digits}"
    return f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"


def canonical(v: object) -> str:
    """Canonical JSON: keys sorted, no whitespace, UTF-8 (not ASCII-escaped)."""
    if v is None or isinstance(v, bool):
        return json.dumps(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _number(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(canonical(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(v[k]) for k in sorted(v)) + "}"


def verify_jsonl(data: bytes) -> tuple[int, int | None, str]:
    """(lines checked, the first bad line number or None, why)."""
    heads: dict[str, tuple[str, int]] = {}
    lines = data.splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
            state = dict(rec["state"])
            stored_hash = state.pop("hash")
        except (ValueError, KeyError, TypeError):
            return number, number, "not a stored event"
        stream, version = rec["stream"], rec["version"]
        if stream in heads:  # (a period's first event of a stream links to one before it)
            prev, expected = heads[stream]
            if version != expected:
                return number, number, "version gap"
            if state.get("prev_hash") != prev:
                return number, number, "prev_hash does not match"
        elif version == 1 and state.get("prev_hash") != "0" * 64:
            return number, number, "first event without the genesis prev_hash"
        doc = {"stream": stream, "version": version, "topic": rec["topic"], "state": state}
        if hashlib.sha256(canonical(doc).encode("utf-8")).hexdigest() != stored_hash:
            return number, number, "content does not match its hash"
        heads[stream] = (stored_hash, version + 1)
    return len(lines), None, "ok"


def test_number_form_matches_the_store():
    import orjson
    for x in (0.1, 1.5, 15.0, 1e-4, 1.5e-5, 2.5e-7, 1e-7, 1e16, 1.5e22, 123456.789, -0.000015, 5e-324):
        assert _number(x) == orjson.dumps(x).decode(), x


def test_the_export_verifies_independently_and_fails_at_the_changed_line():
    w = story()
    w.post(w.recall(["L1"], reference="RC-E", at=w.now - timedelta(minutes=1)), by=ADMIN)
    w.one({"event_id": "conf-e", "type": "recall_confirmed", "occurred_at": iso(w.now),
           "reference": "RC-E", "location": WARD, "returned": 8}, by=ADMIN)
    w.p.daily_check()
    out = io.BytesIO()
    n = export(w.store, out)
    data = out.getvalue()
    assert n == len(data.splitlines()) == w.store.recorder.max_notification_id()
    first = json.loads(data.splitlines()[0])
    assert set(first) == {"notification_id", "stream", "version", "topic", "state"}
    assert verify_jsonl(data) == (n, None, "ok")

    lines = data.splitlines()
    target = next(i for i, line in enumerate(lines) if b'"type":"receipt"' in line)
    changed = lines[target].replace(b'"quantity":30.0', b'"quantity":31.0', 1)
    assert changed != lines[target]
    tampered = b"\n".join([*lines[:target], changed, *lines[target + 1:]]) + b"\n"
    assert verify_jsonl(tampered)[1:] == (target + 1, "content does not match its hash")

    # A removed event breaks the next one of its stream.
    stream = json.loads(lines[target])["stream"]
    nxt = next(i for i in range(target + 1, len(lines)) if json.loads(lines[i])["stream"] == stream)
    removed = b"\n".join(lines[:target] + lines[target + 1:]) + b"\n"
    assert verify_jsonl(removed)[1:] == (nxt, "version gap")


def test_a_period_exports_only_what_was_recorded_in_it():
    w = story()
    start = w.now + timedelta(hours=1)
    w.now = start + timedelta(minutes=5)
    w.post(w.recall(["L1"], reference="RC-P", at=w.now - timedelta(minutes=1)), by=ADMIN)
    out = io.BytesIO()
    n = export(w.store, out, start, start + timedelta(hours=1))
    recs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert n == len(recs) > 0
    assert all(r["state"]["timestamp"] >= start.isoformat() for r in recs)
    assert verify_jsonl(out.getvalue())[1] is None  # chains checked from each stream's first line
