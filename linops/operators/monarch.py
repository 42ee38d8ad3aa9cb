"""Monarch matrices (Dao et al., ICML 2022): ``M = P2 L P1 R`` with block-diagonal ``L`` and ``R``.

Layout (rectangular, any number of blocks, padding when sizes do not factor):

* ``R`` holds ``k`` blocks of shape ``q x p`` (array ``(k, q, p)``): the input, zero-padded from
  ``d_in`` to ``k p``, is cut into ``k`` pieces of length ``p`` and each goes through its block.
* ``P1`` regroups the ``k q`` intermediate values: read as an ``(r, l)`` grid (row-major) and
  transposed to ``(l, r)``, so ``l r = k q``.
* ``L`` holds ``l`` blocks of shape ``s x r`` (array ``(l, s, r)``).
* ``P2`` reads the ``l s`` outputs as an ``(l, s)`` grid and transposes it to ``(s, l)``; the
  first ``d_out`` entries are the result.

With ``k = l = b`` blocks and ``p = q = r = s = b`` (``n = b^2``) this is the paper's square
Monarch ``P L P^T R`` (the grid transpose is its own inverse). The product is two batched matrix
products and two reshapes: ``2 (k q p + l s r)`` flops per column instead of ``2 d_in d_out``.

Each intermediate value ``c`` (of the ``k q``) joins one input block ``k(c) = c // q`` to one
output block ``l(c) = c % l``, so the submatrix of ``M`` between input block ``κ`` and output
block ``λ`` is a sum of one rank-1 term per joining value: the structure behind the analytic
projection :func:`monarch_project`.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from .base import LinearOperator, combine
from .dense import Dense

__all__ = ["Monarch", "monarch_shapes", "monarch_project"]


def monarch_shapes(d_in: int, d_out: int, nblocks: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Block shapes ``((k, q, p), (l, s, r))`` of a ``d_out x d_in`` Monarch with ``nblocks`` blocks.

    ``k = l = nblocks``, ``p = ceil(d_in / nblocks)``, ``s = ceil(d_out / nblocks)`` and the
    inner size ``q = r = max(p, s)`` rounded so the ``k q`` intermediate values fill an
    ``(r, l)`` grid (the rule of the Monarch paper's code: the larger side sets the inner width).
    """
    for name, v in (("d_in", d_in), ("d_out", d_out), ("nblocks", nblocks)):
        if not (isinstance(v, (int, np.integer)) and v >= 1):
            raise ValueError(f"monarch_shapes: {name} must be a positive integer, got {v!r}")
    if nblocks > min(d_in, d_out):
        raise ValueError(f"monarch_shapes: nblocks = {nblocks} exceeds min(d_in, d_out) = {min(d_in, d_out)}")
    p = -(-d_in // nblocks)
    s = -(-d_out // nblocks)
    q = max(p, s)
    return (nblocks, q, p), (nblocks, s, q)


class Monarch(LinearOperator):
    """The Monarch matrix ``P2 L P1 R`` (module docstring), ``d_out x d_in``.

    * ``R``: array ``(k, q, p)``; ``L``: array ``(l, s, r)`` with ``l r = k q``.
    * ``d_in <= k p`` (the input is zero-padded) and ``d_out <= l s`` (the output is cut);
      both default to the full sizes.

    Parameters ``k q p + l s r``; a product with ``c`` columns costs ``2 c (k q p + l s r)``
    flops and O(c (k q + l s)) memory.
    """

    _leaves = ("R", "L")

    def __init__(self, R, L, d_in: int | None = None, d_out: int | None = None, annotations=()):
        for name, a in (("R", R), ("L", L)):
            if getattr(a, "ndim", None) != 3:
                raise ShapeError(f"Monarch: {name} must be a 3-D array of blocks (nblocks, rows, cols), got shape "
                                 f"{tuple(getattr(a, 'shape', ()))}")
        k, q, p = (int(v) for v in R.shape)
        l_, s, r = (int(v) for v in L.shape)
        if l_ * r != k * q:
            raise ShapeError(
                f"Monarch: R's {k} blocks of {q} rows give {k * q} intermediate values, but L's {l_} blocks of {r} "
                f"columns read {l_ * r}; they must match"
            )
        d_in = k * p if d_in is None else int(d_in)
        d_out = l_ * s if d_out is None else int(d_out)
        if not (1 <= d_in <= k * p and d_in > (k - 1) * p):
            raise ShapeError(f"Monarch: d_in = {d_in} must lie in ({(k - 1) * p}, {k * p}] for {k} input blocks of {p}")
        if not 1 <= d_out <= l_ * s:
            raise ShapeError(f"Monarch: d_out = {d_out} must lie in [1, {l_ * s}] for {l_} output blocks of {s}")
        _, xp, dtype, device = combine((Dense(R.reshape(k * q, p)), Dense(L.reshape(l_ * s, r))), "Monarch factors")
        self.R, self.L = xp.astype(R, dtype), xp.astype(L, dtype)
        self.d_in, self.d_out = d_in, d_out
        super().__init__((d_out, d_in), dtype, xp, device, annotations)

    # ------------------------------------------------------------------ sizes
    @property
    def blocks(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``((k, q, p), (l, s, r))``."""
        return tuple(int(v) for v in self.R.shape), tuple(int(v) for v in self.L.shape)

    @property
    def num_params(self) -> int:
        (k, q, p), (l_, s, r) = self.blocks
        return k * q * p + l_ * s * r

    def flops(self, columns: int = 1) -> int:
        """Multiply-adds counted as 2 flops, for a product with ``columns`` columns."""
        return 2 * columns * self.num_params

    # --------------------------------------------------------------- products
    def _matmat(self, X):
        xp = self.xp
        (k, q, p), (l_, s, r) = self.blocks
        c = X.shape[1]
        if self.d_in < k * p:
            X = xp.concat([X, xp.zeros((k * p - self.d_in, c), X.dtype, xp.device_of(X))], 0)
        Y = xp.einsum("kqp,kpc->kqc", self.R, X.reshape(k, p, c))  # R
        Y = xp.moveaxis(Y.reshape(r, l_, c), 0, 1)  # P1: (r, l) grid -> (l, r)
        Y = xp.einsum("lsr,lrc->lsc", self.L, Y)  # L
        Y = xp.moveaxis(Y, 0, 1).reshape(s * l_, c)  # P2: (l, s) grid -> (s, l)
        return Y[: self.d_out]

    def _rmatmat(self, X):  # X @ M for X (c, d_out)
        xp = self.xp
        (k, q, p), (l_, s, r) = self.blocks
        c = X.shape[0]
        if self.d_out < l_ * s:
            X = xp.concat([X, xp.zeros((c, l_ * s - self.d_out), X.dtype, xp.device_of(X))], 1)
        Y = xp.moveaxis(X.reshape(c, s, l_), 1, 2)  # P2^T: (s, l) -> (l, s)
        Y = xp.einsum("cls,lsr->clr", Y, self.L)  # L^T
        Y = xp.moveaxis(Y, 1, 2).reshape(c, k, q)  # P1^T: (l, r) -> (r, l), read as (k, q)
        Y = xp.einsum("ckq,kqp->ckp", Y, self.R).reshape(c, k * p)  # R^T
        return Y[:, : self.d_in]

    def _matmat_rows(self, X):  # X @ M^T for X (c, d_in): the layer layout, no transposed copy
        if getattr(X, "is_cuda", False) is True:  # CUDA tensors: the Triton kernels (linops.kernels), if switched on
            from ..kernels import cuda_monarch_rows

            if (Y := cuda_monarch_rows(X, self.R, self.L, self.d_out)) is not None:
                return Y
        xp = self.xp
        (k, q, p), (l_, s, r) = self.blocks
        c = X.shape[0]
        if self.d_in < k * p:
            X = xp.concat([X, xp.zeros((c, k * p - self.d_in), X.dtype, xp.device_of(X))], 1)
        Y = xp.einsum("kqp,ckp->ckq", self.R, X.reshape(c, k, p))  # R on each row
        Y = xp.einsum("lsr,crl->csl", self.L, Y.reshape(c, r, l_))  # P1, L and P2 in one contraction
        return Y.reshape(c, s * l_)[:, : self.d_out]

    def to_dense(self):
        return self._matmat(self.xp.eye(self.d_in, self.dtype, self.device))

    # ------------------------------------------------------------ structure
    def factors(self) -> tuple[LinearOperator, ...]:
        """``(P2, L, P1, R)`` as linops operators (permutations and block diagonals), whose
        product is ``M`` when no padding is involved (``d_in = k p``, ``d_out = l s``).

        The exact rules (inverse, log-determinant) of square Monarch matrices go through this
        factorisation: each block-diagonal factor is inverted blockwise.
        """
        from .block import BlockDiag
        from .permutation import Permutation

        if self.d_in != self.R.shape[0] * self.R.shape[2] or self.d_out != self.L.shape[0] * self.L.shape[1]:
            raise ShapeError(f"{self._label()} is padded (d_in or d_out smaller than its blocks): no exact factorisation")
        (k, q, p), (l_, s, r) = self.blocks
        p1 = np.arange(k * q).reshape(r, l_).T.reshape(-1)  # (P1 z)[j r + i] = z[i l + j]
        p2 = np.arange(l_ * s).reshape(l_, s).T.reshape(-1)  # (P2 w)[t l + j] = w[j s + t]
        return (
            Permutation(p2.tolist())._bind(self.xp, self.dtype, self.device),
            BlockDiag(*(Dense(self.L[j]) for j in range(l_))),
            Permutation(p1.tolist())._bind(self.xp, self.dtype, self.device),
            BlockDiag(*(Dense(self.R[i]) for i in range(k))),
        )

    @property
    def is_block_square(self) -> bool:
        """Square blocks and no padding: then every factor is square and ``M`` may be invertible."""
        (k, q, p), (l_, s, r) = self.blocks
        return q == p and s == r and self.d_in == k * p and self.d_out == l_ * s

    def __repr__(self) -> str:
        (k, q, p), (l_, s, r) = self.blocks
        return f"{self._label()[:-1]}; R {k} blocks {q}x{p}, L {l_} blocks {s}x{r}, {self.num_params} parameters)"


def monarch_project(M, nblocks: int | None = None, shapes=None):
    """The Monarch matrix closest to ``M`` in the Frobenius norm, and the relative error.

    ``M`` is a (d_out, d_in) array (numpy, torch or jax); the block shapes come from
    ``monarch_shapes(d_in, d_out, nblocks)`` (default ``nblocks = round(sqrt(d_in))``) or are
    given as ``shapes = ((k, q, p), (l, s, r))``.

    Each pair (input block κ, output block λ) of ``M`` is matched by the rank-``n_{λκ}`` terms
    of the intermediate values joining them (module docstring), and no parameter is shared
    between pairs: the best Monarch is the truncated SVD of every pair's submatrix, the
    analytic projection of Dao et al. (rank 1 per pair in the square case). A pair joined by no
    intermediate value is lost (it counts in the error). Rows and columns past ``d_out`` /
    ``d_in`` (padding) are left out of the fit. Cost: one small SVD per pair.

    Returns ``(Monarch, relative Frobenius error ||M - M_hat|| / ||M||)``.
    """
    from ..backends import backend_of

    xp = backend_of(M)
    if xp is None or getattr(M, "ndim", None) != 2:
        raise ShapeError(f"monarch_project needs a 2-D array, got {type(M).__name__}")
    d_out, d_in = (int(v) for v in M.shape)
    if shapes is None:
        nblocks = nblocks if nblocks is not None else max(1, round(math.sqrt(d_in)))
        shapes = monarch_shapes(d_in, d_out, nblocks)
    (k, q, p), (l_, s, r) = shapes
    if l_ * r != k * q:
        raise ShapeError(f"monarch_project: shapes {shapes} do not chain (l r = {l_ * r} != k q = {k * q})")
    dev = xp.device_of(M)
    # pad to the full grid; padded rows/columns are cut out of each pair's fit below
    Mp = xp.zeros((l_ * s, k * p), M.dtype, dev)
    Mp = xp.index_set(Mp, slice(0, d_out), xp.concat([M, xp.zeros((d_out, k * p - d_in), M.dtype, dev)], 1))
    # output row t l + j belongs to output block j at position t; input column i p + a to block i
    G = xp.moveaxis(Mp.reshape(s, l_, k, p), 0, 1)  # G[j, t, i, a] = M[t l + j, i p + a]
    rows_ok = np.arange(l_ * s).reshape(s, l_).T < d_out  # (l, s): real output rows of each block
    cols_ok = np.arange(k * p).reshape(k, p) < d_in  # (k, p)
    c = np.arange(k * q)
    kk, qq = c // q, c % q  # input block and row of R of each intermediate value
    rr, ll = c // l_, c % l_  # column of L and output block
    R_rows = [[None] * q for _ in range(k)]
    L_cols = [[None] * r for _ in range(l_)]
    for j in range(l_):
        for i in range(k):
            joined = np.flatnonzero((ll == j) & (kk == i))
            ro, co = np.flatnonzero(rows_ok[j]), np.flatnonzero(cols_ok[i])
            if joined.size == 0:
                continue
            B = G[j][:, i][ro][:, co]  # the pair's submatrix (real rows and columns only)
            U, sv, Vh = xp.svd(B)
            m = min(joined.size, sv.shape[0])
            for t_, cidx in enumerate(joined):
                u = xp.zeros((s,), M.dtype, dev)
                v = xp.zeros((p,), M.dtype, dev)
                if t_ < m:
                    root = xp.sqrt(sv[t_])
                    u = xp.index_set(u, xp.asarray(ro, device=dev), U[:, t_] * xp.astype(root, M.dtype))
                    v = xp.index_set(v, xp.asarray(co, device=dev), Vh[t_] * xp.astype(root, M.dtype))
                L_cols[j][rr[cidx]] = u
                R_rows[i][qq[cidx]] = v
    zero_s, zero_p = xp.zeros((s,), M.dtype, dev), xp.zeros((p,), M.dtype, dev)
    R = xp.stack([xp.stack([v if v is not None else zero_p for v in R_rows[i]], 0) for i in range(k)], 0)
    L = xp.stack([xp.stack([u if u is not None else zero_s for u in L_cols[j]], 1) for j in range(l_)], 0)
    out = Monarch(R, L, d_in, d_out)
    diff = out.to_dense() - M
    norm = xp.sqrt(xp.sum(xp.real(xp.conj(M) * M)))
    err = xp.sqrt(xp.sum(xp.real(xp.conj(diff) * diff))) / xp.where(norm > 0, norm, 1 + 0 * norm)
    return out, err
