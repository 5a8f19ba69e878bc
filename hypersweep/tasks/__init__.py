"""Tasks: data grouped by instance, a loss and an error metric.

A task is one module in this package defining a frozen dataclass `Config` and a function
`build(cfg: Config) -> Task`. The module's name is the task's name, so a new task is one
new file; modules whose names start with `_` are not tasks.

Every split holds whole instances: `I` [N, n] (what the conditioner sees), `x` [N, P, m]
(the points the primary net is evaluated on) and `y` [N, P, k] targets (float) or
[N, P] class indices (int64) for classification.

`load_config` validates a whole run config, its task section through the task's module.
This package imports no torch until a task module is loaded (by `registry`), so the
search and the analysis can read configs without it.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from hypersweep.config import ConfigError, RunConfig, parse

if TYPE_CHECKING:  # only the task modules themselves need torch: reading a config must not load it
    import torch

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


def load_config(data: Any) -> RunConfig:
    """Validate plain data (a parsed YAML file) into a RunConfig."""
    if not isinstance(data, dict):
        raise ConfigError("", "expected a mapping with task, model and train sections")
    if "task" not in data:
        raise ConfigError("task", "required key is missing")
    task = parse_task(data["task"])
    cfg = parse(RunConfig, {**data, "task": {}})
    return dataclasses.replace(cfg, task=task)
