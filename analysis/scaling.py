"""How the smallest model grows with accuracy: the slope of log(min size) against log(1/eps).

    python -m analysis.scaling OUT [--targets 0.1,0.03,0.01] [--bootstrap 1000] [--seed 0] [--metric M] [--count C]

Frontier points. A family's frontier is the Pareto front of (size, error) over its ok trials:
each point is the smallest trial meeting an error equal to its own (with --targets, the
smallest trial meeting each target instead). A point flagged training-limited
(hypersweep.frontier: rule (a), the error flat across 10x in size, or rule (b), a learning
curve still falling at the end) is set aside: its size says how well it was trained, not
what capacity its error needs.

Fit. Over the distinct points left, log(size) = a + slope * log(1/eps) by least squares. The
size is the response because it is what the theory predicts for an error (|q| ~ eps^-(m+n)/r).
Beside each slope: the points it rests on, the points set aside, the eps range and the
decades of eps it spans (a slope over less than a decade rests on little).

Interval. A percentile bootstrap: a resample draws the replicates (one per teacher or
training seed, when the sweep has `task.seed` / `train.seed` variants) with replacement,
then each one's trials with replacement, and recomputes front, flags and fit; a family's
slope is the mean over its replicates. A resample in which no slope can be fitted (fewer
than two distinct points) is kept and reported as `unfitted`, never dropped (see
analysis.evidence). Trials are resampled, not replicas: a trial's row holds only its
replicas' mean and spread.

The paper predicts an embedding slope (m+n)/m times the hypernetwork's, growing with n =
dim_i. Writes OUT/analysis/scaling.parquet/.csv, scaling.png and, when dim_i varies,
scaling_by_n.png. A family without an ok trial, a slope that cannot be fitted or missing
learning curves end in one line on stderr and exit 2, after the rest is printed and written.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.evidence import LEVEL, interval, uncomputed
from analysis.loading import (
    Missing,
    Sweep,
    add_objective_options,
    drop_blank_variant,
    objective,
    open_sweep,
    ordered,
    parser,
    run,
    variant_order,
    without_ok_trials,
)
from hypersweep.frontier import flat_evidence, still_falling
from hypersweep.vocab import OK

REPLICATE_KEYS = ("seed",)  # variant keys whose values repeat one condition (teacher or training seed)


@dataclass(frozen=True)
class Replicate:
    """One replicate's ok trials of one family, as arrays."""
    sizes: np.ndarray
    errors: np.ndarray
    falling: np.ndarray  # rule (b) per trial: its learning curve was still falling at the end
    trials: np.ndarray  # trial numbers

    def take(self, pick: np.ndarray) -> Replicate:
        return Replicate(self.sizes[pick], self.errors[pick], self.falling[pick], self.trials[pick])


@dataclass(frozen=True)
class Fits:
    table: pd.DataFrame  # one row per condition and family: the slope and what it rests on
    points: pd.DataFrame  # every frontier point, `used` by the fit or set aside as training-limited
    draws: dict[tuple[str, str], np.ndarray]  # (condition, family) -> bootstrap slopes (NaN: unfitted)


def condition(variant: str) -> str:
    """A variant label without its replicate keys: 'dim_i=4,seed=1' -> 'dim_i=4'."""
    return ",".join(part for part in variant.split(",") if part and part.split("=")[0] not in REPLICATE_KEYS)


def frontier_points(sizes: np.ndarray, errors: np.ndarray, targets: list[float] | None = None) -> np.ndarray:
    """Indices of the frontier points, smallest first: the Pareto front of (size, error), or, with
    `targets`, the distinct smallest trials meeting each target (ties in size go to the lower error)."""
    order = np.lexsort((errors, sizes))
    if targets is None:
        best = np.minimum.accumulate(errors[order])
        return order[np.r_[True, errors[order][1:] < best[:-1]]]
    chosen = [meets[0] for meets in (order[errors[order] <= t] for t in targets) if meets.size]
    return np.array(sorted(set(chosen), key=lambda i: sizes[i]), int)


def capacity_limited(rep: Replicate, points: np.ndarray) -> np.ndarray:
    """Per frontier point, True when neither training-limited rule fires (so the fit may use it)."""
    return np.array([not rep.falling[i] and not flat_evidence(rep.sizes, rep.errors, rep.sizes[i], rep.errors[i])[0]
                     for i in points], bool)


def line(sizes: np.ndarray, errors: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of log(size) = intercept + slope * log(1/error) by least squares.

    NaN with fewer than two distinct points."""
    x, y = np.log(1 / errors), np.log(sizes)
    if len(x) < 2 or np.ptp(x) == 0:
        return np.nan, np.nan
    dx = x - x.mean()
    slope = float((dx * (y - y.mean())).sum() / (dx * dx).sum())
    return slope, float(y.mean() - slope * x.mean())


def fit_replicate(rep: Replicate, targets: list[float] | None) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(slope, intercept, frontier points, which of them the fit used) of one replicate."""
    points = frontier_points(rep.sizes, rep.errors, targets)
    used = capacity_limited(rep, points)
    return (*line(rep.sizes[points[used]], rep.errors[points[used]]), points, used)


def mean_finite(values: list[float]) -> float:
    """A family's slope (or intercept) over its replicates: the mean of those that could be fitted (NaN if none)."""
    fitted = [v for v in values if np.isfinite(v)]
    return float(np.mean(fitted)) if fitted else np.nan


def bootstrap(replicates: list[Replicate], targets: list[float] | None, samples: int,
              rng: np.random.Generator) -> np.ndarray:
    """`samples` resampled slopes: replicates drawn with replacement, then each one's trials."""
    draws = np.full(samples, np.nan)
    for b in range(samples):
        slopes = []
        for r in rng.integers(0, len(replicates), len(replicates)):
            rep = replicates[r]
            slopes.append(fit_replicate(rep.take(rng.integers(0, len(rep.sizes), len(rep.sizes))), targets)[0])
        draws[b] = mean_finite(slopes)
    return draws


def fit(trials: pd.DataFrame, metric: str, count: str, targets: list[float] | None = None, samples: int = 1000,
        seed: int = 0, epochs: pd.DataFrame | None = None) -> Fits:
    """A slope per condition (variant without its seeds) and family, with its bootstrap; NaN when unfitted."""
    ok = trials[trials["status"] == OK].dropna(subset=[metric, count])
    ok = ok.assign(condition=ok["variant"].map(condition), falling=still_falling(ok, epochs))
    rng = np.random.default_rng(seed)
    rows, points, draws = [], [], {}
    conditions = trials.assign(condition=trials["variant"].map(condition))
    for (cond, family), group in conditions.groupby(["condition", "family"], sort=False):
        mine = ok[(ok["condition"] == cond) & (ok["family"] == family)]
        replicates = {variant: Replicate(rep[count].to_numpy(float), rep[metric].to_numpy(float),
                                         rep["falling"].to_numpy(bool), rep["trial"].to_numpy(int))
                      for variant, rep in mine.groupby("variant", sort=True)}
        slopes, intercepts, used_errors, on_front = [], [], [], 0
        for variant, rep in replicates.items():
            slope, intercept, front, used = fit_replicate(rep, targets)
            slopes.append(slope)
            intercepts.append(intercept)
            points.append(pd.DataFrame({"variant": cond, "replicate": variant, "family": family,
                                        "trial": rep.trials[front], count: rep.sizes[front],
                                        metric: rep.errors[front], "used": used}))
            used_errors.append(rep.errors[front[used]])
            on_front += len(front)
        fitted = np.concatenate(used_errors) if used_errors else np.array([])
        row = {"variant": cond, "family": family, "metric": metric, "count": count, "trials": len(mine),
               "replicates": len(replicates), "points": len(fitted), "set_aside": on_front - len(fitted),
               "eps_high": fitted.max() if fitted.size else np.nan, "eps_low": fitted.min() if fitted.size else np.nan,
               "slope": mean_finite(slopes), "intercept": mean_finite(intercepts)}
        row["decades"] = np.log10(row["eps_high"] / row["eps_low"]) if fitted.size else np.nan
        draws[cond, family] = (bootstrap(list(replicates.values()), targets, samples, rng)
                               if samples and np.isfinite(row["slope"]) else np.full(samples, np.nan))
        row["slope_low"], row["slope_high"] = interval(draws[cond, family])
        row["unfitted"] = uncomputed(draws[cond, family]) if samples else np.nan
        for dim in ("dim_i", "dim_x"):
            if f"config.task.{dim}" in group:
                row[dim] = int(group[f"config.task.{dim}"].iloc[0])
        rows.append(row)
    frontier = pd.concat(points, ignore_index=True) if points else pd.DataFrame(
        columns=["variant", "replicate", "family", "trial", count, metric, "used"])
    return Fits(ordered(pd.DataFrame(rows)), frontier, draws)


def skipped(fits: pd.DataFrame) -> list[str]:
    """One line per family (and condition) whose slope could not be fitted."""
    return [f"{r.family}{f' ({r.variant})' if r.variant else ''}: slope not fitted, {r.points} distinct "
            f"capacity-limited frontier point{'s' * (r.points != 1)} ({r.set_aside} set aside as training-limited) "
            f"from {r.trials} ok trial{'s' * (r.trials != 1)}"
            for r in fits[fits["slope"].isna()].itertuples()]


def slope_text(fits: pd.DataFrame) -> pd.Series:
    """Each slope with its interval, as '1.29 [0.76, 1.87]' (just '1.29' without a bootstrap)."""
    def text(column: str) -> pd.Series:
        return fits[column].map("{:.2f}".format)

    interval_text = " [" + text("slope_low") + ", " + text("slope_high") + "]"
    return (text("slope") + interval_text.where(fits["slope_low"].notna(), "")).where(fits["slope"].notna(),
                                                                                       "not fitted")


def by_dim(fits: pd.DataFrame) -> pd.DataFrame | None:
    """Slopes with intervals by n = dim_i (rows) and family (columns), when the conditions differ in dim_i only."""
    fitted = fits.dropna(subset=["slope"])
    if "dim_i" not in fitted or fitted["dim_i"].nunique() < 2 or fitted.groupby("dim_i")["variant"].nunique().max() > 1:
        return None
    table = fitted.assign(slope=slope_text(fitted)).pivot(index="dim_i", columns="family", values="slope")
    return table[plots.families(table.columns)].rename_axis(index="n", columns=None).fillna("not fitted")


def shown(fits: pd.DataFrame) -> pd.DataFrame:
    """The fit table as people read it: what each slope rests on, then the slope and its interval."""
    eps = fits["eps_high"].map("{:.3g}".format) + ".." + fits["eps_low"].map("{:.3g}".format)
    return fits[["variant", "family", "trials", "points", "set_aside"]].assign(
        **{"eps range": eps, "decades": fits["decades"].round(2), f"slope [{LEVEL:.0%}]": slope_text(fits),
           "unfitted": fits["unfitted"].map(lambda u: "-" if pd.isna(u) else f"{u:.0%}")})


def format_fits(fits: pd.DataFrame, count: str, metric: str, samples: int) -> str:
    """The fitted slopes as a text table."""
    fitted = fits.dropna(subset=["slope"])
    return (f"Slope of log({count}) against log(1/eps) over the capacity-limited frontier points of {metric} "
            f"(least squares), with a {LEVEL:.0%} percentile bootstrap interval over {samples} resamples of the "
            f"seeds and trials:\n{drop_blank_variant(shown(fitted)).to_string(index=False)}")


def plot_fits(fits: Fits, metric: str, count: str, path: Path) -> Path:
    """Frontier points (hollow: set aside as training-limited) and fitted power laws, log-log, a panel per condition."""
    table, frontier = fits.table, fits.points
    fig, axes = plots.panels(variant_order(frontier["variant"]), height=4.4)
    for variant, ax in axes.items():
        for family in plots.families(frontier["family"]):
            points = frontier[(frontier["variant"] == variant) & (frontier["family"] == family)]
            row = table[(table["variant"] == variant) & (table["family"] == family)]
            if points.empty:
                continue
            colour, x = plots.COLOURS[family], 1 / points[metric]
            label = plots.LABELS[family]
            if not row.empty and np.isfinite(row["slope"].iloc[0]):
                f = row.iloc[0]
                used = x[points["used"].to_numpy(bool)]
                ends = np.array([used.min(), used.max()])
                ax.plot(ends, np.exp(f["intercept"]) * ends ** f["slope"], color=colour, lw=1.5)
                label += f": slope {slope_text(row).iloc[0]}"
            else:
                label += ": not fitted"
            marker = plots.MARKERS[family]
            used = points["used"].to_numpy(bool)
            ax.scatter(x[used], points[count][used], color=colour, marker=marker, s=18, label=label, zorder=3)
            ax.scatter(x[~used], points[count][~used], facecolors="none", edgecolors=colour, marker=marker, s=18,
                       zorder=3)
        ax.set(xscale="log", yscale="log", xlabel=f"1 / ε  (ε: {metric.replace('_', ' ')} reached)")
        plots.plain_numbers(ax.xaxis)
        plots.plain_numbers(ax.yaxis)
    next(iter(axes.values())).set_ylabel(f"smallest {plots.COUNT_LABELS[count]} (count)")
    fig.suptitle(f"Smallest model against accuracy: power-law fits, slope [{LEVEL:.0%} interval]; "
                 "hollow: set aside as training-limited", fontsize=10)
    for ax in axes.values():  # each panel's slopes are its own, so each gets a legend, below it
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    return plots.save(fig, path)


def plot_by_dim(fits: pd.DataFrame, count: str, path: Path) -> Path:
    """Slope against n = dim_i per family, with bootstrap intervals."""
    fitted = fits.dropna(subset=["slope"])
    fig, axes = plots.panels([""])
    ax = axes[""]
    for family in plots.families(fitted["family"]):
        rows = fitted[fitted["family"] == family].sort_values("dim_i")
        errors = np.array([rows["slope"] - rows["slope_low"], rows["slope_high"] - rows["slope"]]).clip(0)
        ax.errorbar(rows["dim_i"] + plots.dodge(family, fitted["dim_i"]), rows["slope"], yerr=errors, capsize=3,
                    color=plots.COLOURS[family], marker=plots.MARKERS[family], label=plots.LABELS[family])
    ax.set(xlabel="n = dim_i (dimension of the instance I)", ylabel=f"slope of log({count}) vs log(1/ε)",
           xticks=sorted(fitted["dim_i"].unique()))
    ax.legend(frameon=False)
    return plots.save(fig, path)


def analyse(sweep: Sweep, args: argparse.Namespace) -> list[str]:
    metric, _, count = objective(sweep, args)
    missing = without_ok_trials(sweep.trials)
    epochs = sweep.epochs_or_note(missing, "training-limited rule (b) was not applied")
    fits = fit(sweep.trials, metric, count, args.targets, args.bootstrap, args.seed, epochs)
    missing += [line for line in skipped(fits.table) if not line.endswith(" from 0 ok trials")]
    if fits.table["slope"].isna().all():
        raise Missing("; ".join(missing))
    print(format_fits(fits.table, count, metric, args.bootstrap))
    written = [sweep.save(fits.table, "scaling"), plot_fits(fits, metric, count, sweep.path("scaling.png"))]
    dims = by_dim(fits.table)
    if dims is not None:
        print(f"\nSlope by n = dim_i ({LEVEL:.0%} interval):\n{dims.to_string()}")
        written.append(plot_by_dim(fits.table, count, sweep.path("scaling_by_n.png")))
    print(f"\nwrote {', '.join(p.name for p in written)} (and scaling.csv) in {written[0].parent}")
    return missing


def main(argv: list[str] | None = None) -> int:
    p = parser("analysis.scaling", __doc__)
    add_objective_options(p, report=False)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    args = p.parse_args(argv)
    return run(lambda: analyse(open_sweep(args.out), args))


if __name__ == "__main__":
    sys.exit(main())
