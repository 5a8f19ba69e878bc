"""Everything a sweep's data support, as one Markdown report with its figures.

    python -m analysis.report OUT [--targets 0.1,0.01] [--metric M] [--report M] [--count C] [--bootstrap 1000]

Writes OUT/report/report.md and its PNG figures beside it: Pareto fronts, the smallest
architecture per target (--targets, else the objective's) with ratios to the hypernetwork,
the scaling fit (at each family's own grid of targets), error against conditioner depth
(for a grid over it) and the two assumptions (when replicas or a width sweep exist). A
section the data cannot support is one line saying why. The tables as Parquet come from the
individual scripts (analysis.frontier etc.). A family without an ok trial or meeting none of
the targets, or missing learning curves, end in one line on stderr and exit 2 after the
report is written; a section the sweep was not designed for (no depth grid, no replicas) is
not missing anything.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime, timezone

import pandas as pd

from analysis import assumptions, depth, frontier, plots, scaling
from analysis.loading import (
    Missing,
    Sweep,
    add_objective_options,
    drop_blank_variant,
    objective,
    open_sweep,
    parser,
    run,
    without_ok_trials,
)
from hypersweep.frontier import architecture, flag_texts, ratios

FOLDER = "report"


def markdown(table: pd.DataFrame, right: list[str] | None = None) -> list[str]:
    """A pipe table: floats to 3 significant digits, missing values as '-'.

    Numbers are right-aligned, and so are the columns in `right` (numbers already formatted as text).
    """
    def cell(value) -> str:
        if pd.isna(value):
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    align = ["---:" if pd.api.types.is_numeric_dtype(table[c]) or c in (right or []) else "---"
             for c in table.columns]
    rows = [[cell(v) for v in row] for row in table.astype(object).itertuples(index=False)]
    return ["| " + " | ".join(line) + " |" for line in [list(map(str, table.columns)), align, *rows]]


def bullets(lines: list[str]) -> list[str]:
    """Lines as a Markdown list (then a blank line), so they do not run together into one paragraph."""
    return [*(f"- {line}" for line in lines), ""] if lines else []


def duration(seconds: float) -> str:
    """'1 h 05 min', '6 min 00 s' or '12 s'."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def header(sweep: Sweep) -> list[str]:
    """Title, experiment, trials by status and family, wall time, versions and dates."""
    t = sweep.trials
    statuses = ", ".join(f"{n} {s}" for s, n in t["status"].value_counts().items())
    per_family = t["family"].value_counts()
    families = ", ".join(f"{f} {per_family[f]}" for f in plots.families(per_family.index))
    span = f"{t['started_at'].min():%Y-%m-%d %H:%M} to {t['finished_at'].max():%Y-%m-%d %H:%M} UTC"
    return [f"# {sweep.experiment}: sweep report", "",
            f"- experiment `{sweep.experiment}`, task `{sweep.task}`, results in `{sweep.out}`",
            f"- {len(t)} trials: {statuses} ({families})",
            f"- wall time: {duration(t['wall_s'].sum())} of training summed over trials; run {span}",
            f"- hypersweep {t['version'].iloc[0]}, source `{t['git_commit'].iloc[0]}`; "
            f"report written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", ""]


def pareto_section(sweep: Sweep, metric: str, report: str, count: str) -> list[str]:
    front = frontier.pareto(sweep.trials, metric, report, count)
    if front.empty:
        raise Missing("no trial finished ok: there is no Pareto front")
    frontier.plot_pareto(sweep.trials, front, metric, count, sweep.task, sweep.path("pareto.png", FOLDER))
    return [f"Every ok trial (faint) and each family's Pareto front of ({count}, {metric}).", "",
            "![Pareto fronts](pareto.png)"]


def frontier_section(sweep: Sweep, table: pd.DataFrame, metric: str, report: str, count: str) -> list[str]:
    found = table[table["found"]]
    # A dict, so params_total appears once when it is the count.
    shown = pd.DataFrame({"variant": found["variant"], "family": found["family"], "target": found["target"],
                          count: found[count].astype(int), "params_total": found["params_total"].astype(int),
                          report: found[report], "architecture": found.apply(architecture, axis=1),
                          "trial": found["trial"].astype(int),
                          "training-limited": flag_texts(found)})
    lines = [f"A trial meets a target when its {metric} is at most the target; {report} is reported. "
             "`training-limited` is hypersweep.frontier's check: (a) the error flat across 10x in size, or (b) the "
             "learning curve still falling at the end (? = no curve).", "",
             *markdown(drop_blank_variant(shown)), "", *bullets(frontier.unmet(table))]
    ratio = ratios(table, count)
    columns = [c for c in ratio.columns if "/" in c]
    if ratio[columns].notna().any().any():
        ratio = ratio.dropna(how="all", subset=columns)
        ratio[columns] = ratio[columns].map(lambda r: "-" if pd.isna(r) else f"{r:,.1f}×")
        lines += ["", f"Ratio of {count} to the hypernetwork's at equal target:", "",
                  *markdown(drop_blank_variant(ratio), right=columns)]
    else:
        lines += ["", frontier.format_ratios(ratio, count)]
    frontier.plot_frontier(table, metric, count, sweep.path("frontier.png", FOLDER))
    return [*lines, "", "![Smallest model per target](frontier.png)"]


def scaling_section(sweep: Sweep, epochs: pd.DataFrame | None, metric: str, count: str, samples: int) -> list[str]:
    fits = scaling.fit(sweep.trials, metric, count, samples=samples, epochs=epochs)
    notes = scaling.skipped(fits.table)
    if fits.table["slope"].isna().all():
        raise Missing("; ".join(notes))
    fitted = fits.table.dropna(subset=["slope"])
    lines = [f"Least-squares slope of log({count}) against log(1/ε) over each family's distinct capacity-limited "
             f"frontier points of {metric} (points flagged training-limited are set aside); interval: "
             f"{scaling.LEVEL:.0%} percentile bootstrap over {samples} resamples of the seeds and trials.", "",
             *markdown(drop_blank_variant(scaling.shown(fitted))), "", *bullets(notes)]
    dims = scaling.by_dim(fits.table)
    if dims is not None:
        scaling.plot_by_dim(fits.table, count, sweep.path("scaling_by_n.png", FOLDER))
        lines += ["", "Slope by n = dim_i (the paper predicts growth with n for embedding, not for hyper):", "",
                  *markdown(dims.reset_index()), "", "![Slope by n](scaling_by_n.png)"]
    scaling.plot_fits(fits, metric, count, sweep.path("scaling.png", FOLDER))
    return [*lines, "", "![Scaling fits](scaling.png)"]


def depth_section(sweep: Sweep) -> list[str]:
    table = depth.by_depth(sweep.trials)
    notes = depth.check(table)
    if sweep.spec and sweep.spec.sampler.name != "grid":
        raise Missing(f"conditioner depth varies, but under the {sweep.spec.sampler.name} sampler rather than a "
                       "grid; `python -m analysis.depth OUT` plots it anyway")
    depth.plot_depths(table, "test_error", sweep.task, sweep.path("depth.png", FOLDER))
    return ["Test error over every replica of every ok trial at each depth: mean ± sample std (replicas).", "",
            *markdown(depth.side_by_side(table)), "", *bullets(notes), "![Error against depth](depth.png)"]


def assumption1_section(sweep: Sweep, epochs: pd.DataFrame | None) -> list[str]:
    if epochs is None:
        raise Missing("no learning curves, so no replica disagreement to follow")
    curves = assumptions.replicated_curves(epochs, sweep.trials)
    if curves.empty:
        raise Missing("no ok trial trained with seeds > 1, so no replica disagreement to follow")
    falls, by_epoch = assumptions.disagreement_falls(curves), assumptions.disagreement_by_epoch(curves)
    verdict, why = assumptions.assumption1_verdict(falls)
    assumptions.plot_disagreement(by_epoch, sweep.path("assumption1.png", FOLDER))
    return [f"Replica disagreement after the first and the last epoch, over the trials that trained; verdict "
            f"by the rule in analysis.assumptions: **{verdict}** ({why}).", "",
            *markdown(falls.assign(fraction=falls["fraction"].map(lambda f: "-" if pd.isna(f) else f"{f:.0%}")),
                      right=["fraction"]), "", "![Assumption 1](assumption1.png)"]


def assumption2_section(sweep: Sweep, metric: str, samples: int) -> list[str]:
    narrow, missing = assumptions.one_hidden_layer(sweep.trials, metric)
    if narrow.empty:
        raise Missing("; ".join(line.removeprefix("Assumption 2: ") for line in missing))
    by_width, rho = assumptions.error_by_width(narrow, metric), assumptions.rank_correlations(narrow, metric)
    verdict, why = assumptions.assumption2_verdict(assumptions.width_slopes(narrow, metric, samples))
    assumptions.plot_width(narrow, by_width, rho, metric, sweep.task, sweep.path("assumption2.png", FOLDER))
    return [f"{metric} of one-hidden-layer standard networks by width; verdict by the rule in analysis.assumptions: "
            f"**{verdict}** ({why}); Spearman correlation of width and error: "
            f"{assumptions.format_correlations(rho)}.", "", *markdown(drop_blank_variant(by_width)), "",
            *bullets(missing), "![Assumption 2](assumption2.png)"]


def section(title: str, build: Callable[[], list[str]]) -> list[str]:
    """A titled section, or its title and the one line saying why the data cannot support it."""
    try:
        body = build()
    except Missing as err:
        body = [f"{err}."]
    return [f"## {title}", "", *body, ""]


def analyse(sweep: Sweep, args: argparse.Namespace) -> list[str]:
    metric, report, count = objective(sweep, args)
    missing = without_ok_trials(sweep.trials)
    epochs = sweep.epochs_or_note(missing, "training-limited rule (b) was not checked")
    targets = sweep.targets(args.targets)
    try:
        table = frontier.frontier(sweep.trials, targets, metric, report, count, epochs)
        missing += frontier.met_none(table, sweep.trials, metric)
    except Missing as err:
        table = None
        missing.append(str(err))
    lines = [*header(sweep),
             *section("Pareto fronts", lambda: pareto_section(sweep, metric, report, count)),
             *section("Smallest architecture per error target",
                      lambda: frontier_section(sweep, table, metric, report, count) if table is not None
                      else [f"{missing[-1]}."]),
             *section("Scaling with accuracy", lambda: scaling_section(sweep, epochs, metric, count, args.bootstrap)),
             *section("Error against conditioner depth", lambda: depth_section(sweep)),
             *section("Assumption 1: replicas converge to one function", lambda: assumption1_section(sweep, epochs)),
             *section("Assumption 2: error falls with width", lambda: assumption2_section(sweep, report,
                                                                                          args.bootstrap))]
    path = sweep.path("report.md", FOLDER)
    path.write_text("\n".join(lines))
    figures = [line[line.index("(") + 1:-1] for line in lines if line.startswith("![")]
    print(f"wrote {path} with {len(figures)} figures ({', '.join(figures)})")
    return missing


def main(argv: list[str] | None = None) -> int:
    p = parser("analysis.report", __doc__)
    add_objective_options(p)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the scaling interval")
    args = p.parse_args(argv)
    return run(lambda: analyse(open_sweep(args.out), args))


if __name__ == "__main__":
    sys.exit(main())
