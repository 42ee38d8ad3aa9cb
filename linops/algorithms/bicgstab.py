"""BiCGStab: general square systems, right-preconditioned, many right-hand sides at once.

The method is van der Vorst's (1992) stabilised bi-conjugate gradients, with the shadow
residual ``r̂ = r_0``: each iteration costs two products with ``A`` and two with the
preconditioner, and memory is O(n k) (seven ``(n, k)`` blocks), whatever the iteration count.

Preconditioning is on the **right**: BiCGStab runs on ``A M u = b`` and returns ``x = M u``,
so the residual it tracks and tests is the true one, ``b - A x``; ``M`` may be any
non-singular operator.

Stopping rule (SciPy's, with no absolute epsilon): column j stops when
``||b_j - A x_j|| <= tol * ||b_j||``, tested after each half step (``s = r - α A p̂``, a
column may stop there) and each full step, on the recurrence residual. The recurrence can
drift from the true residual, so the iterations run in *cycles*: when every column's
recurrence residual is below ``tol`` (or a column breaks down, or ``max_iters`` is reached)
the true residual ``B - A X`` is computed (one product for the block); a column whose true
residual is still above ``tol`` starts a new cycle from its current iterate (``r̂ = r``).
The reported ``relative_residuals`` and ``converged`` are those of the true residual.
``iterations`` counts BiCGStab iterations over all cycles (two products with ``A`` each);
the products with ``A`` are ``2 iterations`` plus one per cycle. The history holds the
recurrence residual after each iteration, except that the row ending a cycle holds the true
residual (so its last row is ``relative_residuals``).

A column with ``b_j = 0`` is solved by ``x_j = 0`` at once. Converged columns are frozen
(their state is kept, so each column gets the iterates it would get alone). A breakdown
(``SolveInfo.breakdown``) freezes a column: ``ρ = r̂^H r`` or ``r̂^H A p̂`` is at rounding
level relative to its scale (``|r̂^H r| <= eps ||r̂|| ||r||``: the shadow residual has become
orthogonal, and the next step would divide by ~0), or ``ω = (t^H s) / (t^H t)`` is (``|t^H s|
<= eps ||t|| ||s||``, with ``t = A M s``, including ``t = 0``: the stabilising step makes no
progress and the next one would divide by ω). An ω breakdown keeps the half step (its
residual is ``s``); a ρ breakdown keeps the iterate before the failing step. NaN or infinity
in ``A`` or ``b`` stops the column with a NaN residual (reported as non-finite, not as a
breakdown).

numpy and torch drive the step with Python loops; jax with ``lax.while_loop`` (cycles and
iterations) on arrays of static shape (the history is ``(max_iters + 1, k)``), so it
compiles under ``jax.jit`` and maps under ``jax.vmap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .base import Algorithm, check_stopping, colnorm
from .info import SolveInfo

__all__ = ["BiCGStab", "bicgstab"]


@dataclass(frozen=True)
class BiCGStab(Algorithm):
    """Stabilised bi-conjugate gradients for general square non-singular operators, O(n k) memory.

    * ``tol``: relative residual target per column, ``||b - A x|| <= tol ||b||`` (true residual).
    * ``max_iters``: iteration cap over all cycles (None: ``10 n``); two products with ``A`` each.
    * ``precond``: an operator ``M ≈ A^{-1}`` applied on the **right** (``A M u = b``, ``x = M u``),
      so the residual tested is ``b - A x`` itself. Any non-singular operator.
    * ``on_failure``: ``"raise"`` (ConvergenceError) or ``"warn"`` (ConvergenceWarning) when a
      column misses ``tol``; under ``jax.jit`` values cannot be inspected, use ``return_info``.

    Unlike GMRES its memory does not grow with the iterations; unlike CG it needs no symmetry.
    It can break down (reported in ``SolveInfo.breakdown``); GMRES cannot.
    """

    tol: float = 1e-6
    max_iters: int | None = None
    precond: Any = None
    on_failure: str = "raise"

    def __post_init__(self):
        check_stopping(self)


def _dot(xp, U, V):
    """Column inner products ``u_j^H v_j`` (complex for complex data)."""
    return xp.sum(xp.conj(U) * V, axis=0)


def bicgstab(matmat: Callable, B, xp, tol: float, max_iters: int, precond: Callable | None = None):
    """Solve ``A X = B`` for square A and B (n, k) given ``matmat(P) = A @ P``; returns ``(X, SolveInfo)``.

    ``precond(R) = M @ R`` is applied on the right (``A M u = B``, ``X = M u``), or None.
    ``max_iters`` is a Python int (static under ``jax.jit``).
    """
    apply_m = precond if precond is not None else (lambda R: R)
    jax = xp.name == "jax"
    bnorm = colnorm(xp, B)
    target = tol * bnorm
    scale = xp.where(bnorm > 0, bnorm, 1 + 0 * bnorm)
    czero = 0 * B[0]  # a zero of B's dtype per column (complex for complex data)
    eps = xp.eps(bnorm.dtype)

    def running(rnorm, breakdown):
        return (rnorm > target) & ~breakdown

    def safe(d, ok):
        return xp.where(ok, d, 1 + 0 * d)

    # ------------------------------------------------------------ one iteration, all columns
    def step(s):
        active = running(s["rnorm"], s["breakdown"])
        R, Rhat, P, V = s["R"], s["Rhat"], s["P"], s["V"]
        rho = _dot(xp, Rhat, R)
        ok_rho = xp.abs(rho) > eps * s["rhatnorm"] * s["rnorm"]
        beta = xp.where(s["fresh"], czero, (rho / safe(s["rho"], s["rho"] != 0)) * (s["alpha"] / safe(s["omega"], s["omega"] != 0)))
        P = R + beta * (P - s["omega"] * V)
        Phat = apply_m(P)
        V = matmat(Phat)
        den = _dot(xp, Rhat, V)
        ok_den = xp.abs(den) > eps * s["rhatnorm"] * colnorm(xp, V)
        alpha = rho / safe(den, ok_den)
        S = R - alpha * V
        snorm = colnorm(xp, S)
        half = snorm <= target  # converged at the half step
        Shat = apply_m(S)
        T = matmat(Shat)
        tnorm = colnorm(xp, T)
        ts = _dot(xp, T, S)
        ok_omega = xp.abs(ts) > eps * tnorm * snorm
        omega = xp.where(ok_omega, ts / safe(tnorm * tnorm + czero, ok_omega), czero)
        full = ~half & ok_omega
        X = s["X"] + alpha * Phat + xp.where(full, omega, czero) * Shat
        Rn = xp.where(full, S - omega * T, S)
        rnorm = xp.where(full, colnorm(xp, Rn), snorm)
        # NaN/inf (x - x is NaN exactly then) flows into rnorm and stops the column as non-finite
        finite = (rho - rho == 0) & (den - den == 0)
        rho_bad = active & finite & ~(ok_rho & ok_den)  # freeze before the step
        omega_bad = active & finite & ok_rho & ok_den & ~half & ~ok_omega  # keep the half step
        go = active & ~rho_bad
        new = dict(X=X, R=Rn, P=P, V=V, rho=rho, alpha=alpha, omega=omega, rnorm=rnorm, fresh=rnorm < 0)
        out = dict(s)
        for key, val in new.items():
            out[key] = xp.where(go, val, s[key])
        out["breakdown"] = s["breakdown"] | rho_bad | omega_bad
        return out

    # ------------------------------------------------------------------------- one cycle
    def cycle(c):
        it, X, R, rnorm, breakdown, hist = c
        state = dict(
            X=X, R=R, Rhat=R, P=0 * R, V=0 * R, rho=czero + 1, alpha=czero + 1, omega=czero + 1,
            rnorm=rnorm, rhatnorm=rnorm, fresh=rnorm >= 0, breakdown=breakdown,
        )  # fmt: skip

        def inner_cond(ci):
            it, s, _ = ci
            return (it < max_iters) & running(s["rnorm"], s["breakdown"]).any()

        def inner_body(ci):
            it, s, hist = ci
            s = step(s)
            return it + 1, s, _record(hist, it + 1, s["rnorm"] / scale)

        it, state, hist = _while(inner_cond, inner_body, (it, state, hist))
        X = state["X"]
        R = B - matmat(X)  # the true residual: what is reported, and where the next cycle starts
        rnorm = colnorm(xp, R)
        hist = _record(hist, it, rnorm / scale)
        return it, X, R, rnorm, state["breakdown"], hist

    def outer_cond(c):
        it, _, _, rnorm, breakdown, _ = c
        return (it < max_iters) & running(rnorm, breakdown).any()

    def _record(hist, i, row):
        if jax:
            return hist.at[i].set(row)
        if i == len(hist):
            hist.append(row)
        else:
            hist[i] = row
        return hist

    def _while(cond, body, init):
        if jax:
            from jax import lax

            return lax.while_loop(cond, body, init)
        while bool(cond(init)):
            init = body(init)
        return init

    breakdown = bnorm < 0  # all False, in the backend's boolean type
    if jax:
        import jax.numpy as jnp

        hist = jnp.full((max_iters + 1, B.shape[1]), jnp.nan, dtype=bnorm.dtype).at[0].set(bnorm / scale)
    else:
        hist = [bnorm / scale]
    it, X, R, rnorm, breakdown, hist = _while(outer_cond, cycle, (0, 0 * B, B, bnorm, breakdown, hist))
    if not jax:
        hist = xp.stack(hist, 0)
    converged = (rnorm <= target) & ~breakdown
    return X, SolveInfo("BiCGStab", it, converged, rnorm / scale, hist, breakdown)
