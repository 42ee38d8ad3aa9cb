"""Restarted GMRES: general square systems, right-preconditioned, many right-hand sides at once.

Each cycle builds, for every column at once, an Arnoldi basis of at most ``restart`` vectors
by modified Gram-Schmidt with one full reorthogonalisation pass (MGS twice: the basis stays
orthonormal to working precision), reduces the Hessenberg matrix to triangular form by
complex Givens rotations as it grows (so ``|g_{j+1}|`` is the residual norm after ``j + 1``
steps), and at the end of the cycle solves the triangular system and updates ``x``.

Preconditioning is on the **right**: GMRES runs on ``A M u = b`` and returns ``x = M u``,
so the residual it minimises and tests is the true one, ``b - A x``, not ``M (b - A x)``;
``M`` may be any non-singular operator (no symmetry needed). It is applied once per
iteration and once more per cycle (to the correction).

Stopping rule (SciPy's, with no absolute epsilon): column j stops when
``||b_j - A x_j|| <= tol * ||b_j||``. Inside a cycle that norm is the Givens estimate;
at the end of each cycle the residual is recomputed as ``B - A X`` (one product with ``A``
for the block), so the reported ``relative_residuals`` and ``converged`` are those of the
true residual, and a column whose estimate drifted below ``tol`` but whose true residual did
not is taken up again in the next cycle. ``max_iters`` counts inner (Arnoldi) iterations over
all cycles; the products with ``A`` are ``iterations`` plus one per cycle. The history holds
the Givens estimate after each iteration, except that the row ending a cycle holds the
true residual (so its last row is ``relative_residuals``).

Right-hand sides are vectorised: the k columns share each product with ``A`` (one
``matmat`` of an ``(n, k)`` block per iteration) but each has its own Krylov space. Cost per
cycle of ``m = restart`` iterations: ``m`` block products with ``A`` and with ``M``,
``2 m^2 n k`` multiply-adds of Gram-Schmidt (two passes), O(m^2 k) for the rotations and
the triangular solves; memory ``(m + 1) n k`` for the basis plus O(n k + m^2 k).

A column with ``b_j = 0`` is solved by ``x_j = 0``. A column that converges inside a cycle is
frozen (its basis and rotations stop, so it gets the iterates it would get alone). A
breakdown (``SolveInfo.breakdown``) freezes a column without the failing step: the
projected Hessenberg matrix is singular (its new pivot ``|R_jj|`` is below ``10 eps`` times
its column's norm, which a non-singular ``A M`` cannot give, as ``|R_jj| >= sigma_min(A M)``;
e.g. ``A`` is singular and ``b`` is not in its range), or a value is not finite. The column
keeps the minimum-residual iterate of the steps before. The lucky breakdown (an invariant
subspace with a non-singular projection) is not one: it solves the column exactly.

numpy and torch run the cycles with Python loops; jax with ``lax.while_loop`` (cycles and
iterations) and ``lax.fori_loop`` (Gram-Schmidt, rotations, back substitution) on arrays of
static shape (the basis is ``(m + 1, n, k)``, the history ``(max_iters + 1, k)``), so
``restart`` and ``max_iters`` must be static under ``jax.jit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .base import Algorithm, check_stopping, colnorm
from .info import SolveInfo

__all__ = ["GMRES", "gmres"]


@dataclass(frozen=True)
class GMRES(Algorithm):
    """Restarted GMRES(``restart``) for general square non-singular operators.

    * ``tol``: relative residual target per column, ``||b - A x|| <= tol ||b||`` (true residual).
    * ``max_iters``: cap on the inner (Arnoldi) iterations over all cycles (None: ``10 n``).
    * ``restart``: Krylov dimension of a cycle; memory is ``(restart + 1) n k``.
    * ``precond``: an operator ``M ≈ A^{-1}`` applied on the **right** (GMRES solves
      ``A M u = b``, ``x = M u``), so the residual tested is ``b - A x`` itself. Any
      non-singular operator.
    * ``on_failure``: ``"raise"`` (ConvergenceError) or ``"warn"`` (ConvergenceWarning) when a
      column misses ``tol``; under ``jax.jit`` values cannot be inspected, use ``return_info``.
    * ``progress``: show a tqdm progress bar of operator products (eager backends only).
    """

    tol: float = 1e-6
    max_iters: int | None = None
    restart: int = 30
    precond: Any = None
    on_failure: str = "raise"
    progress: bool = False

    def __post_init__(self):
        check_stopping(self)
        if not (isinstance(self.restart, int) and not isinstance(self.restart, bool) and self.restart >= 1):
            raise ValueError(f"GMRES: restart must be a positive integer, got {self.restart!r}")


_SINGULAR = 10.0  # a pivot below _SINGULAR * eps * (its column's norm) is a breakdown


def _finite(x):
    return x - x == 0  # False for NaN and infinities, real or complex


class _Eager:
    """Loops and row updates for numpy and torch: Python control flow, in-place rows."""

    @staticmethod
    def fori(lo, hi, body, init):
        for i in range(lo, hi):
            init = body(i, init)
        return init

    @staticmethod
    def while_(cond, body, init):
        while bool(cond(init)):
            init = body(init)
        return init

    @staticmethod
    def set(a, i, v):
        a[i] = v
        return a

    @staticmethod
    def get(a, i):
        return a[i]

    @staticmethod
    def record(hist, i, row):
        if i == len(hist):
            hist.append(row)
        else:
            hist[i] = row
        return hist


class _Jax:
    """The same with ``lax`` loops and functional row updates (traced indices allowed)."""

    def __init__(self):
        from jax import lax

        self.lax = lax

    def fori(self, lo, hi, body, init):
        return self.lax.fori_loop(lo, hi, body, init)

    def while_(self, cond, body, init):
        return self.lax.while_loop(cond, body, init)

    @staticmethod
    def set(a, i, v):
        return a.at[i].set(v)

    def get(self, a, i):
        return self.lax.dynamic_index_in_dim(a, i, 0, keepdims=False)

    @staticmethod
    def record(hist, i, row):
        return hist.at[i].set(row)


def gmres(
    matmat: Callable, B, xp, tol: float, max_iters: int, restart: int = 30, precond: Callable | None = None
):
    """Solve ``A X = B`` for square A and B (n, k) given ``matmat(P) = A @ P``; returns ``(X, SolveInfo)``.

    ``restart`` and ``max_iters`` are Python ints (static under ``jax.jit``); ``precond(R) = M @ R``
    is applied on the right (``A M u = B``, ``X = M u``), or None.
    """
    apply_m = precond if precond is not None else (lambda R: R)
    L = _Jax() if xp.name == "jax" else _Eager()
    n, k = B.shape
    m = max(1, min(int(restart), int(max_iters), n))  # the Krylov space of a column has dimension <= n
    dtype, device = B.dtype, xp.device_of(B)
    bnorm = colnorm(xp, B)
    target = tol * bnorm
    scale = xp.where(bnorm > 0, bnorm, 1 + 0 * bnorm)
    rzero = 0 * bnorm
    eps = xp.eps(bnorm.dtype)

    def zeros(*shape):
        return xp.zeros(shape, dtype, device)

    def running(rnorm, breakdown):
        return (rnorm > target) & ~breakdown

    # ------------------------------------------------------------ one Arnoldi step, all columns
    def arnoldi(j, c):
        it, V, H, cs, sn, g, nsteps, rnorm, breakdown, hist = c
        active = running(rnorm, breakdown)
        W = matmat(apply_m(L.get(V, j)))
        h = zeros(m + 1, k)

        def mgs(i, c2):  # one modified Gram-Schmidt projection, accumulated into h
            W, h = c2
            Vi = L.get(V, i)
            hi = xp.sum(xp.conj(Vi) * W, axis=0)
            return W - hi * Vi, L.set(h, i, L.get(h, i) + hi)

        W, h = L.fori(0, j + 1, mgs, (W, h))
        W, h = L.fori(0, j + 1, mgs, (W, h))  # the reorthogonalisation pass
        hnorm = colnorm(xp, W)  # h[j + 1, j], real

        def rotate(i, h):  # the rotations of the earlier steps (both rows computed before either is set)
            a, b = L.get(h, i), L.get(h, i + 1)
            ci, si = L.get(cs, i), L.get(sn, i)
            top, bottom = ci * a + si * b, ci * b - xp.conj(si) * a
            return L.set(L.set(h, i, top), i + 1, bottom)

        h = L.fori(0, j, rotate, h)
        a = L.get(h, j) + 0  # a copy: h is updated in place on numpy and torch
        absa = xp.abs(a)
        rho = xp.sqrt(absa * absa + hnorm * hnorm)
        # |R_jj| >= sigma_min(A M) and the column's norm <= ||A M||: a pivot at rounding level
        # relative to its column means the projected system is (numerically) singular
        hcol = xp.sqrt(xp.sum(xp.real(xp.conj(h) * h), axis=0) + hnorm * hnorm)  # h[j + 1] is still 0
        ok = (rho > _SINGULAR * eps * hcol) & _finite(rho) & _finite(hcol)
        go = active & ok
        rho = xp.where(ok, rho, 1 + rzero)
        phase = xp.where(absa > 0, a / xp.where(absa > 0, absa, 1 + rzero), 1 + 0 * a)
        c_new = xp.where(go, absa / rho, rzero)  # the rotation taking (a, hnorm) to (phase rho, 0)
        s_new = xp.where(go, phase * (hnorm / rho), 0 * a)  # conj(hnorm) = hnorm
        col = xp.where(go, L.set(h, j, phase * rho)[:m], 0 * h[:m])  # frozen: a zero column, y_j = 0
        gj = L.get(g, j) + 0
        g_next = xp.where(go, -xp.conj(s_new) * gj, L.get(g, j + 1))
        g = L.set(L.set(g, j, xp.where(go, c_new * gj, gj)), j + 1, g_next)
        H = L.set(H, j, col)
        cs = L.set(cs, j, c_new)
        sn = L.set(sn, j, s_new)
        V = L.set(V, j + 1, xp.where(go & (hnorm > 0), W / xp.where(hnorm > 0, hnorm, 1 + rzero), 0 * W))
        nsteps = nsteps + xp.where(go, 1 + rzero, rzero)
        rnorm = xp.where(go, xp.abs(g_next), rnorm)
        breakdown = breakdown | (active & ~ok)
        hist = L.record(hist, it + 1, rnorm / scale)
        return it + 1, V, H, cs, sn, g, nsteps, rnorm, breakdown, hist

    # ------------------------------------------------------------------------- one cycle
    def cycle(c):
        it, X, R, rnorm, breakdown, hist = c
        active = running(rnorm, breakdown)
        V = L.set(zeros(m + 1, n, k), 0, xp.where(active, R / xp.where(rnorm > 0, rnorm, 1 + rzero), 0 * R))
        H = zeros(m, m, k)  # H[j] is column j of the triangular factor (rows 0..m-1)
        cs = xp.zeros((m, k), bnorm.dtype, device)
        sn = zeros(m, k)
        g = L.set(zeros(m + 1, k), 0, rnorm + 0 * R[0])
        nsteps = rzero  # steps each column took in this cycle (a count, in the real dtype)

        def inner_cond(ci):
            j, (it, _, _, _, _, _, _, rnorm, breakdown, _) = ci
            return (j < m) & (it < max_iters) & running(rnorm, breakdown).any()

        def inner_body(ci):
            j, inner = ci
            return j + 1, arnoldi(j, inner)

        _, inner = L.while_(inner_cond, inner_body, (0, (it, V, H, cs, sn, g, nsteps, rnorm, breakdown, hist)))
        it, V, H, cs, sn, g, nsteps, rnorm, breakdown, hist = inner

        # back substitution T y = g over each column's own steps; y_i = 0 for steps it did not take
        T_rows = xp.moveaxis(H, 1, 0)  # T_rows[i][l] = T[i, l]

        def backsub(t, Y):
            i = m - 1 - t
            Ti = L.get(T_rows, i)
            rest = xp.sum(Ti * Y, axis=0)  # rows l <= i of Y are still 0
            Tii = L.get(Ti, i)
            use = nsteps > i
            yi = (L.get(g, i) - rest) / xp.where(use, Tii, 1 + 0 * Tii)
            return L.set(Y, i, xp.where(use, yi, 0 * yi))

        Y = L.fori(0, m, backsub, zeros(m, k))
        X = X + apply_m(xp.einsum("ink,ik->nk", V[:m], Y))
        R = B - matmat(X)  # the true residual: what is reported, and where the next cycle starts
        rnorm = colnorm(xp, R)
        hist = L.record(hist, it, rnorm / scale)
        return it, X, R, rnorm, breakdown, hist

    def outer_cond(c):
        it, _, _, rnorm, breakdown, _ = c
        return (it < max_iters) & running(rnorm, breakdown).any()

    breakdown = bnorm < 0
    if xp.name == "jax":
        import jax.numpy as jnp

        hist = jnp.full((max_iters + 1, k), jnp.nan, dtype=bnorm.dtype).at[0].set(bnorm / scale)
    else:
        hist = [bnorm / scale]
    it, X, R, rnorm, breakdown, hist = L.while_(outer_cond, cycle, (0, 0 * B, B, bnorm, breakdown, hist))
    if xp.name != "jax":
        hist = xp.stack(hist, 0)
    converged = (rnorm <= target) & ~breakdown
    return X, SolveInfo("GMRES", it, converged, rnorm / scale, hist, breakdown)
