"""The operator algebra: Sum, Product, Adjoint, Transpose, Sliced, and the rules that build them.

``A + B``, ``A @ B`` and ``A[i:j, k:l]`` call :func:`add`, :func:`compose` and
:func:`sliced`, which keep structure where an exact identity allows (the sum of
diagonals is a diagonal, the product of Kronecker products with matching factors is
the Kronecker product of the factor products, ...) and otherwise build a lazy node.
Each operator family states its own identities in ``_add_same`` / ``_compose_same``.
"""

from __future__ import annotations

from typing import Any

from ..backends import backend_of
from ..errors import ShapeError
from .base import LinearOperator, combine, scaled_annotations

__all__ = ["Sum", "Product", "Adjoint", "Transpose", "Sliced", "add", "compose", "sliced"]


def _shared(ops, keep):
    out = set(keep)
    for op in ops:
        out &= op.annotations
    return out


class Sum(LinearOperator):
    """``T_1 + ... + T_p`` for operators of one shape. Products cost the sum of the terms'."""

    _leaves = ("terms",)

    def __init__(self, *terms: LinearOperator):
        flat: list[LinearOperator] = []
        for t in terms:
            if not isinstance(t, LinearOperator):
                raise TypeError(f"Sum takes LinearOperators, got {type(t).__name__}")
            flat.extend(t.terms if isinstance(t, Sum) else (t,))
        if not flat:
            raise ValueError("Sum needs at least one term")
        shape = flat[0].shape
        if any(t.shape != shape for t in flat):
            raise ShapeError("cannot add operators of shapes " + " + ".join(str(t.shape) for t in flat))
        flat, xp, dtype, device = combine(flat, "terms of a sum")
        self.terms = tuple(flat)
        super().__init__(shape, dtype, xp, device, _shared(flat, ("PSD", "SelfAdjoint")))

    def _matmat(self, X):
        out = self.terms[0]._matmat(X)
        for t in self.terms[1:]:
            out = out + t._matmat(X)
        return out

    def _rmatmat(self, X):
        out = self.terms[0]._rmatmat(X)
        for t in self.terms[1:]:
            out = out + t._rmatmat(X)
        return out

    def to_dense(self):
        out = self.terms[0].to_dense()
        for t in self.terms[1:]:
            out = out + t.to_dense()
        return out

    def _transpose(self):
        return Sum(*(t.T for t in self.terms))

    def _adjoint(self):
        return Sum(*(t.H for t in self.terms))

    def _scale(self, c):
        return Sum(*(t._scale(c) for t in self.terms))


class Product(LinearOperator):
    """``F_1 @ F_2 @ ... @ F_p`` applied right to left; never multiplied out."""

    _leaves = ("factors",)

    def __init__(self, *factors: LinearOperator):
        flat: list[LinearOperator] = []
        for f in factors:
            if not isinstance(f, LinearOperator):
                raise TypeError(f"Product takes LinearOperators, got {type(f).__name__}")
            flat.extend(f.factors if isinstance(f, Product) else (f,))
        if not flat:
            raise ValueError("Product needs at least one factor")
        for a, b in zip(flat, flat[1:]):
            if a.shape[1] != b.shape[0]:
                raise ShapeError(
                    f"cannot multiply {a._label()} @ {b._label()}: inner sizes {a.shape[1]} and {b.shape[0]} differ"
                )
        flat, xp, dtype, device = combine(flat, "factors of a product")
        self.factors = tuple(flat)
        super().__init__((flat[0].shape[0], flat[-1].shape[1]), dtype, xp, device, _product_annotations(flat))

    def _matmat(self, X):
        for f in reversed(self.factors):
            X = f._matmat(X)
        return X

    def _rmatmat(self, X):
        for f in self.factors:
            X = f._rmatmat(X)
        return X

    def _transpose(self):
        return Product(*(f.T for f in reversed(self.factors)))

    def _adjoint(self):
        return Product(*(f.H for f in reversed(self.factors)))

    def _scale(self, c):
        return Product(self.factors[0]._scale(c), *self.factors[1:])


def _is_adjoint_pair(a: LinearOperator, b: LinearOperator) -> bool:
    """Whether ``a`` is (syntactically) ``b.H``."""
    if isinstance(a, Adjoint) and a.A is b:
        return True
    return isinstance(a, Transpose) and a.A is b and not b.xp.is_complex(b.dtype)


def _product_annotations(fs) -> set:
    from .diagonal import ScalarMul

    if len(fs) == 2 and (_is_adjoint_pair(fs[0], fs[1]) or _is_adjoint_pair(fs[1], fs[0])):
        return {"PSD", "SelfAdjoint"}
    if len(fs) == 2 and isinstance(fs[0], ScalarMul):
        return set(scaled_annotations(fs[1].annotations, fs[0].c))
    tags = _shared(fs, ("Unitary",))
    return tags


class Adjoint(LinearOperator):
    """``A.H`` (conjugate transpose) of a complex operator, applied through ``A``'s products."""

    _leaves = ("A",)

    def __init__(self, A: LinearOperator):
        self.A = A
        super().__init__(A.shape[::-1], A.dtype, A.xp, A.device, A.annotations)

    def _matmat(self, X):
        conj = self.xp.conj
        return conj(self.A._rmatmat(conj(X).T)).T

    def _rmatmat(self, X):
        conj = self.xp.conj
        return conj(self.A._matmat_rows(conj(X)))

    def _matmat_rows(self, X):
        conj = self.xp.conj
        return conj(self.A._rmatmat(conj(X)))

    def to_dense(self):
        return self.xp.conj(self.A.to_dense()).T

    def _adjoint(self):
        return self.A


class Transpose(LinearOperator):
    """``A.T`` applied through ``A``'s products: ``A.T @ X = (X.T @ A).T``, no copies."""

    _leaves = ("A",)

    def __init__(self, A: LinearOperator):
        self.A = A
        super().__init__(A.shape[::-1], A.dtype, A.xp, A.device, A.annotations)

    def _matmat(self, X):
        return self.A._rmatmat(X.T).T

    def _rmatmat(self, X):
        return self.A._matmat_rows(X)

    def _matmat_rows(self, X):
        return self.A._rmatmat(X)

    def to_dense(self):
        return self.A.to_dense().T

    def _transpose(self):
        return self.A


class Sliced(LinearOperator):
    """``A[rows, cols]``: rows and columns chosen by slices or integer index arrays.

    A product embeds the input into A's columns (a scatter) and gathers the output rows;
    it costs one product with ``A``.
    """

    _leaves = ("A", "row_index", "col_index")

    def __init__(self, A: LinearOperator, rows: Any, cols: Any):
        # each of rows/cols is a (start, stop, step) tuple, kept static, or an integer index
        # array, kept as a leaf (so jax.jit traces arrays and never the slice bounds)
        self.A = A
        self.row_index, self.row_range = (None, rows) if isinstance(rows, tuple) else (rows, None)
        self.col_index, self.col_range = (None, cols) if isinstance(cols, tuple) else (cols, None)
        m, n = (_index_len(i) for i in (rows, cols))
        super().__init__((m, n), A.dtype, A.xp, A.device, ())

    @property
    def rows(self):
        return self.row_range if self.row_index is None else self.row_index

    @property
    def cols(self):
        return self.col_range if self.col_index is None else self.col_index

    def _matmat(self, X):
        A, cols = self.A, self.cols
        if not _is_full(cols, A.shape[1]):
            Z = self.xp.zeros((A.shape[1], X.shape[1]), X.dtype, self.device)
            X = self.xp.index_set(Z, _key(cols), X)
        return A._matmat(X)[_key(self.rows)]

    def _rmatmat(self, X):
        A, rows = self.A, self.rows
        if not _is_full(rows, A.shape[0]):
            Z = self.xp.zeros((A.shape[0], X.shape[0]), X.dtype, self.device)
            X = self.xp.index_set(Z, _key(rows), X.T).T
        return A._rmatmat(X)[:, _key(self.cols)]


def _is_full(ix, n) -> bool:
    return isinstance(ix, tuple) and ix == (0, n, 1)


def _key(ix):
    return slice(*ix) if isinstance(ix, tuple) else ix


def _index_len(ix) -> int:
    return len(range(*ix)) if isinstance(ix, tuple) else int(ix.shape[0])


def _normalise_index(ix, n: int, axis: str, xp):
    if isinstance(ix, slice):
        return ix.indices(n)
    if isinstance(ix, (int,)) or (getattr(ix, "ndim", None) == 0):
        raise IndexError(
            f"integer {axis} index {ix!r} would drop a dimension; operators stay 2-D, use {ix}:{ix}+1"
        )
    if isinstance(ix, (list, range)):
        import numpy as np

        ix = np.asarray(ix, dtype=np.int64)
    be = backend_of(ix)
    if be is None or ix.ndim != 1:
        raise IndexError(f"{axis} index must be a slice or a 1-D integer array, got {type(ix).__name__}")
    if str(ix.dtype) in ("bool", "torch.bool"):
        ix = be.asarray(be.to_numpy(ix).nonzero()[0]) if be.name != "jax" else ix.nonzero()[0]
    if be is not xp:
        ix = xp.asarray(be.to_numpy(ix))
    if be.is_concrete(ix) and ix.shape[0]:
        lo, hi = int(ix.min()), int(ix.max())
        if lo < -n or hi >= n:
            raise IndexError(f"{axis} index {hi if hi >= n else lo} is out of range for size {n}")
    return ix


def sliced(A: LinearOperator, key) -> LinearOperator:
    """``A[key]`` for ``key`` = rows or (rows, cols); slices and integer arrays."""
    rows, cols = key if isinstance(key, tuple) else (key, slice(None))
    if isinstance(key, tuple) and len(key) != 2:
        raise IndexError(f"operators are 2-D: got {len(key)} indices")
    r = _normalise_index(rows, A.shape[0], "row", A.xp)
    c = _normalise_index(cols, A.shape[1], "column", A.xp)
    if _is_full(r, A.shape[0]) and _is_full(c, A.shape[1]):
        return A
    out = A._slice(_key(r), _key(c)) if hasattr(A, "_slice") else None
    return out if out is not None else Sliced(A, r, c)


def add(A: LinearOperator, B: LinearOperator) -> LinearOperator:
    """``A + B``, structure kept where an identity allows, else a lazy :class:`Sum`."""
    if A.shape != B.shape:
        raise ShapeError(f"cannot add {A._label()} + {B._label()}: shapes differ")
    from .diagonal import Diagonal, Identity, ScalarMul, Zero

    if isinstance(B, Zero) or isinstance(A, Zero):
        (A, B), *_ = combine((A, B), "terms of a sum")
        return A if isinstance(B, Zero) else B
    if type(A) is type(B) and hasattr(A, "_add_same"):
        out = A._add_same(B)
        if out is not None:
            return out
    diag_like = (Diagonal, Identity, ScalarMul)
    if isinstance(A, diag_like) and isinstance(B, diag_like) and (isinstance(A, Diagonal) or isinstance(B, Diagonal)):
        (A, B), *_ = combine((A, B), "terms of a sum")
        return Diagonal(_diagonal_of(A) + _diagonal_of(B))
    return Sum(A, B)


def _diagonal_of(D):
    from .diagonal import Diagonal, Identity

    if isinstance(D, Diagonal):
        return D.d
    c = 1 if isinstance(D, Identity) else D.c
    return c * D.xp.ones((D.shape[0],), D.dtype, D.device)


def compose(A: LinearOperator, B: LinearOperator) -> LinearOperator:
    """``A @ B``, structure kept where an identity allows, else a lazy :class:`Product`."""
    if A.shape[1] != B.shape[0]:
        raise ShapeError(f"cannot multiply {A._label()} @ {B._label()}: inner sizes {A.shape[1]} and {B.shape[0]} differ")
    from .diagonal import Identity, ScalarMul

    if isinstance(A, (Identity, ScalarMul)) or isinstance(B, (Identity, ScalarMul)):
        (A, B), *_ = combine((A, B), "factors of a product")
        if isinstance(A, Identity):
            return B
        if isinstance(B, Identity):
            return A
        if isinstance(A, ScalarMul):
            return B._scale(A.c)
        return A._scale(B.c)
    if type(A) is type(B) and hasattr(A, "_compose_same"):
        out = A._compose_same(B)
        if out is not None:
            return out
    return Product(A, B)
