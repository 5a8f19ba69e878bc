"""Verdicts from resamples: how the rules of analysis.results_page and analysis.assumptions decide.

A rule computes one statistic per bootstrap resample (a slope difference, a size ratio, ...).
A resample in which the statistic cannot be computed (a slope that cannot be fitted, a family
that misses the target) is NaN: it is kept and counts *against* every verdict, so a rule cannot
look surer by dropping the awkward resamples. A claim holds when at least SURE (97.5%) of all
resamples are on its side of the rule's threshold, does not hold when at least 97.5% are on the
other side, and is inconclusive otherwise: the one-sided reading of a 95% percentile interval.

A share read off B resamples carries Monte Carlo error, sqrt(s (1 - s) / B): another resampling
seed moves it by about that much. So a share decides only when it clears 97.5% by MC_MARGIN (3)
of its Monte Carlo standard errors; one within that margin of the level is inconclusive, and a
verdict does not flip with the resampling seed (`python -m analysis.results_page --seed N`).
A fourth verdict, NOT_TESTED, belongs to no resampling: a rule returns it when the design of the
experiment cannot decide the claim, whatever its data (each rule says when).
"""
from __future__ import annotations

import numpy as np

HOLDS, FAILS, INCONCLUSIVE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"
NOT_TESTED = "not tested"
LEVEL = 0.95  # coverage of the intervals shown
SURE = 1 - (1 - LEVEL) / 2  # share of resamples on one side needed to decide: 97.5%
MC_MARGIN = 3.0  # Monte Carlo standard errors by which a share must clear SURE to decide


def mc_error(fraction: float, samples: int) -> float:
    """The Monte Carlo standard error of a share of `samples` resamples."""
    return float(np.sqrt(fraction * (1 - fraction) / samples)) if samples else np.nan


def share_text(draws: np.ndarray, side: str, threshold: float) -> str:
    """'97.3% ± 0.2% (Monte Carlo error) of 10,000 resamples'."""
    draws = np.asarray(draws, float)
    fraction = share(draws, side, threshold)
    return f"{fraction:.1%} ± {mc_error(fraction, draws.size):.1%} (Monte Carlo error) of {draws.size:,} resamples"


def share(draws: np.ndarray, side: str, threshold: float) -> float:
    """Fraction of all resamples strictly above (side='above') or below ('below') `threshold`; NaN counts as neither."""
    draws = np.asarray(draws, float)
    if draws.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        hits = draws > threshold if side == "above" else draws < threshold
    return float(np.mean(hits & ~np.isnan(draws)))


def decide(draws: np.ndarray, threshold: float, holds_when: str = "above") -> str:
    """HOLDS when the share of resamples on the `holds_when` side of `threshold` clears 97.5% by
    MC_MARGIN Monte Carlo errors, FAILS when the share on the other side does, INCONCLUSIVE otherwise
    (NaN resamples count against both)."""
    draws = np.asarray(draws, float)
    other = "below" if holds_when == "above" else "above"
    for side, verdict in ((holds_when, HOLDS), (other, FAILS)):
        fraction = share(draws, side, threshold)
        if fraction - MC_MARGIN * mc_error(fraction, draws.size) >= SURE:
            return verdict
    return INCONCLUSIVE


def within_mc_error(draws: np.ndarray, threshold: float) -> bool:
    """Whether either side's share is within MC_MARGIN Monte Carlo errors of 97.5%: too close to call."""
    draws = np.asarray(draws, float)
    return any(abs(f - SURE) < MC_MARGIN * mc_error(f, draws.size)
               for f in (share(draws, "above", threshold), share(draws, "below", threshold)))


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
    """Several sub-verdicts into one: FAILS if any fails, HOLDS only if all hold, NOT_TESTED if all
    are, else INCONCLUSIVE."""
    if not verdicts:
        return INCONCLUSIVE
    if all(v == NOT_TESTED for v in verdicts):
        return NOT_TESTED
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def across(verdicts: list[str], minimum: int = 1) -> str:
    """Verdicts of independently seeded searches of one experiment into one: HOLDS when every search
    holds and FAILS when every one fails, given at least `minimum` searches; INCONCLUSIVE otherwise
    (the searches disagree, so the spread across them is larger than any one search shows)."""
    if len(verdicts) >= minimum and verdicts and len(set(verdicts)) == 1 and verdicts[0] in (HOLDS, FAILS):
        return verdicts[0]
    return NOT_TESTED if verdicts and all(v == NOT_TESTED for v in verdicts) else INCONCLUSIVE
