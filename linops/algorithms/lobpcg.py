"""LOBPCG: a few extreme eigenpairs of a self-adjoint operator, block, preconditioned.

Knyazev's locally optimal block preconditioned conjugate gradient: each iteration runs
Rayleigh-Ritz on the span of the block ``X`` (n, b), the preconditioned residuals
``W = M (A X - X Θ)`` and the previous search directions ``P``, and keeps the b best Ritz
pairs. One product of ``A`` with (at most) b vectors per iteration, O(n b^2) work and
O(n b) memory.

Robust orthonormalisation: ``W`` is orthogonalised against ``X``, then ``P`` against
``[X, W]`` (block classical Gram-Schmidt, twice), each block orthonormalised by SVQB
(the Gram matrix's eigendecomposition after scaling its diagonal to one; directions whose
Gram eigenvalue is below ``sqrt(eps)`` times the largest are dropped, i.e. set to zero and
kept out of the Rayleigh-Ritz step). ``A W`` is one product; ``A P`` follows ``P`` by the
same linear combinations, never by another product.

Convergence, per pair: ``||A x_i - θ_i x_i|| <= tol * scale`` with ``scale`` the largest
``|θ|`` any Rayleigh-Ritz step has seen (a lower bound on ``||A||``). The residuals come
from the recurrence's ``A X``, which drifts from the true one by rounding; once they pass,
one more product gives the true residuals, and the iteration goes on from the true ``A X``
if those miss ``tol`` (under ``jax.jit``: the reported residuals are the true ones). Soft locking: the
residual of a converged pair is left out of ``W`` (eagerly it costs no product; under
``jax.jit`` shapes are fixed, so it is a zero column).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .base import Algorithm, check_stopping, colnorm
from .info import SolveInfo

__all__ = ["LOBPCG", "lobpcg"]


@dataclass(frozen=True)
class LOBPCG(Algorithm):
    """k largest or smallest algebraic eigenpairs of a self-adjoint operator (``which`` "LA"/"SA").

    * ``tol``: per pair, ``||A x - θ x|| <= tol * max|θ|`` (the largest Ritz value seen).
    * ``max_iters``: iteration cap (None: 500); each iteration is one product with the block.
    * ``block``: block size b >= k (None: ``k``); a larger block converges in fewer
      iterations when the wanted eigenvalues are clustered.
    * ``precond``: an operator ``M`` applied to the residuals, ``M ≈ A^{-1}`` Hermitian positive
      definite, for the smallest eigenvalues of a positive definite ``A`` (e.g. a Jacobi or
      incomplete factorisation); ``None`` for plain block steepest-descent directions.
    * ``seed``: the starting block's seed. ``on_failure``: ``"raise"`` or ``"warn"``.
    """

    tol: float = 1e-6
    max_iters: int | None = None
    block: int | None = None
    precond: Any = None
    seed: int = 0
    on_failure: str = "raise"

    def __post_init__(self):
        check_stopping(self)
        b = self.block
        if b is not None and not (isinstance(b, int) and not isinstance(b, bool) and b >= 1):
            raise ValueError(f"LOBPCG: block must be a positive integer or None, got {b!r}")


def _safe(xp, s):
    """``s`` where positive, else 1 (the scale of a zero operator: its residuals are zero too)."""
    return xp.where(s > 0, s, 1 + 0 * s)


def _herm(xp, T):
    return (T + xp.conj(T).T) / 2


def svqb(xp, Y, AY, tau: float):
    """Orthonormalise the columns of Y (n, c), carrying ``AY = A Y`` along; returns ``(Y, AY, kept)``.

    Directions whose scaled Gram eigenvalue is below ``tau`` times the largest become zero
    columns (``kept`` False): what Y adds is then exactly what it spans, to rounding.
    """
    G = xp.conj(Y).T @ Y
    d = xp.sqrt(xp.real(xp.diagonal(G)))
    big = d.max()
    ok = d > 0 * big
    dinv = xp.where(ok, 1 / xp.where(ok, d, 1 + 0 * d), 0 * d)
    dc = xp.astype(dinv, Y.dtype)
    lam, Z = xp.eigh(_herm(xp, G * dc[:, None] * dc[None, :]))
    keep = lam > tau * lam.max()
    s = xp.where(keep, 1 / xp.sqrt(xp.where(keep, lam, 1 + 0 * lam)), 0 * lam)
    C = dc[:, None] * Z * xp.astype(s, Y.dtype)[None, :]
    return Y @ C, AY @ C, keep


def _against(xp, Y, AY, bases):
    """Remove from Y (and AY alike) its components along each orthonormal (B, AB) in ``bases``."""
    for _ in range(2):
        for B, AB in bases:
            c = xp.conj(B).T @ Y
            Y = Y - B @ c
            if AY is not None:
                AY = AY - AB @ c
    return Y, AY


def rayleigh_ritz(xp, S, AS, alive, b: int, largest: bool):
    """The b best Ritz pairs of the orthonormal columns S (zero where not ``alive``): ``(θ, Z, θ_all)``."""
    T = _herm(xp, xp.conj(S).T @ AS)
    bound = xp.sum(xp.abs(T), axis=1).max()  # >= the spectral radius of T
    shift = -(2 * bound + 1) if largest else 2 * bound + 1  # dead directions sort last
    T = T + xp.diag(xp.astype(xp.where(alive, 0 * bound, shift + 0 * bound), T.dtype))
    th, Z = xp.eigh(T)
    m = th.shape[0]
    idx = xp.arange(b, xp.device_of(th))
    sel = m - 1 - idx if largest else idx
    # the dead directions' eigenvalues are the shifted ones, at the far end: leave them out of the scale
    n_alive = xp.sum(xp.where(alive, 1 + 0 * bound, 0 * bound))
    pos = xp.astype(xp.arange(m, xp.device_of(th)), bound.dtype)
    real = pos >= m - n_alive if largest else pos < n_alive
    amax = xp.where(real, xp.abs(th), 0 * th).max()
    return th[sel], Z[:, sel], amax


def lobpcg(matmat: Callable, X0, xp, k: int, tol: float, max_iters: int, largest: bool, precond: Callable | None = None):
    """``(θ (k,), X (n, k), SolveInfo)``: the k best Ritz pairs from a start block X0 (n, b), b >= k.

    ``matmat(P) = A @ P`` for self-adjoint A; ``precond(R) = M @ R`` or None. θ best first
    (descending for ``largest``, ascending otherwise).
    """
    n, b = X0.shape
    rdt = xp.real_dtype(X0.dtype)
    tau = float(xp.eps(rdt)) ** 0.5
    X, _ = xp.qr(X0)
    AX = matmat(X)
    yes = xp.ones((b,), rdt, xp.device_of(X0)) > 0
    theta, Z, scale = rayleigh_ritz(xp, X, AX, yes, b, largest)
    X, AX = X @ Z, AX @ Z
    P, AP = 0 * X, 0 * AX
    eager = xp.name != "jax"

    def residual(X, AX, theta, scale):
        rn = colnorm(xp, AX - X * xp.astype(theta, X.dtype)[None, :])
        return rn, rn > tol * scale

    def step(X, AX, P, AP, theta, scale):
        rn, active = residual(X, AX, theta, scale)
        R = AX - X * xp.astype(theta, X.dtype)[None, :]
        W = precond(R) if precond is not None else R
        W = xp.where(active[None, :], W, 0 * W)
        W, _ = _against(xp, W, None, [(X, AX)])
        W, _, wk = svqb(xp, W, W, tau)
        W, _ = _against(xp, W, None, [(X, AX)])
        W, _, wk2 = svqb(xp, W, W, tau)
        wk = wk & wk2
        if eager:  # soft locking: only the directions kept cost a product
            cols = xp.arange(b, xp.device_of(X0))[wk]
            AW = xp.index_set(0 * W, cols, matmat(W[:, cols]), axis=1) if int(cols.shape[0]) else 0 * W
        else:
            AW = matmat(W)
        P, AP = _against(xp, P, AP, [(X, AX), (W, AW)])
        P, AP, pk = svqb(xp, P, AP, tau)
        S = xp.concat([X, W, P], 1)
        AS = xp.concat([AX, AW, AP], 1)
        th, Z, amax = rayleigh_ritz(xp, S, AS, xp.concat([yes, wk, pk]), b, largest)
        scale = xp.where(amax > scale, amax, scale)
        X, AX = S @ Z, AS @ Z
        P, AP = S[:, b:] @ Z[b:], AS[:, b:] @ Z[b:]
        return X, AX, P, AP, th, scale

    rn, _ = residual(X, AX, theta, scale)
    if eager:
        rows, it = [rn[:k] / _safe(xp, scale)], 0
        state = (X, AX, P, AP, theta, scale)
        while True:
            while it < max_iters and bool((rows[-1] > tol).any()):
                state = step(*state)
                rn, _ = residual(state[0], state[1], state[4], state[5])
                rows.append(rn[:k] / _safe(xp, state[5]))
                it += 1
            # the recurrence's A X drifts from the true one by rounding: check with a real product,
            # and go on from the true A X if that misses tol
            X, AX, P, AP, theta, scale = state
            AX = matmat(X)
            rn, _ = residual(X, AX, theta, scale)
            rows[-1] = rn[:k] / _safe(xp, scale)
            state = (X, AX, P, AP, theta, scale)
            if it >= max_iters or not bool((rows[-1] > tol).any()):
                break
        hist = xp.stack(rows, 0)
    else:
        import jax.numpy as jnp
        from jax import lax

        hist = jnp.full((max_iters + 1, k), jnp.nan, dtype=rdt).at[0].set(rn[:k] / _safe(xp, scale))

        def cond(s):
            it, X, AX, P, AP, theta, scale, hist = s
            return (it < max_iters) & (hist[it] > tol).any()

        def body(s):
            it, *state, hist = s
            state = step(*state)
            rn, _ = residual(state[0], state[1], state[4], state[5])
            return (it + 1, *state, hist.at[it + 1].set(rn[:k] / _safe(xp, state[5])))

        it, X, AX, P, AP, theta, scale, hist = lax.while_loop(cond, body, (0, X, AX, P, AP, theta, scale, hist))
        AX = matmat(X)  # the true residual for the report (the recurrence's A X drifts by rounding)
    rn, _ = residual(X, AX, theta, scale)
    rel = rn[:k] / _safe(xp, scale)
    info = SolveInfo("LOBPCG", it, rel <= tol, rel, hist, rel < 0)
    return theta[:k], X[:, :k], info
