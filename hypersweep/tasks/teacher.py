"""Synthetic teacher task: y = h(x, I) for a random smooth teacher h, x ~ U[-1, 1]^m, I ~ U[-1, 1]^n.

Two teachers (`target`):

- `hypernet` (the default, so existing configs and tables keep their meaning): h(x, I) =
  g*(x; f*(I)), a randomly initialised `hyper` model. This is the *favourable* case for the
  hypernetwork family: any g as large as the teacher's g* (4 units by default) represents it
  exactly. Its variance is mostly between instances (a function of I alone).
- `mlp`: h(x, I) = a random tanh MLP on concat(x, I), `mlp` hidden layers (32 x 2 by default):
  a generic smooth target, the setting of the paper's claim. Its first layer gives x and I
  equal shares of the pre-activation variance (else I, with n >= m inputs, would drown x),
  its weights are large enough (WEIGHT_GAIN) for tanh to bend, and its output is scaled to
  unit standard deviation, about the hypernet teacher's scale (0.4-1.2 at the defaults), so
  the same learning rates fit both. Errors are normalised by var(y), so an error target
  means the same fraction of the target's variance for both.

Both teachers are fixed by `seed` (and the sizes) alone: the number of instances drawn does
not change the function. I is standardised to unit second moment before anything sees it.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from hypersweep.config import Activation, MLPConfig, ModelConfig, bounds
from hypersweep.models import ACTIVATIONS, HyperModel
from hypersweep.tasks import Split, Task

Teacher = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (I [N, n], x [N, P, m]) -> y [N, P, k]

UNIFORM_STD = math.sqrt(3.0)  # U[-1, 1] times this has unit variance
WEIGHT_GAIN = 2.0  # mlp teacher: pre-activations of std ~2, where tanh is curved but not saturated
BIAS_STD = 1.0  # mlp teacher: biases spread the units' bends over the inputs' range
SCALE_SAMPLES = 4096  # mlp teacher: (x, I) pairs its output standard deviation is measured on


@dataclass(frozen=True)
class Config:
    target: Literal["hypernet", "mlp"] = "hypernet"  # which teacher (see the module docstring)
    dim_x: int = field(default=2, metadata=bounds(1))
    dim_i: int = field(default=4, metadata=bounds(1))
    dim_y: int = field(default=1, metadata=bounds(1))
    primary: MLPConfig = MLPConfig(width=4, depth=1)  # the hypernet teacher's g*
    conditioner: MLPConfig = MLPConfig(width=16, depth=1)  # the hypernet teacher's f*
    mlp: MLPConfig = MLPConfig(width=32, depth=2)  # the mlp teacher's hidden layers
    activation: Activation = "tanh"
    train_instances: int = field(default=1000, metadata=bounds(1))
    val_instances: int = field(default=200, metadata=bounds(1))
    test_instances: int = field(default=200, metadata=bounds(1))
    points: int = field(default=32, metadata=bounds(1))  # x samples per instance
    noise: float = field(default=0.0, metadata=bounds(0))  # std of label noise, relative to std(y)
    seed: int = field(default=0, metadata=bounds(0))


@torch.no_grad()
def teacher(cfg: Config, gen: torch.Generator | None = None) -> Teacher:
    """The teacher function h(I, x) of `cfg` (I already standardised).

    The mlp teacher draws from `gen`, a fresh generator seeded with `seed` (the default), before
    the task draws its data from it: one stream, so weights and data never share random numbers.
    """
    h = hypernet_teacher(cfg) if cfg.target == "hypernet" else mlp_teacher(
        cfg, gen or torch.Generator().manual_seed(cfg.seed))
    return torch.no_grad()(h)  # a fixed function: never part of a learner's graph


def hypernet_teacher(cfg: Config) -> Teacher:
    """g*(x; f*(I)): a randomly initialised hypernetwork, drawn from the global RNG under `seed`."""
    with torch.random.fork_rng(devices=[]):  # the teacher draws from its own seed only
        torch.manual_seed(cfg.seed)
        model = HyperModel(ModelConfig(family="hyper", primary=cfg.primary, conditioner=cfg.conditioner,
                                       activation=cfg.activation), cfg.dim_i, cfg.dim_x, cfg.dim_y)
    return lambda I, x: model(I, x)[0]


def mlp_teacher(cfg: Config, gen: torch.Generator) -> Teacher:
    """A random MLP on concat(x, I), x and I weighted equally, output scaled to unit std."""
    act = ACTIVATIONS[cfg.activation]
    width = cfg.mlp.width

    def normal(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * std

    layers = []
    if cfg.mlp.depth:
        # Each of x and I brings half the first layer's pre-activation variance, whatever m and n.
        first = torch.cat([normal(cfg.dim_x, width, std=1 / math.sqrt(2 * cfg.dim_x)),
                           normal(cfg.dim_i, width, std=1 / math.sqrt(2 * cfg.dim_i))])
        layers.append((first * WEIGHT_GAIN, normal(width, std=BIAS_STD)))
        layers += [(normal(width, width, std=WEIGHT_GAIN / math.sqrt(width)), normal(width, std=BIAS_STD))
                   for _ in range(cfg.mlp.depth - 1)]
    fan_in = width if cfg.mlp.depth else cfg.dim_x + cfg.dim_i
    out = normal(fan_in, cfg.dim_y, std=1 / math.sqrt(fan_in))

    def raw(I: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x * UNIFORM_STD, I[:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
        for weight, bias in layers:
            h = act(h @ weight + bias)
        return h @ out

    I = (torch.rand(SCALE_SAMPLES, cfg.dim_i, generator=gen) * 2 - 1) * UNIFORM_STD
    x = torch.rand(SCALE_SAMPLES, 1, cfg.dim_x, generator=gen) * 2 - 1
    scale = raw(I, x).std().clamp_min(1e-12)
    return lambda I, x: raw(I, x) / scale


@torch.no_grad()
def build(cfg: Config) -> Task:
    gen = torch.Generator().manual_seed(cfg.seed)
    h = teacher(cfg, gen)

    def split(n: int) -> Split:
        I = torch.rand(n, cfg.dim_i, generator=gen) * 2 - 1
        x = torch.rand(n, cfg.points, cfg.dim_x, generator=gen) * 2 - 1
        # Standardise I so the teacher (and a learner's f) sees unit second moment.
        return Split(I * UNIFORM_STD, x, h(I * UNIFORM_STD, x))

    train, val, test = (split(n) for n in (cfg.train_instances, cfg.val_instances, cfg.test_instances))
    if cfg.noise:
        sd = cfg.noise * train.y.std()
        train = Split(train.I, train.x, train.y + sd * torch.randn(train.y.shape, generator=gen))
    return Task("teacher", "regression", cfg.dim_i, cfg.dim_x, cfg.dim_y, train, val, test)
