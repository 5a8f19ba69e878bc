"""Verdicts from resamples: how the rules of analysis.results_page and analysis.assumptions decide.

A rule computes one statistic per bootstrap resample (a slope difference, a size ratio, ...).
A resample in which the statistic cannot be computed (a slope that cannot be fitted, a family
that misses the target) is NaN: it is kept and counts *against* every verdict, so a rule cannot
look surer by dropping the awkward resamples. A claim holds when at least SURE (97.5%) of all
resamples are on its side of the rule's threshold, does not hold when at least 97.5% are on the
other side, and is inconclusive otherwise: the one-sided reading of a 95% percentile interval.
"""
from __future__ import annotations

import numpy as np

HOLDS, FAILS, INCONCLUSIVE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"
LEVEL = 0.95  # coverage of the intervals shown
SURE = 1 - (1 - LEVEL) / 2  # share of resamples on one side needed to decide: 97.5%


def share(draws: np.ndarray, side: str, threshold: float) -> float:
    """Fraction of all resamples strictly above (side='above') or below ('below') `threshold`; NaN counts as neither."""
    draws = np.asarray(draws, float)
    if draws.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        hits = draws > threshold if side == "above" else draws < threshold
    return float(np.mean(hits & ~np.isnan(draws)))


def decide(draws: np.ndarray, threshold: float, holds_when: str = "above") -> str:
    """HOLDS when >= 97.5% of the resamples lie on the `holds_when` side of `threshold`, FAILS when
    >= 97.5% lie on the other side, INCONCLUSIVE otherwise (NaN resamples count against both)."""
    other = "below" if holds_when == "above" else "above"
    if share(draws, holds_when, threshold) >= SURE:
        return HOLDS
    if share(draws, other, threshold) >= SURE:
        return FAILS
    return INCONCLUSIVE


def interval(draws: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of the resamples that could be computed (NaN, NaN when none could).

    Infinite draws (a family that missed a target, so its size is "more than any tried") stay in:
    an interval may end at inf.
    """
    draws = np.asarray(draws, float)
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return np.nan, np.nan
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(draws, [tail, 100 - tail], method="inverted_cdf")
    return float(low), float(high)


def uncomputed(draws: np.ndarray) -> float:
    """Fraction of resamples in which the statistic could not be computed."""
    draws = np.asarray(draws, float)
    return float(np.isnan(draws).mean()) if draws.size else 1.0


def worst(verdicts: list[str]) -> str:
    """Several sub-verdicts into one: FAILS if any fails, HOLDS only if all hold, else INCONCLUSIVE."""
    if not verdicts:
        return INCONCLUSIVE
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE
