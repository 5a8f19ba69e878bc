"""Error against conditioner depth, hypernetwork against embedding: the paper's rotation figure.

    python -m analysis.depth OUT [--metric test_error] [--tuned]

Per family and conditioner depth (config.model.conditioner.depth), the mean and standard
deviation of the error over every replica of every ok trial at that depth. A trial reports
its replicas' mean and population std (`test_error`, `test_error_std`, `seeds` replicas),
from which the pooled mean and sample std of all replicas follow exactly. Trials at one
depth pool over whatever else varies, which is only seeds in a grid over depth. A grid that
also searches the training recipe (rotation_depth_digits_tuned) is read with --tuned: at each
depth only each family's trial with the lowest val_error counts (the test error never picks
it). `falling`
counts the trials whose learning curve was still falling at the end (rule (b) of
hypersweep.frontier): their error says more about the training recipe than about depth.
Writes OUT/analysis/depth.parquet/.csv and depth.png; a family without an ok trial or
missing learning curves end in one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.loading import (
    Missing,
    Sweep,
    drop_blank_variant,
    open_sweep,
    ordered,
    parser,
    run,
    variant_order,
)
from hypersweep.frontier import still_falling
from hypersweep.vocab import CONDITIONED, OK

DEPTH = "config.model.conditioner.depth"
WIDTH = "config.model.primary.width"


def by_depth(trials: pd.DataFrame, metric: str = "test_error", epochs: pd.DataFrame | None = None,
             tuned: bool = False) -> pd.DataFrame:
    """Per variant, family and depth: trials, replicas, pooled mean and sample std of `metric`, and
    (with `epochs`) how many trials were still falling at the end. `tuned`: only the trial with the
    lowest val_error at each (variant, family, depth)."""
    ok = trials[(trials["status"] == OK) & trials["family"].isin(CONDITIONED)].dropna(subset=[metric, DEPTH])
    ok = ok.assign(depth=ok[DEPTH].astype(int), replicas=ok["seeds"], total=ok[metric] * ok["seeds"])
    if tuned:
        ok = ok.loc[ok.groupby(["variant", "family", "depth"])["val_error"].idxmin()]
    ok["falling"] = still_falling(ok, epochs)
    keys = ["variant", "family", "depth"]
    pooled_mean = ok.groupby(keys)["total"].transform("sum") / ok.groupby(keys)["replicas"].transform("sum")
    # A trial's replicas sit around the pooled mean by their own spread plus their mean's offset from it.
    ok["squares"] = ok["replicas"] * (ok[f"{metric}_std"].fillna(0) ** 2 + (ok[metric] - pooled_mean) ** 2)
    table = ok.groupby(keys).agg(trials=("trial", "size"), replicas=("replicas", "sum"), total=("total", "sum"),
                                 squares=("squares", "sum"), falling=("falling", "sum")).reset_index()
    table["mean"] = table["total"] / table["replicas"]
    table["std"] = np.sqrt(table["squares"] / (table["replicas"] - 1)).where(table["replicas"] > 1)
    return ordered(table.drop(columns=["total", "squares"]))


def check(table: pd.DataFrame) -> list[str]:
    """Missing when no family has two depths; else one line per family that is missing."""
    if table.empty:
        raise Missing("no ok hyper or embedding trial with a conditioner depth: nothing to plot against depth")
    depths = table.groupby("family")["depth"].nunique()
    if depths.max() < 2:
        raise Missing(f"conditioner depth does not vary (every trial has depth "
                       f"{', '.join(map(str, sorted(table['depth'].unique())))}): sweep model.conditioner.depth")
    return [f"no ok {family} trial with a conditioner depth" for family in CONDITIONED if family not in depths]


def side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """Depths as rows and families as columns, each cell 'mean ± std (replicas)'."""
    cells = table.assign(cell=[f"{m:.3g} ± {s:.2g} ({r})" for m, s, r in
                               table[["mean", "std", "replicas"]].itertuples(index=False)])
    wide = cells.pivot(index=["variant", "depth"], columns="family", values="cell").fillna("-")
    return drop_blank_variant(wide[plots.families(wide.columns)].rename_axis(columns=None).reset_index())


def plot_depths(table: pd.DataFrame, metric: str, task: str, path: Path) -> Path:
    """Mean error against depth with std error bars, families side by side at each depth."""
    fig, axes = plots.panels(variant_order(table["variant"]))
    for variant, ax in axes.items():
        for family in plots.families(table["family"]):
            rows = table[(table["variant"] == variant) & (table["family"] == family)]
            ax.errorbar(rows["depth"] + plots.dodge(family, table["depth"]), rows["mean"], yerr=rows["std"], capsize=3,
                        color=plots.COLOURS[family], marker=plots.MARKERS[family], label=plots.LABELS[family])
        ax.set(xlabel="conditioner depth (hidden layers)", xticks=sorted(table["depth"].unique()))
    next(iter(axes.values())).set_ylabel(plots.error_label(metric, task))
    replicas = f"{table['replicas'].min()}" + (f"-{table['replicas'].max()}" if table["replicas"].nunique() > 1 else "")
    fig.suptitle(f"{metric.replace('_', ' ').capitalize()} against conditioner depth: mean ± std over "
                 f"{replicas} replicas per point", fontsize=10)
    plots.legend(axes)
    return plots.save(fig, path)


def falling_note(table: pd.DataFrame) -> str:
    """One line naming the families whose curves were still falling at the end, or ''."""
    counts = table.groupby("family", sort=False)[["falling", "trials"]].sum()
    still = [f"{family} {r.falling} of {r.trials}" for family, r in counts.iterrows() if r.falling]
    return f"still falling at the last epoch (training-limited rule (b)): {', '.join(still)} trials" if still else ""


def analyse(sweep: Sweep, args: argparse.Namespace) -> list[str]:
    missing = []
    epochs = sweep.epochs_or_note(missing, "whether training had converged was not checked")
    table = by_depth(sweep.trials, args.metric, epochs, args.tuned)
    missing = check(table) + missing
    notes = [note for note in [falling_note(table)] if note]
    if sweep.spec and sweep.spec.sampler.name != "grid":
        notes.append(f"note: the sampler was {sweep.spec.sampler.name}, not grid: other searched keys vary "
                     "with depth too")
    print(f"{args.metric} by conditioner depth: mean ± std over replicas (number of replicas):")
    print("\n".join([side_by_side(table).to_string(index=False), *notes]))
    written = [sweep.save(table, "depth"), plot_depths(table, args.metric, sweep.task, sweep.path("depth.png"))]
    print(f"\nwrote {', '.join(p.name for p in written)} (and depth.csv) in {written[0].parent}")
    return missing


def width_to_match(trials: pd.DataFrame, metric: str = "test_error") -> tuple[pd.DataFrame, str]:
    """How wide q must be to match g (rotation_width_digits): per family and primary width, the
    trial with the lowest val_error (its learning rate chosen as by_depth(tuned=True) does), with its
    replicas' mean and std of `metric`; and a sentence naming the smallest q width whose mean is
    within the combined std of g's best, or saying that none is.

    The rule is fixed before the run: 'within' is embedding mean <= hyper mean + hypot(stds), the
    replicas' spread being the noise a single architecture carries."""
    ok = trials[(trials["status"] == OK) & trials["family"].isin(CONDITIONED)].dropna(subset=[metric, WIDTH])
    if not set(CONDITIONED) <= set(ok["family"]):
        raise Missing("width_to_match needs ok hyper and embedding trials")
    best = ok.loc[ok.groupby(["family", WIDTH])["val_error"].idxmin()]
    table = pd.DataFrame({"family": best["family"], "width": best[WIDTH].astype(int),
                          "params_primary": best["params_primary"], "lr": best["config.train.lr"],
                          "mean": best[metric], "std": best[f"{metric}_std"].fillna(0.0),
                          "replicas": best["seeds"]}).sort_values(["family", "width"]).reset_index(drop=True)
    g = table[table["family"] == "hyper"].sort_values("mean").iloc[0]
    q = table[table["family"] == "embedding"]
    matching = q[q["mean"] <= g["mean"] + np.hypot(q["std"], g["std"])]
    reference = (f"g (width {g['width']}, {g['params_primary']:,} primary parameters) reaches "
                 f"{g['mean']:.3g} ± {g['std']:.2g}")
    if matching.empty:
        widest = q.sort_values("width").iloc[-1]
        return table, (f"{reference}; no q up to width {widest['width']} ({widest['params_primary']:,} parameters) "
                       f"matches it (the widest reaches {widest['mean']:.3g} ± {widest['std']:.2g})")
    first = matching.sort_values("width").iloc[0]
    return table, (f"{reference}; q first matches it at width {first['width']} ({first['params_primary']:,} "
                   f"primary parameters, {first['params_primary'] / g['params_primary']:.3g}x g's) with "
                   f"{first['mean']:.3g} ± {first['std']:.2g}")


def main(argv: list[str] | None = None) -> int:
    p = parser("analysis.depth", __doc__)
    p.add_argument("--metric", choices=["test_error", "val_error"], default="test_error",
                   help="the error to plot (default: test_error)")
    p.add_argument("--tuned", action="store_true",
                   help="at each depth keep each family's trial with the lowest val_error (a grid that also "
                        "searches the training recipe)")
    args = p.parse_args(argv)
    return run(lambda: analyse(open_sweep(args.out), args))


if __name__ == "__main__":
    sys.exit(main())

