"""Dense: an operator holding its matrix as an array (numpy, torch or jax)."""

from __future__ import annotations

from ..backends import backend_of
from ..errors import ShapeError
from .base import LinearOperator, combine, scaled_annotations

__all__ = ["Dense"]


class Dense(LinearOperator):
    """An ``m x n`` matrix ``M`` as an operator. Products cost O(m n k)."""

    _leaves = ("M",)

    def __init__(self, M, annotations=()):
        xp = backend_of(M)
        if xp is None or not xp.is_array(M):
            raise TypeError(f"Dense needs a numpy, torch or jax array, got {type(M).__name__}")
        if M.ndim != 2:
            raise ShapeError(
                f"Dense needs a 2-D array, got shape {tuple(M.shape)}; operators are 2-D "
                "(batch them with jax.vmap / torch.func.vmap or lo.BlockDiag)"
            )
        self.M = M
        super().__init__(M.shape, M.dtype, xp, xp.device_of(M), annotations)

    def _matmat(self, X):
        return self.M @ X

    def _matvec(self, x):
        return self.M @ x

    def _rmatmat(self, X):
        return X @ self.M

    def to_dense(self):
        return self.M

    # .T and .H stay lazy (Transpose/Adjoint views) so that ``A.H @ A`` is recognised as PSD.

    def _slice(self, rows, cols):
        return Dense(self.M[rows][:, cols])

    def _add_same(self, other):
        (a, b), *_ = combine((self, other), "terms of a sum")
        return Dense(a.M + b.M, self.annotations & other.annotations & {"PSD", "SelfAdjoint"})

    def _scale(self, c):
        return Dense(c * self.M, scaled_annotations(self.annotations, c))
