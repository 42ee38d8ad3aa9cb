"""Gradients through solve, logdet, eigh and trace: structured rules vs autodiff of the dense reference.

For every zoo case, every floating leaf of the operator (found through the same
flatten protocol JAX uses) gets a gradient twice: through the linops function on the
operator, and through the dense algorithm on ``op.to_dense()`` (itself checked against
numpy twins in test_operators). The two must agree.
"""

from __future__ import annotations

import numpy as np
import pytest

import linops as lo

from .helpers import map_leaves
from .zoo import CASES, Config

GRAD_CASES = [c for c in CASES if c.square and c.invertible and not c.name.startswith("inverse")]
SA_CASES = [c for c in GRAD_CASES if c.self_adjoint]


def objective(name, backend):
    xp_sum = (lambda x: x.sum()) if backend == "torch" else (lambda x: x.sum())

    def structured(op, b):
        if name == "solve":
            return xp_sum(lo.solve(op, b) * b)
        if name == "logdet":
            return lo.slogdet(op)[1]
        if name == "trace":
            return lo.trace(op)
        if name == "eigh":
            w, _ = lo.eigh(op)
            return xp_sum(w * w)
        raise ValueError(name)

    def dense(M, b):
        if backend == "torch":
            import torch

            la = torch.linalg
        else:
            import jax.numpy as jnp

            la = jnp.linalg
        if name == "solve":
            return xp_sum(la.solve(M, b) * b)
        if name == "logdet":
            return la.slogdet(M)[1]
        if name == "trace":
            return xp_sum(M.diagonal())
        if name == "eigh":
            w = la.eigh(M)[0]
            return xp_sum(w * w)
        raise ValueError(name)

    return structured, dense


def _cases_for(fn):
    return SA_CASES if fn == "eigh" else GRAD_CASES


PARAMS = [(fn, c) for fn in ("solve", "logdet", "trace", "eigh") for c in _cases_for(fn)]
PARAM_IDS = [f"{fn}-{c.name}" for fn, c in PARAMS]


@pytest.mark.parametrize("fn,case", PARAMS, ids=PARAM_IDS)
def test_torch_gradients(fn, case):
    import torch

    cfg = Config("torch", "float64")
    op, M = case.make(cfg)
    leaves = []

    def track(x):
        if x.dtype.is_floating_point:
            x = x.detach().clone().requires_grad_(True)
            leaves.append(x)
        return x

    op = map_leaves(op, track)
    if not leaves:
        pytest.skip("no floating-point leaves")
    b = torch.as_tensor(np.random.default_rng(3).standard_normal(M.shape[0]))
    structured, dense = objective(fn, "torch")
    g1 = torch.autograd.grad(structured(op, b), leaves, allow_unused=True)
    g2 = torch.autograd.grad(dense(op.to_dense(), b), leaves, allow_unused=True)
    for a, r in zip(g1, g2):
        if a is None and r is None:
            continue
        a = torch.zeros_like(r) if a is None else a
        r = torch.zeros_like(a) if r is None else r
        assert torch.allclose(a, r, atol=1e-7, rtol=1e-6), (a, r)


@pytest.mark.parametrize("fn,case", PARAMS, ids=PARAM_IDS)
def test_jax_gradients(fn, case):
    import jax
    import jax.numpy as jnp

    cfg = Config("jax", "float64")
    op, M = case.make(cfg)
    b = jnp.asarray(np.random.default_rng(3).standard_normal(M.shape[0]))
    structured, dense = objective(fn, "jax")
    g1 = jax.grad(lambda o: structured(o, b), allow_int=True)(op)
    g2 = jax.grad(lambda o: dense(o.to_dense(), b), allow_int=True)(op)
    for a, r in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        if a.dtype == jax.dtypes.float0:
            continue
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), atol=1e-7, rtol=1e-6)
