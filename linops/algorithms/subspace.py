"""Subspace iteration (block power method) with Rayleigh-Ritz, for the largest-magnitude eigenpairs.

Each iteration multiplies the orthonormal block ``X`` (n, b) by ``A`` once, takes the Ritz
pairs of ``X^H A X`` (b x b), checks the residuals ``||A x_i - θ_i x_i||`` of the k
largest in magnitude, and orthonormalises ``A X`` (thin QR) into the next block. With
b = k = 1 it is the power method with a Rayleigh quotient. The error of pair i shrinks by
``|λ_{b+1} / λ_i|`` per iteration, so a block larger than k helps when ``|λ_k|`` and
``|λ_{k+1}|`` are close. Fixed shapes: it runs eagerly and under ``jax.jit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Algorithm, check_stopping, colnorm
from .info import SolveInfo

__all__ = ["SubspaceIteration", "subspace_iteration"]


@dataclass(frozen=True)
class SubspaceIteration(Algorithm):
    """k largest-magnitude eigenpairs of a self-adjoint operator (``which="LM"``) by block power iteration.

    * ``tol``: per pair, ``||A x - θ x|| <= tol * max|θ|``.
    * ``max_iters``: iteration cap (None: 1000); one product with the b-column block each.
    * ``block``: block size b >= k (None: k, so k = 1 is the power method).
    * ``seed``: the starting block's seed. ``on_failure``: ``"raise"`` or ``"warn"``.

    Cost: b products and O(n b^2) per iteration. Simple and robust, but slow when
    ``|λ_{b+1} / λ_k|`` is near one: Lanczos or LOBPCG need far fewer products then.
    """

    tol: float = 1e-6
    max_iters: int | None = None
    block: int | None = None
    seed: int = 0
    on_failure: str = "raise"

    def __post_init__(self):
        check_stopping(self)
        b = self.block
        if b is not None and not (isinstance(b, int) and not isinstance(b, bool) and b >= 1):
            raise ValueError(f"SubspaceIteration: block must be a positive integer or None, got {b!r}")


def subspace_iteration(matmat: Callable, X0, xp, k: int, tol: float, max_iters: int):
    """``(θ (k,), X (n, k), SolveInfo)``: the k largest-magnitude Ritz pairs, by |θ| descending.

    ``matmat(P) = A @ P`` for self-adjoint A; the block size is ``X0.shape[1]`` (>= k).
    """
    rdt = xp.real_dtype(X0.dtype)
    X, _ = xp.qr(X0)

    def ritz(X):
        AX = matmat(X)
        T = xp.conj(X).T @ AX
        th, Z = xp.eigh((T + xp.conj(T).T) / 2)
        order = xp.argsort(xp.abs(th), descending=True)
        th, Z = th[order], Z[:, order]
        X, AX = X @ Z, AX @ Z
        scale = xp.abs(th).max()
        rn = colnorm(xp, AX - X * xp.astype(th, X.dtype)[None, :])
        rel = rn[:k] / xp.where(scale > 0, scale, 1 + 0 * scale)
        Xn, _ = xp.qr(AX)
        return th, X, Xn, rel

    th, Xk, X, rel = ritz(X)
    if xp.name == "jax":
        import jax.numpy as jnp
        from jax import lax

        hist = jnp.full((max_iters + 1, k), jnp.nan, dtype=rdt).at[0].set(rel)

        def cond(s):
            return (s[0] < max_iters) & (s[4] > tol).any()

        def body(s):
            it, _, _, X, _, hist = s
            th, Xk, X, rel = ritz(X)
            return it + 1, th, Xk, X, rel, hist.at[it + 1].set(rel)

        it, th, Xk, X, rel, hist = lax.while_loop(cond, body, (0, th, Xk, X, rel, hist))
    else:
        rows, it = [rel], 0
        while it < max_iters and bool((rel > tol).any()):
            th, Xk, X, rel = ritz(X)
            rows.append(rel)
            it += 1
        hist = xp.stack(rows, 0)
    info = SolveInfo("SubspaceIteration", it, rel <= tol, rel, hist, rel < 0)
    return th[:k], Xk[:, :k], info
