"""Top-k eigenpairs of large self-adjoint operators by Krylov methods (``lo.eigh(A, k, alg=lo.Lanczos())``)."""

from __future__ import annotations

from ..algorithms.info import SolveInfo, report
from ..operators import LinearOperator

__all__ = ["lanczos_eigh"]


def lanczos_eigh(A: LinearOperator, k: int, which: str, alg):
    """k eigenpairs of self-adjoint A by Lanczos; the Krylov dimension doubles until they converge."""
    from ..algorithms.lanczos import default_dimension, lanczos, ritz
    from ..operators import Dense
    from .eigen import _WHICH, _check_k

    if which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH}, got {which!r}")
    n = A.shape[0]
    _check_k(k, n)
    xp = A.xp
    cap = min(n, alg.max_iters or n)
    m = min(cap, default_dimension(k, n))
    v0 = xp.normal(xp.make_key(alg.seed), (n, 1), A.dtype, A.device)
    while True:
        alpha, beta, Q = lanczos(A._matmat, v0, xp, m)
        theta, _, S = ritz(xp, alpha, beta)
        theta, S = theta[0], xp.astype(S[0], A.dtype)
        V = xp.einsum("jn,ji->ni", Q[0], S)  # Ritz vectors (n, m)
        valid = xp.sqrt(xp.sum(xp.real(xp.conj(V) * V), axis=0)) > 0.5  # drop directions past a breakdown
        key = xp.abs(theta) if which in ("LM", "SM") else theta
        largest = which in ("LA", "LM")
        big = xp.abs(theta).max() + 1
        key = xp.where(valid, key, -big if largest else big)
        idx = xp.topk(key, k, largest=largest)
        resid = xp.abs(beta[m - 1, 0] * xp.real(S[m - 1, :]))[idx]
        scale = xp.abs(theta).max()
        converged = resid <= alg.tol * scale
        if m >= cap or not xp.is_concrete(converged) or bool(converged.all()):
            break
        m = min(cap, 2 * m)
    info = SolveInfo("Lanczos", m, converged, resid / scale, (resid / scale)[None, :], ~valid[idx])
    report(info, alg.tol, alg.on_failure, xp)
    order = xp.argsort(theta[idx])
    idx = idx[order]
    return theta[idx], Dense(V[:, idx])
