"""One sweep's output directory as the analyses read it, and the command-line plumbing they share."""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hypersweep.config import ConfigError
from hypersweep.results import load_epochs, load_trials
from hypersweep.search_space import FAMILIES, Objective, SweepSpec, load

DEFAULT_TARGETS = [0.1, 0.01]  # what hypersweep.launch reads the frontier at when the objective names none


class NoSweep(Exception):
    """OUT holds no sweep results: the script exits 2."""


class NoAnswer(Exception):
    """The results cannot answer the question: the script prints this one line and exits 1."""


@dataclass(frozen=True)
class Sweep:
    out: Path
    trials: pd.DataFrame
    spec: SweepSpec | None  # None when OUT has no readable space.yaml

    @property
    def objective(self) -> Objective:
        return self.spec.objective if self.spec else Objective()

    @property
    def experiment(self) -> str:
        return str(self.trials["experiment"].iloc[0])

    @property
    def task(self) -> str:
        return str(self.trials["config.task.name"].iloc[0])

    def targets(self, given: list[float] | None = None) -> list[float]:
        """Error targets, largest first: `given`, else the objective's, else DEFAULT_TARGETS."""
        return sorted(given or self.objective.error_targets or DEFAULT_TARGETS, reverse=True)

    def epochs(self) -> pd.DataFrame:
        return load_epochs(str(self.out))

    def path(self, name: str, folder: str = "analysis") -> Path:
        """OUT/<folder>/<name>, creating the folder."""
        (self.out / folder).mkdir(parents=True, exist_ok=True)
        return self.out / folder / name

    def save(self, table: pd.DataFrame, name: str, folder: str = "analysis") -> Path:
        """Write `table` as OUT/<folder>/<name>.parquet and .csv; return the Parquet path."""
        parquet = self.path(f"{name}.parquet", folder)
        table.to_parquet(parquet, index=False)
        table.to_csv(parquet.with_suffix(".csv"), index=False)
        return parquet


def variant_order(labels) -> list[str]:
    """Distinct variant labels with their numbers compared as numbers (dim_i=2 before dim_i=10)."""
    def key(label: str) -> list:
        return [float(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+(?:\.\d+)?)", label))]
    return sorted(set(labels), key=key)


def ordered(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by variant (numbers as numbers), then family as hyper, embedding, standard; stable otherwise."""
    rank = {"variant": {v: i for i, v in enumerate(variant_order(table.get("variant", [])))},
            "family": {f: i for i, f in enumerate(FAMILIES)}}
    keys = [k for k in rank if k in table]
    return table.sort_values(keys, key=lambda column: column.map(rank[column.name]), kind="stable", ignore_index=True)


def drop_blank_variant(table: pd.DataFrame) -> pd.DataFrame:
    """`table` without its variant column when the sweep has no variants (every label empty)."""
    return table if table["variant"].astype(bool).any() else table.drop(columns="variant")


def open_sweep(out: str) -> Sweep:
    """Read OUT's trials and search space; NoSweep when there are no trials to read."""
    path = Path(out)
    if not path.is_dir():
        raise NoSweep(f"{out}: no such directory")
    if not any((path / "trials").rglob("*.parquet")):
        raise NoSweep(f"{out}: no trial results (expected {out}/trials/family=*/*.parquet)")
    spec = None
    try:
        spec = load(str(path / "space.yaml"), build_tasks=False)
    except ConfigError as err:
        print(f"note: {err}; using the default objective ({Objective.metric} <= target, {Objective.count})",
              file=sys.stderr)
    return Sweep(path, load_trials(out), spec)


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser taking OUT, described by the first line of the module docstring."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=(doc or "").splitlines()[0])
    p.add_argument("out", metavar="OUT", help="a sweep's --out directory")
    return p


def add_objective_options(p: argparse.ArgumentParser, report: bool = True) -> None:
    """--targets, --metric, --count and (with `report`) --report, overriding OUT/space.yaml's objective."""
    p.add_argument("--targets", type=targets_list, help="error targets, e.g. 0.1,0.01")
    p.add_argument("--metric", choices=["val_error", "test_error"], help="what a trial must bring under a target")
    if report:
        p.add_argument("--report", choices=["val_error", "test_error"], help="the error the tables report")
    p.add_argument("--count", choices=["params_primary", "params_total"], help="the size that is minimised")


def objective(sweep: Sweep, args: argparse.Namespace) -> tuple[str, str, str]:
    """(metric, report, count): the command-line overrides, else the sweep's objective."""
    o = sweep.objective
    return args.metric or o.metric, getattr(args, "report", None) or o.report, args.count or o.count


def targets_list(text: str) -> list[float]:
    try:
        targets = [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if any(not 0 < t <= 1 for t in targets):
        raise argparse.ArgumentTypeError(f"targets must lie in (0, 1], got {text!r}")
    return targets


def run(body: Callable[[], None]) -> int:
    """Run a script's body, turning NoSweep and NoAnswer into one line and an exit code."""
    try:
        body()
    except NoSweep as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NoAnswer as err:
        print(err)
        return 1
    return 0
