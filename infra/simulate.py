"""``replenish simulate`` and ``replenish backtest``: run the comparison with a progress bar,
print the table, write the JSON and HTML the user asked for."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streams.simulation.backtest import read_history
from streams.simulation.report import table, write_html, write_json
from streams.simulation.runner import Comparison, World, build_world, compare_world, history_world

CALIBRATION_RUNS = 7  # the calibration's dynamic runs at most (``runner.calibrate``: 1 + 6)


def _run(world: World, console: Console, calibrate: bool) -> Comparison:
    runs = 3 + (CALIBRATION_RUNS - 1 if calibrate else 1)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("simulating", total=runs * world.days)
        done = {"runs": 0}

        def progress(policy: str, day: int, days: int) -> None:
            if day == days:
                done["runs"] += 1
            bar.update(task, completed=min(done["runs"] * days + (day if day < days else 0), runs * days),
                       description=f"{policy:>14} day {day}/{days}")

        result = compare_world(world, calibrate, progress)
    return result


def report(result: Comparison, console: Console, json_path: Path | None, html_path: Path | None) -> None:
    console.print(table(result))
    if result.calibration:
        levels = result.results["dynamic"].figures.get("service_levels", {})
        console.print(f"dynamic calibrated to the leanest baseline's average inventory value "
                      f"({result.target_inventory:,.0f}): service levels "
                      + ", ".join(f"{k} {v:.2%}" for k, v in levels.items()))
    if json_path is not None:
        write_json(result, json_path)
        console.print(f"JSON: {json_path}")
    if html_path is not None:
        write_html(result, html_path)
        console.print(f"HTML report: {html_path}")


def run_simulate(scenario: str, days: int, seed: int, items: int, calibrate: bool, console: Console,
                 json_path: Path | None = None, html_path: Path | None = None) -> Comparison:
    world = build_world(scenario, days, seed, items)
    console.print(f"simulating scenario [bold]{scenario}[/bold], seed {seed}, {days} days, "
                  f"{len(world.hospital.items)} items at {len(world.hospital.stock_points)} stock points")
    result = _run(world, console, calibrate)
    report(result, console, json_path, html_path)
    return result


def run_backtest(history: Path, items: Path, calibrate: bool, console: Console,
                 json_path: Path | None = None, html_path: Path | None = None) -> Comparison:
    world = history_world(read_history(history, items))
    console.print(f"backtest over {world.days} days of history, {len(world.hospital.stock_points)} stock points")
    result = _run(world, console, calibrate)
    report(result, console, json_path, html_path)
    return result
