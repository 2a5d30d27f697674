"""``replenish simulate`` and ``replenish backtest`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from .support import run_cli

ITEMS = "sku,location,lead_time_days,pack_size,unit_cost,starting_stock,criticality\n"


def test_simulate_prints_the_table_and_writes_json_and_html(tmp_path: Path) -> None:
    out = run_cli("simulate", "--scenario", "surge", "--days", "110", "--seed", "4", "--items", "12",
                  "--no-calibrate", "--json", "r.json", "--html", "r.html", data_dir=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "static_par" in out.stdout and "dynamic" in out.stdout
    assert "Model only" in out.stdout and "Full system" in out.stdout
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["scenario"] == "surge" and doc["seed"] == 4 and doc["days"] == 110
    assert set(doc["tables"]) == {"model_only", "full_system"}
    for table in doc["tables"].values():
        assert set(table["policies"]) == {"static_par", "fixed_rop", "batch_forecast", "moving_window", "dynamic"}
        for figures in table["policies"].values():
            assert {"stockout_days", "fill_rate", "avg_inventory_value", "expired_value", "orders",
                    "stockout_events", "days_of_supply", "order_lines", "emergency_orders",
                    "weighted_stockout_days", "by_criticality", "safety_factor"} <= figures.keys()
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") >= 4 and "http" not in page.split("<body>")[1].replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # self-contained


def test_simulate_weights_the_headline_as_asked_and_refuses_bad_weights(tmp_path: Path) -> None:
    out = run_cli("simulate", "--scenario", "steady", "--days", "100", "--seed", "4", "--items", "8",
                  "--no-calibrate", "--weights", "critical=100,high=1,normal=1", "--json", "r.json",
                  data_dir=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["criticality_weights"] == {"critical": 100.0, "high": 1.0, "normal": 1.0}
    for figures in doc["tables"]["model_only"]["policies"].values():
        by = figures["by_criticality"]
        assert figures["weighted_stockout_days"] == sum(
            (100 if c == "critical" else 1) * v["stockout_days"] for c, v in by.items())
    for weights in ("critical=lots", "crtical=10"):
        bad = run_cli("simulate", "--weights", weights, data_dir=tmp_path)
        assert bad.returncode == 2 and "--weights" in bad.stdout, weights


def test_simulate_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    out = run_cli("simulate", "--scenario", "zombies", data_dir=tmp_path)
    assert out.returncode == 2 and "unknown scenario 'zombies'" in out.stdout


def test_backtest_names_the_file_and_line_of_each_bad_row(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text(ITEMS + "GLV-M,W1,3,100,0.05,400,normal\nIVC,W1,3,0,1,5,high\n")
    (tmp_path / "history.csv").write_text("date,sku,location,quantity\n2026-01-01,GLV-M,W1,40\n"
                                          "01/02/2026,GLV-M,W1,38\n2026-01-03,GLV-M,W1,lots\n")
    out = run_cli("backtest", "--history", "history.csv", "--items", "items.csv", data_dir=tmp_path)
    assert out.returncode == 2
    assert "3 bad rows" in out.stdout
    assert "items.csv:3: pack_size '0' must be greater than 0" in out.stdout
    assert "history.csv:3: date '01/02/2026' is not an ISO date (YYYY-MM-DD)" in out.stdout
    assert "history.csv:4: quantity 'lots' is not a number" in out.stdout
