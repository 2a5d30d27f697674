"""The fair two-way comparison of issue 13, over every scenario and several seeds.

For each scenario and seed, ``streams.simulation.runner.compare`` makes two tables (each run
in its own forked process, two at a time):

- *model only*: every policy at the criticality service levels and a 7-day cycle;
- *full system*: service allocated by cost (never below the criticality's target) and
  economic order cycles for every policy but ``static_par`` (as hospitals run it).

In each, every policy at safety factor 1; dynamic tuned by its safety factor to the leanest
baseline's average inventory value; each baseline tuned to dynamic's. No tuning takes a
class's cycle service more than a point below its target (when the inventory target needs
that, the target is "not reached").

The claim it checks and prints (never asserts): at dynamic's inventory, dynamic's
criticality-weighted stockout-days are at most every baseline's; in ``step`` and ``surge``,
at most half ``batch_forecast``'s; each class's cycle service at least its target − 1 point.

Seeds: ``--seeds`` (the ones looked at while developing: 1) and ``--held-out`` (never looked
at while developing: 7 and 8), each reported on its own.

Run: ``.venv/bin/python -m bench.decisions`` (about 100 s per scenario and seed at the
default size on two cores; ``--scenarios``, ``--days``, ``--items`` to resize).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from streams.simulation.policies import BASELINES
from streams.simulation.report import markdown
from streams.simulation.runner import Comparison, compare, service_short, weighted
from streams.simulation.scenarios import SCENARIOS

HALF_OF_BATCH = ("step", "surge")


def verdict(c: Comparison) -> dict[str, Any]:
    """The claim, per table, at dynamic's inventory (each baseline tuned to it)."""
    out: dict[str, Any] = {}
    for name, t in c.tables.items():
        dyn = weighted(t.results["dynamic"].figures, c.weights)
        at_dyn = {n: weighted(cal.result.figures, c.weights) for n, cal in t.baselines_tuned.items()}
        worse = sorted(n for n, w in at_dyn.items() if w < dyn)
        half = None
        if c.scenario in HALF_OF_BATCH and "batch_forecast" in at_dyn:
            half = dyn <= 0.5 * at_dyn["batch_forecast"]
        out[name] = {"dynamic": dyn, "baselines_at_dynamic_inventory": at_dyn,
                     "beaten_by": worse, "half_of_batch": half,
                     "dynamic_service_short": service_short(t.results["dynamic"].figures)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--held-out", default="7,8")
    ap.add_argument("--days", type=int, default=270)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None, help="write every comparison's JSON here")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    docs: list[dict[str, Any]] = []
    summary: list[tuple[str, int, str, str, dict[str, Any]]] = []
    for kind, seeds in (("tuned on", args.seeds), ("held out", args.held_out)):
        for seed in [int(s) for s in seeds.split(",") if s]:
            for scenario in args.scenarios.split(","):
                t0 = time.monotonic()
                c = compare(scenario, args.days, seed, args.items)
                print(f"\n### {scenario}, seed {seed} ({kind}), {args.days} days, {c.n_items} items at "
                      f"{len(c.world.hospital.stock_points)} stock points ({time.monotonic() - t0:.0f} s)\n",
                      flush=True)
                print(markdown(c), flush=True)
                v = verdict(c)
                for tname, r in v.items():
                    summary.append((kind, seed, scenario, tname, r))
                docs.append(dict(c.as_json(), verdict=v))
    print("\n## Summary: weighted stockout-days at dynamic's average inventory value\n")
    print("| seeds | seed | scenario | table | dynamic | " + " | ".join(BASELINES)
          + " | dynamic at most every baseline | at most half of batch | dynamic's classes short |")
    print("|" + " --- |" * (8 + len(BASELINES)))
    for kind, seed, scenario, tname, r in summary:
        b = r["baselines_at_dynamic_inventory"]
        print(f"| {kind} | {seed} | {scenario} | {tname} | {r['dynamic']:,.0f} | "
              + " | ".join(f"{b[n]:,.0f}" for n in BASELINES)
              + f" | {'yes' if not r['beaten_by'] else 'no: ' + ', '.join(r['beaten_by'])} | "
              + ("-" if r["half_of_batch"] is None else "yes" if r["half_of_batch"] else "no")
              + f" | {', '.join(r['dynamic_service_short']) or 'none'} |")
    if args.json is not None:
        args.json.write_text(json.dumps(docs, indent=1) + "\n")


if __name__ == "__main__":
    main()
