"""Permutation: ``(P x)_i = x_{perm[i]}``; unitary, so its inverse is its transpose."""

from __future__ import annotations

import numpy as np

from ..backends import backend_of
from ..errors import ShapeError
from .base import LinearOperator

__all__ = ["Permutation"]


class Permutation(LinearOperator):
    """The permutation matrix with ``P @ x == x[perm]``. Products are gathers, O(n k).

    Built from a list or range it is weakly typed (works on every backend); from an
    array it takes that array's backend.
    """

    _leaves = ("perm", "inverse_perm")

    def __init__(self, perm, inverse_perm=None, dtype=None):
        weak = isinstance(perm, (list, tuple, range))
        if weak:
            perm = np.asarray(perm, dtype=np.int64)
        xp = backend_of(perm)
        if xp is None or getattr(perm, "ndim", None) != 1:
            raise ShapeError(f"Permutation needs a 1-D integer array, got {type(perm).__name__}")
        n = perm.shape[0]
        if inverse_perm is None:
            if xp.is_concrete(perm):
                p = xp.to_numpy(perm)
                if not np.array_equal(np.sort(p), np.arange(n)):
                    raise ValueError(f"Permutation: {p.tolist() if n <= 20 else 'the index array'} is not a permutation of 0..{n - 1}")
            inverse_perm = xp.argsort(perm)
        self.perm, self.inverse_perm = perm, inverse_perm
        object.__setattr__(self, "_weak", weak)
        if dtype is not None:
            dtype = xp.as_dtype(dtype)
        else:
            dtype = np.dtype(np.float64) if weak or xp.name == "numpy" else xp.default_float()
        super().__init__((n, n), dtype, xp, xp.device_of(perm), ("Unitary",))

    def _matmat(self, X):
        return X[self.perm]

    def _rmatmat(self, X):
        return X[:, self.inverse_perm]

    def to_dense(self):
        return self.xp.eye(self.shape[0], self.dtype, self.device)[self.perm]

    def _transpose(self):
        if self._weak:
            return Permutation(self.inverse_perm.tolist())
        return Permutation(self.inverse_perm, self.perm, self.dtype)

    _adjoint = _transpose

    def _bind(self, xp, dtype, device):
        return Permutation(xp.asarray(self.perm, device=device), xp.asarray(self.inverse_perm, device=device), dtype)
