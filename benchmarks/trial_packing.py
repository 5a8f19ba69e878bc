"""`trial_packing`: trials trained per second through the real sweep, in packs of K against one per Tune trial.

The space is teacher_scaling's generic teacher (`target: mlp`, search_spaces/teacher_scaling.yaml)
with its three families, fewer instances and epochs, and random sampling (seed 0) so that every
variant trains the same architectures and learning rates. Each variant runs
`hypersweep.sweep.run_sweep` on a fresh local 2-CPU Ray in its own process (`budget.pack` 1, 8
and 32); the figure is trials per second of `run_sweep`'s wall time (Ray's start excluded,
its workers' start included), and `ratio` is K = 8's against one trial per Tune trial.

Where the time goes decides the ratio. A pack removes per-operation overhead (a tiny model's
step is a few hundred small kernels) and per-trial machinery; it cannot make a CPU-bound
model cheaper. `details` therefore splits the trials by size: `small_share` is the fraction
of the unpacked run's training time spent in trials whose activations fit the packing cap.

    python -m benchmarks.trial_packing [tiny|quick|full] [--pack K]   # one sweep; prints JSON
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.measure import Result, Size, compare

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "search_spaces" / "teacher_scaling.yaml"
GOAL = 4.0
PACKS = (8, 32)  # K = 8 gives `ratio`; 32 is in `details`
SLOTS = 2
# size -> (trials per family, epochs, training instances)
SIZES: dict[str, tuple[int, int, int]] = {"tiny": (3, 1, 64), "quick": (16, 4, 500), "full": (32, 8, 1000)}


def space(size: Size, pack: int) -> dict:
    """teacher_scaling's generic teacher, resized, randomly sampled, packed by `pack`."""
    trials, epochs, instances = SIZES[size]
    with open(SPACE, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    data.pop("variants")
    data["experiment"] = "bench_packing"
    data["task"].update(target="mlp", train_instances=instances)
    data["sampler"] = {"name": "random", "seed": 0}
    data["budget"] = {"trials": trials, "epochs": epochs, "max_failures": 0, "pack": pack}
    return data


def sweep(size: Size, pack: int) -> dict:
    """Run one variant here (a fresh process): its wall time and what its rows say."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import optuna
    import ray

    from hypersweep import search_space
    from hypersweep.packing import ACTIVATION_CAP, activations
    from hypersweep.results import load_trials
    from hypersweep.sweep import run_sweep
    from hypersweep.tasks import load_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_text(yaml.safe_dump(space(size, pack)))
        spec = search_space.load(str(path))
        out = str(Path(tmp) / "out")
        ray.init(num_cpus=SLOTS, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            start = time.perf_counter()
            owed = run_sweep(spec, out, f"sqlite:///{tmp}/optuna.db", "benchmark",
                             {s.study: spec.trials(s) for s in spec.studies}, log=lambda _: None)
            wall = time.perf_counter() - start
        finally:
            ray.shutdown()
        rows = load_trials(out)
        small = set()  # (study, trial) of the trials narrow enough to be packed with others
        for s in spec.studies:
            for t in optuna.load_study(study_name=s.study, storage=f"sqlite:///{tmp}/optuna.db").trials:
                if activations(load_config(s.config(t.params)), s.points) * 2 <= ACTIVATION_CAP["cpu"]:
                    small.add((s.study, t.number))
        fits = [(r["study"], r["trial"]) in small for _, r in rows.iterrows()]
    return {"wall_s": wall, "trials": len(rows), "owed": owed, "ok": int((rows["status"] == "ok").sum()),
            "train_s": float(rows["wall_s"].sum()), "small_train_s": float(rows["wall_s"][fits].sum()),
            "mean_pack": float(rows["pack_size"].mean()), "keys": sorted(map(str, rows["config_hash"]))}


def measured(size: Size, pack: int) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.trial_packing", size, "--pack", str(pack)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "RAY_AIR_NEW_OUTPUT": "0"})
    if proc.returncode:
        raise RuntimeError(f"trial_packing {size} --pack {pack} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(size: Size) -> Result:
    one = measured(size, 1)
    packed = {k: measured(size, k) for k in PACKS}
    if any(p["keys"] != one["keys"] for p in packed.values()):
        raise RuntimeError("the packed and unpacked sweeps trained different configurations")
    rate = {k: r["trials"] / r["wall_s"] for k, r in {1: one, **packed}.items()}
    return compare(rate[8], rate[1], "trials/s", rate[8] / rate[1], GOAL, trials=one["trials"],
                   pack32_ratio=round(rate[32] / rate[1], 3), unpacked_s=round(one["wall_s"], 2),
                   pack8_s=round(packed[8]["wall_s"], 2), pack32_s=round(packed[32]["wall_s"], 2),
                   mean_pack8=round(packed[8]["mean_pack"], 2), mean_pack32=round(packed[32]["mean_pack"], 2),
                   small_share=round(one["small_train_s"] / one["train_s"], 3),
                   train_s_unpacked=round(one["train_s"], 1), train_s_pack8=round(packed[8]["train_s"], 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trial_packing", description=__doc__.splitlines()[0])
    parser.add_argument("size", choices=sorted(SIZES), nargs="?", default="quick")
    parser.add_argument("--pack", type=int, help="run one sweep with this budget.pack and print its JSON")
    args = parser.parse_args(argv)
    if args.pack:
        print(json.dumps(sweep(args.size, args.pack)))
    else:
        print(json.dumps(run(args.size).as_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
