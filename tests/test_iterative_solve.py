"""MINRES and GMRES through lo.solve / lo.inv: answers, Auto's choice, annotations, implicit gradients."""

from __future__ import annotations

import numpy as np
import pytest

import linops as lo

from .zoo import Config, to_np

CONFIGS = [Config("numpy", "float64"), Config("numpy", "complex128"), Config("torch", "float64"), Config("jax", "float64")]


def indefinite(n, seed=0, complex_=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    Q, _ = np.linalg.qr(X)
    ev = np.concatenate([-np.linspace(1, 4, n // 2), np.linspace(1, 4, n - n // 2)])
    return (Q * ev) @ Q.conj().T


def nonsymmetric(n, seed=1, complex_=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    return 3 * np.eye(n) + X / np.sqrt(n)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_minres_and_gmres_solve(cfg):
    n = 60
    S, N = indefinite(n, complex_=cfg.complex), nonsymmetric(n, complex_=cfg.complex)
    B = np.random.default_rng(2).standard_normal((n, 2))
    x = lo.solve(lo.SelfAdjoint(lo.Dense(cfg.arr(S))), cfg.arr(B), alg=lo.MINRES(tol=1e-10))
    np.testing.assert_allclose(to_np(x), np.linalg.solve(S, B), atol=1e-7)
    x, info = lo.solve(lo.Dense(cfg.arr(N)), cfg.arr(B), alg=lo.GMRES(tol=1e-10), return_info=True)
    np.testing.assert_allclose(to_np(x), np.linalg.solve(N, B), atol=1e-7)
    assert info.method == "GMRES" and bool(to_np(info.converged).all())
    # the adjoint solve (x @ inv(A)) uses the adjoint operator and preconditioner
    Ainv = lo.inv(lo.Dense(cfg.arr(N)), alg=lo.GMRES(tol=1e-10, precond=lo.Diagonal(cfg.arr(1 / np.diag(N)))))
    np.testing.assert_allclose(to_np(cfg.arr(B.T) @ Ainv), B.T @ np.linalg.inv(N), atol=1e-7)


def test_minres_needs_a_self_adjoint_promise():
    with pytest.raises(lo.NotSelfAdjointError, match="lo.SelfAdjoint"):
        lo.solve(lo.Dense(indefinite(10)), np.ones(10), alg=lo.MINRES())


def test_auto_picks_the_krylov_method_by_annotation():
    auto = lo.Auto(dense_n=20)
    S = lo.SelfAdjoint(lo.Dense(indefinite(40)))
    N = lo.Dense(nonsymmetric(40))
    assert "MINRES" in lo.explain(lo.solve, S, auto) and "GMRES" in lo.explain(lo.solve, N, auto)
    for A, M in ((S, indefinite(40)), (N, nonsymmetric(40))):
        x = lo.solve(A, np.ones(40), alg=auto)
        np.testing.assert_allclose(M @ x, np.ones(40), atol=1e-8)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("method", ["MINRES", "GMRES"])
def test_implicit_gradients(backend, method):
    M0 = indefinite(20, 3) if method == "MINRES" else nonsymmetric(20, 4)
    b0 = np.random.default_rng(5).standard_normal(20)
    alg = getattr(lo, method)(tol=1e-12)
    wrap = lo.SelfAdjoint if method == "MINRES" else (lambda A: A)
    if backend == "torch":
        import torch

        M, b = torch.tensor(M0, requires_grad=True), torch.tensor(b0, requires_grad=True)
        (lo.solve(wrap(lo.Dense(M)), b, alg=alg) ** 2).sum().backward()
        M2, b2 = torch.tensor(M0, requires_grad=True), torch.tensor(b0, requires_grad=True)
        (torch.linalg.solve(M2, b2) ** 2).sum().backward()
        pairs = [(M.grad, M2.grad), (b.grad, b2.grad)]
    else:
        import jax
        import jax.numpy as jnp

        f = lambda M, b: (lo.solve(wrap(lo.Dense(M)), b, alg=alg) ** 2).sum()  # noqa: E731
        got = jax.grad(f, argnums=(0, 1))(jnp.asarray(M0), jnp.asarray(b0))
        ref = jax.grad(lambda M, b: (jnp.linalg.solve(M, b) ** 2).sum(), argnums=(0, 1))(jnp.asarray(M0), jnp.asarray(b0))
        pairs = list(zip(got, ref))
    for g, r in pairs:
        np.testing.assert_allclose(to_np(g), to_np(r), atol=1e-7)
