"""The answer a sweep gives: per family and error target, the smallest model that meets it.

A trial meets a target when its search metric (`val_error` by default) is at most the
target; the table then reports its held-out error (`test_error`), so the choice of the
model never looks at the test set.

Each answer is also checked for being *training-limited* rather than capacity-limited: a
size read off a frontier is only the smallest size needed if the models were trained to
their capacity. A frontier point is flagged when either rule fires:

(a) flat: the family's Pareto front moves by less than FLAT_TOLERANCE (25%) across a
    FLAT_SPAN (10x) change of size next to the point: an ok trial at most 1/10 of its size came
    within 25% of its error, or no ok trial of any size up to the first one at least 10x
    larger got 25% lower. (One badly trained big trial cannot fire it: every trial up to
    that size counts.) Ten times the parameters buying less than a quarter off the error is
    a local log-log slope above 8, steeper than any capacity law the tasks here
    predict (slope (m+n)/r with m+n <= 10, r >= 1 for the teacher); the error is then set by
    training (or by a noise floor), not by the size.
(b) still falling: the chosen trial's learning curve (val_error per epoch) has its median
    over the last window of epochs (10% of them, at least 3) more than FALLING_DROP (2%)
    below the median over the window before: more epochs would have lowered the error, so
    a smaller model might have met the target. Under a cosine schedule the curve flattens as
    the learning rate decays, so (b) then catches only clearly unconverged runs, and (a)
    carries the check.

`training_limited` is True when a rule fired, False when neither did, and missing (<NA>)
when (a) did not fire and (b) could not be checked (no learning curve, or one too short).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hypersweep.vocab import COMPARED, OK

DEFAULT_TARGETS = (0.1, 0.01)  # where the frontier is read when the objective names no targets

SIZE_COLUMNS = ["config.model.primary.width", "config.model.primary.depth", "config.model.conditioner.width",
                "config.model.conditioner.depth", "config.model.embedding_dim"]

FLAT_SPAN = 10.0  # rule (a): how much larger (or smaller) a model must be to count as "10x the size"
FLAT_TOLERANCE = 0.25  # rule (a): an error change under 25% across that span is "flat"
FALLING_WINDOW = 0.1  # rule (b): the last window is this fraction of the epochs ...
FALLING_MIN_EPOCHS = 3  # ... and at least this many epochs
FALLING_DROP = 0.02  # rule (b): a fall of more than 2% between the last two windows is "still falling"


def smallest(trials: pd.DataFrame, targets: list[float] | tuple[float, ...], metric: str = "val_error",
             report: str = "test_error", count: str = "params_primary",
             epochs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (variant, family, target): the smallest `count` among ok trials with `metric` <= target.

    With `epochs` (hypersweep.results.load_epochs), rule (b) is checked on the chosen trial's
    learning curve; without, only rule (a) can flag a row. No trials give an empty table.
    """
    if trials.empty:
        return pd.DataFrame(columns=["variant", "family", "target", "found"])
    ok = trials[trials["status"] == OK]
    curves = learning_curves(epochs)
    rows = []
    for (variant, family), _ in trials.groupby(["variant", "family"], observed=True):
        mine = ok[(ok["family"] == family) & (ok["variant"] == variant)]
        for target in sorted(targets, reverse=True):
            meets = mine[mine[metric] <= target].sort_values([count, metric])
            row = {"variant": variant, "family": family, "target": target, "found": not meets.empty}
            if not meets.empty:
                best = meets.iloc[0]
                row.update({"trial": int(best["trial"]), count: int(best[count]),
                            "params_primary": int(best["params_primary"]), "params_total": int(best["params_total"]),
                            metric: float(best[metric]), report: float(best[report]),
                            **{c.removeprefix("config.model."): best[c] for c in SIZE_COLUMNS if c in best},
                            **limits(mine, best, metric, count, curves.get((best.get("study"), int(best["trial"])))
                                     if curves is not None else None)})
            rows.append(row)
    table = pd.DataFrame(rows)
    if "training_limited" in table:
        table["training_limited"] = table["training_limited"].astype("boolean")
    return table


def learning_curves(epochs: pd.DataFrame | None) -> dict[tuple[str, int], np.ndarray] | None:
    """Each trial's val_error by epoch, keyed by (study, trial); None without an epochs table."""
    if epochs is None or epochs.empty:
        return None
    ordered = epochs.dropna(subset=["val_error"]).sort_values("epoch")
    return {(study, int(trial)): group["val_error"].to_numpy(float)
            for (study, trial), group in ordered.groupby(["study", "trial"], observed=True)}


def limits(mine: pd.DataFrame, best: pd.Series, metric: str, count: str, curve: np.ndarray | None) -> dict:
    """`training_limited` and `limited_by` (the reasons, '' when none) of one frontier point."""
    reasons = [r for r in (flat(mine, int(best[count]), float(best[metric]), metric, count), falling(curve)) if r]
    checked = curve is not None and len(curve) >= 2 * window(len(curve))
    limited = True if reasons else (False if checked else pd.NA)
    return {"training_limited": limited, "limited_by": "; ".join(reasons)}


def flat(mine: pd.DataFrame, size: int, error: float, metric: str, count: str) -> str:
    """Rule (a) on a family's ok trials `mine`: why the error is flat around (size, error), or ''."""
    side, i = flat_evidence(mine[count].to_numpy(float), mine[metric].to_numpy(float), size, error)
    if not side:
        return ""
    other = mine.iloc[i]
    if side == "smaller":
        return f"flat: trial {int(other['trial'])}, {size / other[count]:,.0f}x smaller, reached {other[metric]:.3g}"
    return (f"flat: nothing up to {FLAT_SPAN:g}x larger got {FLAT_TOLERANCE:.0%} lower "
            f"(best {other[metric]:.3g}, trial {int(other['trial'])})")


def flat_evidence(sizes: np.ndarray, errors: np.ndarray, size: float, error: float) -> tuple[str, int]:
    """Rule (a) on arrays of one family's ok trials: ('smaller', i) when trial i, at least 10x smaller,
    came within 25% of `error`; ('larger', i) when even the best trial i among all those up to the
    first one at least 10x larger is not 25% lower; ('', -1) when neither (or no trial is 10x away).
    Arrays, so bootstraps can afford it."""
    smaller = np.flatnonzero(sizes * FLAT_SPAN <= size)
    if smaller.size:
        i = smaller[np.argmin(errors[smaller])]
        if error > (1 - FLAT_TOLERANCE) * errors[i]:
            return "smaller", int(i)
    larger = sizes >= FLAT_SPAN * size
    if larger.any():
        reach = np.flatnonzero(sizes <= sizes[larger].min())  # every trial up to the first 10x larger one
        i = reach[np.argmin(errors[reach])]
        if errors[i] > (1 - FLAT_TOLERANCE) * error:
            return "larger", int(i)
    return "", -1


def window(epochs: int) -> int:
    """Rule (b)'s window: 10% of the epochs, at least 3."""
    return max(FALLING_MIN_EPOCHS, math.ceil(FALLING_WINDOW * epochs))


def falling(curve: np.ndarray | None) -> str:
    """Rule (b): how much the learning curve fell between its last two windows, if more than 2%; else ''."""
    if curve is None or len(curve) < 2 * window(len(curve)):
        return ""
    k = window(len(curve))
    before, last = np.median(curve[-2 * k:-k]), np.median(curve[-k:])
    drop = 1 - last / before if before > 0 else 0.0
    return f"still falling: -{drop:.0%} over the last {k} epochs" if drop > FALLING_DROP else ""


def still_falling(trials: pd.DataFrame, epochs: pd.DataFrame | None) -> np.ndarray:
    """Rule (b) for every row of `trials` (by study and trial); all False without learning curves."""
    curves = learning_curves(epochs) or {}
    return np.array([bool(falling(curves.get((study, int(trial)))))
                     for study, trial in zip(trials["study"], trials["trial"], strict=True)], bool)


def ratios(table: pd.DataFrame, count: str = "params_primary") -> pd.DataFrame:
    """Per variant and target, embedding/hyper and standard/hyper ratios of the smallest `count`."""
    if count not in table:
        return pd.DataFrame(columns=["variant", "target"])
    wide = table.pivot_table(index=["variant", "target"], columns="family", values=count, aggfunc="first")
    out = pd.DataFrame(index=wide.index)
    for family in COMPARED:
        if family in wide and "hyper" in wide:
            out[f"{family}/hyper"] = wide[family] / wide["hyper"]
    return out.sort_index(ascending=[True, False]).reset_index()


def pareto_front(trials: pd.DataFrame, metric: str = "val_error", count: str = "params_primary") -> pd.DataFrame:
    """Per variant and family, the ok trials no other trial beats on both `count` and `metric`."""
    if trials.empty:
        return trials.iloc[0:0]
    fronts = []
    for _, group in trials[trials["status"] == OK].groupby(["variant", "family"], observed=True):
        group = group.sort_values([count, metric])
        best = np.minimum.accumulate(group[metric].to_numpy())
        keep = np.r_[True, group[metric].to_numpy()[1:] < best[:-1]]
        fronts.append(group[keep])
    return pd.concat(fronts, ignore_index=True) if fronts else trials.iloc[0:0]


def format_table(table: pd.DataFrame, count: str = "params_primary", report: str = "test_error") -> str:
    """A plain-text frontier table, with a line per target nothing reached and the training-limited flags."""
    width = max([len(v) for v in table.get("variant", [])] + [0])
    lines = [f"{'variant':<{width}} " * bool(width)
             + f"{'family':<10} {'target':>8} {count:>15} {'params_total':>13} {report:>11}  {'limited':<7}  "
               "architecture"]
    for _, r in table.iterrows():
        head = f"{r['variant']:<{width}} " * bool(width) + f"{r['family']:<10} {r['target']:>8.3g} "
        if not r["found"]:
            lines.append(head + f"{'-':>15} {'-':>13} {'-':>11}  {'-':<7}  no trial met this target")
            continue
        flag = flag_text(r.get("training_limited", pd.NA))
        why = f"  <- {r['limited_by']}" if flag == "yes" else ""
        lines.append(head + f"{int(r[count]):>15,} {int(r['params_total']):>13,} {r[report]:>11.3g}  {flag:<7}  "
                            f"{architecture(r)}  (trial {int(r['trial'])}){why}")
    found = table[table["found"].astype(bool)] if "found" in table else table
    if any(flag_text(v) != "no" for v in found.get("training_limited", [])):
        lines.append(f"limited: training-limited, not capacity-limited: (a) a model {FLAT_SPAN:g}x smaller or larger "
                     f"within {FLAT_TOLERANCE:.0%} of the error, or (b) val_error still falling by more than "
                     f"{FALLING_DROP:.0%} over the last epochs; ? = no learning curve to check (b)")
    return "\n".join(lines)


def flag_texts(table: pd.DataFrame) -> list[str]:
    """Per row of a frontier table, 'yes (its reasons)', 'no' or '?'."""
    return [flag_text(value) + (f" ({why})" if why else "")
            for value, why in zip(table["training_limited"], table["limited_by"], strict=True)]


def flag_text(value) -> str:
    """'yes', 'no' or '?' (not checked) for a training_limited value."""
    return "?" if value is pd.NA or value is None or (isinstance(value, float) and np.isnan(value)) else (
        "yes" if value else "no")


def architecture(row: pd.Series) -> str:
    """A frontier row's sizes, e.g. `primary 4x1, conditioner 64x2, emb 8` (width x depth)."""
    arch = f"primary {_int(row.get('primary.width'))}x{_int(row.get('primary.depth'))}"
    if row["family"] != "standard":
        arch += f", conditioner {_int(row.get('conditioner.width'))}x{_int(row.get('conditioner.depth'))}"
    if row["family"] == "embedding":
        arch += f", emb {_int(row.get('embedding_dim'))}"
    return arch


def _int(value) -> str:
    return "?" if value is None or (isinstance(value, float) and np.isnan(value)) else str(int(value))
