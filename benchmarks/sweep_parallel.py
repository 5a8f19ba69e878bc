"""`sweep_parallel`: a Ray Tune sweep running 2 trials at a time vs the same trials in one process.

The sweep is `hypersweep.sweep.run_sweep` on a grid of 8 hypernetworks (one CPU and one
torch thread per trial) on a local 2-CPU Ray, one configuration per Ray Tune trial
(`budget.pack: 1`: a packed trial would train several configurations as one model, and this
benchmark measures what Ray Tune adds per trial, not what packing saves). The baseline runs
the same 8 configurations one after another, with the same single thread, in a fresh process
(so both sides pay for starting Python and importing torch once per process) niced as Ray
nices its workers (so both yield alike to whatever else the machine runs). Epochs are
calibrated so that one trial trains for about `seconds`.

The sweep's overhead per trial is its wall time minus that of the same 8 trials shared out
to two fresh plain Python processes run side by side (no Ray, no Optuna), divided by the
trials: what the scheduler adds. Two trials sharing two cores also slow each other down (memory and cache),
which no scheduler can remove; `overhead_vs_ideal_s` counts that too, the ideal being the
baseline's training time divided by the concurrency. `details` also has the trials' mean
training time inside the sweep (`sweep_trial_s`, against `trial_s` in the baseline) and
when the first trial started.

    python -m benchmarks.sweep_parallel SPACE.yaml [K N]  # trains every Nth trial from the Kth; prints wall_s
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.measure import Result, Size, best_times, compare, torch_threads
from hypersweep import search_space
from hypersweep.config import RunConfig
from hypersweep.search_space import StudySpace, SweepSpec
from hypersweep.tabulated import grid_points
from hypersweep.tasks import load_config
from hypersweep.train import train

SIZES = {"tiny": ([1], 0.2), "quick": ([1, 2, 3, 4], 3.0), "full": ([1, 2, 3, 4], 5.0)}  # g widths, s per trial
CONCURRENT = 2
GOAL = 1.6
OVERHEAD_GOAL_S = 0.5
RAY_WORKER_NICENESS = 15  # Ray's default `worker_niceness`
ROOT = Path(__file__).resolve().parent.parent  # where `python -m benchmarks...` resolves


def space(widths: list[int], epochs: int) -> dict:
    """Hypernetworks g of the given widths and depth 1 or 2 on the quickstart's teacher task."""
    return {
        "experiment": "bench_sweep",
        "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0},
        "model": {"activation": "tanh"},
        "train": {"batch_size": 64, "lr": 0.003, "epochs": epochs},
        "objective": {"type": "pareto", "metric": "val_error", "count": "params_primary", "targets": [0.01]},
        "sampler": {"name": "grid"},
        # pack 1: one configuration per Tune trial, whose per-trial overhead is what is measured
        "budget": {"max_concurrent": CONCURRENT, "max_failures": 0, "pack": 1},
        "resources": {"cpus": 1, "gpus": 0},
        "families": {"hyper": {"primary": {"width": {"choices": widths}, "depth": {"choices": [1, 2]}},
                               "conditioner": {"width": 64, "depth": 2}}},
    }


def trial_configs(spec: SweepSpec) -> list[RunConfig]:
    """Every trial of the sweep, with one torch thread as `run_trial` gives a 1-CPU trial."""
    cfgs = [load_config(s.config(values)) for s in spec.studies for values in grid_points(s)]
    return [dataclasses.replace(c, train=dataclasses.replace(c.train, threads=1)) for c in cfgs]


def calibrate(spec: SweepSpec, seconds: float) -> int:
    """Epochs that make the slowest trial train for about `seconds`, from the best of three 5-epoch runs."""
    cfg = max(trial_configs(spec), key=lambda c: (c.model.primary.depth, c.model.primary.width))
    short = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=5))
    with torch_threads(1):
        (best,) = best_times([lambda: train(short)], 3)
    return max(1, round(seconds / (best / 5)))


def trained(path: str, share: int = 0, shares: int = 1) -> list[float]:
    """Train every `shares`-th trial of the space from `share` on, in this process; their wall times."""
    return [train(cfg)["wall_s"] for cfg in trial_configs(search_space.load(path))[share::shares]]


def in_processes(path: Path, processes: int) -> tuple[float, list[float]]:
    """Wall time of `trained` split over fresh Python processes run side by side, and its trials' times."""
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.sweep_parallel", str(path), str(k), str(processes)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True) for k in range(processes)]
    walls = [json.loads(proc.communicate()[0]) for proc in procs]
    elapsed = time.perf_counter() - start
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"a baseline process of {path} failed")
    return elapsed, [w for share in walls for w in share]


def sweep(spec: SweepSpec, study: StudySpace, out: str) -> tuple[float, float, float]:
    """The sweep's wall time, its trials' mean training time and its first trial's start delay.

    Runs on the running Ray, or on a local one started (and stopped) here.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune progress tables on our stdout
    import ray

    from hypersweep.results import load_trials
    from hypersweep.sweep import run_sweep

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=CONCURRENT, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        start = time.time()
        run_sweep(spec, out, f"sqlite:///{out}/optuna.db", "benchmark", {study.study: spec.trials(study)}, CONCURRENT,
                  log=lambda _: None)
        wall = time.time() - start
    finally:
        if started:
            ray.shutdown()
    trials = load_trials(out)
    return wall, trials["wall_s"].mean(), trials["started_at"].min().timestamp() - start


def run(size: Size) -> Result:
    widths, seconds = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_text(yaml.safe_dump(space(widths, 2)))
        epochs = calibrate(search_space.load(str(path)), seconds)
        path.write_text(yaml.safe_dump(space(widths, epochs)))
        spec = search_space.load(str(path))
        (study,) = spec.studies
        baseline, walls = in_processes(path, 1)
        plain, _ = in_processes(path, CONCURRENT)
        out = Path(tmp) / "out"
        out.mkdir()
        ours, sweep_trial_s, first_start_s = sweep(spec, study, str(out))
    trials = len(walls)
    overhead = (ours - plain) / trials
    result = compare(ours, baseline, "s", baseline / ours, GOAL, trials=trials, epochs=epochs,
                     trial_s=round(sum(walls) / trials, 3), sweep_trial_s=round(sweep_trial_s, 3),
                     first_trial_after_s=round(first_start_s, 3), plain_parallel_s=round(plain, 3),
                     overhead_s_per_trial=round(overhead, 3), overhead_goal_s=OVERHEAD_GOAL_S,
                     overhead_vs_ideal_s=round((ours - sum(walls) / CONCURRENT) / trials, 3))
    return dataclasses.replace(result, met=result.met and overhead <= OVERHEAD_GOAL_S)


if __name__ == "__main__":
    os.nice(RAY_WORKER_NICENESS)
    print(json.dumps(trained(sys.argv[1], *map(int, sys.argv[2:4]))))
