"""BiCGStab, LSMR, lo.lstsq and lo.pinv on every backend: against numpy and SciPy, per-column
convergence, breakdowns, non-convergence, structure rules, jit/vmap and implicit gradients."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import linops as lo
from linops.algorithms import BiCGStab, LSMR, bicgstab, lsmr
from linops.algorithms.info import report
from linops.algorithms.lsmr import report_lsmr
from linops.backends import backend_named

from .zoo import CONFIGS, Config, to_np

KERNEL_IDS = ("numpy-float64", "numpy-complex128", "torch-float32", "torch-float64", "jax-float32", "jax-float64")
KERNEL_CONFIGS = [c for c in CONFIGS if c.id in KERNEL_IDS]
# jax float64 runs the kernels in test_jit_and_vmap and the gradient tests (each jax loop compiles anew)
EAGER_CONFIGS = [c for c in KERNEL_CONFIGS if c.id != "jax-float64"]
N = 40


def nonsymmetric(n, seed=0, complex_=False):
    """2 I + G / sqrt(n): eigenvalues in the disc |z - 2| <~ 1, well conditioned, far from symmetric."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    return 2 * np.eye(n) + G / np.sqrt(n * (2 if complex_ else 1))


def rect(m, n, seed=0, complex_=False, cond=10.0):
    """A random m x n matrix with singular values spread over [1, cond]."""
    rng = np.random.default_rng(seed)
    cplx = complex_ and 1j
    U, _ = np.linalg.qr(rng.standard_normal((m, min(m, n))) + (cplx * rng.standard_normal((m, min(m, n))) if cplx else 0))
    V, _ = np.linalg.qr(rng.standard_normal((n, min(m, n))) + (cplx * rng.standard_normal((n, min(m, n))) if cplx else 0))
    return (U * np.geomspace(1, cond, min(m, n))) @ V.conj().T


def rhs(m, k, seed=1, complex_=False, zero_col=None):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((m, k)) + (1j * rng.standard_normal((m, k)) if complex_ else 0)
    if zero_col is not None:
        B[:, zero_col] = 0
    return B


def rounded(cfg, *arrays):
    wide = np.complex128 if cfg.complex else np.float64
    return [np.asarray(a).astype(cfg.dtype).astype(wide) for a in arrays]


def relres(M, X, B):
    return np.linalg.norm(M @ X - B, axis=0) / np.maximum(np.linalg.norm(B, axis=0), 1e-300)


def history(info):
    hist = to_np(info.history)
    used = int(info.iterations) + 1
    assert np.isnan(hist[used:]).all() and not np.isnan(hist[:used]).any()
    return hist[:used]


def wide(cfg, X):
    return to_np(X).astype(np.complex128 if cfg.complex else np.float64)


# -------------------------------------------------------------------------------- BiCGStab
@pytest.mark.parametrize("cfg", EAGER_CONFIGS, ids=[c.id for c in EAGER_CONFIGS])
def test_bicgstab_matches_dense_and_scipy(cfg):
    from scipy.sparse.linalg import bicgstab as scipy_bicgstab

    M, B = rounded(cfg, nonsymmetric(N, complex_=cfg.complex), rhs(N, 3, complex_=cfg.complex, zero_col=1))
    tol = 1e-5 if cfg.single else 1e-10
    Ma = cfg.arr(M)
    X, info = bicgstab(lambda P: Ma @ P, cfg.arr(B), backend_named(cfg.backend), tol, 10 * N)
    X = wide(cfg, X)
    assert info.method == "BiCGStab" and to_np(info.converged).all() and not to_np(info.breakdown).any()
    res = relres(M, X, B)
    assert (res <= 10 * tol).all(), res
    np.testing.assert_allclose(to_np(info.relative_residuals), res, rtol=0.05, atol=tol * 1e-2)  # the true residual
    ref = np.linalg.solve(M, B)
    np.testing.assert_allclose(X, ref, atol=100 * tol * np.abs(ref).max())
    assert np.all(X[:, 1] == 0)
    hist = history(info)
    assert hist[0, 0] == pytest.approx(1.0) and hist[0, 1] == 0
    np.testing.assert_allclose(hist[-1], to_np(info.relative_residuals))
    if not cfg.single:
        for j in (0, 2):
            calls = []
            theirs, code = scipy_bicgstab(M, B[:, j], rtol=tol, atol=0, callback=calls.append)
            assert code == 0
            np.testing.assert_allclose(X[:, j], theirs, atol=100 * tol * np.abs(ref).max())
            assert abs(len(calls) - int(info.iterations)) <= 2  # the same iteration, up to the stopping test


def test_bicgstab_per_column_convergence_matches_single_solves():
    M = nonsymmetric(N, seed=2)
    w, V = np.linalg.eig(M)
    B = rhs(N, 3, seed=3)
    B[:, 1] *= 1e-8  # the rule is relative: scale does not matter
    real = np.flatnonzero(np.abs(w.imag) < 1e-12)[:2]
    B[:, 2] = V[:, real].real @ np.ones(2)  # two eigenvectors: solved in a couple of steps, then frozen
    xp = backend_named("numpy")
    X, info = bicgstab(lambda P: M @ P, B, xp, 1e-10, 400)
    iters = []
    for j in range(3):
        x, one = bicgstab(lambda P: M @ P, B[:, j : j + 1], xp, 1e-10, 400)
        np.testing.assert_allclose(X[:, j], x[:, 0], rtol=1e-8, atol=1e-12 * np.abs(x).max())
        iters.append(int(one.iterations))
    assert iters[2] <= 2 < iters[0] and int(info.iterations) == max(iters) and info.all_converged


def test_bicgstab_right_preconditioner():
    rng = np.random.default_rng(13)
    M = np.diag(np.logspace(0, 3, 80)) + rng.standard_normal((80, 80)) / 8
    B = rhs(80, 2, seed=14)
    xp = backend_named("numpy")
    _, plain = bicgstab(lambda R: M @ R, B, xp, 1e-9, 3000)
    jacobi = 1 / np.diag(M)
    X, pre = bicgstab(lambda R: M @ R, B, xp, 1e-9, 3000, precond=lambda R: jacobi[:, None] * R)
    assert pre.all_converged and int(pre.iterations) * 3 < int(plain.iterations)
    true = relres(M, X, B)  # right preconditioning: the residual tested is b - A x itself
    assert (true <= 1e-9).all()
    np.testing.assert_allclose(to_np(pre.relative_residuals), true, rtol=1e-6)


def test_bicgstab_breakdowns():
    xp = backend_named("numpy")
    # r̂^H A p̂ = 0 at once: the swap with b = e_1 (BiCGStab's classic failure; GMRES solves it)
    S = np.array([[0.0, 1.0], [1.0, 0.0]])
    X, info = bicgstab(lambda P: S @ P, np.array([[1.0], [0.0]]), xp, 1e-10, 100)
    assert to_np(info.breakdown)[0] and not info.all_converged and np.all(X == 0)
    with pytest.raises(lo.ConvergenceError, match="broke down"):
        report(info, 1e-10, "raise", xp)
    with pytest.raises(lo.ConvergenceError, match="broke down"):
        lo.solve(lo.Dense(S), np.array([1.0, 0.0]), alg=BiCGStab())
    np.testing.assert_allclose(lo.solve(lo.Dense(S), np.array([1.0, 0.0]), alg=lo.GMRES()), [0.0, 1.0], atol=1e-12)
    # omega = 0: t = A s = 0 after the half step (singular A, b outside its range); the half step is kept
    T = np.array([[1.0, 1.0], [0.0, 0.0]])
    X, info = bicgstab(lambda P: T @ P, np.ones((2, 1)), xp, 1e-10, 100)
    assert to_np(info.breakdown)[0] and int(info.iterations) == 1
    np.testing.assert_allclose(X[:, 0], [1.0, 1.0])
    assert to_np(info.relative_residuals)[0] == pytest.approx(1.0) == relres(T, X, np.ones((2, 1)))[0]


def test_bicgstab_non_convergence_nan_and_options():
    M = nonsymmetric(N, seed=15)
    A, b = lo.Dense(M), np.ones(N)
    with pytest.raises(lo.ConvergenceError, match="did not converge.*after 2 iterations") as e:
        lo.solve(A, b, alg=BiCGStab(tol=1e-12, max_iters=2))
    assert e.value.info.method == "BiCGStab" and int(e.value.info.iterations) == 2
    with pytest.warns(lo.ConvergenceWarning, match="did not converge"):
        lo.solve(A, b, alg=BiCGStab(tol=1e-12, max_iters=2, on_failure="warn"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, info = lo.solve(A, b, alg=BiCGStab(tol=1e-10), return_info=True)
    assert info.all_converged and relres(M, x[:, None], b[:, None])[0] <= 1e-10
    bad = M.copy()
    bad[3, 4] = np.nan
    with pytest.raises(lo.NonFiniteError, match="NaN"):
        lo.solve(lo.Dense(bad), b, alg=BiCGStab())
    with pytest.raises(lo.NonFiniteError, match="NaN"):
        lo.solve(A, np.r_[np.nan, b[1:]], alg=BiCGStab())
    for kwargs in ({"tol": 0}, {"max_iters": 0}, {"max_iters": 2.5}, {"on_failure": "ignore"}):
        with pytest.raises(ValueError):
            BiCGStab(**kwargs)
    with pytest.raises(TypeError):
        BiCGStab(restart=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        BiCGStab().tol = 1.0
    assert lo.BiCGStab is BiCGStab and BiCGStab(tol=1e-8) == BiCGStab(tol=1e-8)
    assert isinstance(lo.inv(A, BiCGStab()), lo.LinearOperator)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_bicgstab_gradients_match_dense(backend):
    M0, b0 = nonsymmetric(25, seed=11), np.random.default_rng(12).standard_normal(25)
    alg = BiCGStab(tol=1e-12)
    if backend == "torch":
        import torch

        M, b = torch.tensor(M0, requires_grad=True), torch.tensor(b0, requires_grad=True)
        (lo.solve(lo.Dense(M), b, alg=alg) ** 2).sum().backward()
        M2, b2 = torch.tensor(M0, requires_grad=True), torch.tensor(b0, requires_grad=True)
        (torch.linalg.solve(M2, b2) ** 2).sum().backward()
        got, ref = (M.grad, b.grad), (M2.grad, b2.grad)
    else:
        import jax
        import jax.numpy as jnp

        f = lambda M, b: (lo.solve(lo.Dense(M), b, alg=alg) ** 2).sum()  # noqa: E731
        got = jax.jit(jax.grad(f, argnums=(0, 1)))(jnp.asarray(M0), jnp.asarray(b0))  # one compile
        ref = jax.grad(lambda M, b: (jnp.linalg.solve(M, b) ** 2).sum(), argnums=(0, 1))(jnp.asarray(M0), jnp.asarray(b0))
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(to_np(g), to_np(r), atol=1e-8)


# ------------------------------------------------------------------------------------ LSMR
LSMR_CASES = [(c, s) for c in EAGER_CONFIGS for s in ("tall", "wide") if c.backend != "jax" or s == "wide"]


@pytest.mark.parametrize("cfg,shape", LSMR_CASES, ids=[f"{s}-{c.id}" for c, s in LSMR_CASES])
def test_lsmr_matches_lstsq_and_scipy(cfg, shape):
    from scipy.sparse.linalg import lsmr as scipy_lsmr

    m, n = (50, 20) if shape == "tall" else (20, 50)
    M, B = rounded(cfg, rect(m, n, complex_=cfg.complex), rhs(m, 3, complex_=cfg.complex, zero_col=1))
    tol = 1e-6 if cfg.single else 1e-10
    Ma = cfg.arr(M)
    MaH = cfg.arr(M.conj().T)
    X, info = lsmr(lambda P: Ma @ P, lambda Q: MaH @ Q, cfg.arr(B), backend_named(cfg.backend), tol, tol, 1e8, 10 * n)
    X = wide(cfg, X)
    ref = np.linalg.lstsq(M, B, rcond=None)[0]  # minimum norm for the wide case
    assert info.method == "LSMR" and to_np(info.converged).all() and not to_np(info.breakdown).any()
    np.testing.assert_allclose(X, ref, atol=(1e-4 if cfg.single else 1e-8) * np.abs(ref).max())
    assert np.all(X[:, 1] == 0)
    np.testing.assert_allclose(to_np(info.relative_residuals), relres(M, X, B), rtol=1e-3, atol=1e-5 if cfg.single else 1e-9)
    hist = history(info)
    assert hist[0, 0] == pytest.approx(1.0) and hist[0, 1] == 0
    if not cfg.single:
        for j in (0, 2):
            theirs = scipy_lsmr(M, B[:, j], atol=tol, btol=tol, maxiter=10 * n)
            np.testing.assert_allclose(X[:, j], theirs[0], atol=1e-8 * np.abs(ref).max())
            assert abs(theirs[2] - int(info.iterations)) <= 2  # scipy's itn: the same iteration count


def test_lsmr_per_column_damp_and_rank_deficiency():
    xp = backend_named("numpy")
    M = rect(60, 25, seed=4, cond=100.0)
    U, s, Vh = np.linalg.svd(M, full_matrices=False)
    B = rhs(60, 3, seed=5)
    B[:, 2] = U[:, :2] @ np.ones(2)  # two singular vectors: done in two steps, then frozen
    X, info = lsmr(lambda P: M @ P, lambda Q: M.T @ Q, B, xp, 1e-12, 1e-12, 1e8, 500)
    iters = []
    for j in range(3):
        x, one = lsmr(lambda P: M @ P, lambda Q: M.T @ Q, B[:, j : j + 1], xp, 1e-12, 1e-12, 1e8, 500)
        np.testing.assert_allclose(X[:, j], x[:, 0], rtol=1e-9, atol=1e-13)
        iters.append(int(one.iterations))
    assert iters[2] <= 3 < iters[0] and abs(int(info.iterations) - max(iters)) <= 1  # block products round differently
    # Tikhonov damping: (A^T A + damp^2 I) x = A^T b
    X, info = lsmr(lambda P: M @ P, lambda Q: M.T @ Q, B, xp, 1e-12, 1e-12, 1e8, 500, damp=0.3)
    np.testing.assert_allclose(X, np.linalg.solve(M.T @ M + 0.09 * np.eye(25), M.T @ B), atol=1e-10)
    # rank deficient: the minimum-norm least-squares solution
    R = rect(40, 6, seed=6) @ rect(6, 30, seed=7)
    X, info = lsmr(lambda P: R @ P, lambda Q: R.T @ Q, B[:40], xp, 1e-12, 1e-12, 1e8, 500)
    assert info.all_converged
    np.testing.assert_allclose(X, np.linalg.pinv(R) @ B[:40], atol=1e-9)
    # b orthogonal to the range of A: x = 0 at once, converged
    Z = np.zeros((5, 2))
    Z[0, 0] = 1.0
    x, info = lsmr(lambda P: Z @ P, lambda Q: Z.T @ Q, np.eye(5)[:, 3:4], xp, 1e-8, 1e-8, 1e8, 10)
    assert info.all_converged and int(info.iterations) == 0 and np.all(x == 0)


def test_lsmr_conlim_non_convergence_and_options():
    xp = backend_named("numpy")
    M = rect(40, 20, seed=8, cond=1e10)
    B = rhs(40, 2, seed=9)
    alg = LSMR(atol=1e-14, btol=1e-14, conlim=1e4)
    X, info = lsmr(lambda P: M @ P, lambda Q: M.T @ Q, B, xp, alg.atol, alg.btol, alg.conlim, 400)
    assert to_np(info.breakdown).all() and not info.all_converged
    with pytest.raises(lo.ConvergenceError, match="conlim"):
        report_lsmr(info, alg, xp)
    with pytest.raises(lo.ConvergenceError, match="conlim"):
        lo.lstsq(lo.Dense(M), B, alg=alg)
    with pytest.raises(lo.ConvergenceError, match="LSMR did not converge.*after 3 iterations") as e:
        lo.lstsq(lo.Dense(M), B, alg=LSMR(max_iters=3))
    assert int(e.value.info.iterations) == 3
    with pytest.warns(lo.ConvergenceWarning, match="did not converge"):
        lo.lstsq(lo.Dense(M), B, alg=LSMR(max_iters=3, on_failure="warn"))
    bad = M.copy()
    bad[2, 2] = np.inf
    with pytest.raises(lo.NonFiniteError), np.errstate(invalid="ignore"):
        lo.lstsq(lo.Dense(bad), B, alg=LSMR())
    with pytest.raises(lo.NonFiniteError), np.errstate(invalid="ignore"):
        lo.lstsq(lo.Dense(M), np.full(40, np.nan), alg=LSMR())
    for kwargs in ({"atol": -1}, {"btol": float("nan")}, {"conlim": -1.0}, {"damp": -0.1}, {"max_iters": 0},
                   {"on_failure": "ignore"}, {"atol": "1e-3"}):  # fmt: skip
        with pytest.raises(ValueError):
            LSMR(**kwargs)
    with pytest.raises(TypeError):
        LSMR(tol=1e-3)
    assert lo.LSMR is LSMR and LSMR(damp=0.5) == LSMR(damp=0.5)


# ---------------------------------------------------------------------------- lstsq / pinv
@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_lstsq_matches_numpy(cfg):
    M, B = rounded(cfg, rect(30, 12, seed=10, complex_=cfg.complex), rhs(30, 3, seed=11, complex_=cfg.complex))
    ref = np.linalg.lstsq(M, B, rcond=None)[0]
    A = lo.Dense(cfg.arr(M))
    tol = 1e-4 if cfg.single else 1e-9
    algs = [lo.Auto(), LSMR(atol=1e-7 if cfg.single else 1e-12, btol=1e-7 if cfg.single else 1e-12)]
    for alg in algs[:1] if cfg.backend == "jax" else algs:  # jax's LSMR: test_jit_and_vmap and the gradients
        X, info = lo.lstsq(A, cfg.arr(B), alg=alg, return_info=True)
        np.testing.assert_allclose(wide(cfg, X), ref, atol=tol * np.abs(ref).max())
        assert info.all_converged
        assert info.method == ("LSMR" if isinstance(alg, LSMR) else "SVDPinv")
        np.testing.assert_allclose(to_np(info.relative_residuals), relres(M, ref, B), rtol=1e-2)
    x = lo.lstsq(A, cfg.arr(B[:, 0]))
    assert tuple(x.shape) == (12,)
    np.testing.assert_allclose(wide(cfg, x), ref[:, 0], atol=tol * np.abs(ref).max())
    P = lo.pinv(A)
    assert P.shape == (12, 30)
    np.testing.assert_allclose(wide(cfg, P.to_dense()), np.linalg.pinv(M), atol=tol * 10)


def test_lstsq_auto_choices():
    rng = np.random.default_rng(12)
    Q = rng.standard_normal((8, 8))
    b = rng.standard_normal(8)
    assert type(lo.pinv(lo.Dense(Q))).__name__ == "LUInverse"  # square non-singular: a plain solve
    np.testing.assert_allclose(lo.lstsq(lo.Dense(Q), b), np.linalg.solve(Q, b), atol=1e-12)
    for S in (np.diag([1.0, 2.0, 0.0, 3.0]), rect(8, 3, seed=1) @ rect(3, 8, seed=2)):  # exactly / numerically singular
        n = S.shape[0]
        assert type(lo.pinv(lo.Dense(S))).__name__ == "SVDPinv"
        np.testing.assert_allclose(lo.lstsq(lo.Dense(S), b[:n]), np.linalg.pinv(S) @ b[:n], atol=1e-12)
    semi = lo.PSD(lo.Dense(np.diag([1.0, 0.0]) + 0.0))
    np.testing.assert_allclose(lo.lstsq(semi, np.ones(2)), [1.0, 0.0])  # Cholesky fails: the SVD
    M = rect(60, 30, seed=3)
    B = rhs(60, 2, seed=4)
    x, info = lo.lstsq(lo.Dense(M), B, alg=lo.Auto(dense_n=40), return_info=True)
    assert info.method == "LSMR" and info.all_converged
    np.testing.assert_allclose(x, np.linalg.lstsq(M, B, rcond=None)[0], atol=1e-8)
    assert "IterativePinv" in repr(lo.pinv(lo.Dense(M), lo.Auto(dense_n=40)))


def test_pinv_structure_rules():
    rng = np.random.default_rng(14)
    d = np.array([2.0, 0.0, -4.0, 1e-30])
    D = lo.pinv(lo.Diagonal(d))
    assert isinstance(D, lo.Diagonal) and np.array_equal(D.d, [0.5, 0.0, -0.25, 0.0])  # below the cutoff: 0
    F1, F2 = rng.standard_normal((4, 3)), rng.standard_normal((2, 5))
    for op, dense in ((lo.Kronecker(lo.Dense(F1), lo.Dense(F2)), np.kron(F1, F2)),
                      (lo.BlockDiag(lo.Dense(F1), lo.Dense(F2)), np.block([[F1, np.zeros((4, 5))], [np.zeros((2, 3)), F2]]))):  # fmt: skip
        P = lo.pinv(op)
        assert type(P) is type(op) and P.shape == dense.shape[::-1]
        np.testing.assert_allclose(P.to_dense(), np.linalg.pinv(dense), atol=1e-12)
        b = rng.standard_normal(dense.shape[0])
        np.testing.assert_allclose(lo.lstsq(op, b), np.linalg.lstsq(dense, b, rcond=None)[0], atol=1e-12)
    U, V = rng.standard_normal((9, 3)), rng.standard_normal((7, 3))
    P = lo.pinv(lo.LowRank(U, V))
    assert isinstance(P, lo.LowRank) and P.shape == (7, 9)
    np.testing.assert_allclose(P.to_dense(), np.linalg.pinv(U @ V.T), atol=1e-12)
    P = lo.pinv(lo.LowRank(U))
    assert isinstance(P, lo.LowRank) and "PSD" in P.annotations
    np.testing.assert_allclose(P.to_dense(), np.linalg.pinv(U @ U.T), atol=1e-12)
    U2 = np.c_[U, U[:, :1]]  # rank-deficient factors: the generic (SVD) rule
    np.testing.assert_allclose(lo.pinv(lo.LowRank(U2, U2)).to_dense(), np.linalg.pinv(U2 @ U2.T), atol=1e-10)
    M = rng.standard_normal((6, 4)) + 1j * rng.standard_normal((6, 4))
    for P, ref in ((lo.pinv(lo.Dense(M).H), np.linalg.pinv(M.conj().T)), (lo.pinv(lo.Dense(M).T), np.linalg.pinv(M.T))):
        np.testing.assert_allclose(P.to_dense(), ref, atol=1e-12)
    for alg in (lo.SVD(), LSMR(atol=1e-13, btol=1e-13)):  # products from the left: (A^+)^T, through A^T's solve
        P = lo.pinv(lo.Dense(M), alg)
        X = rng.standard_normal((2, 4))
        np.testing.assert_allclose(X @ P, X @ np.linalg.pinv(M), atol=1e-10)
        np.testing.assert_allclose(P.H.to_dense(), np.linalg.pinv(M).conj().T, atol=1e-10)


def test_lstsq_errors():
    A = lo.Dense(np.ones((5, 3)))
    with pytest.raises(lo.ShapeError, match=r"shape \(3,\) does not fit Dense\(5x3.*expected \(5,\) or \(5, k\)"):
        lo.lstsq(A, np.ones(3))
    with pytest.raises(lo.ShapeError):
        lo.lstsq(A, np.ones((5, 2, 1)))
    with pytest.raises(TypeError, match="lo.Auto\\(\\), lo.SVD\\(\\) or lo.LSMR\\(\\)"):
        lo.lstsq(A, np.ones(5), alg=lo.LU())
    with pytest.raises(TypeError, match="wrap an array"):
        lo.pinv(np.ones((5, 3)))
    bad = np.ones((5, 3))
    bad[1, 1] = np.nan
    with pytest.raises(lo.NonFiniteError, match="NaN"):
        lo.lstsq(lo.Dense(bad), np.ones(5))
    with pytest.raises(lo.NonFiniteError, match="NaN"):
        lo.lstsq(lo.Dense(bad[:3]), np.ones(3))  # square: the LU route checks too


def test_jit_and_vmap():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    M = jnp.asarray(rect(30, 12, seed=15))
    G = jnp.asarray(nonsymmetric(N, seed=17))
    B = jnp.asarray(rhs(30, 3, seed=16))
    C = jnp.asarray(rhs(N, 3, seed=18, zero_col=1))
    lsmr_alg = LSMR(atol=1e-12, btol=1e-12, max_iters=200)

    @jax.jit
    def f(M, G, B, C):
        return (
            lo.lstsq(lo.Dense(M), B, alg=lo.SVD()),
            lo.lstsq(lo.Dense(M), B, alg=lsmr_alg, return_info=True),
            lo.solve(lo.Dense(G), C, alg=BiCGStab(tol=1e-10, max_iters=200), return_info=True),
        )

    x1, (x2, i2), (x3, i3) = f(M, G, B, C)
    ref = np.linalg.lstsq(np.asarray(M), np.asarray(B), rcond=None)[0]
    np.testing.assert_allclose(np.asarray(x1), ref, atol=1e-10)
    np.testing.assert_allclose(np.asarray(x2), ref, atol=1e-9)
    assert bool(i2.converged.all()) and np.asarray(i2.history).shape == (201, 3)
    assert bool(i3.converged.all()) and np.isnan(np.asarray(i3.history)[-1]).all()
    np.testing.assert_allclose(np.asarray(G @ x3), np.asarray(C), atol=1e-8)
    scales = jnp.asarray([1.0, 1e-3, 0.0, 5.0])  # different iteration counts in one batch, and a zero b
    Bs = jnp.asarray(rhs(30, 4, seed=19)).T * scales[:, None]
    Cs = jnp.asarray(rhs(N, 4, seed=20)).T * scales[:, None]
    xs = jax.jit(jax.vmap(lambda b: lo.lstsq(lo.Dense(M), b, alg=lsmr_alg)))(Bs)
    np.testing.assert_allclose(np.asarray(xs), np.linalg.lstsq(np.asarray(M), np.asarray(Bs).T, rcond=None)[0].T, atol=1e-9)
    ys = jax.jit(jax.vmap(lambda c: lo.solve(lo.Dense(G), c, alg=BiCGStab(tol=1e-10, max_iters=200))))(Cs)
    np.testing.assert_allclose(np.asarray(ys @ G.T), np.asarray(Cs), atol=1e-8)
    assert np.all(np.asarray(xs[2]) == 0) and np.all(np.asarray(ys[2]) == 0)


GRAD_CASES = ["tall-auto", "tall-lsmr", "tall-f32", "wide-svd", "rankdef-svd", "complex-lsmr", "damped"]
GRAD_CASES = [("torch", c) for c in GRAD_CASES] + [("jax", c) for c in ("tall-lsmr", "rankdef-svd", "complex-svd")]


@pytest.mark.parametrize("backend,case", GRAD_CASES, ids=[f"{b}-{c}" for b, c in GRAD_CASES])
def test_lstsq_gradients_match_dense_autodiff(backend, case):
    kind, how = case.split("-") if "-" in case else (case, "lsmr")
    dtype = "float32" if how == "f32" else "float64"
    if kind == "rankdef":
        M0 = rect(12, 3, seed=21) @ rect(3, 8, seed=22)
    else:
        M0 = rect(*((8, 20) if kind == "wide" else (20, 8)), seed=21, complex_=kind == "complex", cond=5.0)
    B0 = rhs(M0.shape[0], 2, seed=23, complex_=kind == "complex")
    damp = 0.5 if kind == "damped" else 0.0
    alg = {"auto": lo.Auto(), "svd": lo.SVD(), "f32": lo.Auto()}.get(how, LSMR(atol=1e-13, btol=1e-13, damp=damp))
    w = np.linspace(1.0, 2.0, M0.shape[1])[:, None]
    cfg = Config(backend, dtype if kind != "complex" else "complex128")
    n = M0.shape[1]

    def dense_solution(M, B, lib):  # numpy.linalg.lstsq's equivalent, or the damped normal equations
        if damp:
            return lib.linalg.solve(M.T @ M + damp**2 * lib.eye(n, dtype=M.dtype), M.T @ B)
        return lib.linalg.pinv(M) @ B

    if backend == "torch":
        import torch

        def grads(solve):
            M, B = cfg.arr(M0).requires_grad_(), cfg.arr(B0).requires_grad_()
            (solve(M, B).abs() ** 2 * torch.as_tensor(w, dtype=M.real.dtype)).sum().backward()
            return M.grad, B.grad

        got = grads(lambda M, B: lo.lstsq(lo.Dense(M), B, alg=alg))
        ref = grads(lambda M, B: dense_solution(M, B, torch))
        if kind == "tall" and how != "f32":
            ref2 = grads(lambda M, B: torch.linalg.lstsq(M, B).solution)
            np.testing.assert_allclose(to_np(ref[0]), to_np(ref2[0]), atol=1e-10)
    else:
        import jax
        import jax.numpy as jnp

        def loss(solve):
            return lambda M, B: (jnp.abs(solve(M, B)) ** 2 * w).sum()

        grad = jax.jit(jax.grad(loss(lambda M, B: lo.lstsq(lo.Dense(M), B, alg=alg)), argnums=(0, 1)))  # one compile
        got = grad(cfg.arr(M0), cfg.arr(B0))
        ref = jax.grad(loss(lambda M, B: dense_solution(M, B, jnp)), argnums=(0, 1))(cfg.arr(M0), cfg.arr(B0))
    tol = 2e-4 if dtype == "float32" else 1e-8
    for g, r in zip(got, ref, strict=True):
        r = to_np(r)
        np.testing.assert_allclose(to_np(g), r, atol=tol * max(1.0, np.abs(r).max()))
