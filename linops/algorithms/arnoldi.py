"""Arnoldi: orthonormal Krylov bases of general square operators, and k eigenpairs from them.

``arnoldi(matmat, V0, xp, steps)`` runs ``p`` independent Arnoldi processes at once (one per
column of ``V0``, shape (n, p)) for a fixed number of steps. Each new vector is
orthogonalised against all earlier ones by classical Gram-Schmidt applied twice ("twice is
enough"), O(n m p) per step, and ``A Q_m = Q_{m+1} H`` holds with ``H`` upper Hessenberg.
Fixed shapes: the same code runs eagerly and under ``jax.jit`` (``lax.fori_loop``).

Breakdown (an invariant subspace is found: the new vector's norm is below
``1e3 eps max_j ||A q_j||``, the threshold ``lanczos`` uses) stops the process: its
subdiagonal entry is 0 and its later basis vectors and Hessenberg columns are zero, so the
leading block of ``H`` holds exact eigenvalues of ``A`` and the rest decouples.

``Arnoldi`` (the ``alg=`` object of ``lo.eig(A, k, alg=lo.Arnoldi())``) uses Ritz pairs of
``H``: for ``H y = θ y`` with ``||y|| = 1`` the residual is
``||A Q y - θ Q y|| = |h_{m+1,m}| |y_m|``, read without a product with ``A``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Algorithm, check_stopping, colnorm

__all__ = ["Arnoldi", "arnoldi"]


@dataclass(frozen=True)
class Arnoldi(Algorithm):
    """k eigenpairs of a general square operator by Arnoldi (no restarts), O(n m) memory.

    * ``tol``: a Ritz pair counts as converged when ``||A v - θ v|| <= tol * max|θ|``
      (``max|θ|`` over all Ritz values of the Krylov space, a lower bound on ``||A||``).
    * ``max_iters``: the largest Krylov dimension m tried (None: n). Eagerly m starts at
      ``max(2k + 20, 40)`` and doubles until the k pairs converge; each try starts afresh
      (no restart), so the products used are at most twice the final m. Under ``jax.jit``
      only the first dimension is run (its ``info`` tells whether it sufficed).
    * ``seed``: the starting vector's seed (explicit, reproducible).
    * ``on_failure``: ``"raise"`` (ConvergenceError) or ``"warn"`` (ConvergenceWarning).

    Cost: m products with ``A`` and O(n m^2) for the orthogonalisation, plus an m x m
    dense eigendecomposition per try. Extreme eigenvalues (``which="LM"``, ``"LR"``,
    ``"SR"``, ...) converge first; interior ones ("SM") may need m close to n.
    """

    tol: float = 1e-8
    max_iters: int | None = None
    seed: int = 0
    on_failure: str = "raise"

    def __post_init__(self):
        check_stopping(self)


def arnoldi(matmat: Callable, V0, xp, steps: int):
    """``(H (p, steps + 1, steps), Q (p, steps + 1, n))`` for p starting vectors ``V0`` (n, p).

    ``Q[i]`` holds process i's orthonormal basis as rows (``Q[i] Q[i]^H = I`` on the rows
    before a breakdown, zero rows after it) and ``A Q[i, :steps]^T = Q[i]^T H[i]``.
    ``matmat(P) = A @ P`` for P (n, p). A zero starting column gives a zero process.
    """
    n, p = V0.shape
    dt = V0.dtype
    dev = xp.device_of(V0)
    nrm = colnorm(xp, V0)
    rdt = nrm.dtype
    alive = nrm > 0
    q = V0 / xp.where(alive, nrm, 1 + 0 * nrm)
    Q = xp.index_set(xp.zeros((p, steps + 1, n), dt, dev), 0, q.T, axis=1)
    H = xp.zeros((p, steps + 1, steps), dt, dev)
    scale = 0 * nrm  # running max ||A q_j||, the scale the breakdown test is relative to
    thresh = 1e3 * xp.eps(rdt)

    def step(j, carry):
        Q, H, q, scale, alive = carry
        w = matmat(q)  # (n, p)
        wn = colnorm(xp, w)
        scale = xp.where(wn > scale, wn, scale)
        h = None
        for _ in range(2):  # classical Gram-Schmidt, twice; rows past j are still zero
            coef = xp.einsum("pjn,np->pj", xp.conj(Q), w)
            w = w - xp.einsum("pjn,pj->np", Q, coef)
            h = coef if h is None else h + coef
        b = colnorm(xp, w)
        alive = alive & (b > thresh * scale)
        b = xp.where(alive, b, 0 * b)
        h = xp.index_set(h, j + 1, xp.astype(b, dt), axis=1)
        H = xp.index_set(H, j, h, axis=2)
        q = xp.where(alive, w / xp.where(alive, b, 1 + 0 * b), 0 * w)
        Q = xp.index_set(Q, j + 1, q.T, axis=1)
        return Q, H, q, scale, alive

    carry = (Q, H, q, scale, alive)
    if xp.name == "jax":
        from jax import lax

        carry = lax.fori_loop(0, steps, step, carry)
    else:
        for j in range(steps):
            carry = step(j, carry)
    return carry[1], carry[0]
