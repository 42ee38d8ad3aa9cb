"""Conjugate gradients: preconditioned, many right-hand sides at once, per-column convergence.

Stopping rule (SciPy's, with no absolute epsilon): column j stops when
``||b_j - A x_j|| <= tol * ||b_j||`` (the recurrence residual), or at ``max_iters``
(default ``10 n``). A column with ``b_j = 0`` is solved by ``x_j = 0`` at once. Columns
that have converged are frozen (their step sizes are zero), so each column gets the
iterates it would get alone. Non-positive curvature ``p^H A p <= 0`` on an active column
marks a breakdown: the operator is not positive definite.

One step function serves every backend: numpy and torch drive it with a Python loop
(recording the residual history as it goes); jax with ``lax.while_loop`` and a history
array of ``max_iters + 1`` rows, so it compiles under ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .base import Algorithm, check_stopping, colnorm
from .info import SolveInfo

__all__ = ["CG", "cg"]


@dataclass(frozen=True)
class CG(Algorithm):
    """Conjugate gradients for Hermitian positive definite operators, O(n k) memory.

    * ``tol``: relative residual target per column, ``||b - A x|| <= tol ||b||``.
    * ``max_iters``: iteration cap (None: ``10 n``).
    * ``precond``: an operator ``M ≈ A^{-1}`` (Hermitian positive definite), applied as ``M @ r``.
    * ``on_failure``: ``"raise"`` (ConvergenceError) or ``"warn"`` (ConvergenceWarning) when a
      column misses ``tol``; under ``jax.jit`` values cannot be inspected, use ``return_info``.

    Gradients are implicit (one adjoint CG solve), so their memory does not grow with the
    number of iterations.
    """

    tol: float = 1e-6
    max_iters: int | None = None
    precond: Any = None
    on_failure: str = "raise"

    def __post_init__(self):
        check_stopping(self)


def cg(matmat: Callable, B, xp, tol: float, max_iters: int, precond: Callable | None = None):
    """Solve ``A X = B`` for B (n, k) given ``matmat(P) = A @ P``; returns ``(X, SolveInfo)``."""
    apply_m = precond if precond is not None else (lambda R: R)
    bnorm = colnorm(xp, B)
    target = tol * bnorm
    scale = xp.where(bnorm > 0, bnorm, 1 + 0 * bnorm)
    X = 0 * B
    R = B
    Z = apply_m(R)
    P = Z
    rz = xp.real(xp.sum(xp.conj(R) * Z, axis=0))
    rnorm = bnorm
    breakdown = bnorm < 0  # all False, in the backend's boolean type

    def step(X, R, P, rz, rnorm, breakdown):
        active = (rnorm > target) & ~breakdown
        AP = matmat(P)
        pAp = xp.real(xp.sum(xp.conj(P) * AP, axis=0))
        bad = active & ~(pAp > 0)
        breakdown = breakdown | bad
        # NaN/inf (x - x is NaN exactly then) shows in the residual, so it is not taken for indefiniteness
        rnorm = xp.where(active & ((pAp - pAp) != 0), pAp - pAp, rnorm)
        active = active & ~bad
        alpha = xp.where(active, rz / xp.where(active, pAp, 1 + 0 * pAp), 0 * pAp)
        X = X + alpha * P
        R = R - alpha * AP
        Z = apply_m(R)
        rz_new = xp.real(xp.sum(xp.conj(R) * Z, axis=0))
        beta = xp.where(active, rz_new / xp.where(active & (rz != 0), rz, 1 + 0 * rz), 0 * rz)
        P = xp.where(active, Z + beta * P, P)
        rz = xp.where(active, rz_new, rz)
        rnorm = xp.where(active, colnorm(xp, R), rnorm)
        return X, R, P, rz, rnorm, breakdown

    if xp.name == "jax":
        import jax.numpy as jnp
        from jax import lax

        hist = jnp.full((max_iters + 1, B.shape[1]), jnp.nan, dtype=rnorm.dtype).at[0].set(rnorm / scale)

        def cond(s):
            it, _, _, _, _, rnorm, breakdown, _ = s
            return (it < max_iters) & ((rnorm > target) & ~breakdown).any()

        def body(s):
            it, *state, hist = s
            state = step(*state)
            return (it + 1, *state, hist.at[it + 1].set(state[4] / scale))

        it, X, R, P, rz, rnorm, breakdown, hist = lax.while_loop(
            cond, body, (0, X, R, P, rz, rnorm, breakdown, hist)
        )
    else:
        rows = [rnorm / scale]
        it = 0
        state = (X, R, P, rz, rnorm, breakdown)
        while it < max_iters and bool(((state[4] > target) & ~state[5]).any()):
            state = step(*state)
            rows.append(state[4] / scale)
            it += 1
        X, R, P, rz, rnorm, breakdown = state
        hist = xp.stack(rows, 0)
    converged = (rnorm <= target) & ~breakdown
    return X, SolveInfo("CG", it, converged, rnorm / scale, hist, breakdown)
