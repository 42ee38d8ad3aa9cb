"""Zoo cases for kernel-matrix operators, sparse operators, Jacobian and Hessian operators.

Each case is registered with ``@case(...)`` from :mod:`tests.zoo` and returns ``(operator,
dense numpy twin)``; the twin is built independently with numpy, never with ``to_dense``.
"""

from __future__ import annotations

import numpy as np

import linops as lo

from .zoo import case  # noqa: F401
import pytest  # noqa: E402

from .zoo import Config  # noqa: E402


# ------------------------------------------------------------------ helpers
def _real_dtype(g) -> str:
    return {"complex128": "float64", "complex64": "float32"}.get(g.cfg.dtype, g.cfg.dtype)


def _points(g, a):
    """Real points (numpy twin rounded like the backend array) and the backend array."""
    rd = _real_dtype(g)
    a = np.asarray(a, dtype=np.float64).astype(rd).astype(np.float64)
    return a, Config(g.cfg.backend, rd, g.cfg.device).arr(a)


def _grid(g, n, d, spacing=1.0, jitter=0.15):
    """n well-separated points in d dimensions: a jittered grid."""
    side = int(np.ceil(n ** (1.0 / d)))
    pts = np.stack(np.meshgrid(*[np.arange(side)] * d, indexing="ij"), -1).reshape(-1, d)[:n]
    return spacing * (pts + jitter * g.rng.uniform(-1, 1, pts.shape))


def _kw(g):
    return {"dtype": g.cfg.native_dtype()} if g.cfg.complex else {}


def _r2(A, B, ls):
    D = (A[:, None, :] - B[None, :, :]) / ls
    return (D**2).sum(-1)


def _ls(g, values):
    return _points(g, np.asarray(values))


# ------------------------------------------------------------------ kernels
@case(self_adjoint=True, psd=True)
def kernel_rbf(g):
    Xn, X = _points(g, _grid(g, 8, 2))
    op = lo.RBF(X, lengthscale=0.45, outputscale=1.5, block_size=3, **_kw(g))
    return op, 1.5 * np.exp(-0.5 * _r2(Xn, Xn, 0.45))


@case(square=False, invertible=False)
def kernel_matern_ard_rect(g):
    Xn, X = _points(g, g.rng.standard_normal((6, 3)))
    Yn, Y = _points(g, g.rng.standard_normal((8, 3)))
    lsn, ls = _ls(g, [0.5, 1.0, 2.0])
    r = np.sqrt(_r2(Xn, Yn, lsn))
    op = lo.Matern(X, Y, lengthscale=ls, outputscale=0.8, nu=1.5, block_size=4, **_kw(g))
    return op, 0.8 * (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)


@case(self_adjoint=True, psd=True)
def kernel_matern12(g):
    Xn, X = _points(g, _grid(g, 7, 1))
    r = np.sqrt(_r2(Xn, Xn, 0.5))
    return lo.Matern(X, lengthscale=0.5, nu=0.5, block_size=2, **_kw(g)), np.exp(-r)


@case(self_adjoint=True, psd=True)
def kernel_matern52_noise(g):
    Xn, X = _points(g, _grid(g, 9, 2, spacing=0.7))
    r = np.sqrt(5) * np.sqrt(_r2(Xn, Xn, 0.8))
    K = (1 + r + r**2 / 3) * np.exp(-r)
    return lo.Matern(X, lengthscale=0.8, nu=2.5, **_kw(g)) + lo.ScalarMul(0.5, 9), K + 0.5 * np.eye(9)


@case(self_adjoint=True, psd=True)
def kernel_periodic_noise(g):
    Xn, X = _points(g, g.rng.uniform(0, 3, (7, 1)))
    K = 2.0 * np.exp(-2 * (np.sin(np.pi * (Xn - Xn.T) / 1.5) / 0.7) ** 2)
    op = lo.Periodic(X, lengthscale=0.7, outputscale=2.0, period=1.5, block_size=3, **_kw(g))
    return op + lo.ScalarMul(0.3, 7), K + 0.3 * np.eye(7)


@case(self_adjoint=True, psd=True)
def kernel_linear_noise(g):
    Xn, X = _points(g, g.rng.standard_normal((6, 2)))
    lsn, ls = _ls(g, [1.0, 2.0])
    op = lo.LinearKernel(X, lengthscale=ls, outputscale=0.5, **_kw(g))
    return op + lo.ScalarMul(1.0, 6), 0.5 * (Xn / lsn) @ (Xn / lsn).T + np.eye(6)


@case(self_adjoint=True, psd=True)
def kernel_rbf_plus_noise(g):
    """The Gaussian-process covariance ``K + sigma^2 I``, a Sum."""
    Xn, X = _points(g, g.rng.uniform(0, 2, (10, 2)))
    op = lo.RBF(X, lengthscale=0.6, block_size=4, **_kw(g)) + lo.ScalarMul(0.1, 10)
    return op, np.exp(-0.5 * _r2(Xn, Xn, 0.6)) + 0.1 * np.eye(10)


# ------------------------------------------------------------------- sparse
def _sparse(g, D, layout):
    """The configuration's sparse matrix of dense twin D: scipy (layout), torch COO/CSR, jax BCOO."""
    if g.cfg.backend == "numpy":
        import scipy.sparse as sp

        return lo.Sparse(getattr(sp, f"{layout}_array")(g.arr(D)))
    if g.cfg.backend == "torch":
        T = g.arr(D)
        return lo.Sparse(T.to_sparse_csr() if layout == "csr" else T.to_sparse())
    from jax.experimental import sparse as jsparse

    return lo.Sparse(jsparse.BCOO.fromdense(g.arr(D)))


@case()
def sparse_csr(g):
    n = 8
    D = g.randn(n, n) * (g.rng.uniform(size=(n, n)) < 0.3)
    D = D + np.diag(g.positive(n, 2.5, 3.5))
    return _sparse(g, D, "csr"), D


@case(square=False, invertible=False)
def sparse_coo_rect(g):
    D = g.randn(6, 9) * (g.rng.uniform(size=(6, 9)) < 0.35)
    return _sparse(g, D, "coo"), D


@case(self_adjoint=True, psd=True)
def sparse_laplacian(g):
    """The 2-D Dirichlet Laplacian on a 3 x 3 grid (5-point stencil), annotated PSD."""
    T = 2 * np.eye(3) - np.eye(3, k=1) - np.eye(3, k=-1)
    L = np.kron(T, np.eye(3)) + np.kron(np.eye(3), T)
    return lo.PSD(_sparse(g, L, "csc")), L


# -------------------------------------------------- sum of Kronecker products
@case()
def phm_kronecker_sum(g):
    """PHM / Compacter weight ``Σ_i A_i ⊗ B_i`` as a Sum of Kronecker products."""
    A = [g.wellcond(2)] + [0.2 * g.randn(2, 2) for _ in range(2)]
    B = [g.wellcond(3)] + [0.2 * g.randn(3, 3) for _ in range(2)]
    op = lo.Sum(*(lo.Kronecker(g.dense(a), g.dense(b)) for a, b in zip(A, B, strict=True)))
    return op, sum(np.kron(a, b) for a, b in zip(A, B, strict=True))


# --------------------------------------------------------- Jacobian, Hessian
def _autodiff_only(g, real=False):
    if g.cfg.backend == "numpy":
        pytest.skip("Jacobian/Hessian need torch or jax (numpy has no automatic differentiation)")
    if real and g.cfg.complex:
        pytest.skip("Hessian needs a real point")


@case()
def jacobian_square(g):
    """f(x) = 2x + W (x∘x∘x) / 3: J = 2 I + W diag(x^2)."""
    _autodiff_only(g)
    n = 6
    W, x = g.randn(n, n) / np.sqrt(n), 0.8 * g.randn(n)
    Wa = g.arr(W)
    return lo.Jacobian(lambda v: 2 * v + Wa @ (v * v * v) / 3, g.arr(x)), 2 * np.eye(n) + W * (x * x)[None, :]


@case(square=False, invertible=False)
def jacobian_rect(g):
    """f(x) = A x + B (x∘x) from R^5 to R^3: J = A + 2 B diag(x)."""
    _autodiff_only(g)
    A, B, x = g.randn(3, 5), g.randn(3, 5), g.randn(5)
    Aa, Ba = g.arr(A), g.arr(B)
    return lo.Jacobian(lambda v: Aa @ v + Ba @ (v * v), g.arr(x)), A + 2 * B * x[None, :]


@case(self_adjoint=True, psd=True)
def hessian_convex(g):
    """f(x) = Σ x^4 / 12 + x^T S x / 2 (S SPD): H = diag(x^2) + S."""
    _autodiff_only(g, real=True)
    n = 6
    S, x = g.spd(n), g.randn(n)
    Sa = g.arr(S)
    return lo.Hessian(lambda v: (v**4).sum() / 12 + v @ (Sa @ v) / 2, g.arr(x), psd=True), np.diag(x * x) + S
