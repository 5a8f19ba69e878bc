"""Run the benchmarks, print their table and write it as JSON.

    python -m benchmarks.run [--quick] [--only NAME] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import torch

from benchmarks import (
    batched_asks,
    flop_efficiency,
    replica_packing,
    results_scale,
    rotation_pipeline,
    search_efficiency,
    sweep_parallel,
    sweep_scale,
    trainer_overhead,
    trial_packing,
)
from benchmarks.measure import Result, Size

BENCHMARKS: dict[str, Callable[[Size], Result]] = {
    "rotation_pipeline": rotation_pipeline.run,
    "trainer_overhead": trainer_overhead.run,
    "replica_packing": replica_packing.run,
    "sweep_parallel": sweep_parallel.run,
    "search_efficiency": search_efficiency.run,
    "batched_asks": batched_asks.run,
    "flop_efficiency": flop_efficiency.run,
    "sweep_scale": sweep_scale.run,
    "trial_packing": trial_packing.run,
    "results_scale": results_scale.run,
}


def run_all(names: list[str], size: Size, log: Callable[[str], None] = print) -> dict[str, Result]:
    results = {}
    for name in names:
        start = time.perf_counter()
        results[name] = BENCHMARKS[name](size)
        log(f"{name}: {time.perf_counter() - start:.1f} s")
    return results


def table(results: dict[str, Result]) -> str:
    lines = [f"{'benchmark':<18} {'ours':>12} {'baseline':>12} {'unit':<10} {'ratio':>8} {'goal':>7}  met?"]
    for name, r in results.items():
        lines.append(f"{name:<18} {r.ours:>12.4g} {r.baseline:>12.4g} {r.unit:<10} {r.ratio:>8.3g} "
                     f"{'>= ' + format(r.goal, 'g'):>7}  {'yes' if r.met else 'NO'}")
        if r.details:
            lines.append(" " * 19 + ", ".join(f"{k} {v}" for k, v in r.details.items()))
    return "\n".join(lines)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: under 2 minutes on 2 CPU cores")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only this one (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    size: Size = "quick" if args.quick else "full"
    print(f"{size} run on {machine()}", flush=True)
    results = run_all(args.only or list(BENCHMARKS), size, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({name: r.as_json() for name, r in results.items()}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

