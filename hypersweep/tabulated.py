"""Tabulated benchmarks: train every grid point of a search space once, then replay searches.

    python -m hypersweep.tabulated build SPACE.yaml TABLE.parquet [--jobs N]
    python -m hypersweep.tabulated replay SPACE.yaml TABLE.parquet [--sampler NAME] [--repetitions N] [--jobs N]
                                          [--batch K]

A table has one row per grid point of each study (family and variant) of a search space.
`replay` runs the space's own Optuna search against it, looking results up instead of
training, so comparing samplers over many seeds costs seconds. The ground truth for an
error target is the smallest architecture in the table whose search metric meets it; a
search has found it when it tries an architecture that meets the target and is at most
10% larger.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import multiprocessing
import statistics
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import optuna
import pandas as pd

from hypersweep import search_space
from hypersweep.config import ConfigError
from hypersweep.search import Exhausted, Search, make_sampler, model_count
from hypersweep.search_space import StudySpace, SweepSpec, grid_space
from hypersweep.tasks import Task, build_task, load_config
from hypersweep.train import train
from hypersweep.vocab import FOUND_AT_ATTR, OK

TOLERANCE = 1.1  # "found" = meets the target with at most 10% more parameters than the smallest
METRICS = ("status", "val_error", "test_error", "params_primary", "params_conditioner", "params_total", "wall_s")


def config_key(config: dict) -> str:
    """A digest of a plain run config: a table row is valid only for the exact config it trained."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def grid_points(space: StudySpace) -> list[dict[str, Any]]:
    """Every point of a study's grid, as {searched key: value}."""
    grid = grid_space(space)
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


@functools.lru_cache(maxsize=4)
def _task(task_cfg: Any) -> Task:
    return build_task(task_cfg)


def _train_point(space: StudySpace, values: dict[str, Any], threads: int | None) -> dict[str, Any]:
    config = space.config(values)
    cfg = load_config(config)
    if threads:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=threads))
    result = train(cfg, task=_task(cfg.task))
    return {"study": space.study, "family": space.family, "variant": space.label, "key": config_key(config),
            **{f"config.{k}": v for k, v in values.items()}, **{k: result[k] for k in METRICS}}


def build(spec: SweepSpec, jobs: int = 1, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Train every grid point of every study of `spec`, `jobs` at a time (one torch thread each)."""
    work = [(space, values) for space in spec.studies for values in grid_points(space)]
    if jobs == 1:
        return _collect((_train_point(space, values, None) for space, values in work), len(work), log)
    # spawn, not fork: a forked child would inherit the parent's OpenMP thread pool.
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        spaces, points = zip(*work, strict=True)
        return _collect(pool.map(_train_point, spaces, points, itertools.repeat(1)), len(work), log)
    finally:
        pool.shutdown(cancel_futures=True)


def _collect(rows: Iterable[dict[str, Any]], total: int, log: Callable[[str], None]) -> pd.DataFrame:
    table = []
    for row in rows:
        table.append(row)
        log(f"[{len(table)}/{total}] {row['study']} {row['status']} {row['val_error']:.4g} "
            f"params_primary {row['params_primary']}")
    return pd.DataFrame(table)


def smallest_meeting(rows: pd.DataFrame, metric: str, count: str, target: float) -> int:
    """The smallest `count` among ok rows whose `metric` is at most `target`."""
    meets = rows[(rows["status"] == OK) & (rows[metric] <= target)]
    if meets.empty:
        raise ValueError(f"no architecture in the table reaches {metric} <= {target}")
    return int(meets[count].min())


def replay(spec: SweepSpec, space: StudySpace, table: pd.DataFrame, sampler: str | None = None, seed: int = 0,
           max_trials: int | None = None, skip_larger: bool = True, batch: int = 1) -> optuna.Study:
    """One search of `space` against the table, as an in-memory Optuna study.

    The search is the space's own: the sampler from `hypersweep.search.make_sampler` (`sampler`
    swaps its name, `seed` its seed) and the objective as a sweep tells it. It stops at
    the first architecture that meets the tightest target with at most 10% more parameters
    than the smallest one that does, and records that trial count as the study's user
    attribute `found_at`; it gives up after `max_trials` (default: the grid size). As in a
    sweep, a proposal of an architecture already tried, or (constrained objective) no
    smaller than one known to meet the target, is not tried and does not count as a trial
    (`hypersweep.search.Search.ask`); `skip_larger=False` tries the latter, as a plain
    search would.

    `batch` > 1 replays trial packing: it asks `batch` trials at once (`Search.ask_batch`),
    tells them all in the order asked, then asks the next batch. Trials still count one by
    one: an answer that is the 3rd of the 4th batch of 8 is found at 3 * 8 + 3 = 27, and the
    study also holds the rest of that batch (trained in the same pack).
    """
    o = spec.objective
    target = o.error_targets[-1]
    rows = table[table["study"] == space.study].set_index("key")
    best = smallest_meeting(rows, o.metric, o.count, target)
    found = rows.index[(rows["status"] == OK) & (rows[o.metric] <= target) & (rows[o.count] <= TOLERANCE * best)]
    swapped = dataclasses.replace(spec.sampler, name=sampler or spec.sampler.name, seed=seed)
    study = optuna.create_study(
        directions=["minimize", "minimize"] if o.type == "pareto" else ["minimize"],
        sampler=make_sampler(dataclasses.replace(spec, sampler=swapped), space, spec.trials(space)),
    )
    search = Search(study, space, o, model_count(spec, space) if skip_larger else None)
    limit, number, found_at = max_trials or space.grid_size(), 0, None
    while number < limit and found_at is None:
        try:
            asked = search.ask_batch(min(batch, limit - number))
        except Exhausted:  # nothing left worth trying: the replay gives up
            break
        for trial in asked:
            number += 1
            key = config_key(space.config(trial.params))
            if key not in rows.index:
                raise KeyError(f"{space.study} {trial.params}: not in the table (was it built from this space?)")
            row = rows.loc[key]
            search.tell(trial, row["status"], {k: row[k] for k in METRICS if k in row})
            if key in found and found_at is None:
                found_at = number
    if found_at is not None:
        study.set_user_attr(FOUND_AT_ATTR, found_at)
    return study


def trials_to_find(spec: SweepSpec, space: StudySpace, table: pd.DataFrame, sampler: str | None = None,
                   seed: int = 0, max_trials: int | None = None, skip_larger: bool = True,
                   batch: int = 1) -> int | None:
    """Trials one `replay` needed to find the answer, or None if it gave up."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per study and trial otherwise
    try:
        study = replay(spec, space, table, sampler, seed, max_trials, skip_larger, batch)
        return study.user_attrs.get(FOUND_AT_ATTR)
    finally:
        optuna.logging.set_verbosity(verbosity)


def search_cost(spec: SweepSpec, space: StudySpace, table: pd.DataFrame, repetitions: int = 20,
                sampler: str | None = None, max_trials: int | None = None, skip_larger: bool = True,
                jobs: int = 1, batch: int = 1) -> list[int | None]:
    """`trials_to_find` for seeds 0 .. repetitions - 1, `jobs` searches at a time."""
    find = functools.partial(trials_to_find, spec, space, table, sampler, max_trials=max_trials,
                             skip_larger=skip_larger, batch=batch)
    if jobs == 1:
        return [find(seed) for seed in range(repetitions)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(find, range(repetitions)))


def median_trials(costs: list[int | None]) -> float:
    """The median number of trials, a search that never found it counting as infinitely many."""
    return statistics.median(math.inf if c is None else c for c in costs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hypersweep.tabulated", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="train every grid point and write the table")
    b.add_argument("space")
    b.add_argument("table")
    b.add_argument("--jobs", type=int, default=1, help="trainings in parallel, one torch thread each")
    r = commands.add_parser("replay", help="how many trials each study's search needs, from the table")
    r.add_argument("space")
    r.add_argument("table")
    r.add_argument("--sampler", choices=["tpe", "nsga2", "random"], help="instead of the space's sampler")
    r.add_argument("--repetitions", type=int, default=20)
    r.add_argument("--jobs", type=int, default=1, help="searches in parallel")
    r.add_argument("--batch", type=int, default=1, metavar="K",
                   help="ask K trials at once and tell them together, as trial packing does")
    args = parser.parse_args(argv)
    try:
        spec = search_space.load(args.space)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "build":
        build(spec, args.jobs).to_parquet(args.table, index=False)
        return 0
    table = pd.read_parquet(args.table)
    for space in spec.studies:
        costs = search_cost(spec, space, table, args.repetitions, args.sampler, jobs=args.jobs, batch=args.batch)
        found = sum(c is not None for c in costs)
        print(f"{space.study}: median {median_trials(costs):g} trials (found in {found}/{len(costs)}): {costs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
