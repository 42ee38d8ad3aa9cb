"""LowRank: ``U V^H`` from thin factors, never formed."""

from __future__ import annotations

from ..backends import backend_of, common_backend
from ..errors import ShapeError
from .base import LinearOperator, combine

__all__ = ["LowRank"]


class LowRank(LinearOperator):
    """``U @ V^H`` for ``U`` (m, r) and ``V`` (n, r). Products cost O((m + n) r k).

    ``LowRank(U)`` (V omitted) is ``U U^H``, annotated PSD. Added to a diagonal, identity
    or scalar operator it is solved by Woodbury's identity and its logdet by the matrix
    determinant lemma (see :mod:`linops.functions.inverse`).
    """

    _leaves = ("U", "V")

    def __init__(self, U, V=None):
        psd = V is None
        V = U if V is None else V
        xp = common_backend(backend_of(U), backend_of(V), what="low-rank factors")
        if xp is None or U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
            raise ShapeError(
                f"LowRank needs 2-D arrays U (m, r) and V (n, r) of equal rank r, got shapes "
                f"{tuple(getattr(U, 'shape', ()))} and {tuple(getattr(V, 'shape', ()))}"
            )
        self.U, self.V = U, V
        tags = ("PSD", "SelfAdjoint") if psd else ()
        super().__init__((U.shape[0], V.shape[0]), xp.result_type(U.dtype, V.dtype), xp, xp.device_of(U), tags)

    @property
    def rank(self) -> int:
        return self.U.shape[1]

    def _matmat(self, X):
        return self.U @ (self.xp.conj(self.V).T @ X)

    def _rmatmat(self, X):
        return (X @ self.U) @ self.xp.conj(self.V).T

    def to_dense(self):
        return self.U @ self.xp.conj(self.V).T

    def _transpose(self):
        conj = self.xp.conj
        return LowRank(conj(self.V), conj(self.U)) if self.U is not self.V else LowRank(conj(self.U))

    def _adjoint(self):
        return self if self.U is self.V else LowRank(self.V, self.U)

    def _scale(self, c):
        return LowRank(c * self.U, self.V)

    def _add_same(self, other):
        (a, b), xp, *_ = combine((self, other), "terms of a sum")
        return LowRank(xp.concat([a.U, b.U], 1), xp.concat([a.V, b.V], 1))
