"""``replenish snapshot`` on a stopped data directory, and a service started from it: the
same answers as before the stop, and the log after the snapshot is read on top of it."""

from __future__ import annotations

from pathlib import Path

from .support import (
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
