"""`search_efficiency`: trials the project's search needs vs random search, on a tabulated benchmark.

The table (`benchmarks/data/tabulated_teacher.parquet`, built from `tabulated_teacher.yaml`
by `python -m hypersweep.tabulated build`) holds every architecture of the space trained
once. Each repetition replays a search with another sampler seed until it tries an
architecture within 10% of the smallest one meeting the target; the figure is the median
number of trials over the repetitions.

Ours is the search a sweep runs: TPE, no proposal trained twice, none trained that is no
smaller than a model already meeting the target. The baseline is random search drawing
without replacement (its repeats would cost nothing either). `random_skipping_larger`
is random search with the project's skips, to show what TPE itself adds.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from benchmarks.measure import Result, Size, compare
from hypersweep import search_space
from hypersweep.tabulated import median_trials, trials_to_find

HERE = Path(__file__).resolve().parent
SPACE = HERE / "tabulated_teacher.yaml"
TABLE = HERE / "data" / "tabulated_teacher.parquet"
# (repetitions, searches in parallel): TPE's proposals cost ~15 ms each, thousands per search
SIZES = {"tiny": (2, 1), "quick": (20, 2), "full": (20, 2)}
MAX_TRIALS = 1000  # a search that has not found it by then counts as never finding it
GOAL = 2.0


SEARCHES = {  # name: how it differs from the space's own search
    "ours": {},
    "random": {"sampler": "random", "skip_larger": False},
    "random_skipping_larger": {"sampler": "random"},
}


def replays(searches: dict[str, dict], repetitions: int, jobs: int) -> tuple[str, dict[str, list[int | None]]]:
    """Trials each search (`tabulated.trials_to_find` options) needed, for seeds 0 .. repetitions - 1,
    and the space's sampler name."""
    spec = search_space.load(str(SPACE))
    table = pd.read_parquet(TABLE)
    (study,) = spec.studies
    # One pool for every search, so the cheap ones fill the gaps between the slow ones.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: [pool.submit(trials_to_find, spec, study, table, seed=seed, max_trials=MAX_TRIALS, **how)
                          for seed in range(repetitions)] for name, how in searches.items()}
        return spec.sampler.name, {name: [f.result() for f in fs] for name, fs in futures.items()}


def run(size: Size) -> Result:
    repetitions, jobs = SIZES[size]
    sampler, costs = replays(SEARCHES, repetitions, jobs)
    mine, theirs = median_trials(costs["ours"]), median_trials(costs["random"])
    return compare(mine, theirs, "trials", theirs / mine, GOAL, repetitions=repetitions, sampler=sampler,
                   found=sum(c is not None for c in costs["ours"]),
                   random_found=sum(c is not None for c in costs["random"]),
                   random_skipping_larger=median_trials(costs["random_skipping_larger"]))
