"""MINRES and GMRES kernels on every backend: against numpy and SciPy, per-column convergence,
preconditioning, breakdowns, non-convergence, jit/vmap, and the configuration objects."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import linops as lo
from linops.algorithms import GMRES, MINRES, gmres, minres
from linops.algorithms.info import report
from linops.backends import backend_named

from .zoo import CONFIGS, to_np

KERNEL_IDS = ("numpy-float64", "numpy-complex128", "torch-float32", "torch-float64", "jax-float32", "jax-float64")
KERNEL_CONFIGS = [c for c in CONFIGS if c.id in KERNEL_IDS]
N = 40


def hermitian_indefinite(n, seed=0, complex_=False, lo_=1.0, hi=10.0, space=np.linspace):
    """Q diag(-hi..-lo, lo..hi) Q^H: Hermitian, indefinite, condition number hi/lo."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    Q, _ = np.linalg.qr(X)
    ev = np.concatenate([-space(lo_, hi, n // 2), space(lo_, hi, n - n // 2)])
    return (Q * ev) @ Q.conj().T, Q, ev


def nonsymmetric(n, seed=0, complex_=False):
    """I * 2 + G / sqrt(n): eigenvalues in the disc |z - 2| <~ 1, well conditioned, far from symmetric."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    return 2 * np.eye(n) + G / np.sqrt(n * (2 if complex_ else 1))


def rhs(n, k, seed=1, complex_=False, zero_col=None):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, k)) + (1j * rng.standard_normal((n, k)) if complex_ else 0)
    if zero_col is not None:
        B[:, zero_col] = 0
    return B


def relres(M, X, B):
    return np.linalg.norm(M @ X - B, axis=0) / np.maximum(np.linalg.norm(B, axis=0), 1e-300)


def run(kernel, cfg, M, B, tol, max_iters, **kw):
    """Call the kernel on cfg's arrays; returns numpy X (complex128/float64) and the info."""
    Ma, Ba = cfg.arr(M), cfg.arr(B)
    X, info = kernel(lambda P: Ma @ P, Ba, backend_named(cfg.backend), tol, max_iters, **kw)
    wide = np.complex128 if cfg.complex else np.float64
    return to_np(X).astype(wide), info


def history(info):
    """The history's rows that were run (jax pads it to max_iters + 1 rows with NaN)."""
    hist = to_np(info.history)
    used = int(info.iterations) + 1
    assert np.isnan(hist[used:]).all() and not np.isnan(hist[:used]).any()
    return hist[:used]


def rounded(cfg, *arrays):
    """The arrays as the backend sees them (rounded to its dtype), widened back for references."""
    wide = np.complex128 if cfg.complex else np.float64
    return [np.asarray(a).astype(cfg.dtype).astype(wide) for a in arrays]


# ---------------------------------------------------------------------------------- MINRES
@pytest.mark.parametrize("cfg", KERNEL_CONFIGS, ids=[c.id for c in KERNEL_CONFIGS])
def test_minres_matches_dense_and_scipy(cfg):
    M, _, _ = hermitian_indefinite(N, complex_=cfg.complex)
    B = rhs(N, 3, complex_=cfg.complex, zero_col=1)
    M, B = rounded(cfg, M, B)
    tol = 1e-5 if cfg.single else 1e-10
    X, info = run(minres, cfg, M, B, tol, 10 * N)
    conv = to_np(info.converged)
    assert info.method == "MINRES" and conv.all() and not to_np(info.breakdown).any()
    assert 0 < int(info.iterations) <= 10 * N
    assert (relres(M, X, B) <= 10 * tol).all(), relres(M, X, B)
    ref = np.linalg.solve(M, B)
    np.testing.assert_allclose(X, ref, atol=100 * tol * np.abs(ref).max())
    assert np.all(X[:, 1] == 0)  # a zero column is solved by zero
    hist = history(info)
    assert hist.shape == (int(info.iterations) + 1, 3) and hist[0, 0] == pytest.approx(1.0)
    assert hist[0, 1] == 0 and np.all(np.diff(hist[:, 0]) <= 1e-6)  # MINRES' residual never grows
    np.testing.assert_allclose(hist[-1], to_np(info.relative_residuals))
    if not cfg.complex:  # SciPy's minres is real only
        from scipy.sparse.linalg import minres as scipy_minres

        for j in (0, 2):
            theirs, code = scipy_minres(M, B[:, j], rtol=tol * 1e-2)
            assert code == 0
            np.testing.assert_allclose(X[:, j], theirs, atol=100 * tol * np.abs(ref).max())


def test_minres_per_column_convergence_matches_single_solves():
    M, Q, _ = hermitian_indefinite(N, seed=2)
    B = rhs(N, 3, seed=3)
    B[:, 2] = Q[:, :3] @ np.ones(3)  # three eigenvectors: solved in three steps, then frozen
    xp = backend_named("numpy")
    X, info = minres(lambda P: M @ P, B, xp, 1e-10, 400)
    iters = []
    for j in range(3):
        x, one = minres(lambda P: M @ P, B[:, j : j + 1], xp, 1e-10, 400)
        np.testing.assert_allclose(X[:, j], x[:, 0], rtol=1e-9, atol=1e-12)
        assert to_np(one.relative_residuals)[0] == pytest.approx(to_np(info.relative_residuals)[j], rel=1e-6, abs=1e-10)
        iters.append(int(one.iterations))
    assert iters[2] <= 4 < iters[0] and int(info.iterations) == max(iters)


@pytest.mark.parametrize("complex_", [False, True])
def test_minres_preconditioner_cuts_iterations_and_tracks_the_true_residual(complex_):
    M, Q, ev = hermitian_indefinite(60, seed=4, complex_=complex_, lo_=1.0, hi=1e4, space=np.geomspace)
    B = rhs(60, 2, seed=5, complex_=complex_)
    xp = backend_named("numpy")
    jitter = 1 + 0.5 * np.random.default_rng(6).random(60)
    P = (Q / (np.abs(ev) * jitter)) @ Q.conj().T  # Hermitian positive definite, ≈ |A|^{-1}
    _, plain = minres(lambda R: M @ R, B, xp, 1e-9, 2000)
    X, pre = minres(lambda R: M @ R, B, xp, 1e-9, 2000, precond=lambda R: P @ R)
    assert plain.all_converged and pre.all_converged
    assert int(pre.iterations) * 3 < int(plain.iterations)
    true = relres(M, X, B)
    assert (true <= 1e-9 * 1.01).all()
    np.testing.assert_allclose(to_np(pre.relative_residuals), true, rtol=1e-3)  # the 2-norm, not the M-norm


def test_minres_solves_what_cg_cannot():
    M, _, _ = hermitian_indefinite(30, seed=7)
    b = np.ones(30)
    with pytest.raises(lo.ConvergenceError):
        lo.solve(lo.Dense(M), b, alg=lo.CG())
    X, info = minres(lambda P: M @ P, b[:, None], backend_named("numpy"), 1e-10, 300)
    assert info.all_converged and relres(M, X, b[:, None])[0] < 1e-10


def test_minres_breakdowns():
    xp = backend_named("numpy")
    S = np.diag([1.0, 2.0, 0.0, 3.0])  # singular; b = 1 is not in its range
    X, info = minres(lambda P: S @ P, np.ones((4, 1)), xp, 1e-10, 100)
    assert to_np(info.breakdown)[0] and not to_np(info.converged)[0]
    assert to_np(info.relative_residuals)[0] == pytest.approx(0.5)  # the least-squares residual
    assert relres(S, X, np.ones((4, 1)))[0] == pytest.approx(0.5)
    assert int(info.iterations) < 100
    with pytest.raises(lo.ConvergenceError):
        report(info, 1e-10, "raise", xp)
    # an indefinite "preconditioner" is caught, per column: at once (b^H M b < 0), later
    # (r^H M r < 0 for a Lanczos vector), or never (the column's Krylov space avoids it)
    A1, A2 = hermitian_indefinite(10, seed=8)[0], hermitian_indefinite(10, seed=9)[0]
    M = np.block([[A1, np.zeros((10, 10))], [np.zeros((10, 10)), A2]])
    D = np.ones(20)
    D[:5] = -1.0
    B = np.zeros((20, 3))
    B[0, 0] = 1.0  # b^H D b = -1
    B[:10, 1] = np.r_[np.full(5, 0.1), np.ones(5)]  # b^H D b > 0, but the Krylov space meets D < 0
    B[10:, 2] = 1.0  # stays in the second block, where D = 1
    X, info = minres(lambda P: M @ P, B, xp, 1e-10, 200, precond=lambda R: D[:, None] * R)
    assert to_np(info.breakdown).tolist() == [True, True, False]
    assert to_np(info.converged).tolist() == [False, False, True]
    assert np.all(X[:, 0] == 0) and relres(M, X[:, 2:], B[:, 2:])[0] < 1e-10
    assert not np.isnan(X).any() and not np.isnan(to_np(info.relative_residuals)).any()


# ----------------------------------------------------------------------------------- GMRES
@pytest.mark.parametrize("cfg", KERNEL_CONFIGS, ids=[c.id for c in KERNEL_CONFIGS])
def test_gmres_matches_dense_and_scipy(cfg):
    from scipy.sparse.linalg import gmres as scipy_gmres

    M = nonsymmetric(N, complex_=cfg.complex)
    B = rhs(N, 3, complex_=cfg.complex, zero_col=1)
    M, B = rounded(cfg, M, B)
    tol = 1e-5 if cfg.single else 1e-10
    X, info = run(gmres, cfg, M, B, tol, 10 * N, restart=8)  # restarts several times
    assert info.method == "GMRES" and to_np(info.converged).all() and not to_np(info.breakdown).any()
    assert 8 < int(info.iterations) <= 10 * N
    res = relres(M, X, B)
    assert (res <= 10 * tol).all(), res
    np.testing.assert_allclose(to_np(info.relative_residuals), res, rtol=0.05, atol=tol * 1e-2)  # the true residual
    ref = np.linalg.solve(M, B)
    np.testing.assert_allclose(X, ref, atol=100 * tol * np.abs(ref).max())
    assert np.all(X[:, 1] == 0)
    hist = history(info)
    assert hist.shape == (int(info.iterations) + 1, 3) and hist[0, 0] == pytest.approx(1.0) and hist[0, 1] == 0
    np.testing.assert_allclose(hist[-1], to_np(info.relative_residuals))
    for j in (0, 2):
        theirs, code = scipy_gmres(M, B[:, j], rtol=tol * 1e-2, atol=0, restart=8, maxiter=100)
        assert code == 0
        np.testing.assert_allclose(X[:, j], theirs, atol=100 * tol * np.abs(ref).max())


def test_gmres_iterate_is_the_krylov_minimiser():
    """Stopped after k < restart steps, x minimises ||b - A x|| over the Krylov space K_k."""
    M = nonsymmetric(25, seed=9)
    b = rhs(25, 1, seed=10)
    xp = backend_named("numpy")
    for k in (3, 7):
        x, info = gmres(lambda P: M @ P, b, xp, 1e-14, k, restart=25)
        K = np.concatenate([np.linalg.matrix_power(M, i) @ b for i in range(k)], 1)
        c, *_ = np.linalg.lstsq(M @ K, b, rcond=None)
        np.testing.assert_allclose(x, K @ c, atol=1e-8)
        assert int(info.iterations) == k and not info.all_converged
    x, info = gmres(lambda P: M @ P, b, xp, 1e-12, 100, restart=25)
    assert info.all_converged and int(info.iterations) <= 25


def test_gmres_per_column_convergence_matches_single_solves():
    M = nonsymmetric(N, seed=11)
    B = rhs(N, 3, seed=12)
    B[:, 2] *= 1e-8  # scale does not matter: the rule is relative
    xp = backend_named("numpy")
    X, info = gmres(lambda P: M @ P, B, xp, 1e-10, 400, restart=6)
    for j in range(3):
        x, one = gmres(lambda P: M @ P, B[:, j : j + 1], xp, 1e-10, 400, restart=6)
        np.testing.assert_allclose(X[:, j], x[:, 0], rtol=1e-8, atol=1e-12 * np.abs(x).max())
    assert info.all_converged


def test_gmres_right_preconditioner():
    rng = np.random.default_rng(13)
    M = np.diag(np.logspace(0, 3, 80)) + rng.standard_normal((80, 80)) / 8
    B = rhs(80, 2, seed=14)
    xp = backend_named("numpy")
    _, plain = gmres(lambda R: M @ R, B, xp, 1e-9, 3000, restart=20)
    jacobi = 1 / np.diag(M)
    X, pre = gmres(lambda R: M @ R, B, xp, 1e-9, 3000, restart=20, precond=lambda R: jacobi[:, None] * R)
    assert pre.all_converged and int(pre.iterations) * 3 < int(plain.iterations)
    true = relres(M, X, B)  # right preconditioning: the residual tested is b - A x itself
    assert (true <= 1e-9).all()
    np.testing.assert_allclose(to_np(pre.relative_residuals), true, rtol=1e-6)


def test_gmres_breakdowns():
    xp = backend_named("numpy")
    S = np.diag([1.0, 2.0, 0.0, 3.0])
    X, info = gmres(lambda P: S @ P, np.ones((4, 1)), xp, 1e-10, 100)
    assert to_np(info.breakdown)[0] and not to_np(info.converged)[0]
    assert to_np(info.relative_residuals)[0] == pytest.approx(0.5)
    assert relres(S, X, np.ones((4, 1)))[0] == pytest.approx(0.5)
    # the lucky breakdown is no breakdown: the identity is solved in one step
    B = rhs(10, 2)
    X, info = gmres(lambda P: P, B, xp, 1e-12, 100)
    assert info.all_converged and int(info.iterations) == 1 and not to_np(info.breakdown).any()
    np.testing.assert_allclose(X, B, atol=1e-14)


# --------------------------------------------------------------------- shared behaviour
@pytest.mark.parametrize("name", ["minres", "gmres"])
def test_non_convergence_is_reported_not_raised(name):
    xp = backend_named("numpy")
    if name == "minres":
        M, kernel, kw = hermitian_indefinite(N, seed=15, hi=1e4)[0], minres, {}
    else:
        M, kernel, kw = nonsymmetric(N, seed=15), gmres, {"restart": 2}
    B = rhs(N, 2, zero_col=1)
    X, info = kernel(lambda P: M @ P, B, xp, 1e-12, 3, **kw)  # no exception here
    assert int(info.iterations) == 3 and to_np(info.converged).tolist() == [False, True]
    assert to_np(info.history).shape == (4, 2) and not info.all_converged
    with pytest.raises(lo.ConvergenceError, match="did not converge.*after 3 iterations") as e:
        report(info, 1e-12, "raise", xp)
    assert e.value.info is info
    with pytest.warns(lo.ConvergenceWarning, match="did not converge"):
        report(info, 1e-12, "warn", xp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, ok = kernel(lambda P: M @ P, B, xp, 1e-1, 200, **kw)
        report(ok, 1e-1, "raise", xp)  # converged: silent


def test_jit_and_vmap():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    xp = backend_named("jax")
    S = jnp.asarray(hermitian_indefinite(N, seed=16)[0])
    G = jnp.asarray(nonsymmetric(N, seed=17))
    B = jnp.asarray(rhs(N, 3, seed=18, zero_col=1))

    @jax.jit
    def both(S, G, B):
        return (
            minres(lambda P: S @ P, B, xp, 1e-10, 200),
            gmres(lambda P: G @ P, B, xp, 1e-10, 200, restart=10),
            gmres(lambda P: G @ P, B, xp, 1e-10, 5, restart=10),  # stops short of tol
        )

    (Xm, im), (Xg, ig), (_, short) = both(S, G, B)
    for M, X, info in ((S, Xm, im), (G, Xg, ig)):
        assert bool(info.converged.all()) and not bool(info.breakdown.any())
        np.testing.assert_allclose(np.asarray(M @ X), np.asarray(B), atol=1e-8)
        hist = np.asarray(info.history)
        assert hist.shape == (201, 3) and np.isnan(hist[int(info.iterations) + 1 :]).all()
        np.testing.assert_allclose(hist[int(info.iterations)], np.asarray(info.relative_residuals))
    assert int(short.iterations) == 5 and np.asarray(short.converged).tolist() == [False, True, False]
    with pytest.raises(lo.ConvergenceError):
        report(short, 1e-10, "raise", xp)  # concrete after jit: report raises

    def solve_one(b):  # one right-hand side, vmapped over a batch with different iteration counts
        x1, i1 = minres(lambda P: S @ P, b[:, None], xp, 1e-10, 200)
        x2, i2 = gmres(lambda P: G @ P, b[:, None], xp, 1e-10, 200, restart=10)
        return x1[:, 0], x2[:, 0], i1.converged[0] & i2.converged[0]

    Bs = jnp.asarray(rhs(N, 4, seed=19)).T * jnp.asarray([1.0, 1e-3, 0.0, 5.0])[:, None]
    x1, x2, conv = jax.vmap(solve_one)(Bs)
    assert bool(conv.all())
    np.testing.assert_allclose(np.asarray(x1 @ S.T), np.asarray(Bs), atol=1e-8)
    np.testing.assert_allclose(np.asarray(x2 @ G.T), np.asarray(Bs), atol=1e-8)
    assert np.all(np.asarray(x1[2]) == 0) and np.all(np.asarray(x2[2]) == 0)


def test_options_are_validated():
    for cls in (MINRES, GMRES):
        for kwargs in ({"tol": 0}, {"tol": -1e-3}, {"max_iters": 0}, {"max_iters": 2.5}, {"on_failure": "ignore"}):
            with pytest.raises(ValueError):
                cls(**kwargs)
        with pytest.raises(TypeError):
            cls(maxiter=10)
        assert cls(tol=1e-8) == cls(tol=1e-8) and cls().on_failure == "raise" and cls().max_iters is None
    for restart in (0, -3, 2.5, True, None):
        with pytest.raises(ValueError):
            GMRES(restart=restart)
    with pytest.raises(TypeError):
        MINRES(restart=5)
    assert GMRES().restart == 30
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        GMRES().tol = 1.0
    assert isinstance(MINRES(), lo.algorithms.Algorithm) and isinstance(GMRES(), lo.algorithms.Algorithm)
