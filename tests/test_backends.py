"""The backend layer: detection, random keys, control flow, transposition by autodiff, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import linops as lo
from linops.backends import backend_named, backend_of, common_backend, is_concrete

from .zoo import CONFIGS, Config, to_np

BACKENDS = ["numpy", "torch", "jax"]


def test_import_loads_no_framework():
    code = "import sys, linops; print(sorted(m for m in ('torch', 'jax', 'scipy', 'plum') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", BACKENDS)
def test_detection_is_cached_per_type(name):
    xp = backend_named(name)
    x = Config(name, "float64").arr(np.ones(3))
    assert backend_of(x) is xp
    assert backend_of(x) is backend_of(x)
    assert backend_of(1.0) is None and backend_of("text") is None
    assert common_backend(None, xp, xp) is xp


def test_common_backend_names_both():
    with pytest.raises(lo.BackendMismatchError, match="numpy and torch"):
        common_backend(backend_named("numpy"), backend_named("torch"))


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_random_normal_with_explicit_keys(name, dtype):
    xp = backend_named(name)
    dt = Config(name, dtype).native_dtype()
    a = xp.normal(xp.make_key(0), (500,), dt)
    b = xp.normal(xp.make_key(0), (500,), dt)
    c = xp.normal(xp.make_key(1), (500,), dt)
    np.testing.assert_array_equal(to_np(a), to_np(b))
    assert not np.allclose(to_np(a), to_np(c))
    assert str(a.dtype).replace("torch.", "") == dtype
    assert abs(np.mean(np.abs(to_np(a)) ** 2) - 1) < 0.2  # unit variance, complex included


@pytest.mark.parametrize("name", BACKENDS)
def test_while_loop(name):
    xp = backend_named(name)
    x0 = Config(name, "float64").arr(np.array(1.0))
    out = xp.while_loop(lambda s: s[0] < 10, lambda s: (s[0] + 1, s[1] * 2), (0, x0))
    assert int(out[0]) == 10 and float(out[1]) == 1024.0


def test_jax_while_loop_compiles():
    jax = pytest.importorskip("jax")
    xp = backend_named("jax")
    f = jax.jit(lambda x: xp.while_loop(lambda s: s[0] < 5, lambda s: (s[0] + 1, s[1] * 3.0), (0, x))[1])
    assert float(f(jax.numpy.asarray(1.0))) == 243.0


class Shift(lo.LinearOperator):
    """A user operator that defines only ``_matmat``: x -> (x_1 + 2 x_0, x_2 + 2 x_1, ...)."""

    _leaves = ("w",)

    def __init__(self, w):
        self.w = w
        super().__init__((w.shape[0], w.shape[0]), w.dtype, backend_of(w), backend_of(w).device_of(w))

    def _matmat(self, X):
        xp = self.xp
        rolled = xp.concat([X[1:], X[:1] * 0], 0)
        return rolled + self.w[:, None] * X


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_user_operator_with_only_matmat(cfg):
    """``x @ A`` and ``A.T`` come from the default transposition (autodiff, or dense for numpy)."""
    w = np.arange(1.0, 5.0)
    op = Shift(cfg.arr(w))
    M = np.diag(w) + np.diag(np.ones(3), 1)
    y = np.random.default_rng(0).standard_normal((2, 4))
    np.testing.assert_allclose(to_np(cfg.arr(y) @ op), y @ M, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_np(op.T.to_dense()), M.T, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_np(lo.solve(op, cfg.arr(np.ones(4)))), np.linalg.solve(M, np.ones(4)), rtol=1e-4)


def test_is_concrete_under_jit():
    jax = pytest.importorskip("jax")
    seen = []
    jax.jit(lambda x: seen.append(is_concrete(x)) or x)(jax.numpy.ones(2))
    assert seen == [False] and is_concrete(np.ones(2)) and is_concrete(2.0)
