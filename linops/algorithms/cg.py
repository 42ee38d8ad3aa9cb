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

Low precision. In finite precision the recurrence residual drifts away from the true one,
``b - A x``, by about ``eps * cond(A)``; in float16/bfloat16 (eps 1e-3 / 8e-3) that drift
reaches the tolerance after a few steps, and a converged-looking recurrence can hide a true
residual of 1e-2. So, for 16-bit operators:

* the vectors and inner products live in float32 and only the products run in the
  operator's dtype (the caller, :func:`linops.functions.iterative._kernel`, sets this up);
* ``check_residual`` (on by default for them and for float32): convergence is judged on the true residual
  ``b - A x`` after the loop (one extra product), never on the drifting recurrence alone.

What remains is the floor set by the products themselves, whose outputs are rounded to 16
bits: measured on an SPD matrix with n = 400 and condition 100, the true relative residual
stalls near 2e-3 (float16) and 2e-2 (bfloat16), and a tighter ``tol`` raises
ConvergenceError saying so. ``restart`` (every ``restart`` iterations the residual is
recomputed as ``b - A x`` and the search direction restarted) resynchronises the recurrence
with the true residual in long runs, at the price of the Krylov space built so far; it did
not lower that 16-bit floor, so it is off by default.
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
    * ``restart``: every ``restart`` iterations recompute the residual as ``b - A x`` and
      restart the search direction (one extra product each time; None: never).
    * ``check_residual``: judge convergence on the true residual ``b - A x`` after the loop
      (one extra product). None: on for single and half precision, where the recurrence
      drifts by ``eps * cond(A)`` (float32, cond 100: a claimed 1e-7 was truly 3e-6), off for
      float64 (drift about 1e-16 * cond(A)).
    * ``progress``: show a tqdm progress bar of operator products (eager backends only).

    Gradients are implicit (one adjoint CG solve), so their memory does not grow with the
    number of iterations.
    """

    tol: float = 1e-6
    max_iters: int | None = None
    precond: Any = None
    on_failure: str = "raise"
    restart: int | None = None
    check_residual: bool | None = None
    progress: bool = False

    def __post_init__(self):
        check_stopping(self)
        r = self.restart
        if r is not None and not (isinstance(r, int) and not isinstance(r, bool) and r >= 1):
            raise ValueError(f"CG: restart must be a positive integer or None, got {r!r}")


def cg(
    matmat: Callable,
    B,
    xp,
    tol: float,
    max_iters: int,
    precond: Callable | None = None,
    restart: int | None = None,
    check_residual: bool = False,
):
    """Solve ``A X = B`` for B (n, k) given ``matmat(P) = A @ P``; returns ``(X, SolveInfo)``.

    ``restart`` and ``check_residual`` as in :class:`CG` (resolved to an int or None and a bool).
    """
    apply_m = precond if precond is not None else (lambda R: R)
    bnorm = colnorm(xp, B)
    target = tol * bnorm
    scale = xp.where(bnorm > 0, bnorm, 1 + 0 * bnorm)
    X = 0 * B
    R = B
    Z = apply_m(R)
    P = Z
    rz = xp.real(xp.coldot(R, Z))
    rnorm = bnorm
    breakdown = bnorm < 0  # all False, in the backend's boolean type

    def step(X, R, P, rz, rnorm, breakdown):
        active = (rnorm > target) & ~breakdown
        AP = matmat(P)
        pAp = xp.real(xp.coldot(P, AP))
        bad = active & ~(pAp > 0)
        breakdown = breakdown | bad
        # NaN/inf (x - x is NaN exactly then) shows in the residual, so it is not taken for indefiniteness
        nan = pAp - pAp
        rnorm = xp.where(active & (nan != 0), nan, rnorm)
        active = active & ~bad
        # frozen columns get step sizes 0 (the scalars are (k,): cheap next to the products)
        alpha = xp.where(active, rz, 0 * rz) / xp.where(active, pAp, 1 + nan)
        X = X + alpha * P
        R = R - alpha * AP
        Z = apply_m(R)
        rz_new = xp.real(xp.coldot(R, Z))
        beta = xp.where(active & (rz != 0), rz_new / xp.where(rz != 0, rz, 1 + nan), 0 * rz)
        P = xp.where(active, Z + beta * P, P)
        rz = xp.where(active, rz_new, rz)
        rnorm = xp.where(active, colnorm(xp, R), rnorm)
        return X, R, P, rz, rnorm, breakdown

    def replace(X, R, P, rz, rnorm, breakdown):
        """Restart: R = B - A X exactly, and a fresh steepest-descent direction (keeping the old
        direction with the new residual, plain residual replacement, diverged in float16)."""
        active = (rnorm > target) & ~breakdown
        R = xp.where(active, B - matmat(X), R)
        Z = apply_m(R)
        P = xp.where(active, Z, P)
        rz = xp.where(active, xp.real(xp.coldot(R, Z)), rz)
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
            if restart is not None:
                state = lax.cond((it > 0) & (it % restart == 0), lambda st: replace(*st), lambda st: tuple(st), state)
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
            if restart is not None and it > 0 and it % restart == 0:
                state = replace(*state)
            state = step(*state)
            rows.append(state[4] / scale)
            it += 1
        X, R, P, rz, rnorm, breakdown = state
        hist = xp.stack(rows, 0)
    if check_residual:  # the true residual decides, not the recurrence
        true = colnorm(xp, B - matmat(X))
        rnorm = xp.where(bnorm > 0, true, rnorm)
    converged = (rnorm <= target) & ~breakdown
    return X, SolveInfo("CG", it, converged, rnorm / scale, hist, breakdown)
