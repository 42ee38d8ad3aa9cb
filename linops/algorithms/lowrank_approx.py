"""Low-rank approximations of a PSD operator: partial pivoted Cholesky and randomized Nyström.

* :func:`factor`: ``A ≈ L L^H`` with ``L`` (n, r), greedy on the largest remaining diagonal
  entry (Harbrecht, Peters, Schneider 2012; the preconditioner of GPyTorch), *given* the
  diagonal: it reads r columns of ``A`` (a Dense matrix's own, else one product each), nothing
  else: O(n r^2) work. The trace error ``tr(A - L L^H)`` (the sum of the remaining diagonal) is
  known at every step. The public :func:`linops.pivoted_cholesky` (in
  :mod:`linops.functions.preconditioning`) takes the diagonal from ``lo.diag``'s structure rules.
* :func:`nystrom`: ``A ≈ U diag(λ) U^H`` from ``A Ω`` for a random orthonormal ``Ω`` (n, r),
  the numerically stable shifted form of Tropp, Yurtsever, Udell, Cevher (2017), Alg. 3:
  r products with A + O(n r^2) work.

Both run on numpy, torch and jax; pivoted Cholesky under ``jax.jit`` runs all r steps in a
``lax.fori_loop`` and zeroes the columns past its stopping point (fixed shapes); eagerly it
stops there and returns fewer columns. Nothing here calls a dispatched function
(``linops.functions`` is a layer above).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import NonFiniteError, NotPSDError

__all__ = ["PivotedCholeskyInfo", "factor", "nystrom", "nystrom_factors", "check_rank", "check_tol"]


@dataclass(frozen=True)
class PivotedCholeskyInfo:
    """What a pivoted Cholesky did.

    * ``pivots``: (r,) the chosen indices, in order (under ``jax.jit`` entries past the stop repeat).
    * ``valid``: (r,) booleans, True for the columns computed (all True eagerly: L is truncated).
    * ``trace_error``: ``tr(A - L L^H)``, absolute, after the last step.
    * ``history``: (r + 1,) the trace error after 0, 1, ..., r steps (eagerly: steps taken).
    * ``trace``: ``tr(A)``, so ``trace_error / trace`` is the relative error.
    """

    pivots: Any
    valid: Any
    trace_error: Any
    history: Any
    trace: Any

    @property
    def rank(self) -> int:
        return int(self.valid.sum()) if hasattr(self.valid, "sum") else len(self.valid)


def check_rank(rank, n: int, who: str) -> int:
    if not (isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1):
        raise ValueError(f"{who}: rank must be a positive integer, got {rank!r}")
    return min(rank, n)


def _column_reader(A):
    """``i -> A[:, i]`` (n,): a Dense matrix's own column, else ``A @ e_i`` (one product)."""
    from ..operators import Dense

    xp, n = A.xp, A.shape[0]
    if isinstance(A, Dense):
        return lambda i: A.M[:, i]

    def column(i):
        e = xp.index_set(xp.zeros((n, 1), A.dtype, A.device), i, 1, axis=0)
        return A._matmat(e)[:, 0]

    return column


def check_tol(tol, who: str) -> float:
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"{who}: tol must be a number >= 0, got {tol!r}")
    return tol


def factor(X, d, r: int, tol: float):
    """``(L, PivotedCholeskyInfo)`` of PSD ``X`` at rank ``r`` given its real diagonal ``d`` (n,).

    Each step takes the largest remaining diagonal entry ``i`` of ``X - L L^H`` as pivot and
    appends the scaled column ``(X - L L^H)[:, i] / sqrt(d_i)``. It stops early when the trace
    error ``tr(X - L L^H)`` falls to ``tol * tr(X)`` (relative) or the largest remaining entry to
    ``n eps max(diag X)`` (the rest is rounding). ``r`` and ``tol`` are validated by the caller
    (:func:`check_rank`, :func:`check_tol`). Raises NotPSDError for a negative entry of ``d``,
    NonFiniteError for NaN/inf. Cost: r columns of X, O(n r^2).
    """
    xp, n = X.xp, X.shape[0]
    _check_diagonal(xp, d, X._label())
    if xp.name == "jax" and xp.is_concrete(d):  # eager JAX: one compiled loop, cached per shape
        L, (piv, valid, _, hist, trace) = _jax_jitted()(X, d, r, tol)
        k = int(valid.sum())
        return L[:, :k], PivotedCholeskyInfo(piv[:k], valid[:k], hist[k], hist[: k + 1], trace)
    return _pivoted(xp, d, _column_reader(X), n, r, X.dtype, X.device, tol)


_JITTED = None


def _jax_jitted():
    global _JITTED
    if _JITTED is None:
        import jax

        def run(X, d, r, tol):
            L, i = _pivoted(X.xp, d, _column_reader(X), X.shape[0], r, X.dtype, X.device, tol)
            return L, (i.pivots, i.valid, i.trace_error, i.history, i.trace)

        _JITTED = jax.jit(run, static_argnums=(2, 3))
    return _JITTED


def _check_diagonal(xp, d, label):
    if not xp.is_concrete(d):
        return
    import numpy as np

    dn = np.asarray(xp.to_numpy(d))
    if not np.isfinite(dn).all():
        raise NonFiniteError(f"the diagonal of {label} contains NaN or infinity")
    if (dn < 0).any():
        i = int(np.flatnonzero(dn < 0)[0])
        raise NotPSDError(
            f"{label} has a negative diagonal entry ({dn[i]:.3g} at index {i}), so it is not PSD: "
            "pivoted Cholesky and Nyström need a positive semi-definite operator"
        )


def _pivoted(xp, d, column, n, r, dtype, device, tol):
    trace = xp.sum(d)
    dmax = d[xp.topk(d, 1)[0]]
    floor = n * xp.eps(xp.real_dtype(dtype)) * dmax
    target = tol * trace
    L = xp.zeros((n, r), dtype, device)

    def step(k, L, d, done):
        i = xp.topk(d, 1)[0]
        piv = d[i]
        done = done | ~(piv > floor) | ~(xp.sum(d) > target)
        col = column(i) - L @ xp.conj(L[i, :])
        safe = xp.where(done, 1 + 0 * piv, piv)
        lcol = xp.where(done, 0 * col, col / xp.astype(xp.sqrt(safe), dtype))
        L = xp.index_set(L, k, lcol, axis=1)
        d = d - xp.real(xp.conj(lcol) * lcol)
        d = xp.where(d > 0, d, 0 * d)  # rounding leaves tiny negatives; the pivot's own entry is 0
        return L, d, done, i

    if not xp.is_concrete(d):  # under jax.jit: all r steps, columns past the stop zeroed
        import jax.numpy as jnp
        from jax import lax

        def body(k, carry):
            L, d, done, piv, valid, hist = carry
            L, d, done, i = step(k, L, d, done)
            return L, d, done, piv.at[k].set(i), valid.at[k].set(~done), hist.at[k + 1].set(xp.sum(d))

        hist = jnp.zeros((r + 1,), d.dtype).at[0].set(trace)
        carry = (L, d, jnp.asarray(False), jnp.zeros((r,), jnp.int32), jnp.zeros((r,), bool), hist)
        L, d, _, piv, valid, hist = lax.fori_loop(0, r, body, carry)
    else:
        done = trace < 0  # False, as the backend's boolean
        pivots, hist = [], [trace]
        for k in range(r):
            L2, d2, done, i = step(k, L, d, done)
            if bool(done):
                break
            L, d = L2, d2
            pivots.append(int(i))
            hist.append(xp.sum(d))
        import numpy as np

        L = L[:, : len(pivots)]
        piv = _torch_long(pivots, device) if xp.name == "torch" else np.asarray(pivots, dtype=np.int64)
        valid = np.ones(len(pivots), bool)
        hist = xp.stack(hist, 0)
    return L, PivotedCholeskyInfo(piv, valid, hist[-1], hist, trace)


def _torch_long(pivots, device):
    import torch

    return torch.tensor(pivots, dtype=torch.long, device=device)


def nystrom_factors(A, rank: int, seed: int = 0):
    """``(U (n, r), λ (r,))``, U orthonormal, λ >= 0 descending, with ``A ≈ U diag(λ) U^H`` (PSD A).

    Tropp et al. (2017), Alg. 3: ``Y = A Ω``, shift ``ν = sqrt(n) eps ||Y||_F``, ``C`` the Cholesky
    factor of ``Ω^H (Y + ν Ω)``, ``U Σ = svd((Y + ν Ω) C^{-H})``, ``λ = max(Σ^2 - ν, 0)``.
    """
    xp, n = A.xp, A.shape[0]
    r = check_rank(rank, n, "nystrom")
    if not isinstance(seed, int):
        raise ValueError(f"nystrom: seed must be an integer, got {seed!r}")
    G = xp.normal(xp.make_key(seed), (n, r), A.dtype, A.device)
    Omega, _ = xp.qr(G)
    Y = A._matmat(Omega)
    nu = (n ** 0.5) * xp.eps(xp.real_dtype(A.dtype)) * xp.sqrt(xp.sum(xp.real(xp.conj(Y) * Y)))
    Ynu = Y + nu * Omega
    B = xp.conj(Omega).T @ Ynu
    B = (B + xp.conj(B).T) / 2
    try:
        C = xp.cholesky(B)
    except NotPSDError as e:
        raise NotPSDError(
            f"nystrom: {A._label()} is not positive semi-definite (Ω^H A Ω has a negative eigenvalue); "
            "the Nyström approximation needs a PSD operator"
        ) from e
    F = xp.conj(xp.solve_triangular(C, xp.conj(Ynu).T, lower=True)).T  # Ynu C^{-H}
    U, s, _ = xp.svd(F)
    lam = s * s - nu
    return U, xp.where(lam > 0, lam, 0 * lam)


def nystrom(A, rank: int, seed: int = 0):
    """The rank-r randomized Nyström approximation of PSD ``A`` as a PSD operator ``U diag(λ) U^H``.

    A :class:`~linops.LowRank` ``(U sqrt(λ)) (U sqrt(λ))^H``; r products with A, O(n r^2).
    Its error ``||A - Â||`` is close to the best rank-r error when A's spectrum decays
    (Tropp et al. 2017); :func:`nystrom_factors` returns ``(U, λ)``.
    """
    from ..operators import LowRank

    U, lam = nystrom_factors(A, rank, seed)
    xp = A.xp
    return LowRank(U * xp.astype(xp.sqrt(lam), A.dtype)[None, :])
