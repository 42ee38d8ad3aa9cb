"""Banded operators: Triangular (lower or upper) and Tridiagonal."""

from __future__ import annotations

from ..backends import backend_of, common_backend
from ..errors import NotSquareError, ShapeError
from .base import LinearOperator

__all__ = ["Triangular", "Tridiagonal"]


class Triangular(LinearOperator):
    """The lower (or upper) triangle of square ``M``; entries outside it are ignored.

    Solves are triangular substitutions, O(n^2); the determinant is the diagonal's product.
    """

    _leaves = ("M",)

    def __init__(self, M, lower: bool = True):
        xp = backend_of(M)
        if xp is None or getattr(M, "ndim", None) != 2:
            raise ShapeError(f"Triangular needs a 2-D array, got {type(M).__name__}")
        if M.shape[0] != M.shape[1]:
            raise NotSquareError(f"Triangular needs a square array, got shape {tuple(M.shape)}")
        self.M = M
        self.lower = bool(lower)
        super().__init__(M.shape, M.dtype, xp, xp.device_of(M), ())

    # Every use masks the triangle again: a leaf replaced through the pytree protocol (a
    # cotangent, a vmapped batch) need not be triangular, and gradients must not depend on
    # entries the operator ignores. The mask costs O(n^2), the order of a product itself.
    @property
    def triangle(self):
        """The triangle as an array (masked on every use)."""
        return self.xp.tril(self.M) if self.lower else self.xp.triu(self.M)

    def _matmat(self, X):
        return self.triangle @ X

    def _rmatmat(self, X):
        return X @ self.triangle

    def to_dense(self):
        return self.triangle

    def _transpose(self):
        return Triangular(self.M.T, lower=not self.lower)

    def _adjoint(self):
        return Triangular(self.xp.conj(self.M).T, lower=not self.lower)

    def _scale(self, c):
        return Triangular(c * self.M, self.lower)


class Tridiagonal(LinearOperator):
    """The n x n matrix with bands ``lower`` (n-1), ``diag`` (n) and ``upper`` (n-1).

    Products cost O(n k); solves use a tridiagonal (banded) solver, O(n k).
    """

    _leaves = ("lower", "diag", "upper")

    def __init__(self, lower, diag, upper):
        xp = common_backend(backend_of(lower), backend_of(diag), backend_of(upper), what="tridiagonal bands")
        if xp is None or any(getattr(b, "ndim", None) != 1 for b in (lower, diag, upper)):
            raise ShapeError("Tridiagonal needs three 1-D arrays: lower (n-1), diag (n), upper (n-1)")
        n = diag.shape[0]
        if lower.shape[0] != n - 1 or upper.shape[0] != n - 1:
            raise ShapeError(
                f"Tridiagonal bands must have lengths n-1, n, n-1; got {lower.shape[0]}, {n}, {upper.shape[0]}"
            )
        self.lower, self.diag, self.upper = lower, diag, upper
        dtype = xp.result_type(lower.dtype, diag.dtype, upper.dtype)
        tags = ("SelfAdjoint",) if lower is upper and not xp.is_complex(dtype) else ()
        super().__init__((n, n), dtype, xp, xp.device_of(diag), tags)

    def _matmat(self, X):
        xp = self.xp
        Y = self.diag[:, None] * X
        if self.shape[0] == 1:
            return Y
        zero = xp.zeros((1, X.shape[1]), Y.dtype, self.device)
        below = xp.concat([zero, self.lower[:, None] * X[:-1]], 0)
        above = xp.concat([self.upper[:, None] * X[1:], zero], 0)
        return Y + below + above

    def _rmatmat(self, X):
        return self._transpose()._matmat(X.T).T

    def _transpose(self):
        return Tridiagonal(self.upper, self.diag, self.lower)

    def _adjoint(self):
        c = self.xp.conj
        return Tridiagonal(c(self.upper), c(self.diag), c(self.lower))

    def _scale(self, c):
        lower = c * self.lower
        upper = lower if self.upper is self.lower else c * self.upper  # a shared array marks symmetry
        return Tridiagonal(lower, c * self.diag, upper)
