"""What every benchmark shares: sizes, the Result it returns, and interleaved best-of timing.

The machines are shared and noisy, so the two sides of a comparison are timed in
alternation and each keeps its best round: a burst of load from elsewhere slows one
round, not a whole side.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

Size = Literal["tiny", "quick", "full"]


@dataclass(frozen=True)
class Result:
    ours: float
    baseline: float
    unit: str
    ratio: float  # oriented so that higher is better
    goal: float  # the least ratio that meets the goal
    met: bool
    details: dict[str, Any] = field(default_factory=dict)  # further figures, reported in the JSON too

    def as_json(self) -> dict[str, Any]:
        return {"ours": self.ours, "baseline": self.baseline, "unit": self.unit, "ratio": self.ratio,
                "goal": self.goal, "met": self.met, **self.details}


def compare(ours: float, baseline: float, unit: str, ratio: float, goal: float, **details: Any) -> Result:
    """A Result whose goal is met when `ratio >= goal`."""
    return Result(ours, baseline, unit, ratio, goal, ratio >= goal, details)


def best_times(functions: list[Callable[[], object]], rounds: int) -> list[float]:
    """The best wall time of each function over `rounds` interleaved rounds, after one warm-up call each."""
    for fn in functions:
        fn()
    best = [float("inf")] * len(functions)
    for _ in range(rounds):
        for k, fn in enumerate(functions):
            start = time.perf_counter()
            fn()
            synchronize()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a timing covers it (nothing to wait for on a CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` intra-op torch threads, as a trial given `n` CPUs does."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
