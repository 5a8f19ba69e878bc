"""Tasks: data grouped by instance, a loss and an error metric.

A task is one module in this package defining a frozen dataclass `Config` and a function
`build(cfg: Config) -> Task`. The module's name is the task's name, so a new task is one
new file; modules whose names start with `_` are not tasks.

Every split holds whole instances: `I` [N, n] (what the conditioner sees), `x` [N, P, m]
(the points the primary net is evaluated on) and `y` [N, P, k] targets (float) or
[N, P] class indices (int64) for classification.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import torch
import torch.nn.functional as F

from hypersweep.config import ConfigError, parse

Kind = Literal["regression", "classification"]


@dataclass(frozen=True)
class Split:
    I: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.I.shape[0]

    @property
    def points(self) -> int:
        return self.x.shape[1]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.I.to(device), self.x.to(device), self.y.to(device))

    def take(self, idx: torch.Tensor) -> Split:
        return Split(self.I[idx], self.x[idx], self.y[idx])


@dataclass(frozen=True)
class Task:
    name: str
    kind: Kind
    dim_i: int
    dim_x: int
    dim_out: int  # regression outputs, or number of classes
    train: Split
    val: Split
    test: Split

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}


def loss(kind: Kind, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Training loss per replica: out [R, B, P, k] -> [R] (MSE or cross-entropy)."""
    if kind == "regression":
        return (out - y).pow(2).flatten(1).mean(1)
    logits = out.flatten(1, 2)  # [R, B*P, k]
    target = y.flatten().expand(out.shape[0], -1)
    return F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1)


def error(kind: Kind, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Error per replica: normalised MSE (MSE / variance of y) or 0-1 error."""
    if kind == "regression":
        return (out - y).pow(2).flatten(1).mean(1) / y.var(unbiased=False).clamp_min(1e-12)
    return (out.argmax(-1) != y).flatten(1).float().mean(1)


def prediction(kind: Kind, out: torch.Tensor) -> torch.Tensor:
    """What the model predicts: the output itself, or class probabilities."""
    return out if kind == "regression" else out.softmax(-1)


def registry() -> dict[str, ModuleType]:
    """Task modules by name, found in this package."""
    return {
        info.name: importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    }


def parse_task(data: Any, path: str = "task") -> Any:
    """Validate a task section (`{name: ..., **options}`) into the task's Config."""
    if not isinstance(data, dict):
        raise ConfigError(path, "expected a mapping with a `name`")
    tasks = registry()
    name = data.get("name")
    if not isinstance(name, str) or name not in tasks:  # a list or mapping cannot even be looked up
        raise ConfigError(f"{path}.name", f"unknown task {name!r} (known: {', '.join(sorted(tasks))})")
    options = {k: v for k, v in data.items() if k != "name"}
    return parse(tasks[name].Config, options, path)


def task_name(cfg: Any) -> str:
    return type(cfg).__module__.rsplit(".", 1)[-1]


def build_task(cfg: Any) -> Task:
    """Build the task described by a parsed task Config."""
    return registry()[task_name(cfg)].build(cfg)
