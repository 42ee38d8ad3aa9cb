"""Truncated SVD of large operators: the randomized range finder, and Golub-Kahan-Lanczos.

* ``randomized_svd`` (Halko, Martinsson and Tropp 2011): ``Y = A Ω`` for a Gaussian Ω
  (n, l), ``l = k + oversample``; ``q`` power iterations ``Y <- A (A^H Y)`` with a thin QR
  after every product (so the small singular values are not lost to rounding); then the
  SVD of the l x n matrix ``Q^H A``. ``(2 q + 2) l`` products, O((m + n) l^2) work; the
  error is within a modest factor of ``σ_{k+1}`` and shrinks like ``(σ_{l+1}/σ_k)^{2q+1}``.
  No convergence test: an approximation whose quality the spectrum decides.
* ``golub_kahan`` (the accurate choice, ``lo.svd(A, k, alg=lo.Lanczos())``): the
  Golub-Kahan-Lanczos bidiagonalisation ``A V_m = U_m B_m``, ``A^H U_m = V_m B_m^H +
  β_m v_{m+1} e_m^T`` with B upper bidiagonal, both bases fully reorthogonalised (twice);
  the SVD of B gives Ritz triplets whose residual ``||A^H u - σ v|| = |β_m p_{m,i}|`` is read
  without another product. It works on A itself, so singular values are accurate to
  ``tol * σ_1`` whatever the conditioning; Lanczos on ``A^H A`` would square the condition
  number (a small σ only to ``eps σ_1^2 / σ``), and on the Hermitian dilation
  ``[[0, A], [A^H, 0]]`` would need twice the Krylov dimension for the same pairs (its
  eigenvalues come as ± σ). Fixed shapes: both run under ``jax.jit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Algorithm, colnorm

__all__ = ["RandomizedSVD", "randomized_svd", "golub_kahan"]


@dataclass(frozen=True)
class RandomizedSVD(Algorithm):
    """Top-k singular triplets by the randomized range finder with power iterations.

    * ``oversample``: extra columns l - k (default 10).
    * ``power_iters``: q, passes of ``A A^H`` (default 2); each costs 2 l products.
    * ``seed``: the Gaussian test matrix's seed (explicit, reproducible).

    An approximation, not an iteration to a tolerance: for a slowly decaying spectrum raise
    ``power_iters`` or use ``alg=lo.Lanczos()`` (Golub-Kahan, residual-checked).
    """

    oversample: int = 10
    power_iters: int = 2
    seed: int = 0

    def __post_init__(self):
        for name in ("oversample", "power_iters"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                raise ValueError(f"RandomizedSVD: {name} must be a non-negative integer, got {v!r}")


def randomized_svd(matmat: Callable, adjmat: Callable, Omega, xp, k: int, power_iters: int):
    """``(U (m, k), s (k,), V (n, k))`` from the Gaussian test block ``Omega`` (n, l), l >= k.

    ``matmat(X) = A @ X`` and ``adjmat(Y) = A^H @ Y``; ``s`` descending.
    """
    Q, _ = xp.qr(matmat(Omega))
    for _ in range(power_iters):
        Z, _ = xp.qr(adjmat(Q))
        Q, _ = xp.qr(matmat(Z))
    B = xp.conj(adjmat(Q)).T  # Q^H A, (l, n)
    Ub, s, Vh = xp.svd(B)
    return Q @ Ub[:, :k], s[:k], xp.conj(Vh[:k]).T


def golub_kahan(matmat: Callable, adjmat: Callable, v0, m: int, xp, steps: int):
    """``(alpha (steps,), beta (steps,), U (steps, m), V (steps + 1, n))`` from ``v0`` (n, 1).

    Bases as rows; ``B`` has ``alpha`` on its diagonal and ``beta[:-1]`` above it, and
    ``beta[-1]`` is the coupling to ``V[steps]``. After a breakdown (``alpha`` or ``beta``
    below ``1e3 eps`` times the largest seen) the later vectors and coefficients are zero.
    """
    n = v0.shape[0]
    dt, dev = v0.dtype, xp.device_of(v0)
    nrm = colnorm(xp, v0)
    rdt = nrm.dtype
    v = v0 / xp.where(nrm > 0, nrm, 1 + 0 * nrm)
    U = xp.zeros((steps, m), dt, dev)
    V = xp.index_set(xp.zeros((steps + 1, n), dt, dev), 0, v[:, 0])
    alpha = xp.zeros((steps,), rdt, dev)
    beta = xp.zeros((steps,), rdt, dev)
    thresh = 1e3 * xp.eps(rdt)

    def orth(w, B):
        for _ in range(2):
            w = w - B.T @ (xp.conj(B) @ w)
        return w

    def step(j, carry):
        U, V, alpha, beta, v, u_prev, b_prev, scale = carry
        u = orth(matmat(v) - xp.astype(b_prev, dt) * u_prev, U)
        a = colnorm(xp, u)
        scale = xp.where(a > scale, a, scale)
        a = xp.where(a > thresh * scale, a, 0 * a)
        u = xp.where(a > 0, u / xp.where(a > 0, a, 1 + 0 * a), 0 * u)
        w = orth(adjmat(u) - xp.astype(a, dt) * v, V)
        b = colnorm(xp, w)
        scale = xp.where(b > scale, b, scale)
        b = xp.where(b > thresh * scale, b, 0 * b)
        v_next = xp.where(b > 0, w / xp.where(b > 0, b, 1 + 0 * b), 0 * w)
        U = xp.index_set(U, j, u[:, 0])
        V = xp.index_set(V, j + 1, v_next[:, 0])
        alpha = xp.index_set(alpha, j, a[0])
        beta = xp.index_set(beta, j, b[0])
        return U, V, alpha, beta, v_next, u, b, scale

    carry = (U, V, alpha, beta, v, xp.zeros((m, 1), dt, dev), 0 * nrm, 0 * nrm)
    if xp.name == "jax":
        from jax import lax

        carry = lax.fori_loop(0, steps, step, carry)
    else:
        for j in range(steps):
            carry = step(j, carry)
    U, V, alpha, beta = carry[:4]
    return alpha, beta, U, V


def bidiagonal(xp, alpha, beta):
    """The upper bidiagonal (steps, steps) matrix with ``alpha`` on the diagonal, ``beta[:-1]`` above."""
    m = alpha.shape[0]
    dev = xp.device_of(alpha)
    eye = xp.eye(m, alpha.dtype, dev)
    up = xp.concat([eye[1:], xp.zeros((1, m), alpha.dtype, dev)], 0)  # ones at (i, i + 1)
    b = xp.concat([beta[: m - 1], xp.zeros((1,), alpha.dtype, dev)])
    return alpha[:, None] * eye + b[:, None] * up
