"""``replenish simulate`` and ``replenish backtest``: run the comparison with a progress bar,
print the table, write the JSON and HTML the user asked for."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from domain.kpis import DEFAULT_CRITICALITY_WEIGHTS
from streams.simulation.backtest import read_history
from streams.simulation.report import table, write_html, write_json
from streams.simulation.runner import Comparison, World, build_world, compare_world, history_world


def parse_weights(text: str | None) -> dict[str, float] | None:
    """``critical=10,high=3,normal=1`` as a dict, a class left out keeping its default (None:
    the defaults); ValueError when malformed or naming no criticality."""
    if not text:
        return None
    out: dict[str, float] = dict(DEFAULT_CRITICALITY_WEIGHTS)
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected class=weight, found {part!r}")
        if name.strip() not in DEFAULT_CRITICALITY_WEIGHTS:
            raise ValueError(f"{name.strip()!r} is no criticality (critical, high, normal)")
        weight = float(value)
        if not weight >= 0 or weight == float("inf"):
            raise ValueError(f"a weight is a number of at least 0, found {value!r}")
        out[name.strip()] = weight
    return out


def _run(world: World, console: Console, calibrate: bool, weights: dict[str, float] | None) -> Comparison:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("simulating", total=None)
        runs = {"n": 0}

        def progress(policy: str, day: int, days: int) -> None:
            if day == days:  # each run reports when it is done (it runs in a worker process)
                runs["n"] += 1
                bar.update(task, completed=runs["n"], description=f"runs done: {runs['n']:>3} (last: {policy})")

        result = compare_world(world, calibrate, progress, weights=weights)
    return result


def report(result: Comparison, console: Console, json_path: Path | None, html_path: Path | None) -> None:
    for t in table(result):
        console.print(t)
    if json_path is not None:
        write_json(result, json_path)
        console.print(f"JSON: {json_path}")
    if html_path is not None:
        write_html(result, html_path)
        console.print(f"HTML report: {html_path}")


def run_simulate(scenario: str, days: int, seed: int, items: int, calibrate: bool, console: Console,
                 json_path: Path | None = None, html_path: Path | None = None,
                 weights: dict[str, float] | None = None) -> Comparison:
    world = build_world(scenario, days, seed, items)
    console.print(f"simulating scenario [bold]{scenario}[/bold], seed {seed}, {days} days, "
                  f"{len(world.hospital.items)} items at {len(world.hospital.stock_points)} stock points")
    result = _run(world, console, calibrate, weights)
    report(result, console, json_path, html_path)
    return result


def run_backtest(history: Path, items: Path, calibrate: bool, console: Console,
                 json_path: Path | None = None, html_path: Path | None = None,
                 weights: dict[str, float] | None = None) -> Comparison:
    world = history_world(read_history(history, items))
    console.print(f"backtest over {world.days} days of history, {len(world.hospital.stock_points)} stock points")
    result = _run(world, console, calibrate, weights)
    report(result, console, json_path, html_path)
    return result
