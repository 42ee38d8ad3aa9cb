"""What an iterative method reports, and the one place non-convergence is raised or warned."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from ..backends import on_backend_load
import numpy as np

from ..errors import ConvergenceError, ConvergenceWarning, NonFiniteError

__all__ = ["SolveInfo", "EstimateInfo", "report"]


@dataclass(frozen=True)
class SolveInfo:
    """The record of one iterative solve with k right-hand sides.

    * ``method``: the algorithm's name.
    * ``iterations``: iterations run (for CG and MINRES the number of products with the
      operator; GMRES also does one product per restart cycle).
    * ``converged``: (k,) booleans, ``||b - A x|| <= tol ||b||`` per column.
    * ``relative_residuals``: (k,) final ``||b - A x|| / ||b||`` (from the recurrence).
    * ``history``: (iterations + 1, k) relative residuals, one row per iteration (under
      ``jax.jit``: ``max_iters + 1`` rows, NaN after the last iteration).
    * ``breakdown``: (k,) booleans: a non-positive curvature ``p^H A p`` was met, so the
      operator is not positive definite (CG) or the method broke down.
    """

    method: str
    iterations: Any
    converged: Any
    relative_residuals: Any
    history: Any
    breakdown: Any

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())


_BREAKDOWN = {
    "CG": "; it met non-positive curvature, so the operator is not positive definite (use MINRES/GMRES or LU)",
    "MINRES": "; it broke down: the preconditioner is not positive definite or the system is singular",
    "GMRES": "; it broke down: the system is singular (b is not in the range of A) or stagnated",
    "BiCGStab": "; it broke down (rho = r̂^H r or omega = t^H s / t^H t fell to rounding level): try lo.GMRES() "
    "or another preconditioner",
    "Lanczos": "; some Ritz pairs lie past an invariant subspace (a breakdown)",
    "LSMR": "; the estimate of cond(A) reached conlim: the problem is ill-conditioned (add damp or raise conlim)",
    "Arnoldi": "; some Ritz pairs lie past an invariant subspace (a breakdown)",
}


def report(info: SolveInfo, tol: float, on_failure: str, xp) -> None:
    """Raise ConvergenceError (or warn) unless every column converged; no-op for traced values."""
    if not xp.is_concrete(info.converged):
        return
    conv = xp.to_numpy(info.converged)
    if conv.all():
        return
    res = xp.to_numpy(info.relative_residuals)
    if not np.isfinite(res).all():
        raise NonFiniteError(
            f"{info.method} produced NaN or infinity after {int(info.iterations)} iterations: the operator or the "
            "right-hand side holds NaN or infinity (or overflowed)"
        )
    worst = float(res[~conv].max()) if (~conv).any() else float("nan")
    broke = bool(xp.to_numpy(info.breakdown).any())
    msg = (
        f"{info.method} did not converge: {int(conv.size - conv.sum())} of {conv.size} right-hand sides "
        f"stopped at relative residual {worst:.3g} > tol {tol:.3g} after {int(info.iterations)} iterations"
    )
    hist = np.asarray(xp.to_numpy(info.history), dtype=float)
    rows = hist[np.isfinite(hist).all(axis=1)] if hist.ndim == 2 else hist[:0]
    drifted = rows.shape[0] > 0 and bool((rows[-1][~conv] <= tol).all())
    if broke:
        msg += _BREAKDOWN.get(info.method.split(" ")[0], "; it broke down")
    elif "float16 operator" in info.method:
        msg += (
            "; a 16-bit operator's products carry relative errors of about 1e-3 (float16) to 4e-3 (bfloat16), "
            "so residuals much below 1e-2 may be out of reach: loosen tol or use a float32 operator"
        )
    elif drifted:
        msg += (
            f"; the recurrence residual reached tol but the true residual b - A x did not: rounding limits it to "
            f"about eps * cond(A) in {info.method.split(' ')[0]}'s working precision; loosen tol, precondition, "
            "or use float64"
        )
    else:
        msg += "; raise max_iters, loosen tol, or pass a preconditioner (precond=)"
    if on_failure == "warn":
        warnings.warn(msg, ConvergenceWarning, stacklevel=4)
    else:
        raise ConvergenceError(msg, info)


def _register_info_with_jax(_backend) -> None:
    import jax

    jax.tree_util.register_pytree_node(
        SolveInfo,
        lambda i: ((i.iterations, i.converged, i.relative_residuals, i.history, i.breakdown), i.method),
        lambda method, ch: SolveInfo(method, *ch),
    )
    jax.tree_util.register_pytree_node(
        EstimateInfo,
        lambda i: ((i.value, i.stderr, i.samples), (i.method, i.num_probes)),
        lambda aux, ch: EstimateInfo(aux[0], ch[0], ch[1], aux[1], ch[2]),
    )


on_backend_load("jax", _register_info_with_jax)


@dataclass(frozen=True)
class EstimateInfo:
    """The record of a stochastic estimate: ``value ± stderr`` from ``num_probes`` probes.

    ``samples`` holds the per-probe estimates, whose mean is ``value``.
    """

    method: str
    value: Any
    stderr: Any
    num_probes: int
    samples: Any
