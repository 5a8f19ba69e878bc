"""The paper's two assumptions, checked on a sweep's own trials.

    python -m analysis.assumptions OUT [--metric test_error]

Assumption 1 (identifiability): networks trained from different initialisations converge
towards the same function. From the learning curves of ok trials with `seeds` > 1: the
median replica disagreement per epoch and family, and the fraction of trials whose last
epoch disagrees less than their first.
Assumption 2: the error of a one-hidden-layer network falls as its width grows. From ok
`standard` trials with primary depth 1: the mean error by width and the Spearman rank
correlation between width and error (negative when the assumption holds).
Writes under OUT/analysis/: assumption1 (per family), disagreement (per epoch) and
assumption2 (per width) as .parquet/.csv, assumption1.png and assumption2.png.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis import plots
from analysis.sweep import NoAnswer, Sweep, drop_blank_variant, open_sweep, ordered, parser, run, variant_order

WIDTH, DEPTH = "config.model.primary.width", "config.model.primary.depth"


def replicated_curves(epochs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """The epochs of ok trials trained with more than one replica, where disagreement was measured."""
    replicated = trials.loc[(trials["status"] == "ok") & (trials["seeds"] > 1), ["study", "trial"]]
    return epochs.merge(replicated, on=["study", "trial"]).dropna(subset=["replica_disagreement"])


def disagreement_by_epoch(curves: pd.DataFrame) -> pd.DataFrame:
    """Per family and epoch: trials, and the median and quartiles of their replica disagreement."""
    grouped = curves.groupby(["family", "epoch"])["replica_disagreement"]
    table = grouped.agg(trials="size", median="median", q25=lambda d: d.quantile(0.25),
                        q75=lambda d: d.quantile(0.75)).reset_index()
    return ordered(table)


def disagreement_falls(curves: pd.DataFrame) -> pd.DataFrame:
    """Per family: how many trials end training disagreeing less than after their first epoch."""
    ends = curves.sort_values("epoch").groupby(["family", "study", "trial"])["replica_disagreement"]
    per_trial = pd.DataFrame({"first": ends.first(), "last": ends.last()}).reset_index()
    per_trial["falls"] = per_trial["last"] < per_trial["first"]
    table = per_trial.groupby("family").agg(trials=("falls", "size"), falling=("falls", "sum"),
                                            median_first=("first", "median"), median_last=("last", "median"))
    table["fraction"] = table["falling"] / table["trials"]
    return ordered(table.reset_index())


def one_hidden_layer(trials: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """The width sweep of Assumption 2: ok standard trials with one hidden layer, in variants with two widths or more.

    Also one line per variant (or for the sweep) that has no such sweep.
    """
    chosen = (trials["status"] == "ok") & (trials["family"] == "standard") & (trials[DEPTH] == 1)
    narrow = trials[chosen].dropna(subset=[metric]).rename(columns={WIDTH: "width"})
    widths = narrow.groupby("variant")["width"].nunique().reindex(variant_order(trials["variant"]), fill_value=0)
    missing = []
    for variant, n in widths[widths < 2].items():
        where = f" in {variant}" if variant else ""
        if n == 0:
            found = f"no ok standard trial with one hidden layer{where}"
        else:
            found = f"the ok one-hidden-layer standard trials{where} all have one width"
        missing.append(f"Assumption 2: {found}; the check needs a sweep over width")
    return narrow[narrow["variant"].isin(widths[widths >= 2].index)], missing


def error_by_width(narrow: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per variant and width: trials, and the mean and std of `metric` over them."""
    table = narrow.groupby(["variant", "width"])[metric].agg(trials="size", mean="mean", std="std")
    return ordered(table.reset_index())


def rank_correlations(narrow: pd.DataFrame, metric: str) -> pd.Series:
    """Per variant, the Spearman correlation of width and error over trials (DataFrame.corr needs no scipy)."""
    return narrow.groupby("variant")[["width", metric]].apply(
        lambda trials: trials.corr(method="spearman").iloc[0, 1]).rename("spearman")


def format_correlations(rho: pd.Series) -> str:
    """'-0.93', or 'dim_i=2 -0.93, dim_i=6 -1.00' when there are variants."""
    return ", ".join(f"{variant} {r:.2f}" if variant else f"{r:.2f}" for variant, r in rho.items())


def plot_disagreement(by_epoch: pd.DataFrame, path: Path) -> Path:
    """Median disagreement per epoch and family, with the band between the quartiles, on a log axis."""
    fig, axes = plots.panels([""])
    ax = axes[""]
    for family in plots.families(by_epoch["family"]):
        rows = by_epoch[by_epoch["family"] == family]
        ax.plot(rows["epoch"], rows["median"], color=plots.COLOURS[family], marker=plots.MARKERS[family], ms=3,
                label=f"{plots.LABELS[family]} ({rows['trials'].max()} trials)")
        ax.fill_between(rows["epoch"], rows["q25"], rows["q75"], color=plots.COLOURS[family], alpha=0.15, lw=0)
    ax.set(yscale="log", xlabel="epoch", ylabel="replica disagreement (mean squared difference)",
           title="Assumption 1: replicas converge to one function (median, quartile band)")
    plots.plain_numbers(ax.yaxis)
    ax.legend(frameon=False)
    return plots.save(fig, path)


def plot_width(narrow: pd.DataFrame, by_width: pd.DataFrame, rho: pd.Series, metric: str, task: str,
               path: Path) -> Path:
    """Every trial's error (faint) and the mean per width, one panel per variant."""
    fig, axes = plots.panels(variant_order(by_width["variant"]))
    style = {"color": plots.COLOURS["standard"], "marker": plots.MARKERS["standard"]}
    for variant, ax in axes.items():
        trials, means = narrow[narrow["variant"] == variant], by_width[by_width["variant"] == variant]
        ax.scatter(trials["width"], trials[metric], s=14, alpha=0.3, linewidths=0, **style)
        ax.plot(means["width"], means["mean"], label=f"mean over trials (Spearman ρ = {rho[variant]:.2f})", **style)
        ax.set(xscale="log", xlabel="hidden width (units)")
        plots.plain_numbers(ax.xaxis)
        ax.legend(frameon=False)
    next(iter(axes.values())).set_ylabel(plots.error_label(metric, task))
    fig.suptitle("Assumption 2: error of a one-hidden-layer standard network against its width", fontsize=10)
    return plots.save(fig, path)


def analyse(sweep: Sweep, args: argparse.Namespace) -> None:
    written, missing = [], []
    curves = replicated_curves(sweep.epochs(), sweep.trials)
    if curves.empty:
        missing.append("Assumption 1: no ok trial trained with seeds > 1, so no replica disagreement to follow")
    else:
        falls, by_epoch = disagreement_falls(curves), disagreement_by_epoch(curves)
        print("Assumption 1: replica disagreement from the first epoch to the last")
        print(falls.to_string(index=False, float_format="{:.3g}".format, formatters={"fraction": "{:.0%}".format}),
              end="\n\n")
        written += [sweep.save(falls, "assumption1"), sweep.save(by_epoch, "disagreement"),
                    plot_disagreement(by_epoch, sweep.path("assumption1.png"))]
    narrow, unanswered = one_hidden_layer(sweep.trials, args.metric)
    missing += unanswered
    if not narrow.empty:
        by_width, rho = error_by_width(narrow, args.metric), rank_correlations(narrow, args.metric)
        print(f"Assumption 2: {args.metric} of one-hidden-layer standard networks by width "
              f"(Spearman correlation of width and error: {format_correlations(rho)})")
        print(drop_blank_variant(by_width).to_string(index=False, float_format="{:.3g}".format), end="\n\n")
        written += [sweep.save(by_width.merge(rho.reset_index(), on="variant"), "assumption2"),
                    plot_width(narrow, by_width, rho, args.metric, sweep.task, sweep.path("assumption2.png"))]
    if not written:
        raise NoAnswer("; ".join(missing))
    print("\n".join([*missing, f"wrote {', '.join(p.name for p in written)} (and .csv copies) in {written[0].parent}"]))


def main(argv: list[str] | None = None) -> int:
    p = parser("analysis.assumptions", __doc__)
    p.add_argument("--metric", choices=["test_error", "val_error"], default="test_error",
                   help="the error of Assumption 2 (default: test_error)")
    args = p.parse_args(argv)
    return run(lambda: analyse(open_sweep(args.out), args))


if __name__ == "__main__":
    sys.exit(main())
