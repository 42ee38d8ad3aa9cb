"""Conjugate gradients on every backend: solutions, per-column convergence, failures, jit/vmap, gradients."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import linops as lo

from .zoo import CONFIGS, Config, to_np


def spd(n, cond, seed=0, complex_=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    Q, _ = np.linalg.qr(X)
    return (Q * np.linspace(1, cond, n)) @ Q.conj().T


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_cg_matches_dense_solve(cfg):
    n = 60
    M = spd(n, 10, complex_=cfg.complex).astype(cfg.dtype)
    B = np.random.default_rng(1).standard_normal((n, 3)).astype(cfg.dtype)
    B[:, 1] = 0  # a zero column is solved by zero at once
    tol = 1e-5 if cfg.single else 1e-10
    X, info = lo.solve(lo.PSD(lo.Dense(cfg.arr(M))), cfg.arr(B), alg=lo.CG(tol=tol), return_info=True)
    ref = np.linalg.solve(M.astype(complex if cfg.complex else float), B)
    assert info.all_converged and int(info.iterations) <= 10 * n
    M64, B64 = (a.astype(np.complex128 if cfg.complex else np.float64) for a in (M, B))
    res = np.linalg.norm(M64 @ to_np(X) - B64, axis=0) / np.maximum(np.linalg.norm(B64, axis=0), 1e-300)
    assert (res <= 10 * tol).all(), res
    np.testing.assert_allclose(to_np(X), ref, atol=100 * tol * np.abs(ref).max())
    assert np.all(to_np(X)[:, 1] == 0)
    hist = to_np(info.history)
    assert hist.shape[1] == 3 and hist[0, 0] == pytest.approx(1.0)


def test_cg_reaches_tight_tolerance_without_absolute_epsilon():
    """GPyTorch's fixed eps stalls near 1e-5; the relative rule reaches 1e-11 (cond 5, n 1000)."""
    M = spd(1000, 5)
    b = np.random.default_rng(2).standard_normal(1000)
    x, info = lo.solve(lo.PSD(lo.Dense(M)), b, alg=lo.CG(tol=1e-11), return_info=True)
    assert np.linalg.norm(M @ x - b) / np.linalg.norm(b) < 1e-11
    assert int(info.iterations) < 60


def test_cg_agrees_with_scipy():
    from scipy.sparse.linalg import cg as scipy_cg

    M = spd(300, 50, seed=3)
    b = np.random.default_rng(4).standard_normal(300)
    ours = lo.solve(lo.PSD(lo.Dense(M)), b, alg=lo.CG(tol=1e-10))
    theirs, code = scipy_cg(M, b, rtol=1e-10, atol=0)
    assert code == 0
    np.testing.assert_allclose(ours, theirs, atol=1e-8)


def test_preconditioner_cuts_iterations():
    rng = np.random.default_rng(5)
    d = np.logspace(0, 4, 200)
    M = np.diag(d) + 0.01 * spd(200, 2, seed=6)
    b = rng.standard_normal(200)
    A = lo.PSD(lo.Dense(M))
    _, plain = lo.solve(A, b, alg=lo.CG(tol=1e-8, max_iters=5000), return_info=True)
    jacobi = lo.Diagonal(1 / np.diag(M))
    x, pre = lo.solve(A, b, alg=lo.CG(tol=1e-8, precond=jacobi), return_info=True)
    assert int(pre.iterations) * 3 < int(plain.iterations)
    assert np.linalg.norm(M @ x - b) / np.linalg.norm(b) < 1e-8


def test_non_convergence_raises_or_warns():
    A = lo.PSD(lo.Dense(spd(100, 1000)))
    b = np.ones(100)
    with pytest.raises(lo.ConvergenceError, match="did not converge.*after 3 iterations") as e:
        lo.solve(A, b, alg=lo.CG(tol=1e-12, max_iters=3))
    assert e.value.info.iterations == 3 and not e.value.info.all_converged
    with pytest.warns(lo.ConvergenceWarning, match="did not converge"):
        lo.solve(A, b, alg=lo.CG(tol=1e-12, max_iters=3, on_failure="warn"))


def test_indefinite_operator_breaks_down_loudly():
    M = np.diag([1.0, -1.0, 2.0, 3.0])
    with pytest.raises(lo.ConvergenceError, match="not positive definite"):
        lo.solve(lo.Dense(M), np.ones(4), alg=lo.CG())


def test_bad_options():
    for kwargs in ({"tol": 0}, {"max_iters": 0}, {"on_failure": "ignore"}):
        with pytest.raises(ValueError):
            lo.CG(**kwargs)
    with pytest.raises(TypeError):
        lo.CG(maxiter=10)


def test_auto_picks_cg_above_its_threshold():
    A = lo.PSD(lo.Dense(spd(50, 3)))
    auto = lo.Auto(dense_n=10)
    text = lo.explain(lo.solve, A, auto)
    assert "CG(" in text and "dense_n = 10" in text
    x, info = lo.solve(A, np.ones(50), alg=auto, return_info=True)
    assert info.method == "CG" and info.all_converged
    assert "Cholesky" in lo.explain(lo.solve, A)  # default threshold: dense


def test_structure_rules_pass_cg_to_the_parts():
    A, B = spd(6, 3, 7), spd(5, 3, 8)
    K = lo.Kronecker(lo.PSD(lo.Dense(A)), lo.PSD(lo.Dense(B)))
    b = np.random.default_rng(9).standard_normal(30)
    x = lo.solve(K, b, alg=lo.CG(tol=1e-12))
    np.testing.assert_allclose(np.kron(A, B) @ x, b, atol=1e-9)


def test_cg_under_jit_and_vmap():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    M = jnp.asarray(spd(40, 5))
    B = jnp.asarray(np.random.default_rng(10).standard_normal((4, 40)))

    @jax.jit
    def f(op, b):
        return lo.solve(op, b, alg=lo.CG(tol=1e-10, max_iters=200), return_info=True)

    x, info = f(lo.PSD(lo.Dense(M)), B[0])
    np.testing.assert_allclose(M @ x, B[0], atol=1e-8)
    assert bool(info.converged.all()) and np.isnan(np.asarray(info.history)[-1]).all()
    xs = jax.vmap(lambda b: lo.solve(lo.PSD(lo.Dense(M)), b, alg=lo.CG(tol=1e-10, max_iters=200)))(B)
    np.testing.assert_allclose(xs @ M.T, B, atol=1e-8)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_cg_gradients_match_dense(backend):
    cfg = Config(backend, "float64")
    M0, b0 = spd(30, 4, 11), np.random.default_rng(12).standard_normal(30)
    alg = lo.CG(tol=1e-12)
    if backend == "torch":
        import torch

        M, b = torch.tensor(M0, requires_grad=True), torch.tensor(b0, requires_grad=True)
        (lo.solve(lo.PSD(lo.Dense(M)), b, alg=alg) ** 2).sum().backward()
        M2, b2 = torch.tensor(M0, requires_grad=True), torch.tensor(b0, requires_grad=True)
        (torch.linalg.solve(M2, b2) ** 2).sum().backward()
        got, ref = (M.grad, b.grad), (M2.grad, b2.grad)
    else:
        import jax
        import jax.numpy as jnp

        f = lambda M, b: (lo.solve(lo.PSD(lo.Dense(M)), b, alg=alg) ** 2).sum()  # noqa: E731
        got = jax.grad(f, argnums=(0, 1))(jnp.asarray(M0), jnp.asarray(b0))
        ref = jax.grad(lambda M, b: (jnp.linalg.solve(M, b) ** 2).sum(), argnums=(0, 1))(jnp.asarray(M0), jnp.asarray(b0))
    for g, r in zip(got, ref):
        np.testing.assert_allclose(to_np(g), to_np(r), atol=1e-8)
    del cfg


def test_torch_gradient_memory_does_not_grow_with_iterations():
    """Saved tensors for backward: the same for a 500-iteration solve as for a 20-iteration one."""
    import torch

    def saved_bytes(iters):
        M = torch.tensor(spd(200, 1e6, 13), requires_grad=True)
        b = torch.ones(200, dtype=torch.float64)
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t

        alg = lo.CG(tol=1e-30, max_iters=iters, on_failure="warn")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lo.ConvergenceWarning)
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                x = lo.solve(lo.PSD(lo.Dense(M)), b, alg=alg)
        return total[0], x

    small, _ = saved_bytes(20)
    large, _ = saved_bytes(500)
    assert small == large
    assert large <= 3 * 200 * 200 * 8  # the matrix (a leaf) and a few vectors, not 500 iterates


def test_nan_input_is_named_not_called_indefinite():
    M = spd(30, 3)
    M[2, 2] = np.nan
    with pytest.raises(lo.NonFiniteError, match="NaN"):
        lo.solve(lo.PSD(lo.Dense(M)), np.ones(30), alg=lo.CG())
