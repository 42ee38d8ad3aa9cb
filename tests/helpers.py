"""Comparison helpers shared by the tests."""

from __future__ import annotations

import numpy as np

from linops.operators.base import LinearOperator, tree_flatten, tree_unflatten

from .zoo import Config, to_np


def assert_close(actual, expected, cfg: Config, scale: float | None = None, factor: float = 1.0):
    """Entrywise agreement up to the configuration's tolerance, relative to the data's scale."""
    a = to_np(actual)
    e = np.asarray(expected)
    assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape}"
    s = scale if scale is not None else max(1.0, float(np.abs(e).max(initial=0)))
    err = float(np.abs(a - e).max(initial=0))
    assert err <= factor * cfg.tol * s, f"max error {err:.3g} > {factor * cfg.tol * s:.3g} ({cfg.id})"


def rhs(cfg: Config, n: int, k: int | None = None, seed: int = 7):
    """A random right-hand side (n,) or (n, k) for the configuration, and its numpy twin."""
    rng = np.random.default_rng(seed)
    shape = (n,) if k is None else (n, k)
    b = rng.standard_normal(shape)
    if cfg.complex:
        b = b + 1j * rng.standard_normal(shape)
    b = b.astype(cfg.dtype)
    return cfg.arr(b), b.astype(np.complex128 if cfg.complex else np.float64)


def map_leaves(obj, fn):
    """Rebuild an operator tree with each array leaf replaced by ``fn(leaf)``."""
    if isinstance(obj, LinearOperator):
        children, aux = tree_flatten(obj)
        return tree_unflatten(aux, tuple(map_leaves(c, fn) for c in children))
    if isinstance(obj, tuple):
        return tuple(map_leaves(c, fn) for c in obj)
    if hasattr(obj, "dtype") and hasattr(obj, "shape"):
        return fn(obj)
    return obj
