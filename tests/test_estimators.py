"""Lanczos eigenpairs, stochastic Lanczos quadrature and Hutchinson on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import linops as lo

from .zoo import Config, to_np

BACKENDS = [Config("numpy", "float64"), Config("numpy", "complex128"), Config("torch", "float64"),
            Config("torch", "float32"), Config("jax", "float64")]


def hermitian(n, lo_, hi, seed=0, complex_=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    Q, _ = np.linalg.qr(X)
    ev = np.linspace(lo_, hi, n)
    return (Q * ev) @ Q.conj().T, ev


def kernel_matrix(n, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, 2))
    return np.exp(-((X[:, None] - X[None]) ** 2).sum(-1) / 2) + 0.1 * np.eye(n)


@pytest.mark.parametrize("cfg", BACKENDS, ids=[c.id for c in BACKENDS])
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_lanczos_top_k(cfg, which):
    M, ev = hermitian(150, -5.0, 20.0, complex_=cfg.complex)
    A = lo.SelfAdjoint(lo.Dense(cfg.arr(M.astype(cfg.dtype))))
    tol = 1e-4 if cfg.single else 1e-9
    w, V = lo.eigh(A, k=4, which=which, alg=lo.Lanczos(tol=tol))
    expect = {"LA": ev[-4:], "SA": ev[:4], "LM": np.sort(ev[np.argsort(-np.abs(ev))[:4]])}[which]
    np.testing.assert_allclose(to_np(w), expect, atol=100 * tol * 20)
    Vd = to_np(V.to_dense())
    assert np.abs(M @ Vd - Vd * to_np(w)).max() <= 1000 * tol * 20


def test_auto_uses_lanczos_for_large_k_eigh_and_explains_it():
    M, ev = hermitian(120, 1.0, 9.0, seed=1)
    A = lo.SelfAdjoint(lo.Dense(M))
    w, _ = lo.eigh(A, k=3, alg=lo.Auto(dense_n=50))
    np.testing.assert_allclose(w, ev[-3:], atol=1e-7)
    # structure still wins: a Kronecker product is decomposed factor by factor
    K = lo.Kronecker(A, lo.SelfAdjoint(lo.Dense(np.diag([1.0, 2.0]))))
    w, _ = lo.eigh(K, k=2, alg=lo.Auto(dense_n=50))
    np.testing.assert_allclose(w, [2 * ev[-2], 2 * ev[-1]], atol=1e-9)


def test_lanczos_failure_is_loud():
    M, _ = hermitian(200, 1.0, 1.001, seed=2)  # clustered spectrum: slow convergence
    with pytest.raises(lo.ConvergenceError, match="Lanczos did not converge"):
        lo.eigh(lo.SelfAdjoint(lo.Dense(M)), k=5, alg=lo.Lanczos(tol=1e-14, max_iters=12))
    with pytest.raises(ValueError, match="pass k"):
        lo.eigh(lo.SelfAdjoint(lo.Dense(M)), alg=lo.Lanczos())


def test_slq_logdet_within_one_percent_and_its_error_bar():
    K = kernel_matrix(1000)
    ref = np.linalg.slogdet(K)[1]
    value, info = lo.logdet(lo.PSD(lo.Dense(K)), alg=lo.SLQ(num_probes=10, steps=40), return_info=True)
    assert abs(value - ref) <= 0.01 * abs(ref)
    assert abs(value - ref) <= 4 * float(info.stderr) + 1e-6 * abs(ref)
    assert info.num_probes == 10 and info.samples.shape == (10,)


@pytest.mark.parametrize("cfg", BACKENDS, ids=[c.id for c in BACKENDS])
def test_estimators_on_every_backend(cfg):
    K = kernel_matrix(200, seed=3).astype(cfg.dtype)
    A = lo.PSD(lo.Dense(cfg.arr(K)))
    Kr = K.real.astype(float)
    ref_ld, ref_tr = np.linalg.slogdet(Kr)[1], np.trace(Kr)
    v, info = lo.logdet(A, alg=lo.SLQ(num_probes=16, steps=30), return_info=True)
    assert abs(float(to_np(v)) - ref_ld) <= 5 * float(to_np(info.stderr)) + 1e-3 * abs(ref_ld)
    t, info = lo.trace(A, alg=lo.Hutchinson(num_probes=64), return_info=True)
    assert abs(float(to_np(t)) - ref_tr) <= 5 * float(to_np(info.stderr)) + 1e-4 * ref_tr


def test_estimators_are_reproducible_and_jit():
    jax = pytest.importorskip("jax")
    K = jax.numpy.asarray(kernel_matrix(100, seed=4))
    f = jax.jit(lambda op: lo.logdet(op, alg=lo.SLQ(num_probes=4, steps=20, seed=7)))
    a, b = f(lo.PSD(lo.Dense(K))), lo.logdet(lo.PSD(lo.Dense(K)), alg=lo.SLQ(num_probes=4, steps=20, seed=7))
    np.testing.assert_allclose(a, b, rtol=1e-8)
    assert lo.trace(lo.Dense(np.asarray(K)), alg=lo.Hutchinson(seed=3)) == lo.trace(lo.Dense(np.asarray(K)), alg=lo.Hutchinson(seed=3))


def test_exact_rules_report_zero_error():
    D = lo.Diagonal(np.array([1.0, 2.0, 3.0]))
    v, info = lo.trace(D, return_info=True)
    assert v == 6.0 and info.stderr == 0 and info.method == "exact"
    v, info = lo.logdet(D, return_info=True)
    assert np.isclose(v, np.log(6.0)) and info.stderr == 0


def test_bad_estimator_options():
    with pytest.raises(ValueError):
        lo.SLQ(num_probes=0)
    with pytest.raises(ValueError):
        lo.Hutchinson(num_probes=1)
    with pytest.raises(ValueError):
        lo.Lanczos(tol=-1)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_slq_gradient_is_implicit_and_close_to_exact(backend):
    """d logdet / d lengthscale of an RBF kernel matrix: the BBMM estimate vs the exact gradient."""
    n = 300
    X = np.random.default_rng(5).standard_normal((n, 2))
    D2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    alg = lo.SLQ(num_probes=64, steps=30, grad_tol=1e-8)
    if backend == "torch":
        import torch

        def grad(fn):
            ls = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
            K = torch.exp(-torch.tensor(D2) / (2 * ls**2)) + 0.1 * torch.eye(n, dtype=torch.float64)
            fn(K).backward()
            return float(ls.grad)

        got = grad(lambda K: lo.logdet(lo.PSD(lo.Dense(K)), alg=alg))
        ref = grad(torch.logdet)
    else:
        import jax
        import jax.numpy as jnp

        kern = lambda ls: jnp.exp(-jnp.asarray(D2) / (2 * ls**2)) + 0.1 * jnp.eye(n)  # noqa: E731
        got = float(jax.grad(lambda ls: lo.logdet(lo.PSD(lo.Dense(kern(ls))), alg=alg))(1.0))
        ref = float(jax.grad(lambda ls: jnp.linalg.slogdet(kern(ls))[1])(1.0))
    assert abs(got - ref) <= 0.1 * abs(ref), (got, ref)
