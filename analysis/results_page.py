"""Regenerate RESULTS.md: each claim of the paper, the experiment testing it, the numbers, a verdict.

    python -m analysis.results_page [--runs DIR] [--bootstrap 10000] [--seed 0]

With `--runs DIR`, each finished sweep in DIR named after a shipped experiment (DIR/teacher_scaling,
...) is first exported to docs/results/data/ as one trials and one epochs Parquet file, small enough
to commit. The page is then built from docs/results/data/ alone, so every number in RESULTS.md comes
from committed tables; figures go to docs/results/.

Verdicts follow fixed rules, each written in the docstring of the function that applies it, next
to its claim, and each able to return holds, does not hold or inconclusive, and not tested where
the design of an experiment cannot decide its claim whatever the data (tests/test_results_page.py
shows every outcome of every rule on synthetic tables). Intervals come from resampling trials (and
teacher seeds); a resample in which a family misses a target or a slope cannot be fitted is kept
and counts against every verdict, and a share within Monte Carlo error of the 97.5% level decides
nothing (analysis.evidence), so `--seed N` (another resampling seed) cannot flip a verdict. A
frontier point flagged training-limited (hypersweep.frontier) cannot carry a verdict.

Independently seeded searches of one experiment (other sampler, teacher and training seeds, the
same space otherwise) are run as experiments named <experiment>_seed<k> (search_spaces/
teacher_capacity_seed1.yaml, ...; --out DIR/teacher_capacity_seed1): `--runs` exports each beside
the first, and a rule that combines searches (size_claim) reads them all.

On the teacher task the claims are judged on the generic teacher (`target: mlp`, a random MLP on
concat(x, I)); the hypernetwork teacher (`target: hypernet`, itself a hypernetwork with a small g*)
is the favourable case, shown when present, labelled, and never the verdict unless it is all there is.
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import assumptions, depth, frontier, scaling
from analysis.evidence import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    LEVEL,
    NOT_RUN,
    NOT_TESTED,
    across,
    decide,
    interval,
    share,
    share_text,
    within_mc_error,
    worst,
)
from analysis.loading import Missing
from analysis.report import markdown
from hypersweep.frontier import flag_text, flag_texts, ratios, smallest
from hypersweep.manifest import MANIFEST, ManifestError, owed, read_manifest
from hypersweep.results import ResultStore, load_epochs, load_trials
from hypersweep.search_space import Objective, SweepSpec, load
from hypersweep.vocab import COMPARED, CONDITIONED, OK

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "results" / "data"
FIGURES = ROOT / "docs" / "results"
EXPERIMENTS = ["teacher_scaling", "teacher_dims", "rotation_depth_digits", "rotation_depth_digits_tuned",
               "rotation_width_digits", "rotation_smallest_digits", "whole_model_teacher", "teacher_capacity",
               "rotation_width_embedding", "teacher_embedding_plateau", "teacher_capacity_fe",
               "teacher_hyper_plateau"]
SEED = 0  # of every resampling on the page, so the page is reproducible (`--seed` sets it)
MIN_SEARCHES = 3  # independently seeded searches the teacher size claim needs to hold or fail

ORDER_OF_MAGNITUDE = 10.0  # "g is an order of magnitude smaller than q"
MIN_POINTS, MIN_DECADES = 3, 1.0  # what a slope must rest on to carry a verdict
GENERIC, FAVOURABLE = "mlp", "hypernet"  # the teacher targets: the verdict's, and the favourable case
TEACHER_LABELS = {GENERIC: "generic teacher (target: mlp)",
                  FAVOURABLE: "hypernetwork teacher (target: hypernet, the favourable case: g* is itself a small g)"}


@dataclass(frozen=True)
class Experiment:
    name: str
    trials: pd.DataFrame
    epochs: pd.DataFrame | None  # None when no learning curves were committed
    space: Path

    @functools.cached_property  # read once: the page asks for it ~170 times, ~30 ms a read
    def spec(self) -> SweepSpec:
        return load(str(self.space), build_tasks=False)

    @property
    def objective(self) -> Objective:
        return self.spec.objective


@dataclass(frozen=True)
class Claim:
    title: str
    claim: str
    experiment: str
    verdict: str  # holds | does not hold | inconclusive | not tested | not run
    why: str
    body: list[str]


def export(runs: Path, log: Callable[[str], None] = print) -> list[str]:
    """Copy each finished sweep in `runs` to DATA as compact Parquet files; return their names.

    Beside the tables go the space file and the trial budgets the sweep ran with (`--num-samples`
    included), so the page never describes a budget that did not run. A sweep with trials still
    owed is left out, so a half-run experiment never replaces a finished table.
    """
    DATA.mkdir(parents=True, exist_ok=True)
    done = []
    for out in [path for name in EXPERIMENTS for path in (runs / name, *sorted(runs.glob(f"{name}_seed[0-9]*")))]:
        name = out.name
        if not (out / "trials").is_dir() or not (out / MANIFEST).is_file():
            continue
        try:
            manifest = read_manifest(ResultStore(str(out)))
        except ManifestError as err:
            log(f"{out / MANIFEST}: unreadable ({err}), not exported")
            continue
        trials = load_trials(str(out))
        if missing := owed(manifest, trials.groupby("study").size().to_dict()):
            log(f"{out}: {missing} trials still owed, not exported (continue it with "
                f"python -m hypersweep.launch --resume --out {out})")
            continue
        trials.to_parquet(DATA / f"{name}.trials.parquet", index=False)
        load_epochs(str(out)).to_parquet(DATA / f"{name}.epochs.parquet", index=False)
        shutil.copy(out / "space.yaml", DATA / f"{name}.space.yaml")
        ran = {key: manifest.get(key) for key in ("experiment", "version", "budgets", "num_samples")}
        (DATA / f"{name}.budgets.json").write_text(json.dumps(ran, indent=2) + "\n")
        done.append(name)
    return done


def read(name: str) -> Experiment | None:
    path = DATA / f"{name}.trials.parquet"
    if not path.exists():
        return None
    epochs = DATA / f"{name}.epochs.parquet"
    return Experiment(name, pd.read_parquet(path), pd.read_parquet(epochs) if epochs.exists() else None,
                      DATA / f"{name}.space.yaml")


def repeats(name: str) -> list[str]:
    """The names of the committed seeded repeats of one experiment, `name`_seed<k>."""
    return sorted(p.name.removesuffix(".trials.parquet") for p in DATA.glob(f"{name}_seed*.trials.parquet"))


def searches(name: str) -> list[Experiment]:
    """The committed searches of one experiment: `name` and its seeded repeats `name`_seed<k>."""
    return [e for e in (read(n) for n in [name, *repeats(name)]) if e is not None]


def teachers(exp: Experiment) -> dict[str, pd.DataFrame]:
    """The trials per teacher target, the generic one first; {'': trials} for a task without teachers.

    Tables from before `target` existed hold the hypernetwork teacher only.
    """
    trials = exp.trials
    if trials["config.task.name"].iloc[0] != "teacher":
        return {"": trials}
    target = trials["config.task.target"] if "config.task.target" in trials else pd.Series(FAVOURABLE, trials.index)
    return {t: trials[target == t] for t in sorted(target.unique(), key=lambda t: t != GENERIC)}


def on(label: str) -> str:
    """' (generic mlp teacher)', or '' for a task without teachers: which teacher a verdict is about."""
    short = {GENERIC: "generic mlp teacher", FAVOURABLE: "hypernet teacher, the favourable case"}
    return f" ({short.get(label, label)})" if label else ""


# ----- sizes at equal error ------------------------------------------------------------------

def smallest_draws(trials: pd.DataFrame, family: str, target: float, metric: str, count: str, samples: int,
                   rng: np.random.Generator) -> np.ndarray:
    """The smallest `count` meeting `target` in `samples` resamples of one family's ok trials; inf where none does."""
    mine = trials[(trials["family"] == family) & (trials["status"] == OK)].dropna(subset=[metric])
    if mine.empty:
        return np.full(samples, np.inf)
    errors, sizes = mine[metric].to_numpy(float), mine[count].to_numpy(float)
    pick = rng.integers(0, len(errors), size=(samples, len(errors)))
    return np.where(errors[pick] <= target, sizes[pick], np.inf).min(axis=1)


def ratio_draws(trials: pd.DataFrame, family: str, target: float, metric: str, count: str, samples: int,
                seed: int | None = None) -> np.ndarray:
    """Resampled ratios family/hyper of the smallest sizes meeting `target`. A family that misses the
    target needs more than it tried: the embedding missing gives inf, the hypernetwork missing 0, both NaN."""
    rng = np.random.default_rng(SEED if seed is None else seed)
    other = smallest_draws(trials, family, target, metric, count, samples, rng)
    hyper = smallest_draws(trials, "hyper", target, metric, count, samples, rng)
    with np.errstate(invalid="ignore"):
        return other / hyper


def misses(trials: pd.DataFrame, family: str, target: float, metric: str, count: str, samples: int) -> float:
    """How often a family misses `target` across resamples of its trials."""
    draws = smallest_draws(trials, family, target, metric, count, samples, np.random.default_rng(SEED))
    return float(np.isinf(draws).mean())


def ratio_text(value: float, draws: np.ndarray) -> str:
    """'29.2x [9.2, 58.3]'; a ratio below 1 keeps two significant digits ('0.012x'), not '0.0x'."""
    low, high = interval(draws)

    def show(x: float) -> str:
        return f"{x:.2g}" if 0 < abs(x) < 1 else f"{x:,.1f}"

    return f"{show(value)}x [{show(low)}, {show(high)}]".replace("inf", "∞")


def tightest_shared(table: pd.DataFrame, families: list[str]) -> float | None:
    """The tightest target every one of `families` reached, or None."""
    found = table[table["found"] & table["family"].isin(families)]
    reached = found.groupby("target")["family"].nunique()
    shared = reached[reached == len(families)]
    return float(shared.index.min()) if not shared.empty else None


def frontier_rows(table: pd.DataFrame, count: str, metric: str, report: str,
                  conditioner: bool = False) -> pd.DataFrame:
    """The frontier with its flags, as the page shows it: with the variant where a table holds several
    (teacher seeds), and with `conditioner` the chosen f's or e's width x depth (where it sits against
    its search bounds)."""
    found = table[table["found"]]
    rows = pd.DataFrame({"target": found["target"], "family": found["family"], count: found[count].astype(int),
                         "params_total": found["params_total"].astype(int), metric: found[metric],
                         report: found[report],
                         "training-limited": flag_texts(found)})
    if conditioner and "conditioner.width" in found:
        shape = [f"{w:g} x {d:g}" if pd.notna(w) and pd.notna(d) else "-"
                 for w, d in zip(found["conditioner.width"], found["conditioner.depth"], strict=True)]
        rows.insert(rows.columns.get_loc("params_total") + 1, "f / e (width x depth)", shape)
    if found["variant"].nunique() > 1:
        rows.insert(0, "variant", found["variant"])
    return rows


def limited(table: pd.DataFrame, family: str, target: float) -> bool:
    """Whether the family's frontier point at `target` is flagged training-limited."""
    row = table[(table["family"] == family) & (table["target"] == target) & table["found"]]
    return not row.empty and flag_text(row["training_limited"].iloc[0]) == "yes"


def size_claim(exps: list[Experiment], samples: int, title: str, claim: str, minimum: int = 1) -> Claim:
    """Rule (fixed in advance). The claim is asymptotic, so it is judged at the tightest target that both
    the hypernetwork and the embedding reach (by the objective's metric, counting primary parameters).
    Each family's trials are resampled and the smallest size meeting that target read off each
    resample (misses kept, see ratio_draws). In one search: holds when >= 97.5% of the resampled
    ratios embedding/hyper are >= 10 (by more than the Monte Carlo error) and the embedding's frontier
    point there is not training-limited; does not hold when >= 97.5% are below 10 and the
    hypernetwork's point is not training-limited; inconclusive otherwise. Over the independently
    seeded searches of the experiment (`exps`, see searches()): holds when every search holds and
    does not hold when every one does not, given at least `minimum` searches (3 on the teacher: one
    search's bootstrap leaves out the variation of the sampler, teacher and training seeds);
    inconclusive otherwise."""
    if not exps:
        return Claim(title, claim, "-", NOT_RUN, "no committed results", [])
    body, per_search = [], []
    for exp in exps:
        o = exp.objective
        verdicts = {}
        for label, trials in teachers(exp).items():
            table = smallest(trials, o.error_targets, o.metric, o.report, o.count, exp.epochs)
            figure = frontier.plot_frontier(table, o.metric, o.count,
                                            FIGURES / f"{exp.name}{'_' + label if label else ''}_frontier.png")
            rows = ratio_rows(trials, table, o.metric, o.count, samples)
            verdicts[label] = size_verdict(trials, table, o.metric, o.count, samples)
            heading = TEACHER_LABELS.get(label, "Frontier") + (f", {exp.name}" if len(exps) > 1 else "")
            body += [f"**{heading}**{': ' + verdicts[label][0] if label else ''}", "",
                     f"![smallest size per target]({figure.relative_to(ROOT)})", "",
                     *markdown(frontier_rows(table, o.count, o.metric, o.report,
                                             conditioner=not pinned_conditioners(trials))), "",
                     *(markdown(rows) if not rows.empty else ["No target was reached by both families."]), ""]
        label = next(iter(verdicts))
        per_search.append((exp.name, label, *verdicts[label]))
    verdict = across([v for _, _, v, _ in per_search], minimum)
    if len(per_search) == 1:
        why = per_search[0][3] + on(per_search[0][1])
    else:
        why = "; ".join(f"{name}: {v} ({w})" for name, _, v, w in per_search) + on(per_search[0][1])
    if len(per_search) < minimum:
        why += f"; {len(per_search)} seeded search(es), {minimum} needed to decide"
    body.insert(0, "Ratios: the smallest size meeting each target, family over hypernetwork, by the val-error "
                   "frontier (primary and total parameters) and by the test-error frontier (the smallest trial whose "
                   f"test error meets the target); {LEVEL:.0%} interval over {samples:,} resamples of the trials "
                   f"(resampling seed {SEED}), with how often each family misses the target in them. "
                   f"{len(exps)} independently seeded search(es): {', '.join(e.name for e in exps)}.\n")
    return Claim(title, claim, ", ".join(e.name for e in exps), verdict, why, body)


def ratio_rows(trials: pd.DataFrame, table: pd.DataFrame, metric: str, count: str, samples: int) -> pd.DataFrame:
    """Per target, the ratios to the hypernetwork with intervals and miss rates, primary and total, val and test."""
    targets = list(table["target"].unique())
    val = ratios(table, count).set_index("target")
    total = ratios(smallest(trials, targets, metric, count="params_total"), "params_total").set_index("target")
    test = ratios(smallest(trials, targets, "test_error", count=count), count).set_index("target")
    rows = []
    for target in val.index:
        row = {"target": target}
        for family in COMPARED:
            column = f"{family}/hyper"
            value = val[column].get(target, np.nan) if column in val else np.nan
            if pd.isna(value):
                continue
            draws = ratio_draws(trials, family, target, metric, count, samples)
            row[column] = ratio_text(value, draws)
            row[f"misses ({family}, hyper)"] = (f"{misses(trials, family, target, metric, count, samples):.0%}, "
                                                f"{misses(trials, 'hyper', target, metric, count, samples):.0%}")
            row[f"{column} total"] = times(total, column, target, ",.2f")
            row[f"{column} test"] = times(test, column, target, ",.1f")
        if len(row) > 1:
            rows.append(row)
    return pd.DataFrame(rows)


def times(table: pd.DataFrame, column: str, target: float, digits: str) -> str:
    """A ratio from a ratios() table indexed by target, as '12.3x', or '-' where there is none."""
    value = table[column].get(target, np.nan) if column in table else np.nan
    return "-" if pd.isna(value) else f"{value:{digits}}x"


def size_verdict(trials: pd.DataFrame, table: pd.DataFrame, metric: str, count: str,
                 samples: int) -> tuple[str, str]:
    """size_claim's rule on one teacher's trials and frontier."""
    target = tightest_shared(table, list(CONDITIONED))
    if target is None:
        return INCONCLUSIVE, "no error target was reached by both the hypernetwork and the embedding"
    value = table.set_index(["family", "target"]).loc[("embedding", target), count] / \
        table.set_index(["family", "target"]).loc[("hyper", target), count]
    draws = ratio_draws(trials, "embedding", target, metric, count, samples)
    threshold = ORDER_OF_MAGNITUDE - 1e-9  # ">= 10" as "above 10 - tiny"
    close = ", within Monte Carlo error of the 97.5% level" if within_mc_error(draws, threshold) else ""
    at = (f"embedding/hyper {ratio_text(value, draws)} at eps {target:g}, >= 10x in "
          f"{share_text(draws, 'above', threshold)}{close}")
    verdict = decide(draws, threshold)
    if verdict == HOLDS and limited(table, "embedding", target):
        return INCONCLUSIVE, f"{at}, but the embedding's point is training-limited"
    if verdict == FAILS and limited(table, "hyper", target):
        return INCONCLUSIVE, f"{at}, but the hypernetwork's point is training-limited"
    return verdict, at


CONDITIONER = ("config.model.conditioner.width", "config.model.conditioner.depth")


def total_claim(exp: Experiment | None, samples: int, title: str) -> Claim:
    """Rule (fixed in advance), on total parameters (f plus g against e plus q, or N). The paper
    claims a smaller whole model only for a structured target, with f and e as large or as small as
    they need to be, so the claim is not tested (whatever the numbers) where the design cannot decide
    it: on a teacher task run without the hypernetwork (structured) teacher, or where f's and e's
    width and depth were not searched (pinned, the conditioner sets most of the total by design).
    Otherwise, per teacher seed (variant) of the structured teacher, at the tightest target that the
    hypernetwork and every other family reach, each family's ratio to the hypernetwork's smallest
    total is resampled (misses kept). A seed holds when for every other family >= 97.5% of the ratios
    are above 1 and its point is not training-limited; does not hold when for some family >= 97.5%
    are below 1 and the hypernetwork's point is not training-limited; inconclusive otherwise, and
    also when the best f or e there sits on a bound of its searched width or depth (the bound must
    be widened). Over seeds: every seed holds -> holds, every seed does not -> does not hold, else
    inconclusive. The generic teacher, when run, is shown as a second line."""
    claim = ("for a structured target the whole hypernetwork (f plus g) is smaller than the embedding model "
             "and the standard net")
    if exp is None:
        return Claim(title, claim, "-", NOT_RUN, "no committed results", [])
    o = exp.objective
    per_teacher = teachers(exp)
    body = []
    if searched := conditioner_ranges(exp):
        body += [f"Searched for f and e: {searched}. A best conditioner on an end of its range (other than "
                 "width 1) keeps a seed from deciding: the range must be widened first.", ""]
    for label, trials in per_teacher.items():
        table = smallest(trials, o.error_targets, o.metric, o.report, "params_total", exp.epochs)
        body += [f"**{TEACHER_LABELS.get(label, 'Frontier')}** (by total parameters)", "",
                 *markdown(frontier_rows(table, "params_total", o.metric, o.report, conditioner=True)), ""]
    if "" not in per_teacher and FAVOURABLE not in per_teacher:
        return Claim(title, claim, exp.name, NOT_TESTED,
                     "judged on the generic teacher only; the paper claims a smaller whole model for a structured "
                     "target (the hypernetwork teacher), which this experiment did not run", body)
    label = "" if "" in per_teacher else FAVOURABLE
    trials = per_teacher[label]
    pinned = pinned_conditioners(trials)
    if pinned:
        return Claim(title, claim, exp.name, NOT_TESTED, pinned + on(label), body)
    verdicts, whys = [], []
    for variant, seeded in trials.groupby("variant", sort=True):
        table = smallest(seeded, o.error_targets, o.metric, o.report, "params_total", exp.epochs)
        verdict, why = total_verdict(seeded, table, o.metric, samples)
        # Said whatever the verdict (where the search must widen next); it also keeps one from deciding.
        if edge := conditioner_on_bound(exp, seeded, table):
            why = f"{why}; {edge}"
            if verdict in (HOLDS, FAILS):
                verdict = INCONCLUSIVE
        verdicts.append(verdict)
        whys.append(f"{variant or exp.name}: {verdict} ({why})")
    return Claim(title, claim, exp.name, across(verdicts), "; ".join(whys) + on(label), body)


PLATEAU_GAP = 0.25  # "comes within 25% of N": the flat-in-size rule's tolerance (FLAT_TOLERANCE)
PINNED_E = (128, 2)  # the f and e that the capacity searches kept fixed in front of g and q
PINNED = f"{PINNED_E[0]} x {PINNED_E[1]}"
CW, CD, LR = "config.model.conditioner.width", "config.model.conditioner.depth", "config.train.lr"


def lr_grid(exp: Experiment) -> tuple:
    """The lr choices of a grid experiment (the plateau diagnoses give every family the same grid)."""
    return next(p.choices for space in exp.spec.studies for p in space.params if p.name == "train.lr")


def best_per_conditioner(trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Each f / e shape's best trial over the lr grid, and which of them is the pinned shape."""
    best = trials.loc[trials.groupby([CW, CD])["val_error"].idxmin()]
    return best, (best[CW] == PINNED_E[0]) & (best[CD] == PINNED_E[1])


def shape(row: pd.Series) -> str:
    """An f's or e's width x depth, as '8 x 1'."""
    return f"{int(row[CW])} x {int(row[CD])}"


def plateau_claim(exp: Experiment | None, title: str) -> Claim:
    """Rule (fixed in advance), on teacher_embedding_plateau's grid: q fixed at sizes of N, e's width
    and depth and the lr on a grid, embedding_dim = dim_i so that q has N's parameter count. Per q size,
    each e's best val error over the lr grid against N's best at that size. Holds (the stall is q's
    capacity) when at every size the pinned 128 x 2 e comes within PLATEAU_GAP of N; does not hold when
    at some size it is further than that from N, and the why names the cause: "the conditioner" where a
    smaller e does come within PLATEAU_GAP, "not resolved" where none does. Inconclusive when the pinned
    e's or N's best lr at a size sits on an edge of the grid (a wider grid could change the gap)."""
    claim = (f"the embedding's stall on the generic teacher is q's capacity: with the {PINNED} e that the capacity "
             "searches pinned, q comes within 25% of the plain net N of the same size")
    if exp is None:
        return Claim(title, claim, "-", NOT_RUN, "no committed results", [])
    ok = exp.trials[exp.trials["status"] == OK].dropna(subset=["val_error"])
    grid = lr_grid(exp)
    rows, verdicts, whys = [], [], []
    for w, at_w in ok.groupby("config.model.primary.width"):
        plain = at_w[at_w["family"] == "standard"]
        conditioned = at_w[at_w["family"] == "embedding"]
        if plain.empty or conditioned.empty:
            continue
        n_best = plain.loc[plain["val_error"].idxmin()]
        best, pinned = best_per_conditioner(conditioned)
        gap = best["val_error"] / n_best["val_error"] - 1
        rows += [{"q / N width": int(w), "model": "N", "params_primary": int(n_best["params_primary"]),
                  "best val_error": float(n_best["val_error"]), "its lr": float(n_best[LR]), "vs N": "-"}]
        rows += [{"q / N width": int(w), "model": f"e {shape(r)} + q", "params_primary": int(r["params_primary"]),
                  "best val_error": float(r["val_error"]), "its lr": float(r[LR]), "vs N": f"{g:+.0%}"}
                 for (_, r), g in zip(best.iterrows(), gap, strict=True)]
        if not pinned.any():
            continue
        mine, pinned_gap, closest = best[pinned].iloc[0], float(gap[pinned].iloc[0]), best.loc[gap.idxmin()]
        on_edge = [name for name, value in (("N", n_best[LR]), (f"e {PINNED}", mine[LR]))
                   if value in (min(grid), max(grid))]
        text = (f"width {int(w)}: {PINNED} e {pinned_gap:+.0%} against N "
                f"({mine['val_error']:.3g} vs {n_best['val_error']:.3g})")
        if on_edge:
            verdicts.append(INCONCLUSIVE)
            text += f"; best lr on the grid's edge for {' and '.join(on_edge)}"
        elif pinned_gap <= PLATEAU_GAP:
            verdicts.append(HOLDS)
        else:
            verdicts.append(FAILS)
            text += (f"; the conditioner: e {shape(closest)} comes within {gap.min():+.0%}" if gap.min() <= PLATEAU_GAP
                     else f"; not resolved: no e comes within 25% (closest: e {shape(closest)}, {gap.min():+.0%})")
        whys.append(text)
    if not verdicts:
        return Claim(title, claim, exp.name, NOT_TESTED, f"no q size ran with both N and the pinned {PINNED} e", [])
    body = ["Per q size, each model's best val error over the lr grid "
            f"({', '.join(f'{v:g}' for v in grid)}); embedding_dim = dim_i, so q has N's parameter count.", "",
            *markdown(pd.DataFrame(rows)), ""]
    return Claim(title, claim, exp.name, worst(verdicts), "; ".join(whys) + on(GENERIC), body)


def pinned_f_gaps(exp: Experiment | None) -> list[str]:
    """Measurement (fixed in advance), on teacher_hyper_plateau's grid: per g width, the pinned 128 x 2 f's
    best val error over the lr grid against the best of the other f's, as 'g width 4: 128 x 2 f +40%
    against f 8 x 1 (0.014 vs 0.01)'; a best lr on an edge of the grid is said."""
    if exp is None:
        return []
    ok = exp.trials[(exp.trials["status"] == OK) & (exp.trials["family"] == "hyper")].dropna(subset=["val_error"])
    grid = lr_grid(exp)
    gaps = []
    for w, at_w in ok.groupby("config.model.primary.width"):
        best, pinned = best_per_conditioner(at_w)
        if not pinned.any() or pinned.all():
            continue
        mine, others = best[pinned].iloc[0], best[~pinned]
        theirs = others.loc[others["val_error"].idxmin()]
        edge = [f"{name}'s best lr {value:g}" for name, value in ((PINNED, mine[LR]), (shape(theirs), theirs[LR]))
                if value in (min(grid), max(grid))]
        gaps.append(f"g width {int(w)}: {PINNED} f {mine['val_error'] / theirs['val_error'] - 1:+.0%} against f "
                    f"{shape(theirs)} ({mine['val_error']:.3g} vs {theirs['val_error']:.3g})"
                    + (f", {' and '.join(edge)} on the grid's edge" if edge else ""))
    return gaps


def pinned_conditioners(trials: pd.DataFrame) -> str:
    """'' when f's and e's width and depth were searched, else why the whole model cannot be compared."""
    conditioned = trials[trials["family"].isin(CONDITIONED) & (trials["status"] == OK)]
    fixed = [c for c in CONDITIONER if c not in conditioned or conditioned.groupby("family")[c].nunique().max() < 2]
    if not fixed or conditioned.empty:
        return ""
    share_f = (1 - conditioned["params_primary"] / conditioned["params_total"]).median()
    shape = " x ".join(str(int(conditioned[c].iloc[0])) for c in CONDITIONER if c in conditioned)
    return (f"f and e were pinned ({shape}, not searched), so the conditioner sets the total by design "
            f"(a median {share_f:.1%} of the conditioned models' totals is not the primary net)")


def conditioner_ranges(exp: Experiment) -> str:
    """Each conditioned family's searched f / e width and depth, as 'hyper width 1-256, depth 1-5; ...'."""
    ranges = []
    for space in exp.spec.studies:
        parts = []
        for p in space.params:
            if p.name in ("model.conditioner.width", "model.conditioner.depth"):
                low, high = (min(p.choices), max(p.choices)) if p.choices else (p.low, p.high)
                parts.append(f"{p.name.rsplit('.', 1)[-1]} {low:g}-{high:g}")
        if parts and space.family in CONDITIONED:
            ranges.append(f"{space.family} {', '.join(parts)}")
    return "; ".join(dict.fromkeys(ranges))


def conditioner_on_bound(exp: Experiment, trials: pd.DataFrame, table: pd.DataFrame) -> str:
    """'' unless a conditioned family's frontier point has f's or e's width on an end of its searched range
    (the low end 1 aside: nothing is narrower) or its depth at the top of its choices; else which."""
    bounds = {(space.family, p.name): p for space in exp.spec.studies for p in space.params}
    hits = []
    for row in table[table["found"] & table["family"].isin(CONDITIONED)].itertuples():
        trial = trials[(trials["family"] == row.family) & (trials["trial"] == row.trial)]
        for column, key in zip(CONDITIONER, ("model.conditioner.width", "model.conditioner.depth"), strict=True):
            p = bounds.get((row.family, key))
            if p is None or trial.empty:
                continue
            value = trial[column].iloc[0]
            low, high = (min(p.choices), max(p.choices)) if p.choices else (p.low, p.high)
            if value >= high or (key.endswith("width") and value <= low and low > 1):
                hits.append(f"{row.family} {key.rsplit('.', 1)[-1]} {value:g} at eps {row.target:g}")
    return f"best conditioner on a search bound: {', '.join(sorted(set(hits)))}" if hits else ""


def total_verdict(trials: pd.DataFrame, table: pd.DataFrame, metric: str, samples: int) -> tuple[str, str]:
    """total_claim's rule on one teacher's trials and its frontier by total parameters."""
    others = [f for f in COMPARED if f in set(trials["family"])]
    target = tightest_shared(table, ["hyper", *others])
    if target is None:
        return INCONCLUSIVE, "no target reached by every family"
    sizes = table[table["target"] == target].set_index("family")["params_total"]
    verdicts, parts = [], []
    for family in others:
        draws = ratio_draws(trials, family, target, metric, "params_total", samples)
        verdict = decide(draws, 1.0)
        flagged = {HOLDS: family, FAILS: "hyper"}.get(verdict)
        if flagged and limited(table, flagged, target):
            verdict = INCONCLUSIVE
        verdicts.append(verdict)
        parts.append(f"{family}/hyper total {ratio_text(sizes[family] / sizes['hyper'], draws)}"
                     + (f" ({flagged}'s point training-limited)" if verdict == INCONCLUSIVE and flagged else ""))
    return worst(verdicts), f"{'; '.join(parts)} at eps {target:g}"


# ----- scaling exponents -----------------------------------------------------------------------

def slope_rests(fit: pd.Series, family: str) -> str:
    """'' when a fitted slope rests on enough points and decades to carry a verdict, else why not."""
    if not np.isfinite(fit["slope"]):
        return f"{family}'s slope could not be fitted ({fit['points']} points, {fit['set_aside']} set aside)"
    if fit["points"] < MIN_POINTS or fit["decades"] < MIN_DECADES:
        return (f"{family}'s slope rests on {fit['points']} points over {fit['decades']:.2f} decades of eps "
                f"({fit['set_aside']} set aside as training-limited)")
    return ""


def fitted(fit: pd.Series) -> str:
    """'1.67 [1.04, 4.31] over eps 0.0149..0.00429', or 'not fitted'."""
    if not np.isfinite(fit["slope"]):
        return "not fitted"
    return (f"{fit['slope']:.2f} [{fit['slope_low']:.2f}, {fit['slope_high']:.2f}] over eps "
            f"{fit['eps_high']:.3g}..{fit['eps_low']:.3g}")


def slope_claim(exp: Experiment | None, samples: int) -> Claim:
    """Rule (fixed in advance): over the capacity-limited frontier points of the objective's metric
    (primary counts), D = slope(embedding) - slope(hyper) in each resample. Each slope must rest on
    >= 3 distinct points spanning >= 1 decade of eps, else inconclusive. Holds when >= 97.5% of the
    resamples have D > 0; does not hold when >= 97.5% have D < 0; inconclusive otherwise. The
    measured ratio slope(embedding)/slope(hyper) is shown beside the paper's (m+n)/m."""
    title, claim = "Scaling exponents", ("the size of q grows like eps^-(m+n)/r and that of g like eps^-m/r: the "
                                         "embedding's log-log slope is steeper than the hypernetwork's")
    if exp is None:
        return Claim(title, claim, "-", NOT_RUN, "no committed results", [])
    o = exp.objective
    label, trials = next(iter(teachers(exp).items()))
    fits = {(metric, count): scaling.fit(trials, metric, count, samples=samples, seed=SEED, epochs=exp.epochs)
            for metric in ("val_error", "test_error") for count in ("params_primary", "params_total")}
    main = fits[o.metric, o.count]
    figure = scaling.plot_fits(main, o.metric, o.count, FIGURES / f"{exp.name}_scaling.png")
    shown = pd.concat([scaling.shown(f.table).assign(frontier=m, count=c) for (m, c), f in fits.items()])
    body = [f"![scaling fits]({figure.relative_to(ROOT)})", "",
            f"Slopes over the capacity-limited frontier points{on(label)}; `set_aside`: frontier points flagged "
            f"training-limited; `unfitted`: resamples in which no slope could be fitted. The verdict uses the "
            f"{o.metric} frontier and {o.count}.", "",
            *markdown(shown[["frontier", "count", *[c for c in shown.columns if c not in ("frontier", "count",
                                                                                           "variant")]]])]
    # One teacher's trials share one variant: "" for a sweep without variants, else e.g. "target=mlp".
    verdict, why = slope_verdict(main, trials["variant"].iloc[0])
    return Claim(title, claim, exp.name, verdict, why + on(label), body)


def slope_verdict(fits: scaling.Fits, cond: str) -> tuple[str, str]:
    """slope_claim's rule on one condition of a fit."""
    table = fits.table[fits.table["variant"] == cond].set_index("family")
    if not set(CONDITIONED) <= set(table.index):
        return INCONCLUSIVE, "the hypernetwork or the embedding was not run"
    h, e = table.loc["hyper"], table.loc["embedding"]
    m, n = int(e.get("dim_x", 0)), int(e.get("dim_i", 0))
    predicted = f"; paper's (m+n)/m = {(m + n) / m:.1f}" if m and n else ""
    difference = fits.draws[cond, "embedding"] - fits.draws[cond, "hyper"]
    ratio = e.slope / h.slope if np.isfinite(e.slope) and np.isfinite(h.slope) else np.nan
    why = (f"hyper {fitted(h)}, embedding {fitted(e)}; measured ratio "
           f"{'-' if np.isnan(ratio) else f'{ratio:.1f}'}{predicted}")
    thin = [reason for reason in (slope_rests(h, "hyper"), slope_rests(e, "embedding")) if reason]
    if thin:
        return INCONCLUSIVE, f"{'; '.join(thin)}; {why}"
    return decide(difference, 0.0), f"{why}; D > 0 in {share(difference, 'above', 0):.0%} of resamples"


def dims_claim(exp: Experiment | None, samples: int) -> Claim:
    """Rule (fixed in advance): at the smallest and largest n, with each slope the mean over teacher
    seeds and resampled over seeds and trials, dE = slope_e(n_max) - slope_e(n_min) and dH likewise.
    Holds when >= 97.5% of the resamples have dE > 0 and >= 97.5% have dE - dH > 0 (the embedding's
    slope grows with n, and more than the hypernetwork's); does not hold when >= 97.5% have
    dE - dH < 0 or >= 97.5% have dE < 0; inconclusive otherwise, and whenever one of the four slopes
    rests on fewer than 3 points or less than a decade of eps (the guard of the slope rule)."""
    title, claim = "Dependence on n = dim_i", "the embedding's slope grows with n while the hypernetwork's does not"
    if exp is None:
        return Claim(title, claim, "-", NOT_RUN, "no committed results", [])
    o = exp.objective
    label, trials = next(iter(teachers(exp).items()))
    fits = scaling.fit(trials, o.metric, o.count, samples=samples, seed=SEED, epochs=exp.epochs)
    figure = scaling.plot_by_dim(fits.table, o.count, FIGURES / f"{exp.name}_slopes_by_n.png")
    table = scaling.by_dim(fits.table)
    body = [f"![slopes by n]({figure.relative_to(ROOT)})", "",
            *(markdown(table.reset_index()) if table is not None else ["Slopes could not be compared by n."]), "",
            *markdown(predicted_ratios(fits.table)), "",
            *markdown(scaling.shown(fits.table))]
    verdict, why = dims_verdict(fits)
    seeds = trials["config.task.seed"].nunique() if "config.task.seed" in trials else 1
    per_study = trials.groupby("study").size()
    why += f"; {seeds} teacher seed(s), {span(per_study)} trials per study" + on(label)
    return Claim(title, claim, exp.name, verdict, why, body)


def predicted_ratios(fits: pd.DataFrame) -> pd.DataFrame:
    """Per condition, the measured slope ratio embedding/hyper beside the paper's (m+n)/m."""
    rows = []
    for cond, group in fits.groupby("variant", sort=False):
        slope = group.set_index("family")["slope"]
        row = group.iloc[0]
        if set(CONDITIONED) <= set(slope.index) and "dim_x" in row and "dim_i" in row:
            rows.append({"condition": cond or "-", "measured embedding/hyper": slope["embedding"] / slope["hyper"],
                         "paper (m+n)/m": (row["dim_x"] + row["dim_i"]) / row["dim_x"]})
    return pd.DataFrame(rows, columns=["condition", "measured embedding/hyper", "paper (m+n)/m"])


def dims_verdict(fits: scaling.Fits) -> tuple[str, str]:
    """dims_claim's rule on a fit with dim_i conditions."""
    table = fits.table
    if "dim_i" not in table or table["dim_i"].nunique() < 2:
        return INCONCLUSIVE, "fewer than two values of n"
    low_n, high_n = table["dim_i"].min(), table["dim_i"].max()

    def draws(family: str, n: int) -> np.ndarray:
        row = table[(table["family"] == family) & (table["dim_i"] == n)]
        return fits.draws[row["variant"].iloc[0], family] if not row.empty else np.full(1, np.nan)

    def slope(family: str, n: int) -> float:
        row = table[(table["family"] == family) & (table["dim_i"] == n)]
        return float(row["slope"].iloc[0]) if not row.empty else np.nan

    d_e = draws("embedding", high_n) - draws("embedding", low_n)
    d_h = draws("hyper", high_n) - draws("hyper", low_n)
    grows, beats = decide(d_e, 0.0), decide(d_e - d_h, 0.0)
    verdict = HOLDS if grows == HOLDS and beats == HOLDS else FAILS if FAILS in (grows, beats) else INCONCLUSIVE
    thin = [slope_rests(row, f"{row.family} (n={row.dim_i})") for _, row in
            table[table["family"].isin(CONDITIONED) & table["dim_i"].isin([low_n, high_n])].iterrows()]
    thin = [reason for reason in thin if reason]
    if thin:
        verdict = INCONCLUSIVE
    why = "; ".join([*thin, f"embedding {slope('embedding', low_n):.2f} (n={low_n}) -> "
                     f"{slope('embedding', high_n):.2f} (n={high_n}), hyper {slope('hyper', low_n):.2f} -> "
                     f"{slope('hyper', high_n):.2f}; dE > 0 in {share(d_e, 'above', 0):.0%} and dE - dH > 0 in "
                     f"{share_text(d_e - d_h, 'above', 0)}"])
    return verdict, why


# ----- depth and assumptions ---------------------------------------------------------------------

def depth_claim(exp: Experiment | None, title: str, tuned: bool = False, widths: Experiment | None = None) -> Claim:
    """Rule (fixed in advance): only runs that converged can compare depths, so when more than half of
    either family's trials were still falling at the last epoch (training-limited rule (b)) the
    verdict is inconclusive. Otherwise holds when the hypernetwork's mean test error is below the
    embedding's at every depth and, at the deepest, by more than the two stds combined; does not
    hold when it is above the embedding's by more than the combined std at some depth;
    inconclusive otherwise. With `tuned` (a grid over depth and learning rate), each family's
    trial with the lowest val_error at each depth is compared. `widths` (rotation_width_digits) adds
    how wide q must be to match g at one depth, a measurement beside the verdict."""
    claim = "at equal depth of f / e the hypernetwork reaches lower error, and the gap does not close with depth"
    if exp is None:
        return Claim(title, claim, "-", NOT_RUN, "no committed results", [])
    table = depth.by_depth(exp.trials, epochs=exp.epochs, tuned=tuned)
    figure = depth.plot_depths(table, "test_error", "rotation", FIGURES / f"{exp.name}.png")
    body = [f"![test error against depth]({figure.relative_to(ROOT)})", "", *markdown(depth.side_by_side(table)),
            "", depth.falling_note(table) or "No trial was still falling at its last epoch."]
    if widths is not None:
        body += ["", f"**How wide q must be to match g** ({widths.name}, f / e depth "
                 f"{int(widths.trials[depth.DEPTH].iloc[0])}; each width with its best lr by val_error):"]
        try:
            match, sentence = depth.width_to_match(widths.trials)
            body += ["", sentence + ".", "", *markdown(match)]
        except Missing as missing:
            body += ["", f"not computed: {missing}."]
    verdict, why = depth_verdict(table)
    return Claim(title, claim, exp.name, verdict, why, body)


def depth_verdict(table: pd.DataFrame) -> tuple[str, str]:
    """depth_claim's rule on analysis.depth.by_depth's table."""
    wide = table.pivot(index="depth", columns="family", values=["mean", "std"]).dropna()
    if wide.empty:
        return INCONCLUSIVE, "no depth has both families"
    gap = wide[("mean", "embedding")] - wide[("mean", "hyper")]
    spread = np.hypot(wide[("std", "embedding")], wide[("std", "hyper")])
    deepest = wide.index.max()
    why = (f"gap (embedding - hyper) {gap.iloc[0]:.3f} at depth {wide.index.min()}, {gap.loc[deepest]:.3f} "
           f"at depth {deepest} (combined std {spread.loc[deepest]:.3f})")
    still = table.groupby("family")[["falling", "trials"]].sum()
    unconverged = [f"{family} {r.falling}/{r.trials}" for family, r in still.iterrows() if r.falling > r.trials / 2]
    if unconverged:
        return INCONCLUSIVE, f"{why}; still falling at the last epoch: {', '.join(unconverged)} trials"
    if (gap > 0).all() and gap.loc[deepest] > spread.loc[deepest]:
        return HOLDS, why
    if (gap < -spread).any():
        return FAILS, why
    return INCONCLUSIVE, why


def assumption1_claim(experiments: list[Experiment], title: str) -> Claim:
    """Rule: analysis.assumptions.assumption1_verdict per experiment with replicated trials, one claim
    per task (`experiments` are one task's); over its experiments, the worst (any does not hold ->
    does not hold; all hold -> holds; all not tested -> not tested)."""
    claim = ("replicas of one architecture converge: their disagreement falls from initialisation to the end "
             "of training")
    rows, figures, verdicts, whys, unguarded = [], [], [], [], []
    for exp in experiments:
        curves = assumptions.replicated_curves(exp.epochs, exp.trials) if exp.epochs is not None else pd.DataFrame()
        if curves.empty:
            continue
        falls = assumptions.disagreement_falls(curves)
        verdict, why = assumptions.assumption1_verdict(falls)
        verdicts.append(verdict)
        unguarded.append(assumptions.assumption1_verdict(falls.assign(still_training=0))[0])
        whys.append(f"{exp.name}: {verdict} ({why})")  # each experiment's own verdict: the claim takes the worst
        rows.append(falls.assign(experiment=exp.name))
        figure = assumptions.plot_disagreement(assumptions.disagreement_by_epoch(curves),
                                               FIGURES / f"{exp.name}_disagreement.png")
        figures.append(f"![disagreement during training, {exp.name}]({figure.relative_to(ROOT)})")
    if not rows:
        return Claim(title, claim, "-", NOT_RUN, "no experiment trained replicas", [])
    table = pd.concat(rows, ignore_index=True)
    body = [*figures, "", "`first_epoch`: where the curves start (0: as initialised); `dead`: trials with a replica "
            f"at chance at the end (error >= {assumptions.DEAD:.0%} of chance), counted apart from the rest; "
            "`still_training`: trained trials whose val_error was still falling at the last epoch (rule (b)), a "
            "family with more than half of them so is not judged.", "",
            *markdown(table[["experiment", "family", "trials", "first_epoch", "dead", "median_ratio_dead", "trained",
                             "falling", "median_first", "median_last", "median_ratio", "still_training"]])]
    why = "; ".join(whys)
    if worst(unguarded) != worst(verdicts):  # the guard came after the data: say what it changed
        why += (f". Without the still-falling guard, added after these runs were seen, the verdict would be "
                f"{worst(unguarded)}")
    return Claim(title, claim, ", ".join(table["experiment"].unique()), worst(verdicts), why, body)


def assumption2_claim(exp: Experiment | None, samples: int) -> Claim:
    """Rule: analysis.assumptions.assumption2_verdict on the experiment's one-hidden-layer standard trials."""
    title, claim = "Assumption 2", "the error of a one-hidden-layer network falls as its width grows"
    if exp is None:
        return Claim(title, claim, "-", NOT_RUN, "no committed results", [])
    metric = exp.objective.report
    label, trials = next(iter(teachers(exp).items()))
    narrow, missing = assumptions.one_hidden_layer(trials, metric)
    if narrow.empty:
        return Claim(title, claim, exp.name, INCONCLUSIVE,
                     "; ".join(line.removeprefix("Assumption 2: ") for line in missing), [])
    rho = assumptions.rank_correlations(narrow, metric)
    by_width = assumptions.error_by_width(narrow, metric)
    figure = assumptions.plot_width(narrow, by_width, rho, metric, "teacher", FIGURES / f"{exp.name}_width.png")
    verdict, why = assumptions.assumption2_verdict(assumptions.width_slopes(narrow, metric, samples, SEED))
    return Claim(title, claim, exp.name, verdict, f"{why}; Spearman rho {assumptions.format_correlations(rho)}"
                 + on(label), [f"![error against width]({figure.relative_to(ROOT)})"])


# ----- the page ---------------------------------------------------------------------------------

def compute(experiments: list[Experiment]) -> list[str]:
    rows = []
    for e in experiments:
        per_study = e.trials.groupby("study").size()
        planned = e.spec.budget.trials
        rows.append({"experiment": e.name, "studies": len(per_study), "trials": len(e.trials),
                     **e.trials["status"].value_counts().to_dict(), "trials per study": span(per_study),
                     "space file says": "grid" if planned is None else str(planned),
                     "train time": f"{e.trials['wall_s'].sum() / 3600:.2f} h"})
    return markdown(pd.DataFrame(rows).fillna(0))


def under_protocol(exp: Experiment) -> bool:
    """Whether an experiment ran with the space file this repository ships for it (the protocol's)."""
    shipped = ROOT / "search_spaces" / f"{exp.name}.yaml"
    return exp.space.is_file() and shipped.is_file() and exp.space.read_text() == shipped.read_text()


def threats(experiments: list[Experiment], claims: list[Claim]) -> list[str]:
    """The threats to validity, with the numbers taken from the committed tables themselves."""
    shipped, older = [], []
    ran = {e.name for e in experiments}
    for e in experiments:
        (shipped if under_protocol(e) else older).append(e.name)
    stale = [name for name in ("teacher_scaling", "teacher_dims") if name in older or name not in ran]
    lines = []
    if shipped:
        lines.append(f"- **Run under the fair-effort protocol** (README, \"Fair-effort protocol\"; the space file "
                     f"that ran is the shipped one): {', '.join(shipped)}.")
    if older:
        lines.append(f"- **{', '.join(older)}: these tables predate the fair-effort protocol**: they were run "
                     "before the training-limited check, the generic teacher and the per-family learning-rate "
                     "search existed, and will be rerun under it with the shipped search spaces. Read their "
                     "verdicts as provisional.")
    for e in experiments:
        lines.append(f"- **{e.name}**: {experiment_facts(e)}.")
    teacher = [e for e in experiments if e.trials["config.task.name"].iloc[0] == "teacher"]
    # A grid at a few fixed sizes (teacher_embedding_plateau) is a diagnosis with its own rule, not a frontier.
    for e in [e for e in teacher if e.spec.sampler.name != "grid"]:
        fits = scaling.fit(next(iter(teachers(e).values())), e.objective.metric, e.objective.count, samples=0,
                           epochs=e.epochs).table
        ranges = "; ".join(f"{r.family}{f' ({r.variant})' if r.variant else ''} {r.points} point(s), "
                           + (f"eps {r.eps_high:.3g}..{r.eps_low:.3g} ({r.decades:.2f} decades)" if r.points else
                              "none") for r in fits.itertuples())
        lines.append(f"- **Eps ranges ({e.name})**: the capacity-limited frontier points each slope rests on: "
                     f"{ranges}. A slope over less than a decade is local, not the asymptotic exponent.")
    for e in experiments:
        if edges := lr_on_edge(e):
            lines.append(f"- **Learning rate on the edge of its range ({e.name})**: {'; '.join(edges)}; a wider "
                         "range might find a better lr, so these families may not be trained to their capacity.")
        frontiers = teachers(e) if e.spec.sampler.name != "grid" else {}
        for label, trials in frontiers.items():
            if limited_points := optimisation_limited(trials, e.objective.metric, e.objective.count,
                                                      e.objective.error_targets):
                lines.append(f"- **Optimisation-limited frontier points ({e.name}{on(label)})**: "
                             f"{'; '.join(limited_points)}. A smaller plain network N, which q can emulate, does "
                             "better, and the point underfits its training set too: its size says how well it was "
                             "trained, not what its error needs.")
    if not any(GENERIC in teachers(e) for e in teacher):
        lines.append("- **Only the favourable teacher.** Every committed teacher table uses the hypernetwork teacher "
                     "(`target: hypernet`): its g* is a 4-unit g, so any g of width >= 4 represents it exactly, and "
                     "over 80% of its variance is a function of I alone, so loose targets ask little of any primary "
                     "net. The paper's claim is about generic smooth targets (`target: mlp`), not run yet.")
    lines += [
        "- **Seeds.** The intervals resample trials (and teacher seeds where a sweep has several); each trial "
        "trained one training seed unless its replicas say otherwise, so run-to-run variation of a single "
        "architecture enters only through the spread of neighbouring trials.",
        "- **Rule (b) under a cosine schedule.** The learning rate decays to zero, so learning curves flatten "
        "whether or not the model could still improve; there the flag catches only clearly unconverged runs, "
        "and the flat-in-size rule (a) carries the check.",
        "- **Budget bookkeeping.** `--num-samples` overrides the space file's trial budget and was not recorded "
        "with the older runs: the trials actually run per study are in the compute table below.",
        f"- **Not run:** {', '.join(n for n in EXPERIMENTS if n not in ran) or 'nothing'}"
        " of the shipped experiments; the depth experiment on MNIST / CIFAR-10"
        + ("".join(f"; {name} as now specified" for name in stale)
           + " (generic teacher; teacher_dims at n in {2, 8} with 1,000 / 3,000 instances, two teacher seeds, "
           "3 replicas, f and e 256 x 2)" if stale else "") + ".",
    ]
    plateau = next((c for c in claims if c.title == "Embedding plateau (teacher)"), None)
    if plateau is not None and plateau.verdict == FAILS:
        lines.append("- **The pinned e holds q back** (Embedding plateau (teacher): does not hold): at equal q, the "
                     "128 x 2 e of teacher_scaling and the teacher_capacity searches trains to a higher error than "
                     "N, so their embedding frontier points at tight targets say how well q trains behind that e, "
                     "not what q needs: the size ratios there overstate q's size unless g is held back as much "
                     "(the pinned f, below, where measured).")
    if gaps := pinned_f_gaps(next((e for e in experiments if e.name == "teacher_hyper_plateau"), None)):
        lines.append(f"- **The pinned f, measured the same way** (teacher_hyper_plateau): {'; '.join(gaps)}. "
                     "Where the pinned f is worse too, the pinned searches handicap g as well as q, and their "
                     "ratios say how each trains behind a 128 x 2 conditioner.")
    untested = [c.title for c in claims if c.verdict == NOT_TESTED]
    if untested:
        lines.append(f"- **Not tested** ({', '.join(untested)}): the design of the experiment cannot decide the "
                     "claim whatever its data; each claim below says why, and docs/results/RUNS.md names the run "
                     "that can.")
    inconclusive = [c.title for c in claims if c.verdict == INCONCLUSIVE]
    if inconclusive:
        lines.append(f"- **Inconclusive** ({', '.join(inconclusive)}): the data could not decide under the rules; "
                     "each claim below says why.")
    lines += [f"- **What would decide {c.title}** ({c.verdict}): {WOULD_DECIDE[c.title]}." for c in claims
              if c.verdict in (INCONCLUSIVE, NOT_TESTED) and c.title in WOULD_DECIDE]
    return lines


# What each claim's table cannot decide yet would take: design, not data (the why says what fell short).
WOULD_DECIDE = {
    "Smaller primary nets (teacher)":
        "every search's share of resamples >= 10x clearing 97.5% (or every search's share below 10x doing so) "
        "at the tightest target both families reach; a search's bootstrap has only its own few trials near that "
        "target, so more trials per search there, and the embedding's q trained to its capacity at that target "
        "(Embedding plateau says whether the pinned 128 x 2 e holds q back)",
    "Whole model (teacher)":
        "at each teacher seed's tightest shared target, f + g below (or above) e + q and N in 97.5% of resamples "
        "at frontier points that are not training-limited and whose best f and e sit inside their searched "
        "ranges: more trials per study near the tight targets, and epochs enough that those trials' curves "
        "have stopped falling",
    "Scaling exponents":
        "each family's slope resting on >= 3 capacity-limited frontier points over >= 1 decade of eps; a family "
        "short of that needs its frontier pushed to tighter targets (more trials and epochs there)",
    "Dependence on n = dim_i":
        "slopes over >= 1 decade of eps for both families at both n, which 10 trials per study and 60 epochs did "
        "not give: several times the trials at n = 8, where the frontier is the least resolved",
    "Rotation prediction against depth (paper's recipe)":
        "nothing within the paper's recipe: its 10 epochs of SGD leave the trials still improving, so the gap "
        "it measures is one of training speed; the tuned recipe (Adam, 30 epochs, lr searched) is this page's "
        "test of the claim",
    "Assumption 1 (real images)":
        "the median last/first disagreement settling below 0.5 or above 1 (between them it is still moving), "
        "over trials whose curves have stopped falling: longer training of the same replicated trials (the "
        "paper's 10-epoch SGD recipe most of all), and a rerun recording epoch 0 of any experiment whose "
        "curves start later",
    "Whole model (real images)":
        "f's and e's width and depth searched on rotation prediction, as whole_model_teacher does on the teacher",
    "Smaller primary nets (teacher, f and e searched)":
        "as for the pinned searches: every search's share of resamples on the same side of 10x by 97.5% at the "
        "tightest target both families reach, at points that are not training-limited; more trials per search "
        "near that target",
    "Embedding plateau (teacher)":
        "a wider lr grid where a best lr sits on its edge, or more q sizes where they disagree",
}


EDGE = 0.1  # a continuous lr within the outer tenth of its log range sits on the edge


def lr_on_edge(exp: Experiment) -> list[str]:
    """Per family whose chosen lrs sit on an edge of its searched range: which, and how many of them.

    Chosen: on a grid, each architecture's best trial by val_error (its lr was picked among the grid's);
    otherwise the family's frontier trials. An edge is the first or last of a grid's choices, or the
    outer tenth (in log) of a continuous range. A family is flagged when at least half of its chosen
    trials sit on one edge: a wider range might have found a better lr."""
    params = {space.family: p for space in exp.spec.studies for p in space.params if p.name == "train.lr"}
    ok = exp.trials[exp.trials["status"] == OK].dropna(subset=["val_error"])
    if exp.spec.sampler.name == "grid":
        keys = [c for c in ok.columns if c.startswith("config.model.") and ok[c].nunique() > 1]
        chosen = ok.loc[ok.groupby(["variant", "family", *keys], dropna=False)["val_error"].idxmin()]
    else:
        o = exp.objective
        table = smallest(ok, o.error_targets, o.metric, o.report, o.count)
        found = table[table["found"]]
        chosen = ok.merge(found[["family", "trial"]].drop_duplicates(), on=["family", "trial"])
    lines = []
    for family, rows in chosen.groupby("family"):
        p = params.get(family)
        if p is None:
            continue
        lr = rows["config.train.lr"].to_numpy(float)
        if p.choices:
            low, high = lr <= min(p.choices), lr >= max(p.choices)
            ends = (min(p.choices), max(p.choices))
        else:
            width = np.log(p.high / p.low)
            low, high = np.log(lr / p.low) < EDGE * width, np.log(p.high / lr) < EDGE * width
            ends = (p.low, p.high)
        for hits, end, which in ((low, ends[0], "bottom"), (high, ends[1], "top")):
            if hits.sum() >= len(lr) / 2:
                lines.append(f"{family} {hits.sum()} of {len(lr)} at the {which} ({end:g})")
    return lines


OPTIMISATION_GAP = 0.25  # train loss within 25% of the val error: the model does not even fit its training set


def optimisation_limited(trials: pd.DataFrame, metric: str, count: str, targets: list[float]) -> list[str]:
    """Frontier points of the conditioned families that a plain network N beats: a standard trial with no
    more primary parameters reached a lower `metric`, although q (and g) can emulate N, while the
    point's own train loss is within OPTIMISATION_GAP of its val error (it underfits its training
    set too). On the teacher, errors are MSE / var(y) with var(y) = 1, so the train loss is on the
    same scale. Such a point is limited by optimisation, not capacity."""
    ok = trials[trials["status"] == OK].dropna(subset=[metric])
    plain = ok[ok["family"] == "standard"]
    if plain.empty or "train_loss" not in ok:
        return []
    table = smallest(ok, targets, metric, count=count)
    lines = []
    for row in table[table["found"] & table["family"].isin(CONDITIONED)].itertuples():
        point = ok[(ok["family"] == row.family) & (ok["trial"] == row.trial)].iloc[0]
        better = plain[(plain[count] <= point[count]) & (plain[metric] < point[metric])]
        close = abs(point["train_loss"] - point[metric]) <= OPTIMISATION_GAP * point[metric]
        if not better.empty and close:
            best = better.sort_values(metric).iloc[0]
            lines.append(f"{row.family} at eps {row.target:g} ({point[count]:,} parameters, {metric} "
                         f"{point[metric]:.3g}, train loss {point['train_loss']:.3g}; N reaches {best[metric]:.3g} "
                         f"with {int(best[count]):,})")
    return list(dict.fromkeys(lines))


def span(values: pd.Series) -> str:
    """'40', or '10-115' when the values differ."""
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}-{high}"


def experiment_facts(e: Experiment) -> str:
    """Seeds, replicas, trials, epochs, what was searched and how many frontier points are training-limited."""
    t, o = e.trials, e.objective
    seeds = t["config.task.seed"].nunique() if "config.task.seed" in t else 1
    per_study = t.groupby("study").size()
    lrs = t.groupby("family")["config.train.lr"].nunique() if "config.train.lr" in t else pd.Series(dtype=int)
    searched = ", ".join(f for f, n in lrs.items() if n > 1) or "no family"
    optimizers = ", ".join(sorted(t["config.train.optimizer"].unique())) if "config.train.optimizer" in t else "?"
    table = smallest(t, o.error_targets, o.metric, o.report, o.count, e.epochs)
    found = table[table["found"]]
    flagged = found[found["training_limited"].fillna(False).astype(bool)]
    where = ", ".join(f"{r.family} at {r.target:g}" for r in flagged.itertuples())
    return (f"{seeds} task seed(s), {span(t['seeds'])} replica(s) per trial, {span(per_study)} trials per study, "
            f"{span(t['epochs'])} epochs, "
            f"{optimizers}; lr searched for {searched}; {len(flagged)} of {len(found)} frontier points "
            f"training-limited{f' ({where})' if where else ''}")


def page(claims: list[Claim], experiments: list[Experiment]) -> str:
    lines = ["# Results: does a hypernetwork need a smaller primary network?", "",
             "Each claim of Galanti & Wolf, *On the Modularity of Hypernetworks* (NeurIPS 2020, arXiv 2002.10006),",
             "tested with hypersweep on a 2-core CPU machine. This page is generated by",
             "`python -m analysis.results_page` from the tables in `docs/results/data/`. Each verdict follows a",
             "rule fixed before the runs, stated in `analysis/results_page.py` (and `analysis/assumptions.py`)",
             "next to its claim, that can return holds, does not hold, inconclusive or not tested (the design",
             "cannot decide the claim). One guard came after the runs it judges (Assumption 1's, on trials still",
             "training); its claim says what the verdict was without it.",
             "A share of resamples within Monte Carlo error of the 97.5% level",
             f"decides nothing, so another resampling seed gives the same verdicts (this page: seed {SEED}).",
             "Frontier points flagged",
             "training-limited (the error flat across 10x in size, or the learning curve still falling) cannot",
             "carry a verdict. Read the threats to validity before the numbers.", "",
             "| claim | experiment | verdict | why |", "|---|---|---|---|"]
    lines += [f"| {c.title}: {c.claim} | {c.experiment} | **{c.verdict}** | {c.why} |" for c in claims]
    lines += ["", "## Threats to validity", "", *threats(experiments, claims)]
    for c in claims:
        lines += ["", f"## {c.title}", "", f"*Claim:* {c.claim}.", "",
                  f"*Verdict: {c.verdict}* ({c.why}).", "", *c.body]
    lines += ["", "## Compute and how to rerun", "", *compute(experiments), "",
              "Each experiment ran from its `search_spaces/<experiment>.yaml` with `python -m hypersweep.launch",
              "search_spaces/<experiment>.yaml --out runs/<experiment> [--num-samples N]`; the space that ran is",
              "`docs/results/data/<experiment>.space.yaml`, and the trials actually run per study are in the",
              "table above (`--num-samples` overrides the file's budget and was not recorded). Then",
              "`python -m analysis.results_page --runs runs` exports the tables and rebuilds this page.", "",
              f"*Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.*", ""]
    return "\n".join(lines)


def build(samples: int, seed: int = 0) -> tuple[str, list[Claim]]:
    global SEED
    SEED = seed  # read by every resampling when it runs
    found = {name: read(name) for name in EXPERIMENTS}
    experiments = [e for e in found.values() if e is not None]
    claims = [
        # The capacity-trained, seeded searches replace teacher_scaling for the size claim once they ran.
        size_claim(searches("teacher_capacity") or searches("teacher_scaling"), samples,
                   "Smaller primary nets (teacher)",
                   "at equal error, g needs an order of magnitude or more fewer parameters than q", MIN_SEARCHES),
        total_claim(found["whole_model_teacher"] or found["teacher_scaling"], samples, "Whole model (teacher)"),
        plateau_claim(found["teacher_embedding_plateau"], "Embedding plateau (teacher)"),
        # The same claim and rule with f and e searched, as the plateau diagnosis asked (a second line, not a
        # replacement: the pinned searches are the design fixed first).
        size_claim(searches("teacher_capacity_fe"), samples, "Smaller primary nets (teacher, f and e searched)",
                   "at equal error, g needs an order of magnitude or more fewer parameters than q, with f and e as "
                   "large or small as they need to be", MIN_SEARCHES),
        slope_claim(found["teacher_scaling"], samples),
        dims_claim(found["teacher_dims"], samples),
        depth_claim(found["rotation_depth_digits_tuned"], "Rotation prediction against depth (tuned recipe)",
                    tuned=True, widths=found["rotation_width_embedding"] or found["rotation_width_digits"]),
        depth_claim(found["rotation_depth_digits"], "Rotation prediction against depth (paper's recipe)"),
        size_claim(searches("rotation_smallest_digits"), samples, "Smaller primary nets (real images)",
                   "on rotation prediction of real digits, g needs an order of magnitude fewer parameters than q"),
        total_claim(found["rotation_smallest_digits"], samples, "Whole model (real images)"),
        assumption1_claim([e for e in experiments if e.trials["config.task.name"].iloc[0] == "teacher"],
                          "Assumption 1 (teacher)"),
        assumption1_claim([e for e in experiments if e.trials["config.task.name"].iloc[0] != "teacher"],
                          "Assumption 1 (real images)"),
        assumption2_claim(found["teacher_scaling"], samples),
    ]
    # The seeded repeats of a search (teacher_capacity_seed1, ...) are listed with their compute and protocol too.
    seeded = [read(repeat) for name in EXPERIMENTS for repeat in repeats(name)]
    return page(claims, experiments + seeded), claims


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.results_page", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, help="a directory of finished sweeps to export first")
    p.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples for intervals")
    p.add_argument("--seed", type=int, default=0, help="seed of every resampling (another seed must give the "
                                                       "same verdicts)")
    args = p.parse_args(argv)
    if args.runs:
        # Checked before anything is written: a mistyped path must not rebuild the page from stale tables.
        if not args.runs.is_dir():
            print(f"error: {args.runs}: not a directory (--runs names the directory holding the sweeps' --out "
                  "directories)", file=sys.stderr)
            return 2
        if not any((args.runs / name / "trials").is_dir() for name in EXPERIMENTS):
            print(f"error: {args.runs}: holds no sweep of {', '.join(EXPERIMENTS)} (each a --out directory "
                  "named after its experiment)", file=sys.stderr)
            return 2
        print(f"exported {', '.join(export(args.runs)) or 'nothing'} to {DATA.relative_to(ROOT)}")
    FIGURES.mkdir(parents=True, exist_ok=True)
    text, claims = build(args.bootstrap, args.seed)
    (ROOT / "RESULTS.md").write_text(text)
    for c in claims:
        print(f"{c.verdict:>14}  {c.title}: {c.why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
