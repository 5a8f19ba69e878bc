"""`replica_packing`: `seeds: 8` as one vectorised model vs 8 sequential trainings (wall time).

Ours trains 8 replicas once with stacked parameters; the baseline trains the same
architecture 8 times with seeds 0..7, on the same task tensors, one thread each. The
headline is Assumption 1 (docs/theory.md), what replicas are for: small hypernetworks the size of
the teacher (g 4x1, f 16x1) fitting it. `details` adds the quickstart's hypernetwork
(f 64x2) and the paper's rotation depth experiment (f 100x2 on digits, batches of 8).
"""
from __future__ import annotations

import dataclasses

from benchmarks.measure import Result, Size, best_times, compare, torch_threads
from hypersweep import tasks
from hypersweep.config import RunConfig
from hypersweep.tasks import load_config
from hypersweep.train import train

SIZES = {"tiny": (1, 1), "quick": (3, 3), "full": (10, 5)}  # epochs, rounds
REPLICAS = 8
GOAL = 4.0
TEACHER = {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0}
SETUPS = {  # name: (task, model, train)
    "assumption_1": (TEACHER, {"family": "hyper", "activation": "tanh", "primary": {"width": 4, "depth": 1},
                               "conditioner": {"width": 16, "depth": 1}}, {"batch_size": 64, "lr": 0.003}),
    "quickstart": (TEACHER, {"family": "hyper", "activation": "tanh", "primary": {"width": 4, "depth": 1},
                             "conditioner": {"width": 64, "depth": 2}}, {"batch_size": 64, "lr": 0.003}),
    "rotation_depth": ({"name": "rotation", "dataset": "digits", "rotations": 8, "seed": 0},
                       {"family": "hyper", "activation": "relu", "primary": {"width": 10, "depth": 1},
                        "primary_bias": False, "conditioner": {"width": 100, "depth": 2}},
                       {"batch_size": 8, "optimizer": "sgd", "lr": 0.001, "schedule": "constant"}),
}


def speedup(cfg: RunConfig, rounds: int) -> tuple[float, float]:
    """Best wall times of the packed run and of the 8 sequential runs."""
    task = tasks.build_task(cfg.task)
    packed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seeds=REPLICAS))
    alone = [dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=s)) for s in range(REPLICAS)]

    def sequential() -> None:
        for c in alone:
            train(c, task=task)

    with torch_threads(1):
        ours, baseline = best_times([lambda: train(packed, task=task), sequential], rounds)
    return ours, baseline


def run(size: Size) -> Result:
    epochs, rounds = SIZES[size]
    cfgs = {name: load_config({"task": t, "model": m, "train": {**tr, "epochs": epochs}})
            for name, (t, m, tr) in SETUPS.items()}
    times = {name: speedup(cfg, rounds) for name, cfg in cfgs.items()}
    ours, baseline = times["assumption_1"]
    return compare(ours, baseline, "s", baseline / ours, GOAL, replicas=REPLICAS, epochs=epochs,
                   **{f"ratio_{name}": round(b / o, 2) for name, (o, b) in times.items() if name != "assumption_1"})
