"""Kronecker products ``A_1 ⊗ ... ⊗ A_p`` and Kronecker sums ``A_1 ⊕ ... ⊕ A_p``.

Both act on a vector reshaped to the tensor of the factors' sizes, one factor per axis,
so a product costs ``sum_i m_i n_i N / n_i`` rather than ``N^2`` (N = prod n_i).
The order is numpy's ``kron``: the last factor varies fastest.
"""

from __future__ import annotations

from math import prod

from ..errors import NotSquareError
from .base import LinearOperator, combine

__all__ = ["Kronecker", "KroneckerSum"]


def _shared(ops, keep):
    out = set(keep)
    for op in ops:
        out &= op.annotations
    return out


def _factors(cls_name, factors):
    if len(factors) == 1 and isinstance(factors[0], (list, tuple)):
        factors = tuple(factors[0])
    if len(factors) < 1:
        raise ValueError(f"{cls_name} needs at least one factor")
    for f in factors:
        if not isinstance(f, LinearOperator):
            raise TypeError(f"{cls_name} takes LinearOperators, got {type(f).__name__} (wrap arrays in lo.Dense)")
    return combine(factors, f"factors of a {cls_name}")


def kron_apply(applies, n_in, n_out, X):
    """Apply ``⊗_i F_i`` to ``X`` (N_in, k), where ``applies[i]`` maps (n_in[i], R) -> (n_out[i], R).

    One pass per factor: the factor's axis is brought to the front, multiplied, and rotated
    to the back (one reshape-transpose copy per factor).
    """
    k = X.shape[1]
    T = X.reshape(n_in[0], -1)
    for i, apply in enumerate(applies):
        Y = apply(T)  # (n_out[i], R)
        nxt = n_in[i + 1] if i + 1 < len(applies) else k
        T = Y.reshape(n_out[i], -1).T.reshape(nxt, -1)
    # axes now (k, m_1, ..., m_p)
    return T.reshape(k, -1).T


class Kronecker(LinearOperator):
    """``A_1 ⊗ A_2 ⊗ ... ⊗ A_p`` for any number of (possibly rectangular) factors."""

    _leaves = ("factors",)

    def __init__(self, *factors: LinearOperator):
        factors, xp, dtype, device = _factors("Kronecker", factors)
        self.factors = factors
        m = prod(f.shape[0] for f in factors)
        n = prod(f.shape[1] for f in factors)
        super().__init__((m, n), dtype, xp, device, _shared(factors, ("PSD", "SelfAdjoint", "Unitary")))

    def _matmat(self, X):
        fs = self.factors
        return kron_apply([f._matmat for f in fs], [f.shape[1] for f in fs], [f.shape[0] for f in fs], X)

    def _rmatmat(self, X):
        fs = self.factors
        applies = [lambda T, f=f: f._rmatmat(T.T).T for f in fs]
        return kron_apply(applies, [f.shape[0] for f in fs], [f.shape[1] for f in fs], X.T).T

    def to_dense(self):
        out = self.factors[0].to_dense()
        for f in self.factors[1:]:
            out = self.xp.kron(out, f.to_dense())
        return out

    def _transpose(self):
        return Kronecker(*(f.T for f in self.factors))

    def _adjoint(self):
        return Kronecker(*(f.H for f in self.factors))

    def _scale(self, c):
        return Kronecker(c * self.factors[0], *self.factors[1:])  # `c * f` keeps f's annotations

    def _compose_same(self, other):
        """Mixed product: ``(A ⊗ B)(C ⊗ D) = AC ⊗ BD`` when the factor shapes chain."""
        a, b = self.factors, other.factors
        if len(a) != len(b) or any(x.shape[1] != y.shape[0] for x, y in zip(a, b)):
            return None
        return Kronecker(*(x @ y for x, y in zip(a, b)))


class KroneckerSum(LinearOperator):
    """``A_1 ⊕ ... ⊕ A_p = Σ_i I ⊗ .. ⊗ A_i ⊗ .. ⊗ I`` for square factors (e.g. a grid Laplacian)."""

    _leaves = ("factors",)

    def __init__(self, *factors: LinearOperator):
        factors, xp, dtype, device = _factors("KroneckerSum", factors)
        for f in factors:
            if not f.is_square:
                raise NotSquareError(f"KroneckerSum needs square factors, got {f._label()}")
        self.factors = factors
        n = prod(f.shape[0] for f in factors)
        super().__init__((n, n), dtype, xp, device, _shared(factors, ("PSD", "SelfAdjoint")))

    def _apply(self, X, method):
        sizes = [f.shape[0] for f in self.factors]
        k = X.shape[1]
        T = X.reshape(*sizes, k)
        out = None
        xp = self.xp
        for i, f in enumerate(self.factors):
            Ti = xp.moveaxis(T, i, 0).reshape(sizes[i], -1)
            Yi = getattr(f, method)(Ti) if method == "_matmat" else f._rmatmat(Ti.T).T
            Yi = xp.moveaxis(Yi.reshape(sizes[i], *sizes[:i], *sizes[i + 1 :], k), 0, i)
            out = Yi if out is None else out + Yi
        return out.reshape(-1, k)

    def _matmat(self, X):
        return self._apply(X, "_matmat")

    def _rmatmat(self, X):
        return self._apply(X.T, "_rmatmat").T

    def to_dense(self):
        xp = self.xp
        sizes = [f.shape[0] for f in self.factors]
        out = None
        for i, f in enumerate(self.factors):
            left = xp.eye(prod(sizes[:i]), self.dtype, self.device)
            right = xp.eye(prod(sizes[i + 1 :]), self.dtype, self.device)
            term = xp.kron(xp.kron(left, xp.astype(f.to_dense(), self.dtype)), right)
            out = term if out is None else out + term
        return out

    def _transpose(self):
        return KroneckerSum(*(f.T for f in self.factors))

    def _adjoint(self):
        return KroneckerSum(*(f.H for f in self.factors))

    def _scale(self, c):
        return KroneckerSum(*(c * f for f in self.factors))  # `c * f` keeps f's annotations (SelfAdjoint, PSD for c > 0)
