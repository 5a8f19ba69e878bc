"""Shared fixtures: one local Ray for the whole test session."""
import pytest
import ray


@pytest.fixture(scope="session")
def ray_address():
    """A 2-CPU local Ray, started once; CLI tests join it with `--address`."""
    ray.shutdown()
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield context.address_info["address"]
    ray.shutdown()


def pytest_collection_modifyitems(items):
    """Multi-node tests stop the session's Ray to build their own cluster: run them last."""
    items.sort(key=lambda item: item.get_closest_marker("multinode") is not None)
