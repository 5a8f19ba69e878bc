"""How the smallest model grows with accuracy: the slope of log(min params) against log(1/eps).

    python -m analysis.scaling OUT [--targets 0.1,0.03,0.01] [--grid 12] [--bootstrap 1000] [--seed 0]
                                   [--metric M] [--count C]

Per variant and family, the frontier (hypersweep.frontier.smallest) is read at `--grid`
log-spaced targets spanning that family's Pareto front, from its lowest error to the error
of its smallest model (above that, the frontier is flat only because nothing smaller was
tried), or at `--targets`. Each target gives the smallest trial meeting it, a point (eps,
params) with eps the error that trial reached: a corner of the frontier's staircase, where
it is tight (between corners it overstates the size needed only because no size in between
was tried). Over the targets' points, so corners count by the stretch of targets they
answer, log(params) = a + slope * log(1/eps) is fitted by least squares.

The 95% interval of the slope is a percentile bootstrap (seeded by `--seed`): the family's
trials are resampled with replacement and targets, frontier and fit recomputed, `--bootstrap`
times. A resample cannot do better than the luckiest trials the sweep ran, so with noisy
errors the interval is too narrow (it covered the true exponent 60-87% of the time in
simulated sweeps with 5-10% noise on the errors): read it as a floor on the uncertainty.
The paper predicts an embedding slope that grows with n = dim_i and a hypernetwork slope
that does not. Writes OUT/analysis/scaling.parquet/.csv, scaling.png and, when dim_i
varies, scaling_by_n.png.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.sweep import (
    NoAnswer,
    Sweep,
    add_objective_options,
    drop_blank_variant,
    objective,
    open_sweep,
    ordered,
    parser,
    run,
    variant_order,
)
from hypersweep.frontier import smallest

LEVEL = 0.95  # coverage of the bootstrap interval


def grid(errors: np.ndarray, counts: np.ndarray, points: int) -> np.ndarray:
    """Log-spaced targets [..., points], largest first, spanning each row's Pareto front.

    The front runs from the smallest model's lowest error down to the lowest error of all.
    """
    high = np.where(counts == counts.min(-1, keepdims=True), errors, np.inf).min(-1)
    return np.geomspace(high, errors.min(-1), points, axis=-1)


def frontier_at(errors: np.ndarray, counts: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(count, error) of the smallest trial meeting each target, per row of trials [B, n] and targets [B, T].

    NaN where no trial meets a target. Ties in count go to the lower error, as in
    hypersweep.frontier.smallest, of which this is the vectorised twin: smallest() takes
    ~10 ms a call, too slow for a thousand resamples per family.
    """
    order = np.argsort(errors, axis=-1, kind="stable")
    errors, counts = np.take_along_axis(errors, order, -1), np.take_along_axis(counts, order, -1).astype(float)
    best = np.minimum.accumulate(counts, axis=-1)
    # Where the running minimum was last lowered: the first, so lowest-error, trial of the smallest count.
    lowered = np.concatenate([np.ones_like(best[:, :1], bool), counts[:, 1:] < best[:, :-1]], axis=-1)
    where = np.maximum.accumulate(np.where(lowered, np.arange(counts.shape[-1]), 0), axis=-1)
    meeting = (errors[:, None, :] <= targets[:, :, None]).sum(-1)  # [B, T] trials meeting each target
    chosen = np.take_along_axis(where, np.maximum(meeting - 1, 0), -1)
    found = meeting > 0
    return (np.where(found, np.take_along_axis(counts, chosen, -1), np.nan),
            np.where(found, np.take_along_axis(errors, chosen, -1), np.nan))


def fit_lines(errors: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slope, intercept) of log(count) = intercept + slope * log(1/error), per row, skipping NaN.

    Counts are exact and errors noisy, so log(1/error) is regressed on log(count) by least
    squares and the line inverted: the other way round, noise in the regressor would flatten
    the slope. A row with fewer than two distinct counts has no slope: NaN.
    """
    x, y = np.log(counts), np.log(1 / errors)
    used = np.isfinite(x)
    x_mean = np.where(used, x, 0).sum(-1) / np.maximum(used.sum(-1), 1)
    y_mean = np.where(used, y, 0).sum(-1) / np.maximum(used.sum(-1), 1)
    dx, dy = np.where(used, x - x_mean[:, None], 0), np.where(used, y - y_mean[:, None], 0)
    # Compared on the counts themselves: equal logs can differ from their mean by rounding.
    distinct = np.fmax.reduce(counts, axis=-1) > np.fmin.reduce(counts, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):  # rows without two counts are NaN by design
        slope = np.where(distinct, (dx * dx).sum(-1) / (dx * dy).sum(-1), np.nan)
    return slope, x_mean - slope * y_mean


def family_frontier(mine: pd.DataFrame, metric: str, count: str, targets: list[float] | None,
                    points: int) -> pd.DataFrame:
    """One family's frontier at the given targets, or at its own grid: one row per target met."""
    if mine.empty:
        return pd.DataFrame(columns=["variant", "family", "target", count, metric, "trial"])
    read_at = targets or list(grid(mine[metric].to_numpy(), mine[count].to_numpy(), points))
    table = smallest(mine, read_at, metric, metric, count)
    return table[table["found"]][["variant", "family", "target", count, metric, "trial"]]


def bootstrap(errors: np.ndarray, counts: np.ndarray, targets: list[float] | None, points: int, samples: int,
              seed: int) -> np.ndarray:
    """Slopes of `samples` resamples (with replacement) of one family's trials, those that could be fitted."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(errors), size=(samples, len(errors)))
    errors, counts = errors[pick], counts[pick]
    read_at = np.tile(targets, (samples, 1)) if targets else grid(errors, counts, points)
    sizes, reached = frontier_at(errors, counts, read_at)
    slopes = fit_lines(reached, sizes)[0]
    return slopes[np.isfinite(slopes)]


def fit(trials: pd.DataFrame, metric: str, count: str, targets: list[float] | None = None, points: int = 12,
        samples: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fits, frontier points): a fit row per variant and family, its slope NaN when it could not be fitted."""
    ok = trials[trials["status"] == "ok"].dropna(subset=[metric])
    rows, frontiers = [], []
    for (variant, family), group in trials.groupby(["variant", "family"], sort=False):
        mine = ok[(ok["variant"] == variant) & (ok["family"] == family)]
        frontier = family_frontier(mine, metric, count, targets, points)
        slope, intercept = fit_lines(frontier[metric].to_numpy(float)[None], frontier[count].to_numpy(float)[None])
        row = {"variant": variant, "family": family, "trials": len(mine), "targets": len(frontier),
               "distinct": frontier[count].nunique(), "eps_high": frontier[metric].max(),
               "eps_low": frontier[metric].min(), "slope": slope[0], "slope_low": np.nan,
               "slope_high": np.nan, "intercept": intercept[0], "bootstrap": 0}
        if "config.task.dim_i" in group:
            row["dim_i"] = int(group["config.task.dim_i"].iloc[0])
        if np.isfinite(slope[0]) and samples:
            slopes = bootstrap(mine[metric].to_numpy(), mine[count].to_numpy(), targets, points, samples, seed)
            if slopes.size:
                tail = 100 * (1 - LEVEL) / 2
                row.update(slope_low=np.percentile(slopes, tail), slope_high=np.percentile(slopes, 100 - tail))
            row["bootstrap"] = slopes.size
        rows.append(row)
        frontiers.append(frontier)
    return ordered(pd.DataFrame(rows)), pd.concat(frontiers, ignore_index=True)


def skipped(fits: pd.DataFrame) -> list[str]:
    """One line per family (and variant) whose slope could not be fitted."""
    return [f"{r.family}{f' ({r.variant})' if r.variant else ''}: slope not fitted, {r.distinct} distinct "
            f"frontier point{'s' * (r.distinct != 1)} from {r.trials} ok trial{'s' * (r.trials != 1)}"
            for r in fits[fits["slope"].isna()].itertuples()]


def slope_text(fits: pd.DataFrame) -> pd.Series:
    """Each slope with its interval, as '1.29 [0.76, 1.87]' (just '1.29' without a bootstrap)."""
    def text(column: str) -> pd.Series:
        return fits[column].map("{:.2f}".format)

    interval = " [" + text("slope_low") + ", " + text("slope_high") + "]"
    return text("slope") + interval.where(fits["slope_low"].notna(), "")


def by_dim(fits: pd.DataFrame) -> pd.DataFrame | None:
    """Slopes with intervals by n = dim_i (rows) and family (columns), when the variants differ in dim_i only."""
    fitted = fits.dropna(subset=["slope"])
    if "dim_i" not in fitted or fitted["dim_i"].nunique() < 2 or fitted.groupby("dim_i")["variant"].nunique().max() > 1:
        return None
    table = fitted.assign(slope=slope_text(fitted)).pivot(index="dim_i", columns="family", values="slope")
    return table[plots.families(table.columns)].rename_axis(index="n", columns=None).fillna("not fitted")


def format_fits(fits: pd.DataFrame, count: str, samples: int) -> str:
    """The fitted slopes as a text table, with the range of errors each family's fit spans."""
    fitted = fits.dropna(subset=["slope"])
    eps = fitted["eps_high"].map("{:.3g}".format) + ".." + fitted["eps_low"].map("{:.3g}".format)
    table = fitted[["variant", "family", "trials", "targets"]].assign(
        **{"eps range": eps, f"slope [{LEVEL:.0%}]": slope_text(fitted)})
    return (f"Slope of log({count}) against log(1/eps), with a {LEVEL:.0%} percentile bootstrap interval over "
            f"{samples} resamples of the trials:\n{drop_blank_variant(table).to_string(index=False)}")


def plot_fits(fits: pd.DataFrame, frontier: pd.DataFrame, metric: str, count: str, path: Path) -> Path:
    """Frontier points and fitted power laws, log-log, one panel per variant."""
    fig, axes = plots.panels(variant_order(frontier["variant"]), height=4.4)
    for variant, ax in axes.items():
        for family in plots.families(frontier["family"]):
            points = frontier[(frontier["variant"] == variant) & (frontier["family"] == family)]
            line = fits[(fits["variant"] == variant) & (fits["family"] == family)]
            if points.empty:
                continue
            colour, x = plots.COLOURS[family], 1 / points[metric]
            label = plots.LABELS[family]
            if not line.empty and np.isfinite(line["slope"].iloc[0]):
                f = line.iloc[0]
                ends = np.array([x.min(), x.max()])
                ax.plot(ends, np.exp(f["intercept"]) * ends ** f["slope"], color=colour, lw=1.5)
                label += f": slope {slope_text(line).iloc[0]}"
            else:
                label += ": not fitted"
            ax.scatter(x, points[count], color=colour, marker=plots.MARKERS[family], s=18, label=label, zorder=3)
        ax.set(xscale="log", yscale="log", xlabel=f"1 / ε  (ε: {metric.replace('_', ' ')} reached)")
        plots.plain_numbers(ax.xaxis)
        plots.plain_numbers(ax.yaxis)
    next(iter(axes.values())).set_ylabel(f"smallest {plots.COUNT_LABELS[count]} (count)")
    fig.suptitle(f"Smallest model against accuracy: power-law fits, slope [{LEVEL:.0%} interval]", fontsize=10)
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
        interval = [rows["slope"] - rows["slope_low"], rows["slope_high"] - rows["slope"]]
        ax.errorbar(rows["dim_i"] + plots.dodge(family, fitted["dim_i"]), rows["slope"], yerr=interval, capsize=3,
                    color=plots.COLOURS[family], marker=plots.MARKERS[family], label=plots.LABELS[family])
    ax.set(xlabel="n = dim_i (dimension of the instance I)", ylabel=f"slope of log({count}) vs log(1/ε)",
           xticks=sorted(fitted["dim_i"].unique()))
    ax.legend(frameon=False)
    return plots.save(fig, path)


def analyse(sweep: Sweep, args: argparse.Namespace) -> None:
    metric, _, count = objective(sweep, args)
    fits, frontier = fit(sweep.trials, metric, count, args.targets, args.grid, args.bootstrap, args.seed)
    notes = skipped(fits)
    if fits["slope"].isna().all():
        raise NoAnswer("; ".join(notes))
    print("\n".join([format_fits(fits, count, args.bootstrap), *notes]))
    written = [sweep.save(fits, "scaling"), plot_fits(fits, frontier, metric, count, sweep.path("scaling.png"))]
    dims = by_dim(fits)
    if dims is not None:
        print(f"\nSlope by n = dim_i ({LEVEL:.0%} interval):\n{dims.to_string()}")
        written.append(plot_by_dim(fits, count, sweep.path("scaling_by_n.png")))
    print(f"\nwrote {', '.join(p.name for p in written)} (and scaling.csv) in {written[0].parent}")


def main(argv: list[str] | None = None) -> int:
    p = parser("analysis.scaling", __doc__)
    add_objective_options(p, report=False)
    p.add_argument("--grid", type=int, default=12, help="log-spaced targets per family when --targets is not given")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    args = p.parse_args(argv)
    return run(lambda: analyse(open_sweep(args.out), args))


if __name__ == "__main__":
    sys.exit(main())
