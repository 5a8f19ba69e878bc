"""Typed configuration of one training run, validated once at the edge.

Every config is a small frozen dataclass. `parse(cls, data)` builds one from plain
YAML/JSON data and raises `ConfigError` naming the dotted key at fault, so a CLI can
print one line (`run.yaml: model.primary.width: must be >= 1, got 0`) and exit 2.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A bad configuration value; `str()` is one line naming the key."""

    def __init__(self, key: str, message: str, file: str | None = None):
        super().__init__(key, message, file)
        self.key, self.message, self.file = key, message, file

    def in_file(self, file: str) -> ConfigError:
        return ConfigError(self.key, self.message, file)

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"


def bounds(low: float | None = None, high: float | None = None, *, open_low: bool = False) -> dict:
    """Field metadata: the value (or each list item) must lie in [low, high]."""
    return {"low": low, "high": high, "open_low": open_low}


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking keys, types and bounds."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise ConfigError(join(path, unknown[0]), f"unknown key (expected one of: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        key = join(path, name)
        if name in data:
            values[name] = _coerce(hints[name], data[name], key)
            _check_bounds(f.metadata, values[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key, "required key is missing")
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(join(path, err.key), err.message) from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(key, "expected a non-empty list")
        items = [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def _check_bounds(meta: Any, value: Any, key: str) -> None:
    if "low" not in meta or value is None:
        return
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        low, high = meta["low"], meta["high"]
        if low is not None and (v <= low if meta["open_low"] else v < low):
            raise ConfigError(key, f"must be {'>' if meta['open_low'] else '>='} {low}, got {v}")
        if high is not None and v > high:
            raise ConfigError(key, f"must be <= {high}, got {v}")


def to_dict(cfg: Any) -> dict:
    """A dataclass config as plain data (the inverse of `parse`)."""
    return dataclasses.asdict(cfg)


class _Loader(yaml.SafeLoader):
    """The safe loader, reading `1e-3` as a number as YAML 1.2 does (1.1 wants `1.0e-3`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(path: str) -> Any:
    """Read YAML safely; syntax errors become a one-line ConfigError."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError("", "file not found", path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{where}YAML syntax error: {problem}", path) from None


Activation = Literal["relu", "tanh", "gelu", "silu", "elu", "sigmoid"]


@dataclass(frozen=True)
class MLPConfig:
    """A multilayer perceptron: `depth` hidden layers of `width` units (depth 0 = linear)."""

    width: int = field(default=16, metadata=bounds(1))
    depth: int = field(default=1, metadata=bounds(0))


@dataclass(frozen=True)
class ModelConfig:
    family: Literal["hyper", "embedding", "standard"] = "hyper"
    primary: MLPConfig = MLPConfig()
    conditioner: MLPConfig = MLPConfig(width=64, depth=2)
    embedding_dim: int = field(default=16, metadata=bounds(1))
    activation: Activation = "relu"
    bias: bool = True
    primary_bias: bool | None = None  # None: same as `bias`; the paper's rotation g has none


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=30, metadata=bounds(1))
    batch_size: int = field(default=64, metadata=bounds(1))  # instances per step
    lr: float = field(default=3e-3, metadata=bounds(0, open_low=True))
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = field(default=0.0, metadata=bounds(0, 1))
    weight_decay: float = field(default=0.0, metadata=bounds(0))
    schedule: Literal["constant", "cosine"] = "cosine"
    seed: int = field(default=0, metadata=bounds(0))
    seeds: int = field(default=1, metadata=bounds(1))  # replicas trained as one vectorised model
    device: str = "auto"
    threads: int | None = field(default=None, metadata=bounds(1))
    max_params: int | None = field(default=None, metadata=bounds(1))

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError("device", f"must be auto, cpu or cuda[:N], got {self.device!r}")


@dataclass(frozen=True)
class RunConfig:
    """One training run: a task, a model and how to train it."""

    task: Any  # the task's own Config dataclass (see hypersweep.tasks)
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
