"""Lanczos with full reorthogonalisation, and what is built on it: top-k eigenpairs and SLQ.

``lanczos(matmat, V0, xp, steps)`` runs ``p`` independent Lanczos processes at once (one
per column of ``V0``, shape (n, p)) for a fixed number of steps, reorthogonalising each new
vector twice against all earlier ones (O(n m p) per step). Fixed shapes: the same code runs
eagerly and under ``jax.jit``. If a process finds an invariant subspace (β ≈ 0) it stops
extending: its later vectors are zero, and the quadrature and Ritz vectors ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .base import Algorithm, check_stopping, colnorm

__all__ = ["Lanczos", "SLQ", "lanczos", "ritz", "slq_quadrature"]


@dataclass(frozen=True)
class Lanczos(Algorithm):
    """Top-k eigenpairs of a self-adjoint operator by Lanczos with full reorthogonalisation.

    * ``tol``: a Ritz pair counts as converged when ``|β_m s_mi| <= tol * max|θ|``
      (the residual ``||A v - θ v||`` relative to the spectrum's scale).
    * ``max_iters``: the largest Krylov dimension tried (None: n). Eagerly the dimension
      starts at ``max(2k + 20, 40)`` and doubles until all k pairs converge.
    * ``seed``: the starting vector's seed (explicit, reproducible).
    * ``on_failure``: ``"raise"`` or ``"warn"`` when pairs have not converged at ``max_iters``.
    """

    tol: float = 1e-8
    max_iters: int | None = None
    seed: int = 0
    on_failure: str = "raise"

    def __post_init__(self):
        check_stopping(self)


@dataclass(frozen=True)
class SLQ(Algorithm):
    """Stochastic Lanczos quadrature for ``log det A`` (and ``tr f(A)``) of a PSD operator.

    ``num_probes`` Rademacher probes, ``steps`` Lanczos steps each (cost: probes x steps
    products); ``seed`` makes the probes reproducible. The reported standard error is the
    probes' sample standard deviation over sqrt(num_probes).

    Gradients are implicit (as in BBMM): ``d log det A = tr(A^{-1} dA)`` is estimated with
    the same probes, ``(1/p) Σ_j (A^{-1} z_j)^H dA z_j``, the solves by CG to ``grad_tol``.
    Memory does not grow with ``steps``.

    ``precond``: None, a preconditioner spec (``lo.PivotedCholeskyPrecond(rank=...)``,
    ``lo.NystromPrecond(...)``: built from A at each call) or a built ``lo.Preconditioner`` P ≈ A.
    Then ``log det A = log det P + log det(F^{-1} A F^{-H})`` (P = F F^H): the first term exact,
    the second by SLQ on a well-conditioned operator; the gradient uses probes ``z = F e``,
    ``(A^{-1} z)^H dA (P^{-1} z)``, CG preconditioned by P, and for a pivoted-Cholesky spec also
    ``d log det P - (P^{-1} z)^H dP (P^{-1} z)`` (a control variate; see
    :mod:`linops.functions.stochastic_logdet`).
    """

    num_probes: int = 10
    steps: int = 30
    seed: int = 0
    grad_tol: float = 1e-6
    precond: Any = None

    def __post_init__(self):
        for name in ("num_probes", "steps"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"SLQ: {name} must be a positive integer, got {v!r}")
        p = self.precond
        if p is not None and not (hasattr(p, "build") or hasattr(p, "half_inv")):
            raise TypeError(
                f"SLQ: precond must be None, a preconditioner spec such as lo.PivotedCholeskyPrecond(rank=50) "
                f"or a built lo.Preconditioner, got {type(p).__name__}"
            )


def lanczos(matmat: Callable, V0, xp, steps: int):
    """``(alpha (m, p), beta (m, p), Q (p, m, n))`` for ``p`` starting vectors ``V0`` (n, p).

    ``beta[j]`` couples steps j and j+1 (``beta[m-1]`` is the residual norm that bounds the
    Ritz pairs' errors). Columns of Q are orthonormal per process.
    """
    n, p = V0.shape
    nrm = colnorm(xp, V0)
    q = V0 / xp.where(nrm > 0, nrm, 1 + 0 * nrm)
    rdt = nrm.dtype
    # Q is stored process-major, (p, m, n): the reorthogonalisation is then a batched matrix
    # product with the batch axis first, which torch's einsum runs without copying Q
    Q = xp.zeros((p, steps, n), V0.dtype, xp.device_of(V0))
    alpha = xp.zeros((steps, p), rdt, xp.device_of(V0))
    beta = xp.zeros((steps, p), rdt, xp.device_of(V0))
    scale = 0 * nrm

    def step(j, carry):
        Q, alpha, beta, q, q_prev, b_prev, scale = carry
        Q = xp.index_set(Q, j, q.T, axis=1)
        w = matmat(q) - b_prev * q_prev
        a = xp.real(xp.sum(xp.conj(q) * w, axis=0))
        w = w - a * q
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough")
            coef = xp.einsum("pjn,np->pj", xp.conj(Q), w)
            w = w - xp.einsum("pjn,pj->np", Q, coef)
        b = colnorm(xp, w)
        scale = xp.where(xp.abs(a) > scale, xp.abs(a), scale)
        alive = b > 1e3 * xp.eps(rdt) * xp.where(scale > 0, scale, 1 + 0 * scale)
        b = xp.where(alive, b, 0 * b)
        alpha = xp.index_set(alpha, j, a)
        beta = xp.index_set(beta, j, b)
        q_next = xp.where(alive, w / xp.where(alive, b, 1 + 0 * b), 0 * w)
        return Q, alpha, beta, q_next, q, b, scale

    carry = (Q, alpha, beta, q, 0 * q, 0 * nrm, scale)
    if xp.name == "jax":
        from jax import lax

        carry = lax.fori_loop(0, steps, step, carry)
    else:
        for j in range(steps):
            carry = step(j, carry)
    Q, alpha, beta = carry[:3]
    return alpha, beta, Q


def _tridiagonal(xp, alpha, beta):
    """The (p, m, m) symmetric tridiagonal matrices of p Lanczos processes."""
    m = alpha.shape[0]
    dev = xp.device_of(alpha)
    a = xp.moveaxis(alpha, 0, 1)  # (p, m)
    b = xp.concat([xp.moveaxis(beta[: m - 1], 0, 1), xp.zeros((alpha.shape[1], 1), alpha.dtype, dev)], 1)  # (p, m)
    eye = xp.eye(m, alpha.dtype, dev)
    below = xp.concat([xp.zeros((1, m), alpha.dtype, dev), eye[:-1]], 0)  # ones at (i + 1, i)
    # T = diag(a) + diag(b, -1) + diag(b, 1): (r, c) = b[c] below the diagonal, b[r] above it
    return a[:, :, None] * eye + b[:, None, :] * below + b[:, :, None] * below.T


def ritz(xp, alpha, beta):
    """Ritz values θ (p, m), first components τ (p, m) and eigenvectors S (p, m, m) of each T."""
    T = _tridiagonal(xp, alpha, beta)
    theta, S = xp.eigh(T)
    return theta, S[:, 0, :], S


def slq_quadrature(xp, alpha, beta, f):
    """``e1^T f(T) e1`` per process: Σ_i τ_i² f(θ_i), ignoring directions a breakdown decoupled."""
    theta, tau, _ = ritz(xp, alpha, beta)
    w = xp.real(xp.conj(tau) * tau)
    used = w > 0
    safe = xp.where(used, theta, 1 + 0 * theta)
    return xp.sum(xp.where(used, w * f(safe), 0 * w), axis=1)


def rademacher(xp, key, shape, dtype, device=None):
    g = xp.normal(key, shape, xp.real_dtype(dtype), device)
    return xp.astype(xp.where(g >= 0, 1 + 0 * g, -1 + 0 * g), dtype)


def default_dimension(k: int, n: int) -> int:
    return int(min(n, max(2 * k + 20, 40)))

