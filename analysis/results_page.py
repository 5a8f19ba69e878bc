"""Regenerate RESULTS.md: each claim of the paper, the experiment testing it, the numbers, a verdict.

    python -m analysis.results_page [--runs DIR] [--bootstrap 1000]

With `--runs DIR`, each finished sweep in DIR named after a shipped experiment (DIR/teacher_scaling,
...) is first exported to docs/results/data/ as one trials and one epochs Parquet file, small enough
to commit. The page is then built from docs/results/data/ alone, so every number in RESULTS.md comes
from committed tables; figures go to docs/results/. Verdicts follow fixed rules written next to each
claim below, never a judgement made by hand.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import assumptions, depth, frontier, scaling
from analysis.report import markdown
from hypersweep.frontier import ratios, smallest
from hypersweep.results import load_epochs, load_trials
from hypersweep.search_space import load

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "results" / "data"
FIGURES = ROOT / "docs" / "results"
EXPERIMENTS = ["teacher_scaling", "teacher_dims", "rotation_depth_digits", "rotation_smallest_digits"]
ORDER_OF_MAGNITUDE = 10.0
LEVEL = 0.95


@dataclass(frozen=True)
class Experiment:
    name: str
    trials: pd.DataFrame
    epochs: pd.DataFrame
    space: Path

    @property
    def objective(self):
        return load(str(self.space), build_tasks=False).objective


@dataclass(frozen=True)
class Claim:
    title: str
    claim: str
    experiment: str
    verdict: str  # holds | does not hold | inconclusive | not run
    why: str
    body: list[str]


def export(runs: Path) -> list[str]:
    """Copy each finished sweep in `runs` to DATA as compact Parquet files; return their names."""
    DATA.mkdir(parents=True, exist_ok=True)
    done = []
    for name in EXPERIMENTS:
        out = runs / name
        if not (out / "trials").is_dir():
            continue
        load_trials(str(out)).to_parquet(DATA / f"{name}.trials.parquet", index=False)
        load_epochs(str(out)).to_parquet(DATA / f"{name}.epochs.parquet", index=False)
        shutil.copy(out / "space.yaml", DATA / f"{name}.space.yaml")
        done.append(name)
    return done


def read(name: str) -> Experiment | None:
    path = DATA / f"{name}.trials.parquet"
    if not path.exists():
        return None
    return Experiment(name, pd.read_parquet(path), pd.read_parquet(DATA / f"{name}.epochs.parquet"),
                      DATA / f"{name}.space.yaml")


def ratio_interval(trials: pd.DataFrame, target: float, metric: str, count: str, samples: int,
                   rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of the embedding/hyper ratio of smallest sizes at `target`."""
    draws = {}
    for family in ("hyper", "embedding"):
        mine = trials[(trials["family"] == family) & (trials["status"] == "ok")].dropna(subset=[metric])
        errors, counts = mine[metric].to_numpy(), mine[count].to_numpy()
        pick = rng.integers(0, len(errors), size=(samples, len(errors)))
        draws[family] = scaling.frontier_at(errors[pick], counts[pick], np.full((samples, 1), target))[0][:, 0]
    ratio = draws["embedding"] / draws["hyper"]
    ratio = ratio[np.isfinite(ratio)]
    tail = 100 * (1 - LEVEL) / 2
    return (np.percentile(ratio, tail), np.percentile(ratio, 100 - tail)) if ratio.size else (np.nan, np.nan)


def size_claim(exp: Experiment | None, samples: int, title: str, claim: str) -> Claim:
    """Rule (the claim is asymptotic, eps -> 0): holds when, at the tightest target both families
    reach, the embedding's smallest primary net is >= 10x the hypernetwork's and the bootstrap
    interval's lower end is >= 10x too; does not hold when the ratio is below 1 at any target;
    inconclusive otherwise. At loose targets the hypernetwork often sits at the search space's
    smallest g, which caps the ratio there."""
    if exp is None:
        return Claim(title, claim, "-", "not run", "no committed results", [])
    o = exp.objective
    table = smallest(exp.trials, o.error_targets, o.metric, o.report, o.count)
    ratio = ratios(table, o.count).dropna(subset=["embedding/hyper"])
    figure = frontier.plot_frontier(table, o.metric, o.count, FIGURES / f"{exp.name}_frontier.png")
    rng = np.random.default_rng(0)
    rows = []
    for target, value in zip(ratio["target"], ratio["embedding/hyper"], strict=True):
        low, high = ratio_interval(exp.trials, target, o.metric, o.count, samples, rng)
        rows.append({"target": target, "embedding/hyper": value, "95% interval": f"[{low:,.1f}, {high:,.1f}]",
                     "low": low})
    found = table[table["found"]]
    sizes = found.pivot_table(index="target", columns="family", values=o.count, aggfunc="first")
    body = [f"![smallest size per target]({figure.relative_to(ROOT)})", "",
            *markdown(sizes.sort_index(ascending=False).reset_index().rename_axis(columns=None)), "",
            *(markdown(pd.DataFrame(rows).drop(columns="low")) if rows else ["No target was reached by both."])]
    if not rows:
        return Claim(title, claim, exp.name, "inconclusive", "no error target was reached by both families", body)
    values = np.array([r["embedding/hyper"] for r in rows])
    tightest = min(rows, key=lambda r: r["target"])
    at = (f"{tightest['embedding/hyper']:,.1f}x {tightest['95% interval']} at eps {tightest['target']:g}; "
          f"{values.min():,.1f}x to {values.max():,.1f}x over {len(rows)} targets")
    if (values < 1).any():
        verdict, why = "does not hold", f"the embedding's primary net is smaller at {int((values < 1).sum())} target(s)"
    elif tightest["embedding/hyper"] >= ORDER_OF_MAGNITUDE and tightest["low"] >= ORDER_OF_MAGNITUDE:
        verdict, why = "holds", at
    else:
        verdict, why = "inconclusive", f"{at}: below 10x, or its interval reaches below 10x"
    return Claim(title, claim, exp.name, verdict, why, body)


def slope_claim(exp: Experiment | None, samples: int) -> Claim:
    """Rule: holds when the embedding's slope interval lies wholly above the hypernetwork's; does not
    hold when it lies wholly below; inconclusive when they overlap."""
    title, claim = "Scaling exponents", ("the size of q grows like eps^-(m+n)/r and that of g like eps^-m/r: the "
                                         "embedding's log-log slope is steeper than the hypernetwork's")
    if exp is None:
        return Claim(title, claim, "-", "not run", "no committed results", [])
    o = exp.objective
    fits, points = scaling.fit(exp.trials, o.metric, o.count, samples=samples)
    figure = scaling.plot_fits(fits, points, o.metric, o.count, FIGURES / f"{exp.name}_scaling.png")
    shown = fits[["family", "trials", "slope", "slope_low", "slope_high", "eps_high", "eps_low"]]
    body = [f"![scaling fits]({figure.relative_to(ROOT)})", "", *markdown(shown.round(3))]
    fit = fits.set_index("family")
    if not {"hyper", "embedding"} <= set(fit.dropna(subset=["slope_low"]).index):
        return Claim(title, claim, exp.name, "inconclusive", "a slope could not be fitted", body)
    h, e = fit.loc["hyper"], fit.loc["embedding"]
    text = (f"hyper {h.slope:.2f} [{h.slope_low:.2f}, {h.slope_high:.2f}], "
            f"embedding {e.slope:.2f} [{e.slope_low:.2f}, {e.slope_high:.2f}]")
    verdict = ("holds" if e.slope_low > h.slope_high else
               "does not hold" if e.slope_high < h.slope_low else "inconclusive")
    return Claim(title, claim, exp.name, verdict, text, body)


def dims_claim(exp: Experiment | None, samples: int) -> Claim:
    """Rule: holds when the embedding's slope at the largest n is above its slope at the smallest n
    (intervals apart) while the hypernetwork's intervals at those n overlap; does not hold when the
    embedding's slope falls with n (intervals apart) or the hypernetwork's grows while the
    embedding's does not; inconclusive otherwise (overlapping intervals cannot tell)."""
    title, claim = "Dependence on n = dim_i", "the embedding's slope grows with n while the hypernetwork's does not"
    if exp is None:
        return Claim(title, claim, "-", "not run", "no committed results", [])
    o = exp.objective
    fits, _ = scaling.fit(exp.trials, o.metric, o.count, samples=samples)
    figure = scaling.plot_by_dim(fits, o.count, FIGURES / f"{exp.name}_slopes_by_n.png")
    table = scaling.by_dim(fits)
    body = [f"![slopes by n]({figure.relative_to(ROOT)})", ""]
    body += markdown(table.reset_index()) if table is not None else ["Slopes could not be compared by n."]
    fitted = fits.dropna(subset=["slope_low"])
    ends = {}
    for family in ("hyper", "embedding"):
        mine = fitted[fitted["family"] == family].sort_values("dim_i")
        if len(mine) >= 2:
            ends[family] = (mine.iloc[0], mine.iloc[-1])
    if len(ends) < 2:
        return Claim(title, claim, exp.name, "inconclusive", "slopes missing at the smallest or largest n", body)
    (e_lo, e_hi), (h_lo, h_hi) = ends["embedding"], ends["hyper"]
    e_grows = e_hi.slope_low > e_lo.slope_high
    h_flat = not (h_hi.slope_low > h_lo.slope_high or h_hi.slope_high < h_lo.slope_low)
    why = (f"embedding {e_lo.slope:.2f} (n={e_lo.dim_i}) -> {e_hi.slope:.2f} (n={e_hi.dim_i}); "
           f"hyper {h_lo.slope:.2f} -> {h_hi.slope:.2f}; {fits['trials'].min()} to {fits['trials'].max()} "
           "ok trials per study")
    e_falls, h_grows = e_hi.slope_high < e_lo.slope_low, h_hi.slope_low > h_lo.slope_high
    verdict = ("holds" if e_grows and h_flat else
               "does not hold" if e_falls or (h_grows and not e_grows) else "inconclusive")
    return Claim(title, claim, exp.name, verdict, why, body)


def depth_claim(exp: Experiment | None) -> Claim:
    """Rule: holds when the hypernetwork's mean test error is below the embedding's at every depth and,
    at the deepest, by more than the two stds combined; does not hold when it is above at any depth."""
    title = "Rotation prediction against depth"
    claim = "at equal depth of f / e the hypernetwork reaches lower error, and the gap does not close with depth"
    if exp is None:
        return Claim(title, claim, "-", "not run", "no committed results", [])
    table = depth.by_depth(exp.trials)
    figure = depth.plot_depths(table, "test_error", "rotation", FIGURES / f"{exp.name}.png")
    body = [f"![test error against depth]({figure.relative_to(ROOT)})", "", *markdown(depth.side_by_side(table))]
    wide = table.pivot(index="depth", columns="family", values=["mean", "std"]).dropna()
    if wide.empty:
        return Claim(title, claim, exp.name, "inconclusive", "no depth has both families", body)
    gap = wide[("mean", "embedding")] - wide[("mean", "hyper")]
    spread = np.hypot(wide[("std", "embedding")], wide[("std", "hyper")])
    deepest = wide.index.max()
    why = (f"gap (embedding - hyper) {gap.iloc[0]:.3f} at depth {wide.index.min()}, {gap.loc[deepest]:.3f} "
           f"at depth {deepest} (combined std {spread.loc[deepest]:.3f})")
    verdict = ("holds" if (gap > 0).all() and gap.loc[deepest] > spread.loc[deepest] else
               "does not hold" if (gap < 0).any() else "inconclusive")
    return Claim(title, claim, exp.name, verdict, why, body)


def assumption1_claim(experiments: list[Experiment]) -> Claim:
    """Rule: holds when disagreement falls in >= 80% of replicated trials of every family; does not
    hold below 50% in a family; inconclusive in between."""
    title, claim = "Assumption 1", "replicas of one architecture converge: their disagreement falls during training"
    rows, figures = [], []
    for exp in experiments:
        curves = assumptions.replicated_curves(exp.epochs, exp.trials)
        if curves.empty:
            continue
        falls = assumptions.disagreement_falls(curves).assign(experiment=exp.name)
        rows.append(falls)
        figure = assumptions.plot_disagreement(assumptions.disagreement_by_epoch(curves),
                                               FIGURES / f"{exp.name}_disagreement.png")
        figures.append(f"![disagreement during training, {exp.name}]({figure.relative_to(ROOT)})")
    if not rows:
        return Claim(title, claim, "-", "not run", "no experiment trained replicas", [])
    table = pd.concat(rows, ignore_index=True)
    body = [*figures, "", *markdown(table[["experiment", "family", "trials", "falling", "fraction",
                                           "median_first", "median_last"]])]
    lowest = table["fraction"].min()
    why = ", ".join(f"{r.experiment} {r.family} {r.fraction:.0%}" for r in table.itertuples())
    verdict = "holds" if lowest >= 0.8 else "does not hold" if lowest < 0.5 else "inconclusive"
    return Claim(title, claim, ", ".join(table["experiment"].unique()), verdict, f"falling in {why}", body)


def assumption2_claim(exp: Experiment | None) -> Claim:
    """Rule: holds when the Spearman correlation of width and error of one-hidden-layer standard nets
    is <= -0.5; does not hold when >= 0; inconclusive in between."""
    title, claim = "Assumption 2", "the error of a one-hidden-layer network falls as its width grows"
    if exp is None:
        return Claim(title, claim, "-", "not run", "no committed results", [])
    metric = exp.objective.report
    narrow, missing = assumptions.one_hidden_layer(exp.trials, metric)
    if narrow.empty:
        return Claim(title, claim, exp.name, "inconclusive", "; ".join(missing), [])
    rho = assumptions.rank_correlations(narrow, metric)
    by_width = assumptions.error_by_width(narrow, metric)
    figure = assumptions.plot_width(narrow, by_width, rho, metric, "teacher", FIGURES / f"{exp.name}_width.png")
    body = [f"![error against width]({figure.relative_to(ROOT)})"]
    r = rho.max()
    verdict = "holds" if r <= -0.5 else "does not hold" if r >= 0 else "inconclusive"
    return Claim(title, claim, exp.name, verdict, f"Spearman rho {assumptions.format_correlations(rho)} "
                                                  f"over {len(narrow)} trials", body)


def compute(experiments: list[Experiment]) -> list[str]:
    rows = [{"experiment": e.name, "studies": e.trials["study"].nunique(), "trials": len(e.trials),
             **e.trials["status"].value_counts().to_dict(),
             "train time": f"{e.trials['wall_s'].sum() / 3600:.2f} h"} for e in experiments]
    return markdown(pd.DataFrame(rows).fillna(0))


def page(claims: list[Claim], experiments: list[Experiment]) -> str:
    lines = ["# Results: does a hypernetwork need a smaller primary network?", "",
             "Each claim of Galanti & Wolf, *On the Modularity of Hypernetworks* (NeurIPS 2020; see",
             "`../shared/paper.md` or the paper), tested with hypersweep on a 2-core CPU machine. This page is",
             "generated by `python -m analysis.results_page` from the tables in `docs/results/data/`; the",
             "verdict rules are in `analysis/results_page.py`, next to each claim.", "",
             "| claim | experiment | verdict | why |", "|---|---|---|---|"]
    lines += [f"| {c.title}: {c.claim} | {c.experiment} | **{c.verdict}** | {c.why} |" for c in claims]
    for c in claims:
        lines += ["", f"## {c.title}", "", f"*Claim:* {c.claim}.", "",
                  f"*Verdict: {c.verdict}* ({c.why}).", "", *c.body]
    lines += ["", "## Compute and how to rerun", "", *compute(experiments), "",
              "Each experiment ran from its `search_spaces/<experiment>.yaml` with `python -m hypersweep.launch",
              "search_spaces/<experiment>.yaml --out runs/<experiment> [--num-samples N]`; the overrides used here",
              "are in `docs/results/data/<experiment>.space.yaml` and the table above. To rerun at full scale on a",
              "GPU cluster, unchanged: `ray up cluster/aws-gpu.yaml`, then `ray submit cluster/aws-gpu.yaml",
              "hypersweep/launch.py -- hypersweep/search_spaces/<experiment>.yaml --address auto --out",
              "s3://BUCKET/<experiment> --storage postgresql://...`, and `python -m analysis.results_page --runs",
              "DIR` on the downloaded results.", "",
              f"*Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.*", ""]
    return "\n".join(lines)


def build(samples: int) -> tuple[str, list[Claim]]:
    found = {name: read(name) for name in EXPERIMENTS}
    experiments = [e for e in found.values() if e is not None]
    claims = [
        size_claim(found["teacher_scaling"], samples, "Smaller primary nets (teacher)",
                   "at equal error, g needs an order of magnitude or more fewer parameters than q"),
        slope_claim(found["teacher_scaling"], samples),
        dims_claim(found["teacher_dims"], samples),
        depth_claim(found["rotation_depth_digits"]),
        size_claim(found["rotation_smallest_digits"], samples, "Smaller primary nets (real images)",
                   "on rotation prediction of real digits, g is smaller than q at equal error"),
        assumption1_claim(experiments),
        assumption2_claim(found["teacher_scaling"]),
    ]
    return page(claims, experiments), claims


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.results_page", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, help="a directory of finished sweeps to export first")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for intervals")
    args = p.parse_args(argv)
    if args.runs:
        print(f"exported {', '.join(export(args.runs)) or 'nothing'} to {DATA.relative_to(ROOT)}")
    FIGURES.mkdir(parents=True, exist_ok=True)
    text, claims = build(args.bootstrap)
    (ROOT / "RESULTS.md").write_text(text)
    for c in claims:
        print(f"{c.verdict:>14}  {c.title}: {c.why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
