"""Shared fixtures: one seed for every random draw in the suite."""

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
