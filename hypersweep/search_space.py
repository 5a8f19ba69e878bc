"""Search spaces: one YAML file per experiment, validated whole before any compute.

    experiment: quickstart
    task: {name: teacher, dim_x: 2, dim_i: 4}
    model: {activation: tanh}                 # fixed for every family
    train: {batch_size: 64, lr: 0.003}         # fixed for every family
    objective: {type: pareto, metric: val_error, count: params_primary, targets: [0.1, 0.01]}
    sampler: {name: tpe, seed: 0}
    budget: {trials: 12, epochs: 20, max_concurrent: 2, early_stopping: false, max_failures: 2}
    resources: {cpus: 1, gpus: 0}
    families:
      hyper:
        primary: {width: {low: 1, high: 16, log: true}, depth: 1}
        conditioner: {width: 64, depth: {choices: [1, 2]}}
        train: {lr: {low: 0.001, high: 0.01, log: true}}
      embedding: {...}

Under a family, any model or train key is either a fixed value or a range:
`{low, high[, log, step]}` (int when both bounds are ints, else float) or `{choices: [...]}`.
Searched keys are named by their dotted path in the run config (`model.primary.width`).
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from hypersweep.config import ConfigError, RunConfig, bounds, parse, read_yaml
from hypersweep.counts import param_counts
from hypersweep.tasks import Task, build_task, load_config
from hypersweep.vocab import FAMILIES

MODEL_KEYS = {"primary", "conditioner", "embedding_dim", "activation", "bias", "primary_bias"}
RANGE_KEYS = {"low", "high", "log", "step", "choices"}
MAX_GRID = 1_000_000  # Optuna's GridSampler holds the whole grid in memory
MAX_TRIALS = 1_000_000  # trials per study, in budget.trials and --num-samples: far past any sweep's ETA


@dataclass(frozen=True)
class Objective:
    type: Literal["pareto", "constrained"] = "pareto"
    metric: Literal["val_error", "test_error"] = "val_error"  # what the search sees
    report: Literal["val_error", "test_error"] = "test_error"  # what tables report
    count: Literal["params_primary", "params_total"] = "params_primary"
    target: float | None = field(default=None, metadata=bounds(0, 1, open_low=True))
    targets: list[float] | None = field(default=None, metadata=bounds(0, 1, open_low=True))

    def __post_init__(self) -> None:
        if self.type == "constrained" and self.target is None:
            raise ConfigError("target", "the constrained objective needs an error target")

    @property
    def error_targets(self) -> list[float]:
        """Targets the frontier is read at (largest first)."""
        return sorted(set(self.targets or []) | ({self.target} if self.target else set()), reverse=True)


@dataclass(frozen=True)
class Sampler:
    name: Literal["tpe", "nsga2", "random", "grid"] = "tpe"
    seed: int = field(default=0, metadata=bounds(0))
    startup_trials: int | None = field(default=None, metadata=bounds(1))  # tpe; default: trials // 4
    population: int | None = field(default=None, metadata=bounds(2))  # nsga2


@dataclass(frozen=True)
class Budget:
    trials: int | None = field(default=None, metadata=bounds(1, MAX_TRIALS))  # per family; grid: the whole grid
    epochs: int | None = field(default=None, metadata=bounds(1))  # overrides train.epochs
    max_concurrent: int | None = field(default=None, metadata=bounds(1))  # default: as many as fit
    early_stopping: bool | None = None  # ASHA; default: on for constrained, off for pareto
    grace_epochs: int = field(default=2, metadata=bounds(1))
    max_failures: int = field(default=2, metadata=bounds(0))
    max_params: int | None = field(default=None, metadata=bounds(1))  # refuse bigger models
    pack: int | None = field(default=None, metadata=bounds(1))  # trials per pack (1: no packing); default: PACK


# Trials one Tune trial trains as one stacked model by default (hypersweep.packing). On a CPU
# packing does not pay by default (BENCHMARKS.md, trial_packing): the quickstart finished 1.16x
# sooner in packs of 8, while 8 proposals asked before any result need 1.22x the trials to find
# the answer (batched_asks); only spaces of small models gain, and they opt in. A GPU runs a tiny
# model far below its capacity (kernel launches bound a step), so there a pack of many pays by
# design; 64 has not been measured here (benchmarks/gpu_packing.py).
PACK = {"cpu": 1, "gpu": 64}


@dataclass(frozen=True)
class Resources:
    cpus: float = field(default=1.0, metadata=bounds(0, open_low=True))
    gpus: float = field(default=0.0, metadata=bounds(0))


@dataclass(frozen=True)
class Param:
    """One searched key of a family."""

    name: str  # dotted path in the run config
    kind: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def grid(self) -> list:
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise ValueError(self.name)

    def grid_size(self) -> int:
        """len(grid()), without building it."""
        if self.kind == "categorical":
            return len(self.choices)
        return (int(self.high) - int(self.low)) // int(self.step or 1) + 1


@dataclass(frozen=True)
class StudySpace:
    """What one Optuna study searches: a family, under one variant of the experiment."""

    family: str
    variant: dict  # e.g. {"task.dim_i": 4}; empty when the file has no `variants`
    study: str  # the Optuna study name: <experiment>-<family>[-<variant label>]
    base: dict  # the run config with every searched key left out
    params: tuple[Param, ...]
    dims: tuple[int, int, int] | None  # the task's (dim_i, dim_x, dim_out); None unless tasks were built
    points: int | None = None  # points x per instance (what packing's activation cap counts); idem

    @property
    def label(self) -> str:
        return variant_label(self.variant)

    def config(self, values: dict[str, Any]) -> dict:
        """The plain run config for one point of the space."""
        return _assign(self.base, values)

    def grid_size(self) -> int:
        return math.prod(p.grid_size() for p in self.params)


@dataclass(frozen=True)
class SweepSpec:
    experiment: str
    path: str
    task: dict
    objective: Objective
    sampler: Sampler
    budget: Budget
    resources: Resources
    studies: tuple[StudySpace, ...]
    raw: dict  # the file as read, kept with the results

    def trials(self, space: StudySpace) -> int:
        """Trials owed to one study (the whole grid, for the grid sampler)."""
        if self.sampler.name == "grid":
            grid = space.grid_size()
            return min(grid, self.budget.trials or grid)
        return self.budget.trials or 20

    @property
    def pack(self) -> int:
        """Trials per pack: `budget.pack`, else PACK for the trials' device (a GPU when they ask for one)."""
        return self.budget.pack or PACK["gpu" if self.resources.gpus else "cpu"]

    @property
    def early_stopping(self) -> bool:
        if self.budget.early_stopping is None:
            return self.objective.type == "constrained"
        return self.budget.early_stopping


@dataclass(frozen=True)
class _Top:
    experiment: str
    task: dict
    families: dict
    variants: dict = field(default_factory=dict)  # run-config path -> values: one sub-sweep each
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    objective: Objective = Objective()
    sampler: Sampler = Sampler()
    budget: Budget = Budget()
    resources: Resources = Resources()


# What a resumed sweep may change in its space file: how many trials, and how they are scheduled,
# retried and packed. Everything else gives the trials their meaning (hypersweep.launch refuses a change).
RESUMABLE = ("trials", "max_concurrent", "max_failures", "pack")  # keys of `budget`


def meaning(spec: SweepSpec) -> dict:
    """What gives a sweep's trials their meaning, as plain data: the validated space (defaults
    filled in) less RESUMABLE. Canonical: key order, the spelling of numbers (1e-3, 0.001) and a
    default written out or left implicit do not matter."""
    data = {"experiment": spec.experiment, "task": spec.task, "objective": dataclasses.asdict(spec.objective),
            "sampler": dataclasses.asdict(spec.sampler), "resources": dataclasses.asdict(spec.resources),
            "budget": {k: v for k, v in dataclasses.asdict(spec.budget).items() if k not in RESUMABLE},
            "studies": {s.study: {"family": s.family, "variant": s.variant, "base": s.base,
                                  "params": {p.name: dataclasses.asdict(p) for p in s.params}} for s in spec.studies}}
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The dotted path of the first place where two `meaning`s differ (None if they are equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            where = f"{path}.{key}" if path else key
            if key not in a or key not in b:
                return where
            if (found := first_difference(a[key], b[key], where)) is not None:
                return found
        return None
    return None if a == b else path or "(the whole file)"


def variant_label(variant: dict) -> str:
    """`dim_i=4,seed=1`: names a variant in study names, file names and tables.

    Values are user data (a `data_dir` may hold `/` or `..`), so every character but
    letters, digits and `.,=_+-` becomes `_`: a study's files stay inside the sweep's --out.
    """
    label = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in variant.items())
    return re.sub(r"[^A-Za-z0-9.,=_+-]", "_", label)


def load(path: str, build_tasks: bool = True) -> SweepSpec:
    """Read and validate a search-space file, building each task once to check its data.

    `build_tasks=False` skips that (and the parameter cap, which needs the task's sizes): for
    reading back the space of a finished sweep. Every error is a ConfigError naming the file
    and the key.
    """
    try:
        raw = read_yaml(path)
        return _validate(raw, path, build_tasks)
    except ConfigError as err:
        raise err if err.file else err.in_file(path) from None


def _validate(raw: Any, path: str, build_tasks: bool) -> SweepSpec:
    top = parse(_Top, raw)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", top.experiment):  # ASCII: str.isalnum() passes any script's letters
        raise ConfigError("experiment", f"use letters, digits, - and _ only, got {top.experiment!r}")
    if not top.families:
        raise ConfigError("families", f"give at least one of {', '.join(FAMILIES)}")
    for name in top.families:
        if name not in FAMILIES:
            raise ConfigError(f"families.{name}", f"unknown family (expected one of {', '.join(FAMILIES)})")
    studies, labels = [], {}
    for variant in _variants(top.variants):
        if (label := variant_label(variant)) in labels:  # two values that differ only in unsafe characters
            raise ConfigError("variants", f"{labels[label]} and {variant} give the same study name {label!r}")
        labels[label] = variant
        try:
            common = _assign({"task": dict(top.task), "model": dict(top.model), "train": dict(top.train)}, variant)
        except ConfigError as err:
            raise ConfigError(f"variants.{err.key}", err.message) from None
        origin = {k: f"variants.{k}" for k in variant}
        if top.budget.epochs:  # the file's train.epochs must be valid even when the budget overrides it
            _check_run_config(common, origin, "variant", variant)
            common["train"]["epochs"] = top.budget.epochs
        task_cfg = _check_run_config(common, origin, "variant", variant).task
        task = build_task(task_cfg) if build_tasks else None
        for family, body in top.families.items():
            studies.append(_study_space(top, family, body, variant, common, task))
    return SweepSpec(top.experiment, path, top.task, top.objective, top.sampler, top.budget,
                     top.resources, tuple(studies), raw)


def _variants(variants: dict) -> list[dict[str, Any]]:
    """Every variant of the file, as {run-config path: value}: the product over `variants`' keys.

    A key is a run-config path with a list of values (`task.dim_i: [2, 8]`), or a name of
    your own with a list of mappings that set several paths together, so that they vary as
    one (`n: [{task.dim_i: 2, task.train_instances: 1000}, {task.dim_i: 8, ...}]`).
    """
    axes = []
    for key, values in variants.items():
        if not isinstance(key, str):
            raise ConfigError("variants", f"keys are dotted paths such as task.dim_i, got {key!r}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"variants.{key}", "expected a non-empty list of values")
        if all(isinstance(v, dict) for v in values):  # a group of paths that vary together
            axis = []
            for i, group in enumerate(values):
                if not group:
                    raise ConfigError(f"variants.{key}[{i}]", "expected a mapping of run-config paths to values")
                for path in group:
                    _check_variant_path(path, f"variants.{key}[{i}].{path}")
                axis.append(dict(group))
            axes.append(axis)
        else:
            _check_variant_path(key, f"variants.{key}")
            axes.append([{key: v} for v in values])
    return [{k: v for part in combination for k, v in part.items()} for combination in itertools.product(*axes)]


def _check_variant_path(path: Any, where: str) -> None:
    if not isinstance(path, str) or path.split(".")[0] not in ("task", "model", "train"):
        raise ConfigError(where, "must be a task., model. or train. path")


def _assign(cfg: dict, values: dict[str, Any]) -> dict:
    """A deep copy of `cfg` with dotted `values` set in it."""
    cfg = copy.deepcopy(cfg)
    for name, value in values.items():
        *parents, leaf = name.split(".")
        node = cfg
        for depth, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):  # the path runs through a plain value
                where = ".".join(parents[:depth + 1])
                raise ConfigError(name, f"{where} is {node!r}, not a section that can hold {leaf}")
        node[leaf] = value
    return cfg


def _study_space(top: _Top, family: str, body: Any, variant: dict, common: dict, task: Task | None) -> StudySpace:
    where = f"families.{family}"
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ConfigError(where, "expected a mapping of model and train keys")
    base = copy.deepcopy(common)
    base["model"]["family"] = family
    params: list[Param] = []
    origin: dict[str, str] = {}  # run-config path -> where it was written in the file
    for key, value in body.items():
        if key == "train":
            section = "train"
        elif key in MODEL_KEYS:
            section, value = "model", {key: value}
        else:
            expected = ", ".join(sorted(MODEL_KEYS))
            raise ConfigError(f"{where}.{key}", f"unknown key (expected train or one of {expected})")
        _collect(value, section, f"{where}.train" if key == "train" else where, base, params, origin)

    for p in params:
        if top.sampler.name == "grid" and p.kind == "float":
            raise ConfigError(origin[p.name], "a grid needs choices or an int range, not a float range")
    if top.sampler.name == "grid" and (size := math.prod(p.grid_size() for p in params)) > MAX_GRID:
        raise ConfigError(where, f"a grid of {size:,} points; the grid sampler takes at most {MAX_GRID:,}")
    corners = {"low": {p.name: _corner(p, low=True) for p in params},
               "high": {p.name: _corner(p, low=False) for p in params}}
    study = f"{top.experiment}-{family}" + (f"-{variant_label(variant)}" if variant else "")
    dims = (task.dim_i, task.dim_x, task.dim_out) if task else None
    space = StudySpace(family, variant, study, base, tuple(params), dims, task.train.points if task else None)
    for which, values in corners.items():
        cfg = _check_run_config(space.config(values), origin, which, values)
        if which == "high" and top.budget.max_params and task:
            total = param_counts(cfg.model, task.dim_i, task.dim_x, task.dim_out).total
            if total > top.budget.max_params:
                raise ConfigError(where, f"the largest model has {total} parameters, over budget.max_params "
                                         f"{top.budget.max_params}")
    for p in params:  # every categorical choice must be valid on its own
        for choice in p.choices or ():
            _check_run_config(space.config({**corners["low"], p.name: choice}), origin, "choice", {p.name: choice})
    return space


def _collect(value: Any, path: str, where: str, base: dict, params: list, origin: dict) -> None:
    """Walk a family section, moving ranges into `params` and fixed values into `base`."""
    if value == {}:
        raise ConfigError(where, "expected a value, a range {low, high} or {choices: [...]}, got {}")
    if isinstance(value, dict) and value.keys() & {"low", "high", "choices"} and not set(value) <= RANGE_KEYS:
        unknown = sorted(set(map(str, value)) - RANGE_KEYS)[0]
        raise ConfigError(f"{where}.{unknown}", f"unknown key in a range (expected {', '.join(sorted(RANGE_KEYS))})")
    if isinstance(value, dict) and set(value) <= RANGE_KEYS:
        params.append(_param(value, path, where))
        origin[path] = where
        return
    if isinstance(value, dict):
        for key, sub in value.items():
            _collect(sub, f"{path}.{key}", f"{where}.{key}", base, params, origin)
        return
    *parents, leaf = path.split(".")
    node = base
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(where, "expected a mapping")
    node[leaf] = value
    origin[path] = where


def _param(spec: dict, name: str, where: str) -> Param:
    if "choices" in spec:
        extra = set(spec) - {"choices"}
        if extra:
            raise ConfigError(f"{where}.{sorted(extra)[0]}", "not allowed beside choices")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices", "expected a non-empty list")
        if any(not isinstance(c, (str, int, float, bool)) for c in choices):
            raise ConfigError(f"{where}.choices", "choices must be strings, numbers or booleans")
        return Param(name, "categorical", choices=tuple(choices))
    for key in ("low", "high"):
        if key not in spec:
            raise ConfigError(f"{where}.{key}", "a range needs low and high (or give choices)")
        if isinstance(spec[key], bool) or not isinstance(spec[key], (int, float)):
            raise ConfigError(f"{where}.{key}", f"expected a number, got {spec[key]!r}")
    for key in ("low", "high", "step"):  # NaN passes every comparison below; 10**400 is no float
        if spec.get(key) is not None and not isinstance(spec[key], bool) and isinstance(spec[key], (int, float)) \
                and not _finite(spec[key]):
            raise ConfigError(f"{where}.{key}", f"expected a finite number, got {spec[key]!r}")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    kind = "int" if isinstance(low, int) and isinstance(high, int) and not isinstance(step, float) else "float"
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log", f"expected true or false, got {log!r}")
    if low > high:
        raise ConfigError(where, f"empty range: low {low} > high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}.low", f"a log range needs low > 0, got {low}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(f"{where}.step", f"expected a positive number, got {step!r}")
    if step is not None and log:
        raise ConfigError(f"{where}.step", "step and log cannot be combined")
    return Param(name, kind, float(low) if kind == "float" else low, float(high) if kind == "float" else high,
                 log, step)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _corner(p: Param, low: bool) -> Any:
    if p.kind == "categorical":
        numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p.choices)
        return (min if low else max)(p.choices) if numeric else p.choices[0]
    return p.low if low else p.high


def _check_run_config(cfg: dict, origin: dict, which: str, values: dict | None = None) -> RunConfig:
    """Validate one run config, naming the file's key (and the range end) on error."""
    try:
        return load_config(cfg)
    except ConfigError as err:
        key = err.key
        while key and key not in origin:
            key = key.rpartition(".")[0]
        if not key:
            raise
        message = err.message.split(", got")[0]
        if values and err.key in values and not message.startswith("unknown key"):  # a value, not a name, at fault
            raise ConfigError(origin[err.key], f"{which} {values[err.key]!r} {message}") from None
        suffix = err.key[len(key):]
        raise ConfigError(origin[key] + suffix, err.message) from None


def grid_space(space: StudySpace) -> dict[str, list]:
    """The grid of a family for Optuna's GridSampler."""
    return {p.name: p.grid() for p in space.params}
