"""How the smallest model grows with accuracy: the slope of log(min params) against log(1/eps).

    python -m analysis.scaling OUT [--targets 0.1,0.03,0.01] [--grid 12] [--bootstrap 1000] [--seed 0]
                                   [--metric M] [--count C]

Per variant and family, the frontier (hypersweep.frontier.smallest) is read at `--grid`
log-spaced targets spanning that family's Pareto front, from its lowest error to the error
of its smallest model (above that, the frontier is flat only because nothing smaller was
tried), or at `--targets`; then log(min params) = a + slope * log(1/eps) is fitted by least
squares. The 95% interval of the slope is a percentile bootstrap: the family's trials are
resampled with replacement and targets, frontier and fit recomputed, `--bootstrap` times.
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
from analysis.sweep import (NoAnswer, Sweep, add_objective_options, objective, open_sweep, ordered, parser, run,
                            variant_order)
from hypersweep.frontier import smallest

LEVEL = 0.95  # coverage of the bootstrap interval


def grid(errors: np.ndarray, counts: np.ndarray, points: int) -> np.ndarray:
    """Log-spaced targets [..., points], largest first, spanning each row's Pareto front.

    The front runs from the smallest model's lowest error down to the lowest error of all.
    """
    high = np.where(counts == counts.min(-1, keepdims=True), errors, np.inf).min(-1)
    return np.geomspace(high, errors.min(-1), points, axis=-1)


def min_counts(errors: np.ndarray, counts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The frontier of each row of trials [B, n] at its targets [B, T]: NaN where none meets one.

    The vectorised twin of hypersweep.frontier.smallest, which is ~10 ms a call: too slow for
    a thousand resamples per family.
    """
    order = np.argsort(errors, axis=-1)
    errors = np.take_along_axis(errors, order, -1)
    best = np.minimum.accumulate(np.take_along_axis(counts, order, -1).astype(float), axis=-1)
    meeting = (errors[:, None, :] <= targets[:, :, None]).sum(-1)  # [B, T] trials meeting each target
    found = np.take_along_axis(best, np.maximum(meeting - 1, 0), -1)
    return np.where(meeting > 0, found, np.nan)


def fit_lines(targets: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (slope, intercept) of log(count) on log(1/target), per row, skipping NaN.

    A row with fewer than two distinct counts has no slope to speak of: NaN.
    """
    x, y = np.log(1 / targets), np.log(counts)
    used = np.isfinite(y)
    n = used.sum(-1)
    x_mean = np.where(used, x, 0).sum(-1) / np.maximum(n, 1)
    y_mean = np.where(used, y, 0).sum(-1) / np.maximum(n, 1)
    dx, dy = np.where(used, x - x_mean[:, None], 0), np.where(used, y - y_mean[:, None], 0)
    distinct = np.nanmax(np.where(used, y, -np.inf), -1) > np.nanmin(np.where(used, y, np.inf), -1)
    slope = np.where(distinct, (dx * dy).sum(-1) / np.maximum((dx * dx).sum(-1), 1e-300), np.nan)
    return slope, np.where(distinct, y_mean - slope * x_mean, np.nan)


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
    slopes = fit_lines(read_at, min_counts(errors, counts, read_at))[0]
    return slopes[np.isfinite(slopes)]


def fit(trials: pd.DataFrame, metric: str, count: str, targets: list[float] | None = None, points: int = 12,
        samples: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fits, frontier points): a fit row per variant and family, its slope NaN when it could not be fitted."""
    ok = trials[trials["status"] == "ok"].dropna(subset=[metric])
    rows, frontiers = [], []
    for (variant, family), group in trials.groupby(["variant", "family"], sort=False):
        mine = ok[(ok["variant"] == variant) & (ok["family"] == family)]
        frontier = family_frontier(mine, metric, count, targets, points)
        slope, intercept = fit_lines(frontier["target"].to_numpy(float)[None], frontier[count].to_numpy(float)[None])
        row = {"variant": variant, "family": family, "trials": len(mine), "targets": len(frontier),
               "distinct": frontier[count].nunique(), "target_high": frontier["target"].max(),
               "target_low": frontier["target"].min(), "slope": slope[0], "slope_low": np.nan,
               "slope_high": np.nan, "intercept": intercept[0], "bootstrap": 0}
        if "config.task.dim_i" in group:
            row["dim_i"] = int(group["config.task.dim_i"].iloc[0])
        if np.isfinite(slope[0]) and samples:
            slopes = bootstrap(mine[metric].to_numpy(), mine[count].to_numpy(), targets, points, samples, seed)
            tail = 100 * (1 - LEVEL) / 2
            if slopes.size:
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


def by_dim(fits: pd.DataFrame) -> pd.DataFrame | None:
    """Slopes with intervals by n = dim_i (rows) and family (columns), when the variants differ in dim_i only."""
    fitted = fits.dropna(subset=["slope"])
    if "dim_i" not in fitted or fitted["dim_i"].nunique() < 2 or fitted.groupby("dim_i")["variant"].nunique().max() > 1:
        return None
    text = fitted.assign(slope=[f"{s:.2f} [{lo:.2f}, {hi:.2f}]" for s, lo, hi in
                                fitted[["slope", "slope_low", "slope_high"]].itertuples(index=False)])
    table = text.pivot(index="dim_i", columns="family", values="slope")
    return table[plots.families(table.columns)].rename_axis(index="n", columns=None).fillna("not fitted")


def format_fits(fits: pd.DataFrame, count: str, samples: int) -> str:
    fitted = fits.dropna(subset=["slope"])
    table = pd.DataFrame({
        "variant": fitted["variant"], "family": fitted["family"], "trials": fitted["trials"],
        "targets": fitted["targets"],
        "eps range": [f"{lo:.3g}..{hi:.3g}" for lo, hi in fitted[["target_low", "target_high"]].itertuples(index=False)],
        "slope": fitted["slope"].map("{:.2f}".format),
        f"{LEVEL:.0%} interval": [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in
                                  fitted[["slope_low", "slope_high"]].itertuples(index=False)],
    })
    if not table["variant"].astype(bool).any():
        table = table.drop(columns="variant")
    return (f"Slope of log({count}) against log(1/eps), {LEVEL:.0%} percentile bootstrap interval "
            f"over {samples} resamples of the trials:\n{table.to_string(index=False)}")


def plot_fits(fits: pd.DataFrame, frontier: pd.DataFrame, metric: str, count: str, path: Path) -> Path:
    """Frontier points and fitted power laws, log-log, one panel per variant."""
    fig, axes = plots.panels(variant_order(frontier["variant"]), height=4.4)
    for variant, ax in axes.items():
        for family in plots.families(frontier["family"]):
            points = frontier[(frontier["variant"] == variant) & (frontier["family"] == family)]
            line = fits[(fits["variant"] == variant) & (fits["family"] == family)]
            if points.empty:
                continue
            colour, x = plots.COLOURS[family], 1 / points["target"]
            label = plots.LABELS[family]
            if not line.empty and np.isfinite(line["slope"].iloc[0]):
                f = line.iloc[0]
                ends = np.array([x.min(), x.max()])
                ax.plot(ends, np.exp(f["intercept"]) * ends ** f["slope"], color=colour, lw=1.5)
                label += f": slope {f['slope']:.2f} [{f['slope_low']:.2f}, {f['slope_high']:.2f}]"
            else:
                label += ": not fitted"
            ax.scatter(x, points[count], color=colour, marker=plots.MARKERS[family], s=18, label=label, zorder=3)
        ax.set(xscale="log", yscale="log", xlabel=f"1 / ε  (ε: target on {metric.replace('_', ' ')})")
        plots.plain_numbers(ax.xaxis)
    next(iter(axes.values())).set_ylabel(f"smallest {plots.COUNT_LABELS[count]} (count)")
    fig.suptitle(f"Smallest model against accuracy, with least-squares power laws ({LEVEL:.0%} bootstrap interval)",
                 fontsize=10)
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
        ax.errorbar(rows["dim_i"], rows["slope"], yerr=[rows["slope"] - rows["slope_low"],
                                                         rows["slope_high"] - rows["slope"]],
                    color=plots.COLOURS[family], marker=plots.MARKERS[family], capsize=3, label=plots.LABELS[family])
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
    add_objective_options(p)
    p.add_argument("--grid", type=int, default=12, help="log-spaced targets per family when --targets is not given")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    args = p.parse_args(argv)
    return run(lambda: analyse(open_sweep(args.out), args))


if __name__ == "__main__":
    sys.exit(main())
