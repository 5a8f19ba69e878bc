"""Reading one sweep's output directory, and the command-line plumbing every analysis script shares.

Every script answers what it can and names what it cannot: when something the answer needs
is missing (no sweep in OUT, a corrupt Parquet file, a family without an ok trial or meeting
none of the targets, no learning curves), it prints one line on stderr saying what, and exits
2. Whatever could be answered is still printed and written first.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hypersweep.config import ConfigError
from hypersweep.frontier import DEFAULT_TARGETS
from hypersweep.results import TMP_PREFIX, load_epochs, load_trials
from hypersweep.search_space import Objective, SweepSpec, load
from hypersweep.vocab import FAMILIES, OK

MISSING_EXIT = 2  # the exit code of an answer with something missing


class Missing(Exception):
    """What the data lack to answer: printed as one line on stderr, exit 2."""


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
        """The learning curves; Missing when OUT has none."""
        if not any(parquet_files(self.out / "epochs")):
            raise Missing(f"{self.out}: no learning curves (expected {self.out}/epochs/family=*/*.parquet)")
        return load_epochs(str(self.out))

    def epochs_or_note(self, missing: list[str], without: str) -> pd.DataFrame | None:
        """The learning curves, or None with a line in `missing` saying what was not checked `without` them."""
        try:
            return self.epochs()
        except Missing as err:
            missing.append(f"{err}, so {without}")
            return None

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


def parquet_files(folder: Path) -> list[Path]:
    """The finished Parquet files under `folder` (a file being written starts with TMP_PREFIX)."""
    return [p for p in sorted(folder.rglob("*.parquet")) if not p.name.startswith(TMP_PREFIX)]


def check_readable(folder: Path) -> None:
    """Missing naming the first file under `folder` that is not readable Parquet.

    The dataset reader skips such a file without a word, so an analysis would silently answer
    from the other trials; reading each file's footer is cheap enough to check them all.
    """
    for path in parquet_files(folder):
        try:
            pq.read_metadata(path)
        except (OSError, pa.ArrowException) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise Missing(f"{path}: not a readable Parquet file ({reason}); move it aside to analyse the rest"
                          ) from None


def open_sweep(out: str) -> Sweep:
    """Read OUT's trials and search space; Missing when there are no trials to read or a file is corrupt."""
    path = Path(out)
    if not path.is_dir():
        raise Missing(f"{out}: no such directory")
    if not parquet_files(path / "trials"):
        raise Missing(f"{out}: no trial results (expected {out}/trials/family=*/*.parquet)")
    for kind in ("trials", "epochs"):
        check_readable(path / kind)
    spec = None
    try:
        spec = load(str(path / "space.yaml"), build_tasks=False)
    except ConfigError as err:  # information, not a failure: stderr is kept for what is missing
        print(f"note: {err}; using the default objective ({Objective.metric} <= target, {Objective.count})")
    try:
        trials = load_trials(out)
    except (OSError, pa.ArrowException) as err:
        raise Missing(f"{out}/trials: cannot be read ({str(err).splitlines()[0]})") from None
    return Sweep(path, trials, spec)


def without_ok_trials(trials: pd.DataFrame, families: tuple[str, ...] = FAMILIES) -> list[str]:
    """One line per family (and variant) among `families` that has trials but none finished ok."""
    lines = []
    for (variant, family), group in trials[trials["family"].isin(families)].groupby(["variant", "family"], sort=False):
        if not (group["status"] == OK).any():
            statuses = ", ".join(f"{n} {s}" for s, n in group["status"].value_counts().items())
            lines.append(f"no ok trial of {family}{f' ({variant})' if variant else ''} ({statuses})")
    return lines


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


def run(body: Callable[[], list[str]]) -> int:
    """Run a script's body, which returns what it found missing; one line on stderr and exit 2 if anything was."""
    try:
        missing = body()
    except Missing as err:
        missing = [str(err)]
    if missing:
        print(f"error: {'; '.join(missing)}", file=sys.stderr)
        return MISSING_EXIT
    return 0
