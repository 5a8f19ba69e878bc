"""The answer a sweep gives: per family and error target, the smallest model that meets it.

A trial meets a target when its search metric (`val_error` by default) is at most the
target; the table then reports its held-out error (`test_error`), so the choice of the
model never looks at the test set.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SIZE_COLUMNS = ["config.model.primary.width", "config.model.primary.depth", "config.model.conditioner.width",
                "config.model.conditioner.depth", "config.model.embedding_dim"]


def smallest(trials: pd.DataFrame, targets: list[float], metric: str = "val_error",
             report: str = "test_error", count: str = "params_primary") -> pd.DataFrame:
    """One row per (variant, family, target): the smallest `count` among ok trials with `metric` <= target."""
    ok = trials[trials["status"] == "ok"]
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
                            **{c.removeprefix("config.model."): best[c] for c in SIZE_COLUMNS if c in best}})
            rows.append(row)
    return pd.DataFrame(rows)


def ratios(table: pd.DataFrame, count: str = "params_primary") -> pd.DataFrame:
    """Per variant and target, embedding/hyper and standard/hyper ratios of the smallest `count`."""
    if count not in table:
        return pd.DataFrame(columns=["variant", "target"])
    wide = table.pivot_table(index=["variant", "target"], columns="family", values=count, aggfunc="first")
    out = pd.DataFrame(index=wide.index)
    for family in ("embedding", "standard"):
        if family in wide and "hyper" in wide:
            out[f"{family}/hyper"] = wide[family] / wide["hyper"]
    return out.sort_index(ascending=[True, False]).reset_index()


def pareto_front(trials: pd.DataFrame, metric: str = "val_error", count: str = "params_primary") -> pd.DataFrame:
    """Per variant and family, the ok trials no other trial beats on both `count` and `metric`."""
    fronts = []
    for _, group in trials[trials["status"] == "ok"].groupby(["variant", "family"], observed=True):
        group = group.sort_values([count, metric])
        best = np.minimum.accumulate(group[metric].to_numpy())
        keep = np.r_[True, group[metric].to_numpy()[1:] < best[:-1]]
        fronts.append(group[keep])
    return pd.concat(fronts, ignore_index=True) if fronts else trials.iloc[0:0]


def format_table(table: pd.DataFrame, count: str = "params_primary", report: str = "test_error") -> str:
    """A plain-text frontier table, with a line per target nothing reached."""
    width = max([len(v) for v in table["variant"]] + [0])
    lines = [f"{'variant':<{width}} " * bool(width)
             + f"{'family':<10} {'target':>8} {count:>15} {'params_total':>13} {report:>11}  architecture"]
    for _, r in table.iterrows():
        head = f"{r['variant']:<{width}} " * bool(width) + f"{r['family']:<10} {r['target']:>8.3g} "
        if not r["found"]:
            lines.append(head + f"{'-':>15} {'-':>13} {'-':>11}  no trial met this target")
            continue
        arch = architecture(r)
        lines.append(head + f"{int(r[count]):>15,} {int(r['params_total']):>13,} {r[report]:>11.3g}  {arch}  "
                            f"(trial {int(r['trial'])})")
    return "\n".join(lines)


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
