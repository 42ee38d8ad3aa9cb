"""MINRES: Hermitian (possibly indefinite) systems, preconditioned, many right-hand sides at once.

The algorithm is Paige and Saunders' (1975), in the form SciPy's ``minres`` uses: a
preconditioned Lanczos three-term recurrence, the QR factorisation of its tridiagonal
matrix by reflections, and a three-term update of the solution; O(n k) memory, one product
with ``A`` and one with the preconditioner per iteration. The Lanczos coefficients of a
Hermitian operator are real, so every scalar of the recurrence is real (a ``(k,)`` array:
one per column) even for complex systems.

Stopping rule (SciPy's, with no absolute epsilon): column j stops when
``||b_j - A x_j|| <= tol * ||b_j||`` (the 2-norm of the recurrence residual), or at
``max_iters``. Without a preconditioner that norm is MINRES' ``phibar``. With one,
``phibar`` is the residual's norm in the preconditioner's inner product; the 2-norm is then
kept by one more recurrence, ``r_k = phibar_k u_k`` with ``u_k = s_k u_{k-1} - c_k z_{k+1}``
(``c_k, s_k`` the k-th reflection, ``z_{k+1}`` the unpreconditioned Lanczos vector): one more
``(n, k)`` array and one column norm per iteration, no extra product with ``A``.

A column with ``b_j = 0`` is solved by ``x_j = 0`` at once. Columns that have converged are
frozen (their whole state is kept, so each column gets the iterates it would get alone).
A breakdown is recorded in ``SolveInfo.breakdown`` and freezes the column: the preconditioner
is not positive definite (``b^H M b <= 0``, or ``r^H M r < 0`` for a later Lanczos vector),
the projected system is singular (the Krylov space is invariant and ``b`` is not in the
range of ``A``: the QR pivot ``gamma`` is below ``10 eps`` times its column's norm, which a
non-singular ``A`` cannot give, as ``gamma >= sigma_min(A)``), or a coefficient is not
finite. The column keeps the minimum-residual iterate of the steps before. The operator's
Hermitian symmetry is *assumed*, not checked: on a non-Hermitian operator the recurrence
residual need not match the true one (use GMRES).

One step function serves every backend: numpy and torch drive it with a Python loop
(recording the residual history as it goes); jax with ``lax.while_loop`` and a history
array of ``max_iters + 1`` rows, so it compiles under ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .base import Algorithm, check_stopping, colnorm
from .info import SolveInfo

__all__ = ["MINRES", "minres"]


@dataclass(frozen=True)
class MINRES(Algorithm):
    """Minimum residual method for Hermitian (possibly indefinite) operators, O(n k) memory.

    * ``tol``: relative residual target per column, ``||b - A x|| <= tol ||b||``.
    * ``max_iters``: iteration cap (None: ``10 n``).
    * ``precond``: an operator ``M ≈ A^{-1}``, Hermitian positive definite (even when ``A`` is
      indefinite, e.g. ``|A|^{-1}``), applied as ``M @ r``.
    * ``on_failure``: ``"raise"`` (ConvergenceError) or ``"warn"`` (ConvergenceWarning) when a
      column misses ``tol``; under ``jax.jit`` values cannot be inspected, use ``return_info``.
    * ``progress``: show a tqdm progress bar of operator products (eager backends only).
    """

    tol: float = 1e-6
    max_iters: int | None = None
    precond: Any = None
    on_failure: str = "raise"
    progress: bool = False

    def __post_init__(self):
        check_stopping(self)


_SINGULAR = 10.0  # gamma below _SINGULAR * eps * (its column's norm) is a breakdown


def _rdot(xp, U, V):
    """Real part of the column inner products ``u_j^H v_j``."""
    return xp.real(xp.sum(xp.conj(U) * V, axis=0))


def _safe(xp, d, ok):
    """``d`` where ``ok``, else 1 (a harmless denominator)."""
    return xp.where(ok, d, 1 + 0 * d)


def minres(matmat: Callable, B, xp, tol: float, max_iters: int, precond: Callable | None = None):
    """Solve ``A X = B`` for Hermitian A and B (n, k) given ``matmat(P) = A @ P``; returns ``(X, SolveInfo)``.

    ``precond(R) = M @ R`` with M Hermitian positive definite, or None.
    """
    apply_m = precond if precond is not None else (lambda R: R)
    track = precond is not None  # keep the 2-norm of the residual by its own recurrence
    bnorm = colnorm(xp, B)
    target = tol * bnorm
    scale = _safe(xp, bnorm, bnorm > 0)
    zero = 0 * bnorm
    eps = xp.eps(bnorm.dtype)
    Y = apply_m(B)
    b2 = _rdot(xp, B, Y)
    breakdown = (bnorm > 0) & ~(b2 > 0)  # a preconditioner that is not positive definite on b
    beta1 = xp.sqrt(xp.where(b2 > 0, b2, zero))
    state = dict(
        X=0 * B, R1=B, R2=B, Y=Y, W=0 * B, W2=0 * B,
        beta=beta1, oldb=zero, dbar=zero, epsln=zero, phibar=beta1, cs=zero - 1, sn=zero,
        rnorm=bnorm, breakdown=breakdown,
    )  # fmt: skip
    if track:
        state["U"] = B / _safe(xp, beta1, beta1 > 0)

    def step(s):
        active = (s["rnorm"] > target) & ~s["breakdown"]
        beta, oldb = s["beta"], s["oldb"]
        V = s["Y"] / _safe(xp, beta, beta > 0)
        Y = matmat(V)
        Y = Y - xp.where(oldb > 0, beta / _safe(xp, oldb, oldb > 0), zero) * s["R1"]
        alfa = _rdot(xp, V, Y)
        Y = Y - (alfa / _safe(xp, beta, beta > 0)) * s["R2"]
        R1, R2 = s["R2"], Y
        Y = apply_m(R2)
        b2 = _rdot(xp, R2, Y)
        beta_new = xp.sqrt(xp.where(b2 > 0, b2, zero))
        # the previous reflection, then the new one
        cs, sn, dbar = s["cs"], s["sn"], s["dbar"]
        oldeps = s["epsln"]
        delta = cs * dbar + sn * alfa
        gbar = sn * dbar - cs * alfa
        epsln = sn * beta_new
        dbar = -cs * beta_new
        gamma = xp.sqrt(gbar * gbar + beta_new * beta_new)
        # gamma >= sigma_min(T_k) >= sigma_min(A) while the column's norm is <= ||A||: gamma at
        # rounding level relative to its column means the projected system is singular
        ok = gamma > _SINGULAR * eps * xp.sqrt(oldeps * oldeps + delta * delta + gamma * gamma)
        # breakdown: M not positive definite, singular projected system, or non-finite values
        bad = active & (~(b2 >= 0) | ~ok | ~(alfa - alfa == 0) | ~(gamma - gamma == 0))
        gamma = _safe(xp, gamma, ok)
        cs = gbar / gamma
        sn = beta_new / gamma
        phi = cs * s["phibar"]
        phibar = sn * s["phibar"]
        W = (V - oldeps * s["W2"] - delta * s["W"]) / gamma
        new = dict(
            X=s["X"] + phi * W, R1=R1, R2=R2, Y=Y, W=W, W2=s["W"],
            beta=beta_new, oldb=beta, dbar=dbar, epsln=epsln, phibar=phibar, cs=cs, sn=sn,
        )  # fmt: skip
        if track:
            U = sn * s["U"] - cs * (R2 / _safe(xp, beta_new, beta_new > 0))
            new["U"] = U
            new["rnorm"] = phibar * colnorm(xp, U)
        else:
            new["rnorm"] = phibar
        go = active & ~bad
        out = {key: xp.where(go, val, s[key]) for key, val in new.items()}
        out["breakdown"] = s["breakdown"] | bad
        return out

    def running(s):
        return (s["rnorm"] > target) & ~s["breakdown"]

    if xp.name == "jax":
        import jax.numpy as jnp
        from jax import lax

        hist = jnp.full((max_iters + 1, B.shape[1]), jnp.nan, dtype=bnorm.dtype).at[0].set(bnorm / scale)

        def cond(c):
            it, s, _ = c
            return (it < max_iters) & running(s).any()

        def body(c):
            it, s, hist = c
            s = step(s)
            return it + 1, s, hist.at[it + 1].set(s["rnorm"] / scale)

        it, state, hist = lax.while_loop(cond, body, (0, state, hist))
    else:
        rows = [bnorm / scale]
        it = 0
        while it < max_iters and bool(running(state).any()):
            state = step(state)
            rows.append(state["rnorm"] / scale)
            it += 1
        hist = xp.stack(rows, 0)
    rnorm, breakdown = state["rnorm"], state["breakdown"]
    converged = (rnorm <= target) & ~breakdown
    return state["X"], SolveInfo("MINRES", it, converged, rnorm / scale, hist, breakdown)
