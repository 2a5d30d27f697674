"""API keys from a file (issue 16, section 2): a key may be written as its SHA-256 hash, the
file is re-read when it changes and on SIGHUP (no restart), a malformed file keeps the keys in
force, and no key ever appears in the log."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from .support import KEYS, Service

pytestmark = pytest.mark.e2e

HASHED_BUYER = "file-buyer-key-5f1e2d"
LATER_AUDITOR = "file-auditor-key-77c0"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def status(svc: Service, key: str) -> int:
    return httpx.get(f"{svc.base}/v1/alerts", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code


def eventually(check, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_hashed_keys_from_a_file_are_taken_and_the_file_is_read_again_without_a_restart(tmp_path: Path):
    keys = tmp_path / "keys"
    keys.write_text(f"# who may call the API\nsha256={sha(HASHED_BUYER)} buyer alice\n")
    (tmp_path / "data").mkdir()
    svc = Service(tmp_path / "data", {"REPLENISH_API_KEYS_FILE": str(keys)}).start()
    try:
        assert status(svc, HASHED_BUYER) == 200  # the hash's key
        assert status(svc, sha(HASHED_BUYER)) == 401  # the hash itself is not a key
        assert status(svc, KEYS["admin"]) == 200  # REPLENISH_API_KEYS still count
        assert status(svc, LATER_AUDITOR) == 401

        # Changed: the buyer's key out, an auditor's in (noticed within a few seconds).
        keys.write_text(f"{LATER_AUDITOR} auditor bob\n")
        assert eventually(lambda: status(svc, LATER_AUDITOR) == 200 and status(svc, HASHED_BUYER) == 401)

        # A malformed file keeps the keys in force, and says so (naming no key).
        keys.write_text("this is not a key line at all\n")
        time.sleep(4)
        assert status(svc, LATER_AUDITOR) == 200

        # SIGHUP re-reads at once (here: the same size and a restored modification time, which
        # the watcher alone would not notice).
        keys.write_text(f"{LATER_AUDITOR} auditor bob\nsha256={sha(HASHED_BUYER)} buyer alice\n")
        stamp = keys.stat()
        time.sleep(3)
        keys.write_text(f"{LATER_AUDITOR} auditor bob\nsha256={sha(HASHED_BUYER)} buyer carol\n")
        os.utime(keys, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        assert status(svc, HASHED_BUYER) == 200
        os.kill(svc.proc.pid, signal.SIGHUP)
        assert eventually(lambda: len(re.findall(r"re-read: \d+ entries", svc.log())) >= 3)
    finally:
        svc.stop()
    log = svc.log()
    assert "not re-read" in log
    for key in (HASHED_BUYER, LATER_AUDITOR, *KEYS.values()):
        assert key not in log


def test_a_malformed_key_file_stops_the_start_with_its_line(tmp_path: Path):
    keys = tmp_path / "keys"
    keys.write_text("sha256=abc buyer\n")
    (tmp_path / "data").mkdir()
    svc = Service(tmp_path / "data", {"REPLENISH_API_KEYS_FILE": str(keys)})
    with pytest.raises(RuntimeError):  # (it exits: it never answers)
        svc.start(timeout=20)
    svc.stop()
    assert "line 1: a hash is sha256= and 64 hex digits" in " ".join(svc.log().split())  # (wrapped)
