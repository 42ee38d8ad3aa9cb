"""Matrix functions ``f(A)``: ``exp``, ``log``, ``sqrt``, ``isqrt``, ``pow`` and ``apply(f, A)``.

Each returns an operator holding what it needs (eigenvectors, factors), computed once.

* Diagonal / Identity / ``c I``: ``f`` of the diagonal. BlockDiag: blockwise.
* Kronecker of PSD factors: ``(⊗ A_i)^p = ⊗ A_i^p`` (sqrt, isqrt, pow) and
  ``log(⊗ A_i) = ⊕ log A_i`` (a Kronecker sum).
* KroneckerSum: ``exp(⊕ A_i) = ⊗ exp(A_i)`` (the terms commute).
* Self-adjoint operators: ``V f(Λ) V^H`` from ``eigh``, which keeps ``V`` structured
  (a Kronecker product's eigenvectors stay a Kronecker product).
* Others: ``exp`` by the dense matrix exponential (scaling and squaring); the rest by
  ``V f(Λ) V^{-1}`` from ``eig`` (diagonalisable A; real part kept for real A).
* ``alg=lo.Lanczos()`` (self-adjoint A) / ``lo.Arnoldi()`` (any A), which ``Auto`` picks for
  n > ``dense_n`` without a structure rule: ``f(A) b`` by Krylov, applied lazily, nothing dense
  (``KrylovFunction`` in :mod:`.krylov_matfun`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..algorithms import Algorithm, Auto, Eig, Eigh
from ..operators import (
    BlockDiag,
    Dense,
    Diagonal,
    Identity,
    Kronecker,
    KroneckerSum,
    LinearOperator,
    Product,
    ScalarMul,
)
from ._dispatch import generic_methods, when, STRUCTURE, dense_checked, dispatch, require_square
from .eigen import _eig, _eigh

__all__ = ["apply", "exp", "log", "sqrt", "isqrt", "pow"]


@dataclass(frozen=True)
class ScalarFunction:
    """A scalar function applied to eigenvalues: ``f(xp, x)``; ``power`` set for ``x**p``."""

    name: str
    f: Callable[[Any, Any], Any]
    power: float | None = None


_EXP = ScalarFunction("exp", lambda xp, x: xp.exp(x))
_LOG = ScalarFunction("log", lambda xp, x: xp.log(x))


def _power(p) -> ScalarFunction:
    if p == 0.5:
        return ScalarFunction("sqrt", lambda xp, x: xp.sqrt(x), 0.5)
    if p == -0.5:
        return ScalarFunction("isqrt", lambda xp, x: 1 / xp.sqrt(x), -0.5)
    return ScalarFunction(f"pow({p})", lambda xp, x: x**p, p)


def apply(f: Callable, A: LinearOperator, alg: Algorithm = Auto()) -> LinearOperator:
    """``f(A)`` for a function ``f`` mapping a 1-D array of eigenvalues (same backend) to their images."""
    if not callable(f):
        raise TypeError(f"lo.apply(f, A) needs a callable f, got {type(f).__name__}")
    A = require_square(A, "apply")
    return _matfun(A, alg, ScalarFunction(getattr(f, "__name__", "f"), lambda xp, x: f(x)))


def exp(A: LinearOperator, alg: Algorithm = Auto()) -> LinearOperator:
    """The matrix exponential ``exp(A)``."""
    return _matfun(require_square(A, "exp"), alg, _EXP)


def log(A: LinearOperator, alg: Algorithm = Auto()) -> LinearOperator:
    """The principal matrix logarithm (A with no eigenvalues on the closed negative real axis)."""
    return _matfun(require_square(A, "log"), alg, _LOG)


def sqrt(A: LinearOperator, alg: Algorithm = Auto()) -> LinearOperator:
    """The principal square root ``A^{1/2}``."""
    return _matfun(require_square(A, "sqrt"), alg, _power(0.5))


def isqrt(A: LinearOperator, alg: Algorithm = Auto()) -> LinearOperator:
    """The inverse principal square root ``A^{-1/2}``."""
    return _matfun(require_square(A, "isqrt"), alg, _power(-0.5))


def pow(A: LinearOperator, p: float, alg: Algorithm = Auto()) -> LinearOperator:
    """The principal power ``A^p`` for a real exponent ``p``."""
    return _matfun(require_square(A, "pow"), alg, _power(p))


def _result_tags(A, fn):
    tags = set()
    if "SelfAdjoint" in A.annotations:
        tags.add("SelfAdjoint")
        if fn is _EXP or ("PSD" in A.annotations and fn.power is not None):
            tags.add("PSD")
    return tags


def _tag(out, tags):
    from ..annotations import annotate

    return annotate(out, *tags) if tags else out


# --------------------------------------------------------------------------- rules
generic_methods("_matfun", "apply", "lo.Auto(), lo.Eigh(), lo.Eig(), lo.Lanczos() or lo.Arnoldi()", extra=1)


@dispatch
def _matfun(A: LinearOperator, alg: Eigh, fn):
    """f(A) = V f(Λ) V^H for self-adjoint A (V as structured as eigh makes it)."""
    w, V = _eigh(A, alg)
    xp = A.xp
    fw = fn.f(xp, w)
    if not xp.is_complex(fw.dtype) and xp.is_complex(A.dtype):
        fw = xp.astype(fw, A.dtype)
    return _tag(Product(V, Diagonal(fw), V.H), _result_tags(A, fn))


@dispatch
def _matfun(A: LinearOperator, alg: Eig, fn):
    """exp: dense expm; otherwise V f(Λ) V^{-1} from eig (real part for real A)."""
    xp = A.xp
    M = dense_checked(A, False, fn.name)
    if fn is _EXP:
        return Dense(xp.expm(M))
    w, V = _eig(Dense(M), alg)
    Vd = V.to_dense()
    F = Vd @ (fn.f(xp, w)[:, None] * xp.solve(Vd, xp.eye(A.shape[0], Vd.dtype, A.device)))
    return Dense(F if xp.is_complex(A.dtype) else xp.real(F))


def _diagonal_fn(A, d, fn):
    return Diagonal(fn.f(A.xp, d))


@dispatch(precedence=STRUCTURE)
def _matfun(A: Diagonal, alg: Algorithm, fn):
    return _diagonal_fn(A, A.d, fn)


@dispatch(precedence=STRUCTURE)
def _matfun(A: Identity, alg: Algorithm, fn):
    return _diagonal_fn(A, A.xp.ones((A.shape[0],), A.dtype, A.device), fn)


@dispatch(precedence=STRUCTURE)
def _matfun(A: ScalarMul, alg: Algorithm, fn):
    return _diagonal_fn(A, A.c * A.xp.ones((A.shape[0],), A.dtype, A.device), fn)


@dispatch(precedence=STRUCTURE)
def _matfun(A: BlockDiag, alg: Algorithm, fn):
    return BlockDiag(*(_matfun(require_square(b, fn.name), alg, fn) for b in A.blocks))


def _generic(A, alg, fn):
    """The eigen route for a Kronecker / KroneckerSum a structure rule could not finish: under
    Auto a self-adjoint one goes to ``Eigh`` whatever its size, since its eigendecomposition is
    structured (the factors'), exact and cheap; Auto's size switch to Lanczos is for operators
    without such structure."""
    if isinstance(alg, Auto) and "SelfAdjoint" in A.annotations:
        alg = Eigh()
    return _matfun.invoke(LinearOperator, type(alg), object)(A, alg, fn)


def _factorwise(A, alg, fn):
    """Kronecker of PSD factors under a power or log; the rest goes the eigen route."""
    fs = A.factors
    if all("PSD" in f.annotations for f in fs):
        if fn.power is not None:
            return Kronecker(*(_matfun(f, alg, fn) for f in fs))
        if fn is _LOG:
            return KroneckerSum(*(_matfun(f, alg, fn) for f in fs))
    return _generic(A, alg, fn)


@dispatch(precedence=STRUCTURE)
@when(lambda A: all("PSD" in f.annotations for f in A.factors), "PSD factors (for powers and log)", _generic)
def _matfun(A: Kronecker, alg: Algorithm, fn):
    """(⊗ A_i)^p = ⊗ A_i^p and log(⊗ A_i) = ⊕ log A_i, for PSD factors."""
    return _factorwise(A, alg, fn)


@dispatch(precedence=STRUCTURE)
def _matfun(A: KroneckerSum, alg: Algorithm, fn):
    """exp(⊕ A_i) = ⊗ exp(A_i) (other functions: the eigen route)."""
    if fn is _EXP:
        return Kronecker(*(_matfun(f, alg, fn) for f in A.factors))
    return _generic(A, alg, fn)
