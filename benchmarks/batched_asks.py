"""`batched_asks`: trials the search needs when it asks 8 at a time (trial packing) vs one at a time.

Trial packing trains up to K Optuna trials of one study as one stacked model, so the
searcher asks K proposals (`Search.ask_batch`), trains them together and only then tells
their results: the proposals of a batch are made without the results of one another. On
the tabulated benchmark of `search_efficiency` (same table, same target, same cap), each
repetition replays the project's search twice with one sampler seed: asking one trial at
a time (batch 1, as a sweep without packing does) and asking batches of BATCH. Trials
count one by one, so an answer that is the 3rd trial of the 4th batch counts 27.

The goal is that batches need at most 1.25x the trials of one at a time: the ratio is
sequential / batched, met from 0.8. A batch is one training round, so `batched_rounds`
(batches to the answer) is what packing makes the wall time of a search proportional to.
"""
from __future__ import annotations

import math
import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from benchmarks.measure import Result, Size, compare
from benchmarks.search_efficiency import MAX_TRIALS, SPACE, TABLE
from hypersweep import search_space
from hypersweep.tabulated import median_trials, trials_to_find

# (repetitions, searches in parallel): a replay takes 0.1-30 s, the medians need many
SIZES = {"tiny": (2, 1), "quick": (20, 2), "full": (40, 2)}
BATCH = 8  # trials per pack
GOAL = 1 / 1.25  # sequential / batched: batches may need at most 1.25x the trials


def run(size: Size) -> Result:
    repetitions, jobs = SIZES[size]
    spec = search_space.load(str(SPACE))
    table = pd.read_parquet(TABLE)
    (study,) = spec.studies
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {batch: [pool.submit(trials_to_find, spec, study, table, seed=seed, max_trials=MAX_TRIALS,
                                       batch=batch) for seed in range(repetitions)] for batch in (BATCH, 1)}
        costs = {batch: [f.result() for f in fs] for batch, fs in futures.items()}
    batched, sequential = median_trials(costs[BATCH]), median_trials(costs[1])
    rounds = statistics.median(math.inf if c is None else math.ceil(c / BATCH) for c in costs[BATCH])
    return compare(batched, sequential, "trials", sequential / batched, GOAL, repetitions=repetitions, batch=BATCH,
                   found=sum(c is not None for c in costs[BATCH]),
                   sequential_found=sum(c is not None for c in costs[1]), batched_rounds=rounds)
