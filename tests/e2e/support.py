"""End-to-end support: the real ``replenish`` service as a subprocess, driven over HTTP.

Each service gets its own data directory and explicit API keys (no development mode), listens
on a free loopback port and is waited on through ``/healthz``. Its output goes to a log file
that a failing test prints.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "replenish"
if not BIN.exists():
    BIN = ROOT / ".venv" / "bin" / "replenish"

KEYS = {
    "scanner": "e2e-scanner-key-3f9a",
    "buyer": "e2e-buyer-key-81c2",
    "auditor": "e2e-auditor-key-5d07",
    "admin": "e2e-admin-key-c4e1",
}
CASE_ID_KEY = "e2e-case-id-key-not-a-real-secret"

SITE = "H1"
# GTINs with valid check digits: the base unit ("each") and a box of 10.
GTIN_EACH = "09501101020917"
GTIN_BOX = "19501101020914"
PER_BOX = 10
SKU = "GLV-M"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(data_dir: Path, **extra: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLENISH_")}
    env.update({
        "REPLENISH_DATA_DIR": str(data_dir),
        "REPLENISH_API_KEYS": ",".join(f"{key}:{role}:e2e-{role}" for role, key in KEYS.items()),
        "REPLENISH_CASE_ID_KEY": CASE_ID_KEY,
        # The intake, alert and audit tests check exact stock, on-order and alert sequences;
        # procurement (on by default) adds orders and supplier notices to them, so it is on
        # only where it is tested (tests/e2e/test_procurement_e2e.py).
        "REPLENISH_PROCUREMENT": "false",
    })
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_cli(*args: str, data_dir: Path, timeout: float = 60, **extra: str | None,
            ) -> subprocess.CompletedProcess[str]:
    env = service_env(data_dir, **extra)
    env["COLUMNS"] = "200"  # rich wraps long lines at the terminal width
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=data_dir)


class Service:
    """One ``replenish serve`` process over one data directory."""

    def __init__(self, data_dir: Path, env: dict[str, str | None] | None = None) -> None:
        self.data_dir = data_dir
        self.env = dict(env or {})
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.bi_port = free_port()  # ClickHouse's HTTP interface (served when BI credentials are given)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-serve-{self.starts}.log"

    def start(self, timeout: float = 30) -> Service:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=service_env(self.data_dir, **{"REPLENISH_CLICKHOUSE_HTTP_PORT": str(self.bi_port), **self.env}),
            stdout=log, stderr=subprocess.STDOUT,
            cwd=self.data_dir.parent)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the service did not answer /healthz in {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean stop (SIGTERM, as a supervisor would), then SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the process dies where it stands."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def client(self, role: str | None = None, key: str | None = None) -> httpx.Client:
        headers = {}
        if key is None and role is not None:
            key = KEYS[role]
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)


# -- test data --------------------------------------------------------------------------

def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(t: datetime) -> str:
    return t.isoformat()


def master_data(t0: datetime, locations: tuple[str, ...] = ("W3",)) -> list[dict[str, Any]]:
    """A site with the given ward locations, one supplier, and one item (each / box of 10)."""
    events: list[dict[str, Any]] = [
        {"event_id": "md-sup", "type": "supplier_registered", "occurred_at": iso(t0),
         "supplier": "MEDSUP", "name": "MedSupply SA"},
        {"event_id": "md-item", "type": "item_registered", "occurred_at": iso(t0),
         "sku": SKU, "gtin": GTIN_EACH, "gtins": {"box": GTIN_BOX}, "description": "Nitrile gloves M",
         "base_unit": "each", "units": {"box": PER_BOX}, "pack_size": PER_BOX,
         "criticality": "normal", "lead_time_days": 3, "supplier": "MEDSUP", "unit_cost": 0.1,
         "currency": "EUR"},
    ]
    for loc in locations:
        events.append({"event_id": f"md-loc-{loc}", "type": "location_registered",
                       "occurred_at": iso(t0), "location": loc, "site": SITE, "name": f"Ward {loc}",
                       "kind": "ward", "timezone": "Europe/Paris"})
    return events


def post_events(client: httpx.Client, events: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]]:
    r = client.post("/v1/events", json=events)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == (len(events) if isinstance(events, list) else 1)
    return results


def statuses(results: list[dict[str, Any]]) -> list[str]:
    return [r["status"] for r in results]


def setup_master(clients: dict[str, httpx.Client], t0: datetime,
                 locations: tuple[str, ...] = ("W3",)) -> None:
    results = post_events(clients["admin"], master_data(t0, locations))
    assert statuses(results) == ["accepted"] * len(results), results


def stock_point(client: httpx.Client, sku: str, location: str) -> dict[str, Any]:
    r = client.get(f"/v1/stock-points/{sku}/{location}")
    assert r.status_code == 200, r.text
    return r.json()


def receipt(event_id: str, at: datetime, quantity: float, lot: str, expiry: str,
            location: str = "W3", unit: str = "each") -> dict[str, Any]:
    return {"event_id": event_id, "type": "receipt", "occurred_at": iso(at), "site": SITE,
            "location": location, "sku": SKU, "lot": lot, "expiry": expiry,
            "quantity": quantity, "unit": unit, "supplier": "MEDSUP", "po_id": "PO-1"}


def usage(event_id: str, at: datetime, quantity: float, lot: str, location: str = "W3",
          **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": "usage", "occurred_at": iso(at), "site": SITE,
            "location": location, "sku": SKU, "lot": lot, "quantity": quantity, "unit": "each",
            **extra}


def future_expiry(days: int = 400) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()
