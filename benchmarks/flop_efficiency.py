"""`flop_efficiency`: achieved FLOP/s of training vs the matrix-product peak of this run.

FLOPs are counted from the architecture, as the models compute it: 2 per multiply-add of
every matrix product, once forward and once for the weights' gradient, plus once more for
the inputs' gradient wherever the input is not data. Biases and activations are not
counted. The trainer's own `samples_per_s` (training steps only) turns that into FLOP/s.
The peak is the best of a square fp32 `torch.mm` with the same threads.
"""
from __future__ import annotations

import torch

from benchmarks.measure import Result, Size, best_times, compare, torch_threads
from hypersweep.config import ModelConfig, RunConfig
from hypersweep.counts import layer_shapes, mlp_params
from hypersweep.tasks import Task, build_task, load_config
from hypersweep.train import resolve_device, train

# epochs, train instances, peak matrix side, rounds
SIZES = {"tiny": (1, 64, 256, 1), "quick": (2, 500, 1024, 3), "full": (4, 2000, 2048, 5)}
GOAL = 0.5
THREADS = 1  # a trial's share of the machine; one thread also keeps neighbours' load out of the figure
QUICKSTART = {  # representative sizes of each family in search_spaces/quickstart.yaml
    "hyper": {"primary": {"width": 4, "depth": 1}, "conditioner": {"width": 64, "depth": 2}},
    "embedding": {"primary": {"width": 16, "depth": 1}, "conditioner": {"width": 64, "depth": 2}, "embedding_dim": 8},
    "standard": {"primary": {"width": 32, "depth": 2}},
}
LARGE = {"family": "standard", "primary": {"width": 512, "depth": 3}}  # teacher_scaling's largest N


def training_flops(model: ModelConfig, dim_i: int, dim_x: int, dim_out: int, points: int) -> float:
    """FLOPs of one training pass over one instance and its `points` points."""

    def products(fan_in: int, fan_out: int, mlp, per: int) -> float:
        """Multiply-adds x passes of an MLP run `per` times, its first input being data."""
        shapes = layer_shapes(fan_in, fan_out, mlp)
        return per * sum(i * o * (2 if k == 0 else 3) for k, (i, o) in enumerate(shapes))

    if model.family == "hyper":
        theta = mlp_params(dim_x, dim_out, model.primary, model.has_primary_bias)
        return 2 * (products(dim_i, theta, model.conditioner, 1) + products(dim_x, dim_out, model.primary, points))
    dim_c = model.embedding_dim if model.family == "embedding" else dim_i
    conditioner = products(dim_i, dim_c, model.conditioner, 1) if model.family == "embedding" else 0
    # q's first layer is split: its x part runs per point, its code part once per instance,
    # and the code needs a gradient only when an embedding network made it.
    first = model.primary.width if model.primary.depth else dim_out
    code = dim_c * first * (3 if model.family == "embedding" else 2)
    return 2 * (conditioner + code + products(dim_x, dim_out, model.primary, points))


def config(model: dict, epochs: int, instances: int) -> RunConfig:
    return load_config({
        "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0, "train_instances": instances, "points": 64},
        "model": {"activation": "tanh", **model},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.003},
    })


def achieved(cfg: RunConfig, task: Task) -> float:
    """FLOP/s of the trainer's training steps."""
    points_per_s = train(cfg, task=task)["samples_per_s"]
    return points_per_s / task.train.points * training_flops(cfg.model, task.dim_i, task.dim_x, task.dim_out,
                                                              task.train.points)


def matmul_peak(side: int, rounds: int) -> float:
    """FLOP/s of the best square fp32 product on the device the trainer uses."""
    device = resolve_device("auto")
    a, b = torch.randn(side, side, device=device), torch.randn(side, side, device=device)
    (best,) = best_times([lambda: torch.mm(a, b)], rounds * 3)
    return 2 * side**3 / best


def run(size: Size) -> Result:
    epochs, instances, side, rounds = SIZES[size]
    cfgs = {name: config({"family": name, **m}, epochs, instances) for name, m in QUICKSTART.items()}
    large = config(LARGE, epochs, instances)
    task = build_task(large.task)
    with torch_threads(THREADS):
        peak = matmul_peak(side, rounds)
        ours = max(achieved(large, task) for _ in range(rounds))
        small = {name: max(achieved(cfg, task) for _ in range(rounds)) / peak for name, cfg in cfgs.items()}
    return compare(ours / 1e9, peak / 1e9, "GFLOP/s", ours / peak, GOAL, threads=THREADS,
                   **{f"quickstart_{name}": round(value, 4) for name, value in small.items()})
