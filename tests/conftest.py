"""Shared fixtures (one seed for every random draw in the suite) and the split over pytest-xdist workers."""

import numpy as np
import pytest

SEED = 20261126


@pytest.fixture(scope="session")
def seed() -> int:
    """The suite's seed (module-scoped fixtures build their own generator from it)."""
    return SEED


@pytest.fixture
def rng(seed) -> np.random.Generator:
    """A fresh generator per test, so a test's draws do not depend on test order."""
    return np.random.default_rng(seed)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Split the suite over pytest-xdist workers (``--dist loadgroup``, pyproject.toml).

    A test without an ``xdist_group`` of its own joins its module's group, so that the module's
    scoped fixtures (most of them fits) are made once, on one worker. The long tests that share no
    fixture (the notebooks, the full-cohort comparisons) name a group of their own and go first,
    so that the workers finish together. Runs before xdist reads the marks (``tryfirst``).
    """
    alone = [item for item in items if item.get_closest_marker("xdist_group")]
    for item in items:
        if item not in alone:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    items[:] = alone + [item for item in items if item not in alone]
