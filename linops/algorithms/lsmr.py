"""LSMR: least-squares and minimum-norm solutions of ``A x ≈ b`` for rectangular or singular A.

The method is Fong and Saunders' (2011): Golub-Kahan bidiagonalisation of ``A`` started from
``b``, and MINRES applied to the normal equations ``A^H A x = A^H b`` in that basis, so
``||A^H r_k||`` decreases monotonically (``r = b - A x``). Each iteration costs one product
with ``A`` and one with ``A^H`` (``matmat``, ``rmatmat``); memory is O((m + n) k). Started from
``x = 0``, the iterates stay in the range of ``A^H``, so for a rank-deficient or wide ``A``
LSMR converges to the **minimum-norm** least-squares solution. With ``damp > 0`` it solves
the Tikhonov problem ``min ||A x - b||^2 + damp^2 ||x||^2``.

All right-hand sides run at once (one block product per iteration); each column has its own
scalars and stops on its own; a stopped column is frozen. Every scalar of the recurrence is
real (the bidiagonal entries are norms), also for complex data.

Stopping rules (SciPy's ``lsmr``, per column, all relative; ``||A||`` and ``cond(A)`` are
LSMR's running estimates from the bidiagonal matrix, ``||r||`` its estimate of the residual
norm, ``r`` the damped residual when ``damp > 0``):

1. ``||r|| <= btol ||b|| + atol ||A|| ||x||``: ``x`` solves a compatible system ``A x = b``;
2. ``||A^H r|| <= atol ||A|| ||r||``: ``x`` solves the least-squares problem;
3. ``cond(A) >= conlim``: stop, the problem is too ill-conditioned (``conlim = 0``: no limit);
4. tests 1 and 2 at machine precision (``1 + t <= 1``), which lets a tolerance below the
   precision stop as converged instead of running to ``max_iters``.

``atol``/``btol`` are the relative accuracies of the data ``A``/``b``: with ``atol = btol =
1e-6`` the solution is as accurate as data known to about 6 digits allows. A column is
*converged* by rules 1, 2 or 4 (the first of them, in SciPy's order), and *broken down*
(``SolveInfo.breakdown``) when rule 3 stopped it. ``SolveInfo.relative_residuals`` and the
history hold ``||r|| / ||b||`` (LSMR's estimate); for an inconsistent system this tends to
the least-squares residual, not to 0. A column with ``A^H b = 0`` (``b = 0``, or ``b``
orthogonal to the range of ``A``) is solved by ``x = 0`` at once. NaN or infinity in ``A``
or ``b`` makes the residual NaN, reported as non-finite.

numpy and torch drive the step with a Python loop; jax with ``lax.while_loop`` and a history
of ``max_iters + 1`` rows, so it compiles under ``jax.jit`` and maps under ``jax.vmap``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ConvergenceError, ConvergenceWarning, NonFiniteError
from .base import Algorithm, colnorm
from .info import SolveInfo

__all__ = ["LSMR", "lsmr", "report_lsmr"]


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class LSMR(Algorithm):
    """LSMR for ``min ||A x - b||`` (any shape; minimum-norm solution), O((m + n) k) memory.

    * ``atol``, ``btol``: relative accuracies of ``A`` and ``b``; the stopping rules are
      ``||r|| <= btol ||b|| + atol ||A|| ||x||`` (compatible systems) or
      ``||A^H r|| <= atol ||A|| ||r||`` (least squares), see :mod:`linops.algorithms.lsmr`.
    * ``conlim``: stop (as a breakdown) once the estimate of ``cond(A)`` reaches it; 0: no limit.
    * ``damp``: Tikhonov damping, ``min ||A x - b||^2 + damp^2 ||x||^2``.
    * ``max_iters``: iteration cap (None: ``10 min(m, n)``); one product with ``A`` and one with
      ``A^H`` each.
    * ``on_failure``: ``"raise"`` (ConvergenceError) or ``"warn"`` (ConvergenceWarning) when a
      column misses the rules; under ``jax.jit`` values cannot be inspected, use ``return_info``.
    """

    atol: float = 1e-6
    btol: float = 1e-6
    conlim: float = 1e8
    damp: float = 0.0
    max_iters: int | None = None
    on_failure: str = "raise"

    def __post_init__(self):
        for name in ("atol", "btol", "conlim", "damp"):
            value = getattr(self, name)
            if not (_number(value) and value >= 0 and np.isfinite(value)):
                raise ValueError(f"LSMR: {name} must be a finite number >= 0, got {value!r}")
        m = self.max_iters
        if m is not None and not (isinstance(m, int) and not isinstance(m, bool) and m >= 1):
            raise ValueError(f"LSMR: max_iters must be a positive integer or None, got {m!r}")
        if self.on_failure not in ("raise", "warn"):
            raise ValueError(f"LSMR: on_failure must be 'raise' or 'warn', got {self.on_failure!r}")


def lsmr(
    matmat: Callable, rmatmat: Callable, B, xp, atol: float, btol: float, conlim: float, max_iters: int,
    damp: float = 0.0,
):  # fmt: skip
    """Least-squares solutions of ``A X ≈ B`` for B (m, k); returns ``(X, SolveInfo)``, X (n, k).

    ``matmat(P) = A @ P`` for P (n, k), ``rmatmat(Q) = A^H @ Q`` for Q (m, k). ``max_iters`` is a
    Python int (static under ``jax.jit``).
    """
    jax = xp.name == "jax"
    zero = 0 * colnorm(xp, B)
    one = zero + 1

    def safe(d, ok):
        return xp.where(ok, d, one)

    def bigger(a, b):
        return xp.where(a > b, a, b)

    def smaller(a, b):
        return xp.where(a < b, a, b)

    def rotation(a, b):
        """``(c, s, r)`` with ``[c s; -s c] [a; b] = [r; 0]``, ``r >= 0``, overflow-safe."""
        big = bigger(xp.abs(a), xp.abs(b))
        big_ = safe(big, big > 0)
        r = big * xp.sqrt((a / big_) ** 2 + (b / big_) ** 2)
        pos = r > 0
        return xp.where(pos, a / safe(r, pos), one), xp.where(pos, b / safe(r, pos), zero), r

    normb = colnorm(xp, B)
    beta = normb
    U = B / safe(beta, beta > 0)
    V = rmatmat(U)
    alpha = colnorm(xp, V)
    V = V / safe(alpha, alpha > 0)
    normar = alpha * beta
    ctol = 1.0 / conlim if conlim > 0 else 0.0
    state = dict(
        X=0 * V, U=U, V=V, H=V, Hbar=0 * V, alpha=alpha, alphabar=alpha, zetabar=normar, zeta=zero,
        rho=one, rhobar=one, cbar=one, sbar=zero, betadd=beta, betad=zero, rhodold=one, tautildeold=zero,
        thetatilde=zero, d=zero, normA2=alpha * alpha, maxrbar=zero, minrbar=zero + float("inf"),
        started=zero > 0, ill=zero > 0,
        # a column with A^H b = 0 is solved by x = 0 at once; NaN in A or b gives a NaN residual,
        # which stops the column (see running) and is reported as non-finite
        converged=normar == 0, normr=xp.where(normar - normar == 0, beta, normar),
    )  # fmt: skip

    def running(s):
        return ~s["converged"] & ~s["ill"] & (s["normr"] - s["normr"] == 0)

    def step(s):
        active = running(s)
        alpha = s["alpha"]
        U = matmat(s["V"]) - alpha * s["U"]
        beta = colnorm(xp, U)
        U = U / safe(beta, beta > 0)
        V = rmatmat(U) - beta * s["V"]
        alpha = colnorm(xp, V)
        V = V / safe(alpha, alpha > 0)
        # the damping rotation, then P_k, then Pbar_k
        chat, shat, alphahat = rotation(s["alphabar"], zero + damp)
        rhoold = s["rho"]
        c, sn, rho = rotation(alphahat, beta)
        thetanew = sn * alpha
        alphabar = c * alpha
        rhobarold = s["rhobar"]
        zetaold = s["zeta"]
        thetabar = s["sbar"] * rho
        rhotemp = s["cbar"] * rho
        cbar, sbar, rhobar = rotation(s["cbar"] * rho, thetanew)
        zeta = cbar * s["zetabar"]
        zetabar = -sbar * s["zetabar"]
        den = rhoold * rhobarold
        Hbar = s["H"] - (thetabar * rho / safe(den, den != 0)) * s["Hbar"]
        den = rho * rhobar
        X = s["X"] + (zeta / safe(den, den != 0)) * Hbar
        H = V - (thetanew / safe(rho, rho != 0)) * s["H"]
        # the estimate of ||r||
        betaacute = chat * s["betadd"]
        betacheck = -shat * s["betadd"]
        betahat = c * betaacute
        betadd = -sn * betaacute
        thetatildeold = s["thetatilde"]
        ctildeold, stildeold, rhotildeold = rotation(s["rhodold"], thetabar)
        thetatilde = stildeold * rhobar
        rhodold = ctildeold * rhobar
        betad = -stildeold * s["betad"] + ctildeold * betahat
        tautildeold = (zetaold - thetatildeold * s["tautildeold"]) / safe(rhotildeold, rhotildeold != 0)
        taud = (zeta - thetatilde * tautildeold) / safe(rhodold, rhodold != 0)
        d = s["d"] + betacheck * betacheck
        normr = xp.sqrt(d + (betad - taud) ** 2 + betadd * betadd)
        # the estimates of ||A|| and cond(A)
        normA2 = s["normA2"] + beta * beta
        normA = xp.sqrt(normA2)
        normA2 = normA2 + alpha * alpha
        maxrbar = bigger(s["maxrbar"], rhobarold)
        minrbar = xp.where(s["started"], smaller(s["minrbar"], rhobarold), s["minrbar"])
        condA = bigger(maxrbar, rhotemp) / safe(smaller(minrbar, rhotemp), smaller(minrbar, rhotemp) > 0)
        # the stopping rules
        normar = xp.abs(zetabar)
        normx = colnorm(xp, X)
        nb = safe(normb, normb > 0)
        test1 = normr / nb
        ar = normA * normr
        test2 = xp.where(ar > 0, normar / safe(ar, ar > 0), zero + float("inf"))
        test3 = 1 / safe(condA, condA > 0)
        t1 = test1 / (1 + normA * normx / nb)
        rtol = btol + atol * normA * normx / nb
        c3 = test3 <= ctol
        converged = (test1 <= rtol) | (test2 <= atol) | (~c3 & ((1 + t1 <= 1) | (1 + test2 <= 1)))
        ill = ~converged & (c3 | (1 + test3 <= 1))
        new = dict(
            X=X, U=U, V=V, H=H, Hbar=Hbar, alpha=alpha, alphabar=alphabar, zetabar=zetabar, zeta=zeta,
            rho=rho, rhobar=rhobar, cbar=cbar, sbar=sbar, betadd=betadd, betad=betad, rhodold=rhodold,
            tautildeold=tautildeold, thetatilde=thetatilde, d=d, normA2=normA2, maxrbar=maxrbar,
            minrbar=minrbar, started=active | s["started"], normr=normr, converged=converged, ill=ill,
        )  # fmt: skip
        if not jax and bool(active.all()):  # nothing to freeze: skip the selections (eager backends)
            return new
        return {key: xp.where(active, val, s[key]) for key, val in new.items()}

    scale = xp.where(normb > 0, normb, one)
    if jax:
        import jax.numpy as jnp
        from jax import lax

        hist = jnp.full((max_iters + 1, B.shape[1]), jnp.nan, dtype=zero.dtype).at[0].set(state["normr"] / scale)

        def cond(c):
            it, s, _ = c
            return (it < max_iters) & running(s).any()

        def body(c):
            it, s, hist = c
            s = step(s)
            return it + 1, s, hist.at[it + 1].set(s["normr"] / scale)

        it, state, hist = lax.while_loop(cond, body, (0, state, hist))
    else:
        rows = [state["normr"] / scale]
        it = 0
        while it < max_iters and bool(running(state).any()):
            state = step(state)
            rows.append(state["normr"] / scale)
            it += 1
        hist = xp.stack(rows, 0)
    info = SolveInfo("LSMR", it, state["converged"], state["normr"] / scale, hist, state["ill"])
    return state["X"], info


def report_lsmr(info: SolveInfo, alg: LSMR, xp) -> None:
    """Raise ConvergenceError (or warn, per ``alg.on_failure``) unless every column met LSMR's
    rules; NonFiniteError for NaN/inf; a no-op for traced (``jax.jit``) values."""
    if not xp.is_concrete(info.converged):
        return
    conv = np.asarray(xp.to_numpy(info.converged))
    if conv.all():
        return
    res = np.asarray(xp.to_numpy(info.relative_residuals))
    if not np.isfinite(res).all():
        raise NonFiniteError(
            f"LSMR produced NaN or infinity after {int(info.iterations)} iterations: the operator or the "
            "right-hand side holds NaN or infinity (or overflowed)"
        )
    ill = np.asarray(xp.to_numpy(info.breakdown))
    msg = (
        f"LSMR did not converge: {int(conv.size - conv.sum())} of {conv.size} right-hand sides stopped after "
        f"{int(info.iterations)} iterations at ||b - A x|| / ||b|| up to {float(res[~conv].max()):.3g} "
        f"without meeting atol = {alg.atol:.3g} / btol = {alg.btol:.3g}"
    )
    if ill.any():
        msg += (
            f"; the estimate of cond(A) reached conlim = {alg.conlim:.3g}: the problem is ill-conditioned "
            "(add damp > 0, or raise conlim if the data are accurate enough)"
        )
    else:
        msg += "; raise max_iters or loosen atol/btol"
    if alg.on_failure == "warn":
        warnings.warn(msg, ConvergenceWarning, stacklevel=4)
    else:
        raise ConvergenceError(msg, info)
