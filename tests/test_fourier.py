"""The Fourier family (Circulant, Toeplitz, DFT, Hartley, Convolution) and Householder products.

The zoo grid (tests/zoo_signal.py) checks every operator against its dense twin on small sizes;
here: FFT identities against numpy/scipy at n up to 1024 on every backend and dtype, the
circulant-preconditioned CG iteration counts, the rules' fast paths, and bad input.
Tolerances are Config.tol (2e-3 single, 1e-8 double) relative to the data's scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.signal as ss

import linops as lo

from .helpers import assert_close
from .zoo import Config, to_np


def _data(cfg, rng, *shape):
    a = rng.standard_normal(shape)
    if cfg.complex:
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(cfg.dtype).astype(np.complex128 if cfg.complex else np.float64)


def _fold(full, shape):
    """The circular convolution from the full one: wrap every index modulo ``shape``."""
    out = np.zeros(shape, full.dtype)
    for idx in np.ndindex(*full.shape):
        out[tuple(i % n for i, n in zip(idx, shape, strict=True))] += full[idx]
    return out


# ------------------------------------------------------------------------ FFT identities
def test_circulant_against_scipy_n1024(cfg, rng):
    n = 1024
    c = _data(cfg, rng, n) * 0.3 / np.sqrt(n)
    c[0] += 2.0
    c = c.astype(cfg.dtype).astype(c.dtype)
    M = sla.circulant(c)
    C = lo.Circulant(cfg.arr(c))
    X, Xn = cfg.arr(_data(cfg, rng, n, 3)), None
    Xn = to_np(X).astype(c.dtype)
    assert_close(C @ X, M @ Xn, cfg)
    assert_close(X.T @ C, Xn.T @ M, cfg)
    assert_close(C.H @ X, M.conj().T @ Xn, cfg)
    assert_close(lo.eig(C)[0], np.fft.fft(c), cfg)
    assert_close(lo.solve(C, X), np.linalg.solve(M, Xn), cfg)
    sign, logabs = lo.slogdet(C)
    ref_sign, ref_logabs = np.linalg.slogdet(M)
    assert_close(logabs, ref_logabs, cfg, scale=abs(ref_logabs), factor=10)
    assert_close(sign, ref_sign, cfg, factor=10)
    assert_close(lo.diag(C), np.diag(M), cfg)


def test_toeplitz_rectangular_against_scipy(cfg, rng):
    m, n = 300, 1024
    c, r = _data(cfg, rng, m), _data(cfg, rng, n)
    M = sla.toeplitz(c, r)
    T = lo.Toeplitz(cfg.arr(c), cfg.arr(r))
    assert T.fft_size >= m + n - 1 and T.num_params == m + n - 1
    X, Y = _data(cfg, rng, n, 2), _data(cfg, rng, 3, m)
    scale = np.sqrt(n)  # entries of M @ x grow like sqrt(n)
    assert_close(T @ cfg.arr(X), M @ X, cfg, scale=scale)
    assert_close(cfg.arr(Y) @ T, Y @ M, cfg, scale=scale)
    assert_close(T.H @ cfg.arr(Y.T), M.conj().T @ Y.T, cfg, scale=scale)
    assert_close(T[100:160, 50:1000].to_dense(), M[100:160, 50:1000], cfg)
    assert isinstance(T[100:160, 50:1000], lo.Toeplitz)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_convolution_1d_against_scipy(cfg, rng, mode):
    n, k = 1024, 33
    h, x, y = _data(cfg, rng, k), _data(cfg, rng, n), None
    A = lo.Convolution(cfg.arr(h), n, mode)
    ref = ss.convolve(x, h, mode, method="direct")
    assert A.shape == (ref.size, n)
    assert_close(A @ cfg.arr(x), ref, cfg, scale=np.sqrt(k))
    # the adjoint is the correlation (scipy's conjugates its second argument; the transpose does not)
    y = _data(cfg, rng, ref.size)
    if mode == "full":
        assert_close(A.H @ cfg.arr(y), ss.correlate(y, h, "valid", method="direct"), cfg, scale=np.sqrt(k))
        assert_close(A.T @ cfg.arr(y), ss.correlate(y, h.conj(), "valid", method="direct"), cfg, scale=np.sqrt(k))
    # <A x, y> = <x, A^T y>, and X @ A through the same path
    lhs = np.sum(to_np(A @ cfg.arr(x)) * y)
    rhs = np.sum(x * to_np(cfg.arr(y) @ A))
    assert abs(lhs - rhs) <= cfg.tol * np.sqrt(k * n) * np.sqrt(ref.size)


@pytest.mark.parametrize("mode", ["full", "same", "valid", "circular"])
def test_convolution_2d_against_scipy(cfg, rng, mode):
    shape, kshape = (16, 12), (5, 4)
    h, x = _data(cfg, rng, *kshape), _data(cfg, rng, *shape)
    A = lo.Convolution(cfg.arr(h), shape, mode)
    if mode == "circular":
        ref = _fold(ss.fftconvolve(x, h, "full"), shape)
    else:
        ref = ss.fftconvolve(x, h, mode)
    assert A.output_shape == ref.shape and A.num_params == 20
    assert_close(A @ cfg.arr(x.ravel()), ref.ravel(), cfg, scale=5.0)
    # the adjoint: <A x, y> = <x, A^H y> (the zoo grid checks both sides against dense twins)
    y = _data(cfg, rng, A.shape[0])
    lhs = np.vdot(y, to_np(A @ cfg.arr(x.ravel())))
    rhs = np.vdot(to_np(A.H @ cfg.arr(y)), x.ravel())
    assert abs(lhs - rhs) <= cfg.tol * 5.0 * np.sqrt(x.size * y.size)


@pytest.mark.parametrize("norm", ["ortho", "forward"])  # all three norms: the closed-form test below
def test_dft_against_numpy(cfg, rng, norm):
    n = 1024
    x = _data(cfg, rng, n, 2)
    F = lo.DFT(n, norm, dtype=cfg.native_dtype(), backend=cfg.backend)
    ref = np.fft.fft(x, axis=0, norm=norm)
    s = np.abs(ref).max()
    assert_close(F @ cfg.arr(x), ref, cfg, scale=s)
    assert_close(lo.inv(F) @ (F @ cfg.arr(x)), x, cfg, scale=np.abs(x).max())
    assert_close(F.H @ cfg.arr(x), np.conj(np.fft.fft(np.conj(x), axis=0, norm=norm)), cfg, scale=s)
    assert_close(cfg.arr(x.T) @ F, ref.T, cfg, scale=s)  # F is symmetric
    assert ("Unitary" in F.annotations) == (norm == "ortho")


@pytest.mark.parametrize("norm", ["ortho", "backward", "forward"])
@pytest.mark.parametrize("inverse", [False, True])
def test_dft_determinant_and_diagonal_closed_forms(norm, inverse):
    for n in (1, 2, 3, 4, 5, 8, 13, 30):
        F = lo.DFT(n, norm, inverse)
        M = F.to_dense()
        sign, logabs = lo.slogdet(F)
        ref_sign, ref_logabs = np.linalg.slogdet(M)
        assert abs(sign - ref_sign) < 1e-10 and abs(logabs - ref_logabs) < 1e-9 * max(1, abs(ref_logabs))
        np.testing.assert_allclose(lo.diag(F), np.diag(M), atol=1e-12)
        np.testing.assert_allclose(lo.inv(F).to_dense(), np.linalg.inv(M), atol=1e-9)


def test_dft_is_weakly_typed():
    torch = pytest.importorskip("torch")
    F = lo.DFT(8)
    x = torch.arange(8.0, dtype=torch.float64)
    np.testing.assert_allclose(to_np(F @ x), np.fft.fft(np.arange(8.0), norm="ortho"), atol=1e-12)
    S = F + lo.Dense(torch.eye(8, dtype=torch.complex128))
    assert S.xp.name == "torch" and "torch" in str(S.terms[0].dtype)


def test_hartley_is_an_orthogonal_involution(cfg, rng):
    H = lo.Hartley((16, 8), dtype=cfg.native_dtype(), backend=cfg.backend)
    x = _data(cfg, rng, 128, 2)
    assert_close(H @ (H @ cfg.arr(x)), x, cfg, scale=np.abs(x).max())
    y = np.fft.fft2(x.T.reshape(2, 16, 8), norm="ortho").reshape(2, -1).T
    if not cfg.complex:
        assert_close(H @ cfg.arr(x), y.real - y.imag, cfg, scale=np.abs(y).max())
    assert lo.inv(H) is H


# ------------------------------------------------------------- circulant-preconditioned CG
def _kms(n, rho=0.9):
    return rho ** np.arange(n)


def _gaussian(n, ell=5.0, noise=1e-2):
    t = np.exp(-0.5 * (np.arange(n) / ell) ** 2)
    t[0] += noise
    return t


@pytest.mark.parametrize("name,column", [("kms", _kms), ("gaussian", _gaussian)])
def test_circulant_preconditioner_cuts_cg_iterations(name, column):
    """n = 512: plain CG vs CG preconditioned by the inverse of T. Chan's (and Strang's) circulant."""
    n = 512
    t = column(n)
    T = lo.PSD(lo.Toeplitz(t))
    b = np.random.default_rng(0).standard_normal(n)
    ref = sla.solve_toeplitz(t, b)
    counts = {}
    for kind in ("none", "chan", "strang"):
        pre = lo.Identity(n) if kind == "none" else lo.toeplitz_preconditioner(T, kind)
        x, info = lo.solve(T, b, alg=lo.CG(tol=1e-10, precond=pre, max_iters=4000), return_info=True)
        assert np.linalg.norm(x - ref) <= 1e-8 * np.linalg.norm(ref)
        counts[kind] = int(np.max(info.iterations))
    print(f"{name}: CG iterations {counts}")
    assert counts["chan"] * 5 <= counts["none"] and counts["strang"] * 5 <= counts["none"]
    # lo.CG() without a preconditioner on a PSD Toeplitz adds Chan's: the same iterations
    x, info = lo.solve(T, b, alg=lo.CG(tol=1e-10), return_info=True)
    assert int(np.max(info.iterations)) == counts["chan"]
    assert "circulant" in lo.explain(lo.solve, T, alg=lo.CG())


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_auto_uses_preconditioned_cg_above_dense_n(backend):
    cfg = Config(backend, "float64")
    n = 200
    t = _kms(n, 0.95)
    T = lo.PSD(lo.Toeplitz(cfg.arr(t)))
    b = np.random.default_rng(1).standard_normal(n)
    x, info = lo.solve(T, cfg.arr(b), alg=lo.Auto(dense_n=100), return_info=True)
    assert int(np.max(to_np(info.iterations))) < 20  # plain CG needs about 150 here
    np.testing.assert_allclose(to_np(x), sla.solve_toeplitz(t, b), rtol=1e-7)
    x_small = lo.solve(T, cfg.arr(b))  # below dense_n: the generic (Cholesky) rule
    np.testing.assert_allclose(to_np(x_small), sla.solve_toeplitz(t, b), rtol=1e-9)


def test_preconditioned_cg_gradient_matches_dense_torch():
    torch = pytest.importorskip("torch")
    n = 64
    t = torch.tensor(_kms(n, 0.8), requires_grad=True)
    b = torch.tensor(np.random.default_rng(2).standard_normal(n))
    x = lo.solve(lo.PSD(lo.Toeplitz(t)), b, alg=lo.CG(tol=1e-12))
    (g,) = torch.autograd.grad((x * b).sum(), t)
    t2 = t.detach().clone().requires_grad_(True)
    M = lo.Toeplitz(t2).to_dense()
    (g2,) = torch.autograd.grad((torch.linalg.solve(M, b) * b).sum(), t2)
    assert torch.allclose(g, g2, rtol=1e-6, atol=1e-8)


def test_circulant_rules_under_jax_vmap_and_jit():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(3)
    cs = 0.2 * rng.standard_normal((4, 16))
    cs[:, 0] += 2.0
    bs = rng.standard_normal((4, 16))
    solve = jax.jit(jax.vmap(lambda c, b: (lo.solve(lo.Circulant(c), b), lo.slogdet(lo.Circulant(c))[1])))
    x, ld = solve(jnp.asarray(cs), jnp.asarray(bs))
    for i in range(4):
        M = sla.circulant(cs[i])
        np.testing.assert_allclose(x[i], np.linalg.solve(M, bs[i]), rtol=1e-10)
        np.testing.assert_allclose(ld[i], np.linalg.slogdet(M)[1], rtol=1e-10)


# ------------------------------------------------------------------------ rules, structure
def test_circulant_rules_are_fft_based(rng):
    n = 64
    c = rng.standard_normal(n) * 0.2
    c[0] += 2.0
    C = lo.Circulant(c)
    for fn in (lo.solve, lo.logdet, lo.eig, lo.exp, lo.diag):
        text = lo.explain(fn, C) if fn is not lo.solve else lo.explain(fn, C)
        assert "structure rule for Circulant" in text or "Convolution" in text, text
    assert isinstance(lo.inv(C), lo.Circulant)
    assert isinstance(lo.exp(C), lo.Circulant)
    assert isinstance(C @ C.T, lo.Circulant) and isinstance(C + C, lo.Circulant)
    np.testing.assert_allclose((C @ C.T).to_dense(), sla.circulant(c) @ sla.circulant(c).T, atol=1e-12)
    sym = lo.PSD(lo.Circulant(c + c[(-np.arange(n)) % n]))
    w, V = lo.eigh(sym)
    assert to_np(V.to_dense()).dtype == np.float64  # real eigenvectors: the Hartley basis
    np.testing.assert_allclose(w, np.linalg.eigvalsh(sla.circulant(sym.c)), atol=1e-12)


def test_circular_convolution_2d_rules(rng):
    shape = (6, 5)
    h = 0.2 * rng.standard_normal((3, 3))
    h[0, 0] += 2.0
    A = lo.Convolution(h, shape, "circular")
    M = A.to_dense()
    b = rng.standard_normal(30)
    np.testing.assert_allclose(lo.solve(A, b), np.linalg.solve(M, b), atol=1e-12)
    np.testing.assert_allclose(lo.slogdet(A), np.linalg.slogdet(M), atol=1e-12)
    np.testing.assert_allclose(lo.exp(A / 4).to_dense(), sla.expm(M / 4), atol=1e-12)
    assert isinstance(lo.inv(A), lo.Convolution) and lo.inv(A).mode == "circular"
    w, V = lo.eig(A)
    Vd = V.to_dense()
    np.testing.assert_allclose(M @ Vd, Vd * w, atol=1e-12)


def test_householder_products(cfg, rng):
    n, k = 150, 8
    V = _data(cfg, rng, n, k)
    H = lo.Householder(cfg.arr(V))
    assert H.num_params == n * k and "Unitary" in H.annotations
    ref = np.eye(n, dtype=V.dtype)
    for i in range(k):
        v = V[:, i : i + 1]
        ref = ref @ (np.eye(n) - 2 * v @ v.conj().T / np.vdot(v, v).real)
    x1, X = _data(cfg, rng, n, 1), _data(cfg, rng, n, 10)
    assert_close(H @ cfg.arr(x1), ref @ x1, cfg)  # one column: the reflections in sequence
    assert_close(H @ cfg.arr(X), ref @ X, cfg)  # 10 >= k columns: compact WY
    assert_close(cfg.arr(x1.T) @ H, x1.T @ ref, cfg)
    assert_close(cfg.arr(X.T) @ H, X.T @ ref, cfg)
    T = to_np(H.wy())
    assert np.abs(np.tril(T, -1)).max() == 0
    assert_close(lo.inv(H) @ (H @ cfg.arr(X)), X, cfg, scale=np.abs(X).max())
    sign, logabs = lo.slogdet(H)
    assert_close(sign, (-1.0) ** k, cfg) and assert_close(logabs, 0.0, cfg)
    assert_close(lo.diag(H), np.diag(ref), cfg)


def test_deltaproduct_factors_determinant_lemma(rng):
    n = 10
    V = rng.standard_normal((n, 4))
    beta = np.array([0.2, 1.7, 0.0, 2.0])  # β = 0: an identity factor (τ = 0)
    H = lo.Householder(V, beta)
    assert "Unitary" not in H.annotations and H.num_params == 4 * n + 4
    ref = np.eye(n)
    for i in range(4):
        v = V[:, i : i + 1]
        ref = ref @ (np.eye(n) - beta[i] * v @ v.T / (v.T @ v))
    np.testing.assert_allclose(H.to_dense(), ref, atol=1e-12)
    np.testing.assert_allclose(lo.slogdet(H), np.linalg.slogdet(ref), atol=1e-12)
    np.testing.assert_allclose(lo.inv(H).to_dense(), np.linalg.inv(ref), atol=1e-10)
    with pytest.raises(lo.SingularMatrixError, match="beta = 1"):
        lo.inv(lo.Householder(V, np.array([0.2, 1.0, 0.9, 2.0])))


def test_reprs_and_parameter_counts():
    c = np.arange(1.0, 6.0)
    assert repr(lo.Circulant(c)) == "Circulant(5x5, float64)" and lo.Circulant(c).num_params == 5
    assert "FFT size" in repr(lo.Toeplitz(c, np.arange(1.0, 8.0)))
    assert "same, input 6x7, kernel 3x3" in repr(lo.Convolution(np.ones((3, 3)), (6, 7), "same"))
    assert "norm=backward, inverse" in repr(lo.DFT(4, "backward", inverse=True)) and lo.DFT(4).num_params == 0
    assert "2 reflections" in repr(lo.Householder(np.ones((4, 2)) + np.eye(4, 2)))


# ------------------------------------------------------------------------------ bad input
def test_bad_input_raises_named_errors():
    torch = pytest.importorskip("torch")
    with pytest.raises(lo.ShapeError, match="1-D"):
        lo.Toeplitz(np.ones((3, 3)))
    with pytest.raises(lo.ShapeError, match="first column"):
        lo.Circulant(np.ones((3, 2)))
    with pytest.raises(lo.BackendMismatchError, match="numpy"):
        lo.Toeplitz(np.ones(3), torch.ones(4, dtype=torch.float64))
    with pytest.raises(lo.BackendMismatchError):
        lo.Circulant(np.ones(4)) @ torch.ones(4, dtype=torch.float64)
    with pytest.raises(lo.BackendMismatchError):
        lo.Circulant(np.ones(4)) + lo.Circulant(torch.ones(4, dtype=torch.float64))
    with pytest.raises(lo.ShapeError, match="expected"):
        lo.Circulant(np.ones(4)) @ np.ones(5)
    with pytest.raises(lo.ShapeError, match="one axis per input axis"):
        lo.Convolution(np.ones(3), (4, 4))
    with pytest.raises(lo.ShapeError, match="no larger than the input"):
        lo.Convolution(np.ones(5), 4, "circular")
    with pytest.raises(ValueError, match="mode"):
        lo.Convolution(np.ones(3), 4, "wrap")
    with pytest.raises(ValueError, match="norm"):
        lo.DFT(4, "unitary")
    with pytest.raises(lo.ShapeError):
        lo.DFT(0)
    with pytest.raises(ValueError, match="column 1 of V is zero"):
        lo.Householder(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(lo.ShapeError, match="beta"):
        lo.Householder(np.ones((3, 2)), np.ones(3))
    with pytest.raises(lo.BackendMismatchError):
        lo.Householder(np.ones((3, 2)), torch.ones(2, dtype=torch.float64))
    with pytest.raises(TypeError):
        lo.Circulant([1.0, 2.0])
    with pytest.raises(lo.NotSquareError):
        lo.toeplitz_preconditioner(lo.Toeplitz(np.ones(3), np.ones(4)))


def test_singular_circulant_names_the_frequency():
    c = np.array([1.0, -1.0, 0.0, 0.0])  # rows sum to zero: eigenvalue 0 at frequency 0
    with pytest.raises(lo.SingularMatrixError, match="frequency 0"):
        lo.solve(lo.Circulant(c), np.ones(4))
    sign, logabs = lo.slogdet(lo.Circulant(c))
    assert sign == 0 and logabs == -np.inf
    h = np.zeros((2, 2))
    h[0, 0], h[1, 1] = 1.0, -1.0  # λ(k) = 1 - e^{-2πi(k1/3 + k2/4)} is 0 at (0, 0)
    with pytest.raises(lo.SingularMatrixError, match=r"frequency \(0, 0\)"):
        lo.inv(lo.Convolution(h, (3, 4), "circular"))
