"""`search_efficiency`: trials the project's search needs vs random search, on a tabulated benchmark.

The table (`benchmarks/data/tabulated_teacher.parquet`, built from `tabulated_teacher.yaml`
by `python -m hypersweep.tabulated build`) holds every architecture of the space trained
once. Each repetition replays a search with another sampler seed until it tries an
architecture within 10% of the smallest one meeting the target; the figure is the median
number of trials over the repetitions.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.measure import Result, Size, compare
from hypersweep import search_space
from hypersweep.tabulated import median_trials, search_cost

HERE = Path(__file__).resolve().parent
SPACE = HERE / "tabulated_teacher.yaml"
TABLE = HERE / "data" / "tabulated_teacher.parquet"
SIZES = {"tiny": 2, "quick": 20, "full": 20}  # repetitions
MAX_TRIALS = 1000  # a search that has not found it by then counts as never finding it
GOAL = 2.0


def run(size: Size) -> Result:
    repetitions = SIZES[size]
    spec = search_space.load(str(SPACE))
    table = pd.read_parquet(TABLE)
    (study,) = spec.studies
    ours = search_cost(spec, study, table, repetitions, max_trials=MAX_TRIALS)
    baseline = search_cost(spec, study, table, repetitions, sampler="random", max_trials=MAX_TRIALS)
    mine, theirs = median_trials(ours), median_trials(baseline)
    return compare(mine, theirs, "trials", theirs / mine, GOAL, repetitions=repetitions, sampler=spec.sampler.name,
                   found=sum(c is not None for c in ours), random_found=sum(c is not None for c in baseline))
