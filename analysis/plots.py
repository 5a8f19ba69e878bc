"""The figures' shared look: one colour and marker per family, one panel per variant, PNG output."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

FAMILIES = ("hyper", "embedding", "standard")
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


def error_label(metric: str, task: str) -> str:
    """An axis label such as 'test error (normalised MSE)'."""
    unit = ERROR_UNITS.get(task)
    return metric.replace("_", " ") + (f" ({unit})" if unit else "")


def panels(variants: list[str], height: float = 3.6) -> tuple[Figure, dict[str, Axes]]:
    """A figure with one axis per variant, side by side (a single axis when there are no variants)."""
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants) + 0.6, height), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, variant in zip(axes[0], variants):
        if variant:
            ax.set_title(variant)
    return fig, dict(zip(variants, axes[0]))


def plain_numbers(axis) -> None:
    """Label a log axis 0.03, 0.1, 2 rather than 3x10^-2: errors read better plainly."""
    axis.set_major_formatter(ticker.LogFormatter())
    axis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def legend(fig: Figure, axes: dict[str, Axes]) -> None:
    """One legend for the figure, from the first axis that has labelled artists."""
    for ax in axes.values():
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, loc="best", frameon=False)
            return


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, bbox_inches="tight")  # keeps legends placed outside the axes
    plt.close(fig)
    return path
