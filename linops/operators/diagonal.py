"""Diagonal-like operators: Diagonal, Identity, ScalarMul (c I) and Zero.

Identity, ScalarMul with a Python scalar, and Zero are *weakly typed* when built
without a backend dtype: like Python scalars they adopt the backend, dtype and
device of the operators they are combined with (``Dense(torch_M) + Identity(n)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import backend_named, backend_of
from ..errors import ShapeError
from .base import LinearOperator, combine, is_scalar

__all__ = ["Diagonal", "Identity", "ScalarMul", "Zero"]


def _weak_dtype(dtype, backend):
    """(backend or None, dtype): a torch/jax dtype, or an explicit backend, makes the operator strong."""
    if backend is not None:
        be = backend_named(backend) if isinstance(backend, str) else backend
        return be, be.as_dtype(dtype) if dtype is not None else be.default_float()
    if dtype is None:
        return None, np.dtype(np.float64)
    be = backend_of(dtype)
    if be is None or be.name == "numpy":
        return None, np.dtype(dtype)
    return be, be.as_dtype(dtype)


class Diagonal(LinearOperator):
    """``diag(d)`` for a 1-D array ``d`` of length n. Products cost O(n k)."""

    _leaves = ("d",)

    def __init__(self, d):
        xp = backend_of(d)
        if xp is None or getattr(d, "ndim", None) != 1:
            raise ShapeError(f"Diagonal needs a 1-D array, got {type(d).__name__} of shape {getattr(d, 'shape', None)}")
        self.d = d
        n = d.shape[0]
        tags = () if xp.is_complex(d.dtype) else ("SelfAdjoint",)
        super().__init__((n, n), d.dtype, xp, xp.device_of(d), tags)

    def _matmat(self, X):
        return self.d[:, None] * X

    def _rmatmat(self, X):
        return X * self.d[None, :]

    def to_dense(self):
        return self.xp.diag(self.d)

    def _transpose(self):
        return self

    def _adjoint(self):
        return Diagonal(self.xp.conj(self.d))

    def _scale(self, c):
        return Diagonal(c * self.d)

    def _slice(self, rows, cols):
        if isinstance(rows, slice) and isinstance(cols, slice) and rows == cols:
            return Diagonal(self.d[rows])
        return None

    def _add_same(self, other):
        (a, b), *_ = combine((self, other), "terms of a sum")
        return Diagonal(a.d + b.d)

    def _compose_same(self, other):
        (a, b), *_ = combine((self, other), "factors of a product")
        return Diagonal(a.d * b.d)


class _Weak(LinearOperator):
    """Shared machinery of the weakly typed diagonal operators."""

    def __init__(self, shape, dtype, device, tags, backend=None):
        xp, dt = _weak_dtype(dtype, backend)
        object.__setattr__(self, "_weak", xp is None)
        super().__init__(shape, dt, xp, device if xp is not None else None, tags)

    def _transpose(self):
        return self


class Identity(_Weak):
    """The n x n identity. Products are free (they return their input).

    Weakly typed unless ``dtype`` is a torch/jax dtype or ``backend`` ("numpy", "torch",
    "jax") is given.
    """

    def __init__(self, n: int, dtype: Any = None, device: Any = None, backend: Any = None):
        super().__init__((n, n), dtype, device, ("PSD", "SelfAdjoint", "Unitary"), backend)

    def _matmat(self, X):
        return X

    def _rmatmat(self, X):
        return X

    def to_dense(self):
        return self.xp.eye(self.shape[0], self.dtype, self.device)

    def _adjoint(self):
        return self

    def _scale(self, c):
        return ScalarMul(c, self.shape[0], like=self)

    def _bind(self, xp, dtype, device):
        return Identity(self.shape[0], dtype, device, backend=xp)


class ScalarMul(_Weak):
    """``c I`` (n x n) for a scalar ``c`` (a Python number or a 0-d array that gradients can reach)."""

    _leaves = ("c",)

    def __init__(self, c, n: int, dtype: Any = None, like: LinearOperator | None = None, device: Any = None,
                 backend: Any = None):
        if not is_scalar(c):
            raise TypeError(f"ScalarMul needs a scalar, got {type(c).__name__} of shape {getattr(c, 'shape', None)}")
        self.c = c
        be = backend_of(c)
        if like is not None and not like._weak:
            dtype, device, backend = like.dtype, like.device, like.xp
        elif be is not None and be.name != "numpy" and dtype is None:
            dtype, device, backend = c.dtype, be.device_of(c), be
        if dtype is None and isinstance(c, complex):
            dtype = np.complex128
        tags = []
        if isinstance(c, (int, float, np.floating, np.integer)):
            tags.append("SelfAdjoint")
            if c > 0:
                tags.append("PSD")
        super().__init__((n, n), dtype, device, tags, backend)

    def _matmat(self, X):
        return self.c * X

    _rmatmat = _matmat

    def to_dense(self):
        return self.c * self.xp.eye(self.shape[0], self.dtype, self.device)

    def _adjoint(self):
        c = self.c
        c = c.conjugate() if isinstance(c, complex) else self.xp.conj(c) if backend_of(c) else c
        return ScalarMul(c, self.shape[0], like=self)

    def _scale(self, c):
        return ScalarMul(c * self.c, self.shape[0], like=self)

    def _bind(self, xp, dtype, device):
        c = self.c
        if isinstance(c, complex) and not xp.is_complex(dtype):
            dtype = xp.complex_dtype(dtype)
        return ScalarMul(c, self.shape[0], dtype=dtype, device=device, backend=xp)


class Zero(_Weak):
    """The m x n zero operator."""

    def __init__(self, m: int, n: int | None = None, dtype: Any = None, device: Any = None, backend: Any = None):
        n = m if n is None else n
        super().__init__((m, n), dtype, device, ("PSD", "SelfAdjoint") if m == n else (), backend)

    def _matmat(self, X):
        return self.xp.zeros((self.shape[0], X.shape[1]), X.dtype, self.device) if not self._weak else _zeros_like(X, self.shape[0], 0)

    def _rmatmat(self, X):
        return self.xp.zeros((X.shape[0], self.shape[1]), X.dtype, self.device) if not self._weak else _zeros_like(X, self.shape[1], 1)

    def to_dense(self):
        return self.xp.zeros(self.shape, self.dtype, self.device)

    def _transpose(self):
        return Zero(self.shape[1], self.shape[0], self.dtype, self.device, None if self._weak else self.xp)

    _adjoint = _transpose

    def _scale(self, c):
        return self

    def _bind(self, xp, dtype, device):
        return Zero(*self.shape, dtype, device, backend=xp)


def _zeros_like(X, size, axis):
    xp = backend_of(X)
    shape = (size, X.shape[1]) if axis == 0 else (X.shape[0], size)
    return xp.zeros(shape, X.dtype, xp.device_of(X))
