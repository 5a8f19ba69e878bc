"""Typed configuration of one training run, validated once at the edge.

Every config is a small frozen dataclass. `parse(cls, data)` builds one from plain
YAML/JSON data and raises `ConfigError` naming the dotted key at fault, so a CLI can
print one line (`run.yaml: model.primary.width: must be >= 1, got 0`) and exit 2.
`hypersweep.tasks.load_config(read_yaml(path))` reads and validates a whole run config
(there, because a config's task section is parsed by its task's module).

Every number is checked for its type and bounds, and for being finite: NaN passes
every comparison, so a bound alone would let `lr: .nan` through.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from hypersweep.vocab import Family


class ConfigError(ValueError):
    """A bad configuration value; `str()` is one line naming the key."""

    def __init__(self, key: str, message: str, file: str | None = None):
        super().__init__(key, message, file)
        self.key, self.message, self.file = key, message, file

    def in_file(self, file: str) -> ConfigError:
        return ConfigError(self.key, self.message, file)

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        text = f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"
        return one_line(text)


def one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped (`\\n`).

    Keys and values come from the user's file, and a YAML key may hold a newline; an
    error message must still be the one line the CLIs promise.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)



class ArgumentParser(argparse.ArgumentParser):
    """The CLIs' argparse: a usage error is one line like every other refusal (still exit 2)."""

    def error(self, message: str):
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")  # argparse wraps it at 80 columns
        self.exit(2, f"error: {message} (usage: {usage})\n")


def null_if_nan(value: Any) -> Any:
    """NaN and infinities as None: how JSON (Optuna's user attributes, `--json`) and Parquet spell "no value"."""
    return None if isinstance(value, float) and not math.isfinite(value) else value

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


INT_MIN, INT_MAX = -(2**63), 2**63 - 1


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
        if not INT_MIN <= value <= INT_MAX:
            raise ConfigError(key, f"must fit in 64 bits (torch and Parquet store int64), got {value}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the largest float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(key, f"must be a finite number, got {value}")
        return number
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


class DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping that names a key twice: YAML forbids it, and PyYAML would keep the last silently."""


class _Loader(yaml.SafeLoader):
    """The safe loader, reading `1e-3` as a number as YAML 1.2 does (1.1 wants `1.0e-3`), and refusing
    a key given twice in one mapping (PyYAML keeps the last: a second `budget:` would drop the first)."""

    def construct_mapping(self, node, deep=False):
        first: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden by the keys beside it
            key = (key_node.tag, key_node.value)
            if key in first:
                raise DuplicateKey(None, None, f"duplicate key {key_node.value!r} (first on line {first[key]})",
                                   key_node.start_mark)
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(path: str) -> Any:
    """Read a UTF-8 YAML file safely; any way it cannot be read becomes a one-line ConfigError."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ConfigError("", "file not found", path) from None
    except IsADirectoryError:
        raise ConfigError("", "is a directory, not a YAML file", path) from None
    except OSError as err:
        raise ConfigError("", f"cannot read it: {err.strerror or err}", path) from None
    try:
        # Decoded here rather than by the YAML reader, whose offsets count from its last buffer.
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ConfigError("", f"line {line}: not UTF-8 text (byte 0x{data[err.start]:02x})", path) from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.reader.ReaderError as err:  # a control character: YAML allows printable text only
        line = text[:err.position].count("\n") + 1
        raise ConfigError("", f"line {line}: character #x{err.character:04x} is not allowed in YAML", path) from None
    except DuplicateKey as err:
        raise ConfigError("", f"line {err.problem_mark.line + 1}: {err.problem}", path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{where}YAML syntax error: {problem}", path) from None
    except RecursionError:  # PyYAML builds nested collections recursively
        raise ConfigError("", "nested too deeply to be a config", path) from None
    except (ValueError, OverflowError) as err:  # a tagged or implicit value PyYAML cannot build: 2001-13-45
        raise ConfigError("", f"YAML value error: {err}", path) from None


Activation = Literal["relu", "tanh", "gelu", "silu", "elu", "sigmoid"]


@dataclass(frozen=True)
class MLPConfig:
    """A multilayer perceptron: `depth` hidden layers of `width` units (depth 0 = linear)."""

    width: int = field(default=16, metadata=bounds(1))
    depth: int = field(default=1, metadata=bounds(0))


@dataclass(frozen=True)
class ModelConfig:
    family: Family = "hyper"
    primary: MLPConfig = MLPConfig()
    conditioner: MLPConfig = MLPConfig(width=64, depth=2)
    embedding_dim: int = field(default=16, metadata=bounds(1))
    activation: Activation = "relu"
    bias: bool = True
    primary_bias: bool | None = None  # None: same as `bias`; the paper's rotation g has none

    @property
    def has_primary_bias(self) -> bool:
        """Whether g, q or N has biases: `primary_bias` when set, else `bias`.

        A property rather than resolved at parse time, so `primary_bias` stays as written
        (None) in the results' config columns.
        """
        return self.bias if self.primary_bias is None else self.primary_bias


# More torch threads than any machine has cores only slows training; far more (100000) makes
# the OpenMP runtime fail to create them and crash the process. A fixed cap, not the local
# CPU count, so a config valid on a laptop driver stays valid on a bigger cluster node.
MAX_THREADS = 1024


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
    device: str = "auto"  # auto | cpu | cuda | cuda:N; whether CUDA is there is checked where training runs
    threads: int | None = field(default=None, metadata=bounds(1, MAX_THREADS))
    max_params: int | None = field(default=None, metadata=bounds(1))

    def __post_init__(self) -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class RunConfig:
    """One training run: a task, a model and how to train it."""

    task: Any  # the task's own Config dataclass (see hypersweep.tasks)
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
