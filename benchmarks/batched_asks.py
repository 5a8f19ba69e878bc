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
import statistics

from benchmarks.measure import Result, Size, compare
from benchmarks.search_efficiency import replays
from hypersweep.tabulated import median_trials

# (repetitions, searches in parallel): a replay takes 0.1-30 s, the medians need many
SIZES = {"tiny": (2, 1), "quick": (20, 2), "full": (40, 2)}
BATCH = 8  # trials per pack
GOAL = 1 / 1.25  # sequential / batched: batches may need at most 1.25x the trials


def run(size: Size) -> Result:
    repetitions, jobs = SIZES[size]
    _, costs = replays({"batched": {"batch": BATCH}, "sequential": {"batch": 1}}, repetitions, jobs)
    batched, sequential = median_trials(costs["batched"]), median_trials(costs["sequential"])
    rounds = statistics.median(math.inf if c is None else math.ceil(c / BATCH) for c in costs["batched"])
    return compare(batched, sequential, "trials", sequential / batched, GOAL, repetitions=repetitions, batch=BATCH,
                   found=sum(c is not None for c in costs["batched"]),
                   sequential_found=sum(c is not None for c in costs["sequential"]), batched_rounds=rounds)
