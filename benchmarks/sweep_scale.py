"""`sweep_scale`: a simulated cluster of many slots running thousands of trials of several studies.

One local Ray started with many logical CPUs (`ray.init(num_cpus=SLOTS)`) in a fresh
process runs `hypersweep.sweep.run_sweep` on six studies at once (variants over
`train.seed`, which does not change the architecture; `train.lr` is searched, continuous,
so no study runs out of new points): the real `SweepSearcher` with TPE, a SQLite storage,
per-study ASHA and the Parquet `Recorder`. Each trial is `benchmarks.simulated_trial`: it
sleeps as long as its architecture took to train in the tabulated teacher benchmark (times
`scale`) and answers from the table.

`ratio` = ideal / actual: the ideal is the trials' sleep (as the rows record it: trials
that ASHA stopped slept less) divided by the slots, the actual the sweep's wall time from
`run_sweep`'s call to its return (start-up of every worker included). `details` has the
driver's time per trial (CPU of the driver process; and wall time in the searcher's asks
and tells and in the Recorder), when the first trial started, and the workers' memory.

    python -m benchmarks.sweep_scale [tiny|quick|full] [--profile FILE]   # one run, prints JSON
"""
from __future__ import annotations

import argparse
import copyreg
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.measure import Result, Size, compare
from hypersweep.vocab import FAILED, OK, PRUNED

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.9
STUDIES = 6
# size -> (trials, slots, scale): the trials' recorded wall_s (mean 3.5 s) times scale
SIZES: dict[str, tuple[int, int, float]] = {"tiny": (24, 4, 0.2), "quick": (500, 32, 2.0), "full": (2000, 64, 12.0)}
WORKER_MIB = 200  # what one Ray worker running the simulated trial holds (ray + ray.tune imported)


def space(trials: int) -> dict:
    """Six studies of the tabulated teacher's plain network, one per seed, each with a searched lr."""
    return {
        "experiment": "scale",
        "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0},
        "model": {"activation": "tanh"},
        "train": {"batch_size": 64, "optimizer": "adam", "schedule": "cosine", "seeds": 2},
        "variants": {"train.seed": list(range(STUDIES))},
        "objective": {"type": "pareto", "metric": "val_error", "report": "test_error", "count": "params_primary",
                      "targets": [0.1, 0.05]},
        "sampler": {"name": "tpe", "seed": 0},
        "budget": {"trials": trials // STUDIES, "epochs": 30, "early_stopping": True, "max_failures": 0},
        "resources": {"cpus": 1, "gpus": 0},
        "families": {"standard": {"primary": {"width": {"low": 1, "high": 128, "log": True},
                                              "depth": {"choices": [1, 2, 3]}},
                                  "train": {"lr": {"low": 0.001, "high": 0.01, "log": True}}}},
    }


def available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 1 << 30


def run(size: Size) -> Result:
    _, slots, scale = SIZES[size]
    need = slots * WORKER_MIB + 1500
    if available_mib() < need:
        raise RuntimeError(f"sweep_scale {size}: needs ~{need} MiB free for {slots} Ray workers, "
                           f"{available_mib()} MiB available")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HYPERSWEEP_SIM_SCALE": str(scale), "RAY_AIR_NEW_OUTPUT": "0"}
        proc = subprocess.run([sys.executable, "-m", "benchmarks.sweep_scale", size, "--out", tmp], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True)
        if proc.returncode:
            raise RuntimeError(f"sweep_scale {size}: the sweep process failed ({proc.returncode})")
        m = json.loads(proc.stdout.strip().splitlines()[-1])
    return compare(m["wall_s"], m["ideal_s"], "s", m["ideal_s"] / m["wall_s"], GOAL,
                   **{k: v for k, v in m.items() if k not in ("ideal_s", "wall_s")})


def bare_tune(rows, slots: int, out: Path) -> dict:
    """The same trials (durations and number of reports) through plain Ray Tune on the same slots: no
    searcher, no storage, no scheduler, no Recorder. What Ray Tune alone achieves on this machine."""
    from ray import tune

    from benchmarks import simulated_trial

    reports = rows["status"].map({OK: 3}).fillna(0).astype(int)  # rungs 2 and 8, then the final report
    reports[rows["status"] != OK] = (rows["epochs"][rows["status"] != OK] >= 8).astype(int) + 1
    configs = [{"seconds": float(s), "reports": int(r)} for s, r in zip(rows["wall_s"], reports, strict=True)]
    start = time.time()
    tuner = tune.Tuner(tune.with_resources(simulated_trial.replay, {"cpu": 1}),
                       param_space={"trial": tune.grid_search(configs)},
                       tune_config=tune.TuneConfig(max_concurrent_trials=slots, reuse_actors=True),
                       run_config=tune.RunConfig(storage_path=str(out), verbose=0))
    results = tuner.fit()
    wall = time.time() - start
    first = min(r.metrics["started_at"] for r in results if r.metrics) - start
    return {"tune_alone_wall_s": round(wall, 2), "tune_alone_ratio": round(rows["wall_s"].sum() / slots / wall, 3),
            "tune_alone_first_trial_after_s": round(first, 2)}


class Timer:
    """Wall time spent inside some methods (the driver's own share), summed."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.first: dict[str, float] = {}  # when each was first called (time.time())

    def wrap(self, cls: type, name: str, label: str) -> None:
        original = getattr(cls, name)

        def timed(*args, **kwargs):
            self.first.setdefault(label, time.time())
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(cls, name, timed)


def _plain_space(space):
    """How a StudySpace travels to the workers in this benchmark: its name only (see `sweep`)."""
    return dict, ([("study", space.study), ("family", space.family)],)


def sweep(size: str, out: str, profile: str | None = None, storage: str = "sqlite", tune_alone: bool = False) -> dict:
    """Run the simulated sweep on a local Ray of `slots` CPUs started here; its measurements."""
    import optuna
    import ray

    from benchmarks import simulated_trial
    from hypersweep import search_space
    from hypersweep.results import load_trials
    from hypersweep.search import Search
    from hypersweep.sweep import Recorder, run_sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials, slots, scale = SIZES[size]
    path = Path(out) / "space.yaml"
    path.write_text(yaml.safe_dump(space(trials)))
    spec = search_space.load(str(path))
    # run_sweep hands every trial the studies' StudySpace objects; unpickling one imports
    # hypersweep.search_space, and with it torch. The simulated trial needs none of it, so here
    # they travel as plain dicts and the workers stay free of torch.
    copyreg.pickle(search_space.StudySpace, _plain_space)
    timer = Timer()
    timer.wrap(Search, "ask", "ask")
    timer.wrap(Search, "tell", "tell")
    timer.wrap(Recorder, "_record", "record")
    ray.init(address="local", num_cpus=slots, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             object_store_memory=256 * 1024 * 1024)
    try:
        sweep_out = str(Path(out) / "out")
        Path(sweep_out).mkdir()
        budgets = {s.study: spec.trials(s) for s in spec.studies}
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        sampler = MemorySampler()
        cpu, start = time.process_time(), time.time()
        url = f"sqlite:///{sweep_out}/optuna.db" if storage == "sqlite" else optuna.storages.InMemoryStorage()
        # No concurrency cap, as `launch` runs it by default: as many trials as the slots hold.
        owed = run_sweep(spec, sweep_out, url, "sweep_scale", budgets, None,
                         log=lambda _: None, trainable=simulated_trial.simulated)
        wall, cpu = time.time() - start, time.process_time() - cpu
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        workers = sampler.stop()
        rows = load_trials(sweep_out)
        bare = bare_tune(rows, slots, Path(out) / "bare") if tune_alone else {}
    finally:
        ray.shutdown()
    n = len(rows)
    first = rows["started_at"].min().timestamp() - start
    begin = rows["started_at"].map(lambda t: t.timestamp()) - start
    running = [int(((begin <= t) & (begin + rows["wall_s"] > t)).sum()) for t in range(0, int(wall), 10)]
    print("trials sleeping, every 10 s:", running, file=sys.stderr)
    # A slot's hand-off: from the end of a trial's sleep to the start of the next trial on the same worker.
    end = begin + rows["wall_s"]
    gaps = []
    for _, slot in rows.assign(begin=begin, end=end).sort_values("begin").groupby("node_id"):
        gaps.extend((slot["begin"].to_numpy()[1:] - slot["end"].to_numpy()[:-1]).tolist())
    pickup = rows["finished_at"].map(lambda t: t.timestamp()) - start - end
    return {
        "ideal_s": round(rows["wall_s"].sum() / slots, 2), "wall_s": round(wall, 2), "trials": n, "owed": owed,
        "studies": rows["study"].nunique(), "slots": slots, "scale": scale,
        "trial_s": round(rows["wall_s"].mean(), 3), "pruned": int((rows["status"] == PRUNED).sum()),
        "failed": int((rows["status"] == FAILED).sum()),
        "driver_cpu_ms_per_trial": round(cpu / n * 1e3, 1),
        **{f"{k}_ms_per_trial": round(v / n * 1e3, 1) for k, v in timer.seconds.items()},
        "first_ask_after_s": round(timer.first.get("ask", start) - start, 2),
        "first_trial_after_s": round(first, 2),
        "workers_used": int(rows["node_id"].nunique()),
        "handoff_s_median": round(float(np.median(gaps)), 3) if gaps else None,
        "handoff_s_mean": round(float(np.mean(gaps)), 3) if gaps else None,
        "recorded_after_s_median": round(float(pickup.median()), 3),
        "last_trial_end_s": round(rows["finished_at"].max().timestamp() - start, 2),
        **workers, **bare,
    }


class MemorySampler(threading.Thread):
    """`worker_memory` every few seconds during the sweep; `stop()` returns the largest sample."""

    def __init__(self, every_s: float = 5.0):
        super().__init__(daemon=True)
        self.every_s, self.done, self.largest = every_s, threading.Event(), worker_memory()
        self.start()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            sample = worker_memory()
            if sample["workers_private_mib"] >= self.largest["workers_private_mib"]:
                self.largest = sample

    def stop(self) -> dict:
        self.done.set()
        self.join()
        return self.largest


def worker_memory() -> dict:
    """This process's Ray workers (the children of the raylet it started): how many, their summed
    private memory (MiB), and whether any loaded torch."""
    parent, name = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            name[int(pid)] = stat[stat.index("(") + 1:stat.rindex(")")]
            parent[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    raylets = {pid for pid, ppid in parent.items() if ppid == os.getpid() and name[pid] == "raylet"}
    total, count, torch = 0, 0, False
    for pid, ppid in parent.items():
        if ppid not in raylets or name[pid] in ("DashboardAgent", "RuntimeEnvAgent") or "Agent" in name[pid]:
            continue
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
            torch = torch or "libtorch" in Path(f"/proc/{pid}/maps").read_text()
            count += 1
        except OSError:
            continue
    return {"workers": count, "workers_private_mib": total // 1024, "torch_in_workers": torch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", choices=sorted(SIZES), nargs="?", default="quick")
    parser.add_argument("--out", help="work directory (default: a temporary one)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the driver here")
    parser.add_argument("--tune-alone", action="store_true",
                        help="then run the same trials through plain Ray Tune "
                             "(no searcher, storage, scheduler, Recorder)")
    parser.add_argument("--storage", choices=["sqlite", "memory"], default="sqlite",
                        help="memory: Optuna's in-memory storage (a diagnosis: what the SQLite storage costs)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HYPERSWEEP_SIM_SCALE", str(SIZES[args.size][2]))
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if args.out:
        print(json.dumps(sweep(args.size, args.out, args.profile, args.storage, args.tune_alone)))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(sweep(args.size, tmp, args.profile, args.storage, args.tune_alone)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
