"""Hypothesis: random compositions (sums, products, Kronecker, block, adjoint, slices, scaling)
up to depth 3, checked against the dense matrix built alongside with numpy."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import linops as lo

SIZES = (2, 3, 4, 6)
FACTORS = {4: (2, 2), 6: (2, 3)}


def leaf(draw, n, rng):
    kind = draw(st.sampled_from(["dense", "diagonal", "identity", "lowrank", "permutation", "triangular", "tridiagonal"]))
    if kind == "dense":
        M = rng.standard_normal((n, n))
        return lo.Dense(M), M
    if kind == "diagonal":
        d = rng.standard_normal(n)
        return lo.Diagonal(d), np.diag(d)
    if kind == "identity":
        return lo.Identity(n), np.eye(n)
    if kind == "lowrank":
        U, V = rng.standard_normal((n, 1)), rng.standard_normal((n, 1))
        return lo.LowRank(U, V), U @ V.T
    if kind == "permutation":
        p = rng.permutation(n)
        return lo.Permutation(p), np.eye(n)[p]
    if kind == "triangular":
        M = rng.standard_normal((n, n))
        return lo.Triangular(M, lower=bool(n % 2)), np.tril(M) if n % 2 else np.triu(M)
    lo_, d, up = rng.standard_normal(n - 1), rng.standard_normal(n), rng.standard_normal(n - 1)
    return lo.Tridiagonal(lo_, d, up), np.diag(d) + np.diag(lo_, -1) + np.diag(up, 1)


def build(draw, n, depth, rng):
    options = ["leaf"] if depth == 0 else ["leaf", "sum", "product", "adjoint", "scale", "slice"]
    if depth and n >= 2:
        options.append("blockdiag")
    if depth and n in FACTORS:
        options += ["kronecker", "kronecker_sum"]
    kind = draw(st.sampled_from(options))
    if kind == "leaf":
        return leaf(draw, n, rng)
    if kind == "sum":
        (a, A), (b, B) = build(draw, n, depth - 1, rng), build(draw, n, depth - 1, rng)
        return a + b, A + B
    if kind == "product":
        (a, A), (b, B) = build(draw, n, depth - 1, rng), build(draw, n, depth - 1, rng)
        return a @ b, A @ B
    if kind == "adjoint":
        a, A = build(draw, n, depth - 1, rng)
        return a.T, A.T
    if kind == "scale":
        c = draw(st.sampled_from([-2.0, 0.5, 3.0]))
        a, A = build(draw, n, depth - 1, rng)
        return c * a, c * A
    if kind == "blockdiag":
        k = draw(st.integers(1, n - 1))
        (a, A), (b, B) = build(draw, k, depth - 1, rng), build(draw, n - k, depth - 1, rng)
        M = np.zeros((n, n))
        M[:k, :k], M[k:, k:] = A, B
        return lo.BlockDiag(a, b), M
    if kind == "slice":
        a, A = build(draw, n + 2, depth - 1, rng)
        rows = rng.permutation(n + 2)[:n]
        return a[rows, 1 : n + 1], A[rows][:, 1 : n + 1]
    p, q = FACTORS[n]
    (a, A), (b, B) = build(draw, p, depth - 1, rng), build(draw, q, depth - 1, rng)
    if kind == "kronecker":
        return lo.Kronecker(a, b), np.kron(A, B)
    return lo.KroneckerSum(a, b), np.kron(A, np.eye(q)) + np.kron(np.eye(p), B)


@st.composite
def operators(draw):
    n = draw(st.sampled_from(SIZES))
    depth = draw(st.integers(0, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    return build(draw, n, depth, rng)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(operators())
def test_products_and_dense(pair):
    op, M = pair
    rng = np.random.default_rng(0)
    x, X, y = rng.standard_normal(M.shape[1]), rng.standard_normal((M.shape[1], 2)), rng.standard_normal(M.shape[0])
    np.testing.assert_allclose(op.to_dense(), M, atol=1e-10)
    np.testing.assert_allclose(op @ x, M @ x, atol=1e-10)
    np.testing.assert_allclose(op @ X, M @ X, atol=1e-10)
    np.testing.assert_allclose(y @ op, y @ M, atol=1e-10)
    np.testing.assert_allclose(lo.trace(op), np.trace(M), atol=1e-10)
    np.testing.assert_allclose(lo.diag(op), np.diag(M), atol=1e-10)


@SETTINGS
@given(operators())
def test_solve_logdet_after_shift(pair):
    """``A + c I`` with c above the spectral radius is invertible; its rules must agree with dense."""
    op, M = pair
    n = M.shape[0]
    c = 1.0 + np.linalg.norm(M, 2)
    shifted, S = op + lo.ScalarMul(c, n), M + c * np.eye(n)
    b = np.random.default_rng(1).standard_normal(n)
    cond = np.linalg.cond(S)
    np.testing.assert_allclose(lo.solve(shifted, b), np.linalg.solve(S, b), atol=1e-9 * cond)
    sign, logabs = lo.slogdet(shifted)
    ref_sign, ref_logabs = np.linalg.slogdet(S)
    assert sign == ref_sign
    np.testing.assert_allclose(logabs, ref_logabs, atol=1e-9 * cond)


@SETTINGS
@given(operators())
def test_symmetric_part_eigh_and_sqrt(pair):
    op, M = pair
    n = M.shape[0]
    sym = lo.SelfAdjoint(op + op.T)
    w, V = lo.eigh(sym)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(M + M.T), atol=1e-8 * max(1, np.abs(M).max()))
    c = 1.0 + np.linalg.norm(M + M.T, 2)
    spd = lo.PSD(sym + lo.ScalarMul(c, n))
    R = lo.sqrt(spd).to_dense()
    np.testing.assert_allclose(R @ R, M + M.T + c * np.eye(n), atol=1e-8 * c)
