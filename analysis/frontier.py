"""Smallest architecture per error target, Pareto fronts of (params, error), and ratios to the hypernetwork.

    python -m analysis.frontier OUT [--targets 0.1,0.01] [--metric M] [--report M] [--count C]

Targets, metric and count come from OUT/space.yaml's objective unless given. Each frontier
point carries `training_limited` and `limited_by` (hypersweep.frontier states the two rules;
the learning curves in OUT/epochs feed rule (b)). Writes under OUT/analysis/: frontier,
ratios and pareto (.parquet and .csv), frontier.png and pareto.png. A family without an ok
trial, a family meeting none of the targets or missing learning curves end in one line on
stderr and exit 2, after the rest is printed and written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis import plots
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
from hypersweep.frontier import SIZE_COLUMNS, format_table, pareto_front, ratios, smallest
from hypersweep.vocab import OK


def frontier(trials: pd.DataFrame, targets: list[float], metric: str, report: str, count: str,
             epochs: pd.DataFrame | None = None) -> pd.DataFrame:
    """hypersweep.frontier.smallest with its training-limited flags; Missing when no trial met any target."""
    ok = trials[trials["status"] == OK]
    if ok.empty:
        statuses = ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts().items())
        raise Missing(f"no trial finished ok ({statuses})")
    table = smallest(trials, targets, metric, report, count, epochs)
    if not table["found"].any():
        best = ok.loc[ok[metric].idxmin()]
        raise Missing(f"no trial met any target ({', '.join(f'{t:g}' for t in targets)}): the lowest {metric} "
                      f"was {best[metric]:.3g} ({best['family']})")
    return ordered(table)


def pareto(trials: pd.DataFrame, metric: str, report: str, count: str) -> pd.DataFrame:
    """Each family's Pareto front of (count, metric), smallest model first, with its reported error and shape."""
    front = pareto_front(trials, metric, count)
    columns = ["variant", "family", "trial", "params_primary", "params_conditioner", "params_total",
               *dict.fromkeys([metric, report]), *(c for c in SIZE_COLUMNS if c in front)]
    return front[columns].rename(columns=lambda c: c.removeprefix("config.model."))


def unmet(table: pd.DataFrame) -> list[str]:
    """One line per family (and variant) that met some targets but not all, naming the ones it missed."""
    lines = []
    for (variant, family), rows in table.groupby(["variant", "family"], sort=False):
        missed = rows[~rows["found"]]
        if rows["found"].any() and not missed.empty:
            where = f" ({variant})" if variant else ""
            targets = ", ".join(f"{t:g}" for t in missed["target"])
            lines.append(f"no trial of {family}{where} met target{'s' * (len(missed) > 1)} {targets}")
    return lines


def met_none(table: pd.DataFrame, trials: pd.DataFrame, metric: str) -> list[str]:
    """One line per family (and variant) with ok trials that met none of the targets: what is missing."""
    lines = []
    ok = trials[trials["status"] == OK]
    for (variant, family), rows in table.groupby(["variant", "family"], sort=False):
        mine = ok[(ok["variant"] == variant) & (ok["family"] == family)]
        if not rows["found"].any() and not mine.empty:
            where = f" ({variant})" if variant else ""
            lines.append(f"no trial of {family}{where} met any target ({', '.join(f'{t:g}' for t in rows['target'])}): "
                         f"its lowest {metric} was {mine[metric].min():.3g}")
    return lines


def format_ratios(ratio: pd.DataFrame, count: str) -> str:
    """The ratio table as text, or one line saying why there is none."""
    columns = [c for c in ratio.columns if "/" in c]
    if ratio[columns].isna().all().all():  # pivot_table drops the column of a family that met no target
        return f"no ratio of {count}: no target was met by both the hypernetwork and another family"
    text = drop_blank_variant(ratio).to_string(index=False, na_rep="-",
                                               formatters={c: "{:,.1f}x".format for c in columns})
    return f"Ratio of {count} to the hypernetwork's at equal target:\n{text}"


def plot_pareto(trials: pd.DataFrame, front: pd.DataFrame, metric: str, count: str, task: str, path: Path) -> Path:
    """Every ok trial (faint) and each family's Pareto front (a staircase), sizes on a log axis."""
    ok = trials[trials["status"] == OK]
    fig, axes = plots.panels(variant_order(ok["variant"]))
    for variant, ax in axes.items():
        for family in plots.families(ok["family"]):
            style = {"color": plots.COLOURS[family], "marker": plots.MARKERS[family]}
            mine = ok[(ok["variant"] == variant) & (ok["family"] == family)]
            ax.scatter(mine[count], mine[metric], s=16, alpha=0.3, linewidths=0, **style)
            best = front[(front["variant"] == variant) & (front["family"] == family)]
            ax.step(best[count], best[metric], where="post", ms=5, label=plots.LABELS[family], **style)
        ax.set(xscale="log", yscale="log", xlabel=f"{plots.COUNT_LABELS[count]} (count)")
        plots.plain_numbers(ax.xaxis)
        plots.plain_numbers(ax.yaxis)
    next(iter(axes.values())).set_ylabel(plots.error_label(metric, task))
    fig.suptitle("Trials (faint) and Pareto fronts", fontsize=10)
    plots.legend(axes)
    return plots.save(fig, path)


def plot_frontier(table: pd.DataFrame, metric: str, count: str, path: Path) -> Path:
    """Smallest size meeting each target, log-log, stricter targets to the right."""
    found = table[table["found"]]
    fig, axes = plots.panels(variant_order(found["variant"]))  # a variant that met no target is a line of text
    for variant, ax in axes.items():
        for family in plots.families(found["family"]):
            rows = found[(found["variant"] == variant) & (found["family"] == family)]
            ax.plot(rows["target"], rows[count].astype(float), color=plots.COLOURS[family],
                    marker=plots.MARKERS[family], label=plots.LABELS[family])
        ax.set(xscale="log", yscale="log", xlabel=f"error target ε on {metric.replace('_', ' ')} (stricter →)")
        plots.plain_numbers(ax.xaxis)
        plots.plain_numbers(ax.yaxis)
        ax.invert_xaxis()
    next(iter(axes.values())).set_ylabel(f"smallest {plots.COUNT_LABELS[count]} (count)")
    fig.suptitle(f"Smallest model with {metric.replace('_', ' ')} ≤ ε", fontsize=10)
    plots.legend(axes)
    return plots.save(fig, path)


def analyse(sweep: Sweep, args: argparse.Namespace) -> list[str]:
    metric, report, count = objective(sweep, args)
    missing = without_ok_trials(sweep.trials)
    epochs = sweep.epochs_or_note(missing, "training-limited rule (b) was not checked")
    table = frontier(sweep.trials, sweep.targets(args.targets), metric, report, count, epochs)
    missing += met_none(table, sweep.trials, metric)
    ratio = ratios(table, count)
    front = pareto(sweep.trials, metric, report, count)
    print(f"Smallest architecture per error target ({metric} <= target; {report} reported):")
    print("\n".join([format_table(table[table["found"]], count, report), *unmet(table)]))
    print("\n" + format_ratios(ratio, count))
    # Integer columns hold NaN where a target was not met: nullable ints keep the CSV free of "205.0".
    integers = table.astype({c: "Int64" for c in ("trial", "params_primary", "params_total", count)})
    written = [sweep.save(integers, "frontier"), sweep.save(ratio, "ratios"), sweep.save(front, "pareto"),
               plot_frontier(table, metric, count, sweep.path("frontier.png")),
               plot_pareto(sweep.trials, front, metric, count, sweep.task, sweep.path("pareto.png"))]
    print(f"\nwrote {', '.join(p.name for p in written)} (and .csv copies) in {written[0].parent}")
    return missing


def main(argv: list[str] | None = None) -> int:
    p = parser("analysis.frontier", __doc__)
    add_objective_options(p)
    args = p.parse_args(argv)
    return run(lambda: analyse(open_sweep(args.out), args))


if __name__ == "__main__":
    sys.exit(main())
