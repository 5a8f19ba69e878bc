"""`trainer_overhead`: hypersweep.train.train vs a minimal hand-written loop (steps/s).

Both train the quickstart's hypernetwork (`build_model`, same seed) on the same task
tensors for the same steps with Adam and a per-step cosine schedule, one thread each. The
hand loop is what anyone would write, with torch's default Adam; the trainer also
evaluates on the validation split every epoch and on the test split at the end.
"""
from __future__ import annotations

import math

import torch

from benchmarks.measure import Result, Size, best_times, compare, torch_threads
from hypersweep import tasks
from hypersweep.config import RunConfig
from hypersweep.models import build_model
from hypersweep.tasks import load_config
from hypersweep.train import resolve_device, train

SIZES = {"tiny": (1, 64, 1), "quick": (10, 1000, 5), "full": (30, 1000, 15)}  # epochs, instances, rounds
GOAL = 0.95


def config(epochs: int, instances: int) -> RunConfig:
    """The quickstart's hypernetwork: g 4x1, f 64x2, on the teacher task."""
    return load_config({
        "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0, "train_instances": instances},
        "model": {"family": "hyper", "primary": {"width": 4, "depth": 1}, "conditioner": {"width": 64, "depth": 2},
                  "activation": "tanh"},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.003, "optimizer": "adam", "schedule": "cosine"},
    })


def hand_loop(cfg: RunConfig, task: tasks.Task) -> None:
    """Index a batch, forward, MSE, backward, step: on the trainer's device, nothing else."""
    t = cfg.train
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)
    model = build_model(cfg.model, task.dim_i, task.dim_x, task.dim_out).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    data = task.train.to(device)
    I, x, y, n = data.I, data.x, data.y, len(data)
    steps = math.ceil(n / t.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, t.epochs * steps)
    for _ in range(t.epochs):
        perm = torch.randperm(n, device=device)
        for k in range(steps):
            idx = perm[k * t.batch_size:(k + 1) * t.batch_size]
            loss = (model(I[idx], x[idx]) - y[idx]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()


def run(size: Size) -> Result:
    epochs, instances, rounds = SIZES[size]
    cfg = config(epochs, instances)
    task = tasks.build_task(cfg.task)
    steps = epochs * math.ceil(instances / cfg.train.batch_size)
    with torch_threads(1):
        ours, baseline = best_times([lambda: train(cfg, task=task), lambda: hand_loop(cfg, task)], rounds)
    return compare(steps / ours, steps / baseline, "steps/s", baseline / ours, GOAL, steps=steps)
