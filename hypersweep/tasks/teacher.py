"""Synthetic teacher task: y(x, I) = g*(x; f*(I)) with a random teacher hypernetwork.

x ~ U[-1, 1]^m and I ~ U[-1, 1]^n as in the paper's setting. The teacher is a randomly
initialised `hyper` model with a smooth activation (tanh by default), so the target is
smooth and its structure is known: a hypernetwork whose g is as large as the teacher's
g* can represent it exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from hypersweep.config import Activation, MLPConfig, ModelConfig, bounds
from hypersweep.models import HyperModel
from hypersweep.tasks import Split, Task


@dataclass(frozen=True)
class Config:
    dim_x: int = field(default=2, metadata=bounds(1))
    dim_i: int = field(default=4, metadata=bounds(1))
    dim_y: int = field(default=1, metadata=bounds(1))
    primary: MLPConfig = MLPConfig(width=4, depth=1)  # the teacher's g*
    conditioner: MLPConfig = MLPConfig(width=16, depth=1)  # the teacher's f*
    activation: Activation = "tanh"
    train_instances: int = field(default=1000, metadata=bounds(1))
    val_instances: int = field(default=200, metadata=bounds(1))
    test_instances: int = field(default=200, metadata=bounds(1))
    points: int = field(default=32, metadata=bounds(1))  # x samples per instance
    noise: float = field(default=0.0, metadata=bounds(0))  # std of label noise, relative to std(y)
    seed: int = field(default=0, metadata=bounds(0))


@torch.no_grad()
def build(cfg: Config) -> Task:
    gen = torch.Generator().manual_seed(cfg.seed)
    fork = torch.random.fork_rng(devices=[])  # the teacher draws from its own seed only
    with fork:
        torch.manual_seed(cfg.seed)
        teacher = HyperModel(
            ModelConfig(family="hyper", primary=cfg.primary, conditioner=cfg.conditioner,
                        activation=cfg.activation),
            cfg.dim_i, cfg.dim_x, cfg.dim_y,
        )
    # Standardise I so the teacher's f* (and a learner's f) sees unit second moment.
    scale = math.sqrt(3.0)

    def split(n: int) -> Split:
        I = torch.rand(n, cfg.dim_i, generator=gen) * 2 - 1
        x = torch.rand(n, cfg.points, cfg.dim_x, generator=gen) * 2 - 1
        y = teacher(I * scale, x)[0]
        return Split(I * scale, x, y)

    train, val, test = (split(n) for n in (cfg.train_instances, cfg.val_instances, cfg.test_instances))
    if cfg.noise:
        sd = cfg.noise * train.y.std()
        train = Split(train.I, train.x, train.y + sd * torch.randn(train.y.shape, generator=gen))
    return Task("teacher", "regression", cfg.dim_i, cfg.dim_x, cfg.dim_y, train, val, test)
