"""Operators as arguments of jax.jit and jax.vmap; dispatch happens at trace time."""

from __future__ import annotations

import numpy as np
import pytest

import linops as lo

from .zoo import CASES, Config

jax = pytest.importorskip("jax")
jnp = jax.numpy

JIT_CASES = [c for c in CASES if c.invertible]


@pytest.mark.parametrize("case", JIT_CASES, ids=[c.name for c in JIT_CASES])
def test_jit_with_operator_argument(case):
    op, M = case.make(Config("jax", "float64"))
    b = jnp.asarray(np.random.default_rng(0).standard_normal(M.shape[0]))

    @jax.jit
    def f(op, b):
        return lo.solve(op, b), lo.slogdet(op)[1], lo.trace(op), op @ b

    x, logabs, tr, y = f(op, b)
    np.testing.assert_allclose(x, np.linalg.solve(M, b), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(logabs, np.linalg.slogdet(M)[1], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(tr, np.trace(M), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(y, M @ b, rtol=1e-8, atol=1e-10)


def test_vmap_over_operators_and_right_hand_sides():
    rng = np.random.default_rng(1)
    mats = rng.standard_normal((4, 3, 3)) + 3 * np.eye(3)
    bs = rng.standard_normal((4, 3))
    ops = jax.vmap(lambda M: lo.Kronecker(lo.Dense(M), lo.Dense(jnp.eye(2))))(jnp.asarray(mats))
    assert isinstance(ops, lo.Kronecker)
    b6 = jnp.asarray(np.concatenate([bs, bs], 1))
    x = jax.vmap(lo.solve)(ops, b6)
    for i in range(4):
        ref = np.linalg.solve(np.kron(mats[i], np.eye(2)), np.asarray(b6[i]))
        np.testing.assert_allclose(x[i], ref, rtol=1e-8)
    # vmap over right-hand sides of one operator
    op = lo.PSD(lo.Dense(jnp.asarray(mats[0] @ mats[0].T)))
    xs = jax.vmap(lambda b: lo.solve(op, b))(jnp.asarray(bs))
    np.testing.assert_allclose(xs, np.linalg.solve(mats[0] @ mats[0].T, bs.T).T, rtol=1e-8)


def test_grad_through_jit():
    A = jnp.asarray(np.random.default_rng(2).standard_normal((3, 3)))

    def f(A):
        K = lo.Kronecker(lo.PSD(lo.Dense(A @ A.T + jnp.eye(3))), lo.PSD(lo.Dense(jnp.eye(2) * 2.0)))
        return lo.logdet(K)

    g = jax.jit(jax.grad(f))(A)
    ref = jax.grad(lambda A: jnp.linalg.slogdet(jnp.kron(A @ A.T + jnp.eye(3), 2 * jnp.eye(2)))[1])(A)
    np.testing.assert_allclose(g, ref, rtol=1e-8)


def test_pytree_roundtrip_keeps_structure():
    op, _ = CASES[0].make(Config("jax", "float64"))
    K = lo.Kronecker(op, lo.Identity(2)) + lo.Diagonal(jnp.ones(10))
    leaves, tree = jax.tree_util.tree_flatten(K)
    again = jax.tree_util.tree_unflatten(tree, leaves)
    assert type(again) is type(K) and repr(again) == repr(K)


def test_top_k_eigh_of_a_kronecker_product_under_jit():
    rng = np.random.default_rng(3)
    mats = [rng.standard_normal((n, n)) for n in (3, 4)]
    mats = [m @ m.T + np.eye(len(m)) for m in mats]
    K = lo.Kronecker(*(lo.PSD(lo.Dense(jnp.asarray(m))) for m in mats))
    w, V = jax.jit(lambda K: lo.eigh(K, k=3))(K)
    full = np.kron(*mats)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(full)[-3:], rtol=1e-10)
    np.testing.assert_allclose(full @ V.to_dense(), V.to_dense() * w, atol=1e-9)
