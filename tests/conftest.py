"""Test configuration: explicit backends and dtypes, strict numerics.

JAX float64 is switched on here, for the test process only (linops never changes JAX settings).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

try:
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:  # pragma: no cover - jax is part of the test extra
    jax = None

from .zoo import CONFIGS, Config  # noqa: E402


def pytest_collection_modifyitems(config, items):
    # every backend of the grid must be importable: a missing one is an error, never a silent skip
    for name in ("torch", "jax"):
        try:
            __import__(name)
        except ImportError as e:  # pragma: no cover
            raise pytest.UsageError(f"the test grid needs {name}: pip install -e '.[test]' and torch") from e


@pytest.fixture(params=CONFIGS, ids=[c.id for c in CONFIGS])
def cfg(request) -> Config:
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
