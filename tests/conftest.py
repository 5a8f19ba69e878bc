"""Shared fixtures: one local Ray for the whole test session.

Two tiers: `python -m pytest -q -m "not slow"` is the fast loop (no Ray, no sweep, under a
minute on 2 cores); `python -m pytest -q -n 2` (CI) runs everything. A test is slow when it
is marked so, or when it needs a running Ray (the `ray_address` or `two_nodes` fixture).
"""
import sys

import pytest
import ray

RAY_FIXTURES = {"ray_address", "two_nodes"}


@pytest.fixture(scope="session")
def ray_address():
    """A 2-CPU local Ray, started once; CLI tests join it with `--address`."""
    ray.shutdown()
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield context.address_info["address"]
    ray.shutdown()


@pytest.fixture(autouse=True)
def small_figures(monkeypatch):
    """Tests check that figures are written, nobody looks at them: render them at a low resolution
    (saving figures at 150 dpi was most of each analysis test's time)."""
    if (matplotlib := sys.modules.get("matplotlib")) is not None:
        monkeypatch.setitem(matplotlib.rcParams, "savefig.dpi", 30)


def pytest_collection_modifyitems(items):
    """Tests on a running Ray are slow; multi-node tests stop the session's Ray to build their own
    cluster, so they run last."""
    for item in items:
        if RAY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("multinode") is not None)
