"""`sweep_scale`: a simulated cluster of many slots running thousands of trials of several studies.

One local Ray started with many logical CPUs (`ray.init(num_cpus=SLOTS)`) in a fresh
process runs `hypersweep.sweep.run_sweep` on six studies at once (variants over
`train.seed`, which does not change the architecture; `train.lr` is searched, continuous,
so no study runs out of new points): the real `SweepSearcher` with TPE, a SQLite storage,
early stopping and the Parquet `Recorder`. Each configuration is answered by
`benchmarks.simulated_trial`: it sleeps as long as its architecture took to train in the
tabulated teacher benchmark (times `scale`) and answers from the table.

The sweep runs twice, side by side in one `run`:

- unpacked (`budget.pack: 1`): one configuration per Tune trial (`simulated`), stopped early
  by per-study ASHA;
- packed (`budget.pack: 8`, the CPU default): up to 8 configurations per Tune trial, grouped
  by the real searcher (`simulated_pack`), members stopped early by the sweep's `Rungs`
  actor. A pack sleeps its members' table time divided by the speedup `train_pack` was
  measured to give such a pack on this machine (`--measure-packing` below).

Ratios are ideal / actual, the actual being the sweep's wall time from `run_sweep`'s call to
its return (start-up of every worker included). A sweep's own ideal is its Tune trials'
sleep (as the rows record it: trials stopped early slept less) divided by the slots; the
unpacked ideal of the packed sweep is what its configurations would have slept one per Tune
trial (their table times for the epochs they trained) divided by the slots. The headline is
the packed wall time against that (goal 1.0); `details` has both sweeps' own ratios, the
driver's time per trial (CPU of the driver process; and wall time in the searcher's asks and
tells and in the Recorder), when the first trial started, and the workers' memory (packed
figures prefixed `packed_`).

    python -m benchmarks.sweep_scale [tiny|quick|full] [--pack 8] [--profile FILE]   # one sweep, prints JSON
    python -m benchmarks.sweep_scale --measure-packing   # writes benchmarks/data/pack_speedup.json (~1 min)
"""
from __future__ import annotations

import argparse
import copyreg
import json
import math
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
GOAL = 0.9  # a sweep against its own ideal (its Tune trials' sleep / slots), packed or not
PACKED_GOAL = 1.0  # the packed sweep against the unpacked ideal of its trials: packing must pay
STUDIES = 6
# size -> (trials, slots, scale): the trials' recorded wall_s (mean 3.5 s) times scale
SIZES: dict[str, tuple[int, int, float]] = {"tiny": (24, 4, 0.2), "quick": (500, 32, 2.0), "full": (2000, 64, 12.0)}
PACK_SIZE = 8  # the packed variant's budget.pack, the default on a CPU (hypersweep.search_space.PACK)
TABLE_SPACE = ROOT / "benchmarks" / "tabulated_teacher.yaml"  # the fixed config the table's trials trained with
WORKER_MIB = 200  # what one Ray worker running the simulated trial holds (ray + ray.tune imported)


def space(trials: int, pack: int = 1) -> dict:
    """Six studies of the tabulated teacher's plain network, one per seed, each with a searched lr;
    `pack` configurations per Tune trial."""
    return {
        "experiment": "scale",
        "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0},
        "model": {"activation": "tanh"},
        "train": {"batch_size": 64, "optimizer": "adam", "schedule": "cosine", "seeds": 2},
        "variants": {"train.seed": list(range(STUDIES))},
        "objective": {"type": "pareto", "metric": "val_error", "report": "test_error", "count": "params_primary",
                      "targets": [0.1, 0.05]},
        "sampler": {"name": "tpe", "seed": 0},
        "budget": {"trials": trials // STUDIES, "epochs": 30, "early_stopping": True, "max_failures": 0,
                   "pack": pack},
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
    """Both variants, one after the other, each in a fresh process with a Ray of its own.

    The headline is whether packing pays on the simulated cluster: the packed sweep's wall time
    against the unpacked ideal of the same trials, what they would have slept one per Tune
    trial on perfectly used slots (goal 1.0: packing beats even a perfect unpacked sweep).
    `unpacked_ratio` (the old figure: the unpacked sweep against its own ideal) and
    `packed_ratio` (the packed sweep against its own ideal, the packs' sleep / slots) say where
    the time goes; each has GOAL.
    """
    _, slots, _ = SIZES[size]
    need = slots * WORKER_MIB + 1500
    if available_mib() < need:
        raise RuntimeError(f"sweep_scale {size}: needs ~{need} MiB free for {slots} Ray workers, "
                           f"{available_mib()} MiB available")
    unpacked, packed = (measured_sweep(size, pack) for pack in (1, PACK_SIZE))
    details = {k: v for k, v in unpacked.items() if k not in ("ideal_s", "wall_s", "unpacked_ideal_s")}
    details.update(unpacked_ratio=round(unpacked["ideal_s"] / unpacked["wall_s"], 3), unpacked_goal=GOAL,
                   unpacked_wall_s=unpacked["wall_s"], unpacked_ideal_s=unpacked["ideal_s"],
                   packed_ratio=round(packed["ideal_s"] / packed["wall_s"], 3), packed_goal=GOAL,
                   packed_ideal_s=packed["ideal_s"],
                   **{f"packed_{k}": v for k, v in packed.items() if k not in ("ideal_s", "wall_s", "unpacked_ideal_s",
                                                                               "pack", "slots", "scale")})
    return compare(packed["wall_s"], packed["unpacked_ideal_s"], "s", packed["unpacked_ideal_s"] / packed["wall_s"],
                   PACKED_GOAL, **details)


def measured_sweep(size: Size, pack: int) -> dict:
    """`sweep` in a fresh process (its Ray must start with the size's slots); its measurements."""
    _, _, scale = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HYPERSWEEP_SIM_SCALE": str(scale), "RAY_AIR_NEW_OUTPUT": "0"}
        proc = subprocess.run([sys.executable, "-m", "benchmarks.sweep_scale", size, "--out", tmp, "--pack", str(pack)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        if proc.returncode:
            raise RuntimeError(f"sweep_scale {size} (pack {pack}): the sweep process failed ({proc.returncode})")
        return json.loads(proc.stdout.strip().splitlines()[-1])


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


def measure_packing(batches: int = 24, epochs: int = 3, rounds: int = 3, seed: int = 0) -> dict:
    """How much faster `train_pack` trains a pack than `train` trains its members one after another,
    on the tabulated table's own architectures (the file `simulated_pack` sleeps by).

    Each batch is what the packed sweep's searcher gets from one ask: PACK_SIZE configurations
    of the space above (width log-uniform, depth 1-3, lr log-uniform), grouped as
    `hypersweep.packing.plan_packs` groups them (by depth, then under the CPU's activation
    cap, so wide members pack fewer). Every pack of two or more is timed both ways on one
    torch thread (a 1-CPU trial), interleaved, best of `rounds`. A pack of k members whose
    members take a_1..a_k alone is fitted as taking mean(a) x (1 + c (k - 1)): one parameter
    c per depth, the cost of each further member relative to the first, so
    speedup(k) = k / (1 + c (k - 1)).
    """
    import random

    import torch

    from benchmarks.measure import best_times, torch_threads
    from hypersweep.packing import ACTIVATION_CAP, plan_packs
    from hypersweep.tasks import build_task, load_config
    from hypersweep.train import train, train_pack

    table = yaml.safe_load(TABLE_SPACE.read_text())
    families = space(0)["families"]["standard"]
    rng = random.Random(seed)

    def drawn() -> dict:
        def log_uniform(low: float, high: float) -> float:
            return math.exp(rng.uniform(math.log(low), math.log(high)))

        width, depths, lr = (families["primary"]["width"], families["primary"]["depth"]["choices"],
                             families["train"]["lr"])
        primary = {"width": round(log_uniform(width["low"], width["high"])), "depth": rng.choice(depths)}
        return {"task": table["task"], "model": {**table["model"], "family": "standard", "primary": primary},
                "train": {**table["train"], "epochs": epochs, "threads": 1, "lr": log_uniform(lr["low"], lr["high"])}}

    asked = [[load_config(drawn()) for _ in range(PACK_SIZE)] for _ in range(batches)]
    task = build_task(asked[0][0].task)  # the table's task, shared by every configuration
    packs = []
    for cfgs in asked:
        dims = (task.dim_i, task.dim_x, task.dim_out)
        for members in plan_packs(cfgs, dims, task.train.points, PACK_SIZE, ACTIVATION_CAP["cpu"]):
            if len(members) < 2:
                continue  # a pack of one is `train` itself
            pack = [cfgs[i] for i in members]
            with torch_threads(1):
                packed, alone = best_times([lambda: train_pack(pack, task=task),  # noqa: B023 (called here)
                                            lambda: [train(c, task=task) for c in pack]], rounds)  # noqa: B023
            packs.append({"size": len(pack), "depth": pack[0].model.primary.depth,
                          "widths": [c.model.primary.width for c in pack],
                          "packed_s": round(packed, 4), "alone_s": round(alone, 4)})
            print(f"pack of {len(pack)} {packs[-1]['widths']} depth {packs[-1]['depth']}: "
                  f"{alone / packed:.2f}x", file=sys.stderr, flush=True)
    # The fit is per depth (a pack's members share it): at depth 1 a member is mostly per-operation
    # overhead, which packing shares; from depth 2 packs measured no faster than their members
    # alone (a width x width layer dominates there, and a narrow member padded to the pack's
    # widest costs that width squared in it).
    extra_member_cost, by_size = {}, {}
    for depth in sorted({p["depth"] for p in packs}):
        of_depth = [p for p in packs if p["depth"] == depth]
        extra_member_cost[str(depth)] = round(fit_extra_member_cost(of_depth), 4)
    for k in sorted({p["size"] for p in packs}):
        of_k = [p for p in packs if p["size"] == k]
        by_size[str(k)] = {"packs": len(of_k), "speedup": round(sum(p["alone_s"] for p in of_k) /
                                                                sum(p["packed_s"] for p in of_k), 3)}
    return {"command": "python -m benchmarks.sweep_scale --measure-packing", "measured_on": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, 1 torch thread",
            "epochs": epochs, "rounds": rounds, "batches": batches, "seed": seed,
            "extra_member_cost": extra_member_cost, "by_size": by_size, "packs": packs}


def fit_extra_member_cost(packs: list[dict]) -> float:
    """Least squares for c in packed_s = a (1 + c (k - 1)), a = alone_s / k (the mean member's time)."""
    a = np.array([p["alone_s"] / p["size"] for p in packs])
    b = a * np.array([p["size"] - 1 for p in packs])
    return float(np.sum(b * (np.array([p["packed_s"] for p in packs]) - a)) / np.sum(b * b))


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


def sweep(size: str, out: str, profile: str | None = None, storage: str = "sqlite", tune_alone: bool = False,
          pack: int = 1) -> dict:
    """Run the simulated sweep, `pack` configurations per Tune trial, on a local Ray of `slots` CPUs
    started here; its measurements."""
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
    path.write_text(yaml.safe_dump(space(trials, pack)))
    spec = search_space.load(str(path))
    # run_sweep hands every trial the studies' StudySpace objects; unpickling one imports
    # hypersweep.search_space, and with it torch. The simulated trial needs none of it, so here
    # they travel as plain dicts and the workers stay free of torch.
    copyreg.pickle(search_space.StudySpace, _plain_space)
    if pack > 1:
        # A pack finds the sweep's `Rungs` actor with `ray.get_actor`, which imports the module that
        # defines the actor's class: hypersweep.sweep, and with it torch, in every worker. Pickled
        # by value, the same class reaches the workers without its module.
        from ray import cloudpickle

        from hypersweep import sweep as sweep_module

        cloudpickle.register_pickle_by_value(sweep_module)
    timer = Timer()
    timer.wrap(Search, "ask", "ask")
    timer.wrap(Search, "tell", "tell")
    timer.wrap(Recorder, "_write", "record")  # every row, packed or not
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
                         log=lambda _: None,
                         trainable=simulated_trial.simulated if pack == 1 else simulated_trial.simulated_pack)
        wall, cpu = time.time() - start, time.process_time() - cpu
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        workers = sampler.stop()
        rows = load_trials(sweep_out)
        bare = bare_tune(rows, slots, Path(out) / "bare") if tune_alone and pack == 1 else {}
    finally:
        ray.shutdown()
    n = len(rows)
    # What each trial would have slept alone, one per Tune trial (`simulated`): its table time for
    # the epochs it trained. For a packed sweep this is the ideal packing has to beat.
    table = simulated_trial.rows()
    alone = [table[(w, d)]["wall_s"] * scale * e / simulated_trial.EPOCHS for w, d, e in
             zip(rows["config.model.primary.width"], rows["config.model.primary.depth"], rows["epochs"], strict=True)]
    # The Tune trials (one per row unpacked; a pack's members share `pack` and `started_at`, and
    # their wall_s are shares that add up to the pack's sleep).
    tune_trials = rows.groupby(["study", "pack"]).agg(started_at=("started_at", "min"), wall_s=("wall_s", "sum"),
                                                      node_id=("node_id", "first"),
                                                      finished_at=("finished_at", "max"), size=("trial", "size"))
    first = rows["started_at"].min().timestamp() - start
    begin = tune_trials["started_at"].map(lambda t: t.timestamp()) - start
    running = [int(((begin <= t) & (begin + tune_trials["wall_s"] > t)).sum()) for t in range(0, int(wall), 10)]
    print(f"Tune trials sleeping (pack {pack}), every 10 s:", running, file=sys.stderr)
    # A slot's hand-off: from the end of a trial's sleep to the start of the next trial on the same worker.
    end = begin + tune_trials["wall_s"]
    gaps = []
    for _, slot in tune_trials.assign(begin=begin, end=end).sort_values("begin").groupby("node_id"):
        gaps.extend((slot["begin"].to_numpy()[1:] - slot["end"].to_numpy()[:-1]).tolist())
    # For a pack: from the end of its sleep to its last member's row (pruned members are written earlier)
    pickup = tune_trials["finished_at"].map(lambda t: t.timestamp()) - start - end
    return {
        "ideal_s": round(rows["wall_s"].sum() / slots, 2), "wall_s": round(wall, 2), "trials": n, "owed": owed,
        "unpacked_ideal_s": round(sum(alone) / slots, 2), "pack": pack, "tune_trials": len(tune_trials),
        "pack_size_mean": round(float(tune_trials["size"].mean()), 2),
        "studies": rows["study"].nunique(), "slots": slots, "scale": scale,
        "trial_s": round(rows["wall_s"].mean(), 3), "pruned": int((rows["status"] == PRUNED).sum()),
        "failed": int((rows["status"] == FAILED).sum()),
        "driver_cpu_ms_per_trial": round(cpu / n * 1e3, 1),
        **{f"{k}_ms_per_trial": round(v / n * 1e3, 1) for k, v in timer.seconds.items()},
        "first_ask_after_s": round(timer.first.get("ask", start) - start, 2),
        "first_trial_after_s": round(first, 2),
        "workers_used": int(tune_trials["node_id"].nunique()),
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
    private memory (MiB), and the names of those that loaded torch (none should: see `sweep`)."""
    parent, name = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            name[int(pid)] = stat[stat.index("(") + 1:stat.rindex(")")]
            parent[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    raylets = {pid for pid, ppid in parent.items() if ppid == os.getpid() and name[pid] == "raylet"}
    total, count, torch = 0, 0, set()
    for pid, ppid in parent.items():
        if ppid not in raylets or name[pid] in ("DashboardAgent", "RuntimeEnvAgent") or "Agent" in name[pid]:
            continue
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
            if "libtorch" in Path(f"/proc/{pid}/maps").read_text():
                torch.add(name[pid])
            count += 1
        except OSError:
            continue
    return {"workers": count, "workers_private_mib": total // 1024, "torch_in_workers": sorted(torch)}


def main(argv: list[str] | None = None) -> int:
    from benchmarks import simulated_trial

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", choices=sorted(SIZES), nargs="?", default="quick")
    parser.add_argument("--measure-packing", action="store_true",
                        help=f"measure train_pack against train on the table's architectures and write "
                             f"{simulated_trial.PACKING.relative_to(ROOT)} (what the simulated packs sleep by)")
    parser.add_argument("--out", help="work directory (default: a temporary one)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the driver here")
    parser.add_argument("--pack", type=int, default=1,
                        help=f"configurations per Tune trial (budget.pack; {PACK_SIZE}: the packed variant)")
    parser.add_argument("--tune-alone", action="store_true",
                        help="then run the same trials through plain Ray Tune "
                             "(no searcher, storage, scheduler, Recorder; --pack 1 only)")
    parser.add_argument("--storage", choices=["sqlite", "memory"], default="sqlite",
                        help="memory: Optuna's in-memory storage (a diagnosis: what the SQLite storage costs)")
    args = parser.parse_args(argv)
    if args.measure_packing:
        measured = measure_packing()
        simulated_trial.PACKING.write_text(json.dumps(measured, indent=1) + "\n")
        print(json.dumps({k: v for k, v in measured.items() if k != "packs"}))
        return 0
    os.environ.setdefault("HYPERSWEEP_SIM_SCALE", str(SIZES[args.size][2]))
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if args.out:
        print(json.dumps(sweep(args.size, args.out, args.profile, args.storage, args.tune_alone, args.pack)))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(sweep(args.size, tmp, args.profile, args.storage, args.tune_alone, args.pack)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
