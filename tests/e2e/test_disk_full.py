"""The embedded store's disk full (issue 14, item 2): a clear 503 with a code, the service stays
up, nothing acknowledged is lost, and once there is room again the same request is taken.

The data directory lives on a small tmpfs of its own (mounting one needs root, as CI runs;
elsewhere the test is skipped and says why), with a ballast file that is deleted to make room.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from .support import SKU, Service, now, receipt, setup_master, stock_point

pytestmark = pytest.mark.e2e

DISK_MB = 32
BALLAST_MB = 10


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_answers_503_loses_nothing_acknowledged_and_takes_the_request_once_there_is_room(
        small_disk: Path) -> None:
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (BALLAST_MB << 20))
    data = small_disk / "data"
    data.mkdir()
    service = Service(data).start(timeout=60)
    try:
        t = now()
        expiry = (t + timedelta(days=300)).date().isoformat()
        acknowledged = 0
        with service.client("admin") as admin, service.client("scanner") as scanner, \
                service.client("auditor") as auditor:
            setup_master({"admin": admin}, t - timedelta(days=1))
            refused = None
            for b in range(2_000):
                batch = [receipt(f"fill-{b}-{j}", t - timedelta(minutes=5), 1, "L1", expiry) for j in range(200)]
                r = scanner.post("/v1/events", json=batch)
                if r.status_code != 200:
                    refused = (batch, r)
                    break
                assert {x["status"] for x in r.json()["results"]} == {"accepted"}
                acknowledged += len(batch)
            assert refused is not None, "the disk never filled"
            batch, r = refused
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "store_unavailable" and "full" in r.json()["detail"]
            assert int(r.headers["Retry-After"]) >= 1
            assert httpx.get(f"{service.base}/healthz", timeout=5).status_code == 200  # still up
            assert stock_point(auditor, SKU, "W3")["on_hand"] == acknowledged  # nothing half-stored

            ballast.unlink()  # room again: the same request is taken, once
            r = scanner.post("/v1/events", json=batch)
            assert r.status_code == 200, r.text
            assert {x["status"] for x in r.json()["results"]} == {"accepted"}
            acknowledged += len(batch)
            assert stock_point(auditor, SKU, "W3")["on_hand"] == acknowledged
        service.stop()
        service.start(timeout=60)  # and all of it is there after a restart
        with service.client("scanner") as scanner, service.client("auditor") as auditor:
            assert stock_point(auditor, SKU, "W3")["on_hand"] == acknowledged
            r = scanner.post("/v1/events", json=batch[:3])
            assert [x["status"] for x in r.json()["results"]] == ["duplicate"] * 3
    finally:
        service.stop()
