"""The figures' shared look: one colour and marker per family, one panel per variant, PNG output."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI

import matplotlib.pyplot as plt
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure

from hypersweep.vocab import FAMILIES

# Okabe-Ito colours: distinguishable with colour-blindness and in greyscale print.
COLOURS = {"hyper": "#0072B2", "embedding": "#D55E00", "standard": "#009E73"}
MARKERS = {"hyper": "o", "embedding": "s", "standard": "^"}
LABELS = {"hyper": "hypernetwork", "embedding": "embedding", "standard": "standard"}
COUNT_LABELS = {"params_primary": "primary-net parameters", "params_total": "total parameters"}
# What an error is, per task: normalised MSE for regression, the fraction misclassified otherwise.
ERROR_UNITS = {"teacher": "normalised MSE", "pixels": "normalised MSE", "rotation": "fraction misclassified"}

plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10,
                     "legend.fontsize": 8, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                     "axes.spines.right": False})


def families(present) -> list[str]:
    """The families in `present`, in the fixed order every figure and table uses."""
    return [f for f in FAMILIES if f in set(present)]


def dodge(family: str, xs: pd.Series) -> float:
    """A small x offset per family, so error bars drawn at the same x do not hide each other."""
    span = float(xs.max() - xs.min()) or 1.0
    return (FAMILIES.index(family) - 1) * 0.025 * span


def error_label(metric: str, task: str) -> str:
    """An axis label such as 'test error (normalised MSE)'."""
    unit = ERROR_UNITS.get(task)
    return metric.replace("_", " ") + (f" ({unit})" if unit else "")


def panels(variants: list[str], height: float = 3.6) -> tuple[Figure, dict[str, Axes]]:
    """A figure with one axis per variant, side by side (a single axis when there are no variants)."""
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants) + 0.6, height), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, variant in zip(axes[0], variants, strict=True):
        if variant:
            ax.set_title(variant)
    return fig, dict(zip(variants, axes[0], strict=True))


def plain_numbers(axis: Axis) -> None:
    """Label a log axis 0.03, 0.1, 2, 1,000 rather than 3x10^-2 and 10^3: sizes and errors read better plainly.

    Within about a decade, 2, 3 and 5 times a power of ten get labels too, so a short axis is not bare.
    """
    def plain(value: float) -> str:
        return f"{value:,.0f}" if value >= 1 else f"{value:g}"

    def minor(value: float, _) -> str:
        low, high = sorted(axis.get_view_interval())
        mantissa = round(value / 10 ** math.floor(math.log10(value)))
        return plain(value) if high / low < 2.5 or (high / low < 20 and mantissa in (2, 3, 5)) else ""

    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: plain(value)))
    axis.set_minor_formatter(ticker.FuncFormatter(minor))


def legend(axes: dict[str, Axes]) -> None:
    """One legend for the figure, on the first axis that has labelled artists."""
    for ax in axes.values():
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, loc="best", frameon=False)
            return


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, bbox_inches="tight")  # keeps legends placed outside the axes
    plt.close(fig)
    return path
