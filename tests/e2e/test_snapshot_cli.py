"""``replenish snapshot`` on a stopped data directory, and a service started from it: the
same answers as before the stop, and the log after the snapshot is read on top of it."""

from __future__ import annotations

from pathlib import Path

from .support import (
    KEYS,
    SKU,
    Service,
    future_expiry,
    now,
    post_events,
    receipt,
    run_cli,
    setup_master,
    stock_point,
    usage,
)


def test_a_snapshot_written_by_the_cli_starts_the_service_with_the_same_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    svc = Service(data).start()
    t0 = now()
    with svc.client("admin") as admin, svc.client("scanner") as scanner, svc.client("buyer") as buyer:
        setup_master({"admin": admin}, t0)
        post_events(scanner, [receipt("r1", t0, 30, "L1", future_expiry()), usage("u1", t0, 4, "L1")])
        before = stock_point(buyer, SKU, "W3")
    svc.stop()

    out = run_cli("snapshot", data_dir=data)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "state read from the whole log" in out.stdout and "snapshot at notification" in out.stdout
    assert len(list((data / "snapshots").glob("snapshot-*.bin"))) == 1

    svc.start()
    with svc.client("scanner") as scanner, svc.client("buyer") as buyer:
        view = stock_point(buyer, SKU, "W3")
        assert (view["on_hand"], view["reorder_point"], view["lots"]) == (
            before["on_hand"], before["reorder_point"], before["lots"])
        post_events(scanner, [usage("u2", t0, 1, "L1")])
        assert stock_point(buyer, SKU, "W3")["on_hand"] == before["on_hand"] - 1
    svc.stop()
    again = run_cli("snapshot", data_dir=data)
    assert again.returncode == 0 and "from snapshot snapshot-" in again.stdout, again.stdout + again.stderr


def test_a_running_service_writes_a_snapshot_on_demand(tmp_path: Path) -> None:
    """``replenish snapshot --url … --key ADMIN_KEY`` (``POST /v1/admin/snapshot``): the
    service writes it between batches; other roles are refused; the next start reads it."""
    data = tmp_path / "data"
    data.mkdir()
    svc = Service(data).start()
    t0 = now()
    try:
        with svc.client("admin") as admin, svc.client("scanner") as scanner, svc.client("buyer") as buyer:
            setup_master({"admin": admin}, t0)
            post_events(scanner, [receipt("r1", t0, 30, "L1", future_expiry()), usage("u1", t0, 4, "L1")])
            before = stock_point(buyer, SKU, "W3")
            refused = buyer.post("/v1/admin/snapshot")
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        out = run_cli("snapshot", "--url", svc.base, "--key", KEYS["admin"], data_dir=data)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "written by the service" in out.stdout
        assert len(list((data / "snapshots").glob("snapshot-*.bin"))) == 1
        bad = run_cli("snapshot", "--url", svc.base, "--key", KEYS["buyer"], data_dir=data)
        assert bad.returncode == 1 and "403" in bad.stdout
    finally:
        svc.stop()
    svc.start()
    try:
        with svc.client("buyer") as buyer:
            view = stock_point(buyer, SKU, "W3")
            assert (view["on_hand"], view["reorder_point"]) == (before["on_hand"], before["reorder_point"])
    finally:
        svc.stop()
    again = run_cli("snapshot", data_dir=data)  # the stopped directory now starts from it
    assert again.returncode == 0 and "from snapshot snapshot-" in again.stdout, again.stdout + again.stderr
