"""Block Tensor-Train matrices with two cores (Qiu et al., ICML 2024), rank ``r``.

With the input read as an ``(n1, n2)`` grid (``x[i1 n2 + i2]``) and the output as an
``(m1, m2)`` grid (``y[o1 m2 + o2]``)::

    W[(o1, o2), (i1, i2)] = Σ_α  L[o2, o1, i1, α] R[i1, o2, α, i2]

with cores ``R`` (n1, m2, r, n2) and ``L`` (m2, m1, n1, r). The product is two einsums::

    Z[i1, o2, α] = Σ_i2 R[i1, o2, α, i2] x[i1, i2]         n1 m2 r n2 multiply-adds
    y[o1, o2]    = Σ_{i1, α} L[o2, o1, i1, α] Z[i1, o2, α]  m2 m1 n1 r multiply-adds

Every (output block o2, input block i1) submatrix ``W[(:, o2), (i1, :)]`` is a rank-``r`` matrix,
and no parameter is shared between submatrices. Rank 1 with ``n1 = m2 = sqrt(d)`` is the
square Monarch matrix; in general BTT(r) is the Monarch matrix of :meth:`BTT.as_monarch`
(inner width ``m2 r``), which supplies the exact rules and the projection.
"""

from __future__ import annotations

import math

from ..errors import ShapeError
from .base import LinearOperator, combine
from .dense import Dense
from .monarch import Monarch, monarch_project

__all__ = ["BTT", "btt_project", "btt_shapes"]


def btt_shapes(d_in: int, d_out: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Grid sizes ``((n1, n2), (m1, m2))`` for a ``d_out x d_in`` BTT: near-square factors,
    ``n1 = round(sqrt(d_in))``, ``n2 = ceil(d_in / n1)`` (padding if ``d_in`` does not factor),
    and the same for the output."""
    for name, v in (("d_in", d_in), ("d_out", d_out)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"btt_shapes: {name} must be a positive integer, got {v!r}")
    n1 = max(1, round(math.sqrt(d_in)))
    m2 = max(1, round(math.sqrt(d_out)))
    return (n1, -(-d_in // n1)), (-(-d_out // m2), m2)


class BTT(LinearOperator):
    """The two-core Block Tensor-Train matrix (module docstring), ``d_out x d_in``.

    * ``R``: (n1, m2, r, n2); ``L``: (m2, m1, n1, r). ``d_in <= n1 n2`` (zero-padded input),
      ``d_out <= m1 m2`` (cut output), defaulting to the full sizes.

    Parameters ``r n1 m2 (n2 + m1)``; a product with ``c`` columns costs
    ``2 c r n1 m2 (n2 + m1)`` flops.
    """

    _leaves = ("R", "L")

    def __init__(self, R, L, d_in: int | None = None, d_out: int | None = None, annotations=()):
        if getattr(R, "ndim", None) != 4 or getattr(L, "ndim", None) != 4:
            raise ShapeError(
                "BTT: cores must be 4-D, R (n1, m2, r, n2) and L (m2, m1, n1, r); got shapes "
                f"{tuple(getattr(R, 'shape', ()))} and {tuple(getattr(L, 'shape', ()))}"
            )
        n1, m2, r, n2 = (int(v) for v in R.shape)
        if (int(L.shape[0]), int(L.shape[2]), int(L.shape[3])) != (m2, n1, r):
            raise ShapeError(
                f"BTT: R of shape {tuple(R.shape)} needs L of shape ({m2}, m1, {n1}, {r}), got {tuple(L.shape)}"
            )
        m1 = int(L.shape[1])
        d_in = n1 * n2 if d_in is None else int(d_in)
        d_out = m1 * m2 if d_out is None else int(d_out)
        if not (n1 * n2 - n2 < d_in <= n1 * n2):
            raise ShapeError(f"BTT: d_in = {d_in} must lie in ({n1 * n2 - n2}, {n1 * n2}] for an input grid {n1}x{n2}")
        if not 1 <= d_out <= m1 * m2:
            raise ShapeError(f"BTT: d_out = {d_out} must lie in [1, {m1 * m2}] for an output grid {m1}x{m2}")
        _, xp, dtype, device = combine((Dense(R.reshape(n1 * m2, r * n2)), Dense(L.reshape(m2 * m1, n1 * r))), "BTT cores")
        self.R, self.L = xp.astype(R, dtype), xp.astype(L, dtype)
        self.d_in, self.d_out = d_in, d_out
        super().__init__((d_out, d_in), dtype, xp, device, annotations)

    @property
    def grid(self) -> tuple[tuple[int, int], tuple[int, int], int]:
        """``((n1, n2), (m1, m2), r)``."""
        n1, m2, r, n2 = (int(v) for v in self.R.shape)
        return (n1, n2), (int(self.L.shape[1]), m2), r

    @property
    def num_params(self) -> int:
        (n1, n2), (m1, m2), r = self.grid
        return r * n1 * m2 * (n2 + m1)

    def flops(self, columns: int = 1) -> int:
        """Multiply-adds counted as 2 flops, for a product with ``columns`` columns."""
        return 2 * columns * self.num_params

    def _matmat(self, X):
        xp = self.xp
        (n1, n2), (m1, m2), r = self.grid
        c = X.shape[1]
        if self.d_in < n1 * n2:
            X = xp.concat([X, xp.zeros((n1 * n2 - self.d_in, c), X.dtype, xp.device_of(X))], 0)
        Z = xp.einsum("iuaj,ijc->iuac", self.R, X.reshape(n1, n2, c))
        Y = xp.einsum("uoia,iuac->ouc", self.L, Z).reshape(m1 * m2, c)
        return Y[: self.d_out]

    def _rmatmat(self, X):  # X @ W for X (c, d_out)
        xp = self.xp
        (n1, n2), (m1, m2), r = self.grid
        c = X.shape[0]
        if self.d_out < m1 * m2:
            X = xp.concat([X, xp.zeros((c, m1 * m2 - self.d_out), X.dtype, xp.device_of(X))], 1)
        Z = xp.einsum("cou,uoia->ciua", X.reshape(c, m1, m2), self.L)
        Y = xp.einsum("ciua,iuaj->cij", Z, self.R).reshape(c, n1 * n2)
        return Y[:, : self.d_in]

    def _matmat_rows(self, X):  # X @ W^T for X (c, d_in): the layer layout, no transposed copy
        if getattr(X, "is_cuda", False) is True:  # CUDA tensors: the Triton kernels (linops.kernels), if switched on
            from ..kernels import cuda_btt_rows

            if (Y := cuda_btt_rows(X, self.R, self.L, self.d_out)) is not None:
                return Y
        xp = self.xp
        (n1, n2), (m1, m2), r = self.grid
        c = X.shape[0]
        if self.d_in < n1 * n2:
            X = xp.concat([X, xp.zeros((c, n1 * n2 - self.d_in), X.dtype, xp.device_of(X))], 1)
        Z = xp.einsum("iuaj,cij->ciua", self.R, X.reshape(c, n1, n2))
        Y = xp.einsum("uoia,ciua->cou", self.L, Z).reshape(c, m1 * m2)
        return Y[:, : self.d_out]

    def to_dense(self):
        return self._matmat(self.xp.eye(self.d_in, self.dtype, self.device))

    def as_monarch(self) -> Monarch:
        """The same matrix as a :class:`Monarch` with ``n1`` input blocks of ``m2 r x n2`` and ``m2``
        output blocks of ``m1 x n1 r`` (a reshape of the cores; differentiable)."""
        xp = self.xp
        (n1, n2), (m1, m2), r = self.grid
        R = xp.moveaxis(self.R, 2, 1).reshape(n1, r * m2, n2)  # row α m2 + o2 of input block i1
        L = self.L.reshape(m2, m1, n1 * r)  # column i1 r + α of output block o2
        return Monarch(R, L, self.d_in, self.d_out, self.annotations)

    def __repr__(self) -> str:
        (n1, n2), (m1, m2), r = self.grid
        return f"{self._label()[:-1]}; rank {r}, input grid {n1}x{n2}, output grid {m1}x{m2}, {self.num_params} parameters)"


def btt_project(M, rank: int, grid=None):
    """The rank-``rank`` BTT closest to ``M`` (d_out, d_in) in the Frobenius norm, and the relative error.

    ``grid = ((n1, n2), (m1, m2))`` defaults to :func:`btt_shapes`. Every (output block,
    input block) submatrix is replaced by its best rank-``rank`` approximation (truncated SVD);
    the submatrices share no parameters, so this is the optimal projection, and it recovers a
    BTT matrix exactly. (A two-core TT is the special BTT whose block factors do not depend on
    the other grid index; TT-SVD is :func:`linops.tt_project`.) Returns ``(BTT, relative error)``.
    """
    if not (isinstance(rank, int) and rank >= 1):
        raise ValueError(f"btt_project: rank must be a positive integer, got {rank!r}")
    d_out, d_in = (int(v) for v in M.shape)
    (n1, n2), (m1, m2) = grid if grid is not None else btt_shapes(d_in, d_out)
    mon, err = monarch_project(M, shapes=((n1, rank * m2, n2), (m2, m1, n1 * rank)))
    from ..backends import backend_of

    xp = backend_of(M)
    R = xp.moveaxis(mon.R.reshape(n1, rank, m2, n2), 1, 2)
    L = mon.L.reshape(m2, m1, n1, rank)
    return BTT(R, L, d_in, d_out), err
