"""``diag`` and ``trace``, with their structure rules and their randomised estimators.

* Kronecker: ``diag(⊗ A_i) = ⊗ diag(A_i)``, ``tr(⊗ A_i) = Π tr(A_i)``.
* KroneckerSum: ``diag = Σ_i 1 ⊗ .. ⊗ diag(A_i) ⊗ .. ⊗ 1``, ``tr = Σ_i tr(A_i) N / n_i``.
* Sum: sums. BlockDiag: concatenated. LowRank ``U V^H``: ``Σ_r U ∘ conj(V)``, O(n r).
* Diagonal, Identity, ``c I``, Triangular, Tridiagonal, Permutation: read off.
* Adjoint: conjugate; Transpose: unchanged; ``c A``: c times.
* Otherwise ``Exact``: from the dense matrix (n products with the operator).

Randomised estimators (``alg=`` a :class:`StochasticTrace`: Hutchinson, HutchPlusPlus, XTrace;
or a :class:`StochasticDiag`: DiagonalEstimator, DiagPlusPlus, which ``trace`` also accepts,
summing the diagonal estimate): where the structure rules give the result exactly without
ever reaching a generic (dense) rule (a Diagonal, a Kronecker product of diagonals, a
LowRank, ...), that exact value is returned, with standard error 0. Otherwise the estimator
runs on the operator *as a whole* (its ``_matmat``), never on some parts while others are
exact, because the standard error of such a mix would need the parts' correlations (the
same seed drives every part). The plum rules ``(LinearOperator, StochasticTrace)`` and
``(LinearOperator, StochasticDiag)`` do the same for the operator they are given; a structure
rule that calls them on its parts (``rules.trace`` of a Kronecker of dense factors) combines
per-part estimates, which the public ``trace``/``diag`` never do.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from ..algorithms import Algorithm, Auto, EstimateInfo, Exact
from ..algorithms.estimators import StochasticDiag, StochasticTrace, summary
from ..operators import (
    Adjoint,
    BlockDiag,
    Diagonal,
    Identity,
    Kronecker,
    KroneckerSum,
    LinearOperator,
    LowRank,
    Permutation,
    Product,
    ScalarMul,
    Sum,
    Transpose,
    Triangular,
    Tridiagonal,
)
from ._dispatch import generic_methods, square_parts, when, STRUCTURE, as_operator, dispatch, require_square

__all__ = ["diag", "trace"]

_ESTIMATORS = (StochasticTrace, StochasticDiag)


def diag(A: LinearOperator, alg: Algorithm = Auto(), return_info: bool = False):
    """The main diagonal of ``A`` (length min(m, n)) as an array.

    ``alg=lo.DiagonalEstimator(...)`` or ``lo.DiagPlusPlus(...)`` estimates it from random
    probes (exact instead where the structure rules give it, e.g. a Diagonal or a LowRank).
    ``return_info=True`` returns ``(value, EstimateInfo)``: ``info.stderr`` holds the (n,)
    per-entry standard errors; for an exact result it is zeros and ``info.method`` is "exact".
    """
    A = as_operator(A, "diag")
    if isinstance(alg, StochasticDiag):
        info = _diag_info(A, alg)
        return (info.value, info) if return_info else info.value
    value = _diag(A, alg)
    return (value, _exact_info(A.xp, value)) if return_info else value


def trace(A: LinearOperator, alg: Algorithm = Auto(), return_info: bool = False):
    """The trace of square ``A``.

    ``alg=lo.Hutchinson(...)``, ``lo.HutchPlusPlus(...)``, ``lo.XTrace(...)`` (or a diagonal
    estimator, summed) estimate it from random probes, exactly instead where the structure
    rules give the trace (e.g. a Diagonal, a Kronecker product of diagonals). The estimate is
    real for a real operator or one annotated SelfAdjoint, complex otherwise.
    ``return_info=True`` returns ``(value, EstimateInfo)`` with the standard error (0, and
    method "exact", for exact rules).
    """
    A = require_square(A, "trace")
    if isinstance(alg, _ESTIMATORS):
        info = _trace_info(A, alg)
        return (info.value, info) if return_info else info.value
    value = _trace(A, alg)
    if isinstance(value, EstimateInfo):  # a rule that estimates (tr f(A) by SLQ) returns its error bar too
        return (value.value, value) if return_info else value.value
    return (value, _exact_info(A.xp, value)) if return_info else value


def _exact_info(xp, value) -> EstimateInfo:
    return EstimateInfo("exact", value, 0 * xp.abs(value), 0, None)


# ------------------------------------------------------- randomised estimators
@dataclass(frozen=True)
class _StructureOnly(Algorithm):
    """Private: resolve by structure rules only; a generic (dense) rule raises _Unstructured."""


class _Unstructured(Exception):
    pass


def _by_structure(fn, A):
    """``fn(A)`` by the structure rules alone, or None if they would need a generic rule."""
    try:
        return fn(A, _StructureOnly())
    except _Unstructured:
        return None


def _hermitian(A) -> bool:
    return not A.xp.is_complex(A.dtype) or "SelfAdjoint" in A.annotations


def _trace_info(A: LinearOperator, alg) -> EstimateInfo:
    exact = _by_structure(_trace, A)
    if exact is not None:
        return _exact_info(A.xp, exact)
    if isinstance(alg, StochasticDiag):  # Σ_i of the diagonal's per-probe samples
        xp, d = A.xp, _diag_estimate(A, alg)
        samples = xp.sum(d.samples, axis=1)
        return summary(xp, d.method, xp.real(samples) if _hermitian(A) else samples, d.num_probes)
    return alg.estimate(A._matmat, A.shape[0], A.dtype, A.device, A.xp, _hermitian(A))


def _diag_info(A: LinearOperator, alg) -> EstimateInfo:
    exact = _by_structure(_diag, A)
    return _exact_info(A.xp, exact) if exact is not None else _diag_estimate(A, alg)


def _diag_estimate(A: LinearOperator, alg) -> EstimateInfo:
    return alg.estimate(A._matmat, A.H._matmat, A.shape, A.dtype, A.device, A.xp)


def _ones(A, n):
    return A.xp.ones((n,), A.dtype, A.device)


# --------------------------------------------------------------------------- diag
generic_methods("_diag", "diag", "lo.Auto(), lo.Exact(), lo.DiagonalEstimator() or lo.DiagPlusPlus()")


@dispatch
def _diag(A: LinearOperator, alg: Exact):
    return A.xp.diagonal(A.to_dense())


@dispatch
def _diag(A: LinearOperator, alg: StochasticDiag):
    """The diagonal estimator on the operator as a whole (exact where structure gives it)."""
    return _diag_info(A, alg).value


@dispatch
def _diag(A: LinearOperator, alg: _StructureOnly):
    raise _Unstructured


@dispatch(precedence=STRUCTURE)
def _diag(A: Diagonal, alg: Algorithm):
    return A.d


@dispatch(precedence=STRUCTURE)
def _diag(A: Identity, alg: Algorithm):
    return _ones(A, A.shape[0])


@dispatch(precedence=STRUCTURE)
def _diag(A: ScalarMul, alg: Algorithm):
    return A.c * _ones(A, A.shape[0])


@dispatch(precedence=STRUCTURE)
def _diag(A: Triangular, alg: Algorithm):
    return A.xp.diagonal(A.triangle)


@dispatch(precedence=STRUCTURE)
def _diag(A: Tridiagonal, alg: Algorithm):
    return A.xp.astype(A.diag, A.dtype)


@dispatch(precedence=STRUCTURE)
def _diag(A: Permutation, alg: Algorithm):
    xp = A.xp
    return xp.astype(A.perm == xp.arange(A.shape[0], A.device), A.dtype)


@dispatch(precedence=STRUCTURE)
@when(square_parts("factors"), "square factors", lambda A, alg: _exact_diag(A, alg))
def _diag(A: Kronecker, alg: Algorithm):
    """diag(⊗ A_i) = ⊗ diag(A_i) (square factors)."""
    out = _diag(A.factors[0], alg)
    for f in A.factors[1:]:
        out = (out[:, None] * _diag(f, alg)[None, :]).reshape(-1)
    return out


@dispatch(precedence=STRUCTURE)
def _diag(A: KroneckerSum, alg: Algorithm):
    sizes = [f.shape[0] for f in A.factors]
    out = None
    for i, f in enumerate(A.factors):
        d = _diag(f, alg)
        left, right = prod(sizes[:i]), prod(sizes[i + 1 :])
        term = (_ones(A, left)[:, None, None] * d[None, :, None] * _ones(A, right)[None, None, :]).reshape(-1)
        out = term if out is None else out + term
    return out


@dispatch(precedence=STRUCTURE)
@when(square_parts("blocks"), "square blocks", lambda A, alg: _exact_diag(A, alg))
def _diag(A: BlockDiag, alg: Algorithm):
    """The blocks' diagonals, concatenated."""
    xp = A.xp
    return xp.concat([xp.astype(_diag(b, alg), A.dtype) for b in A.blocks])


@dispatch(precedence=STRUCTURE)
def _diag(A: Sum, alg: Algorithm):
    out = _diag(A.terms[0], alg)
    for t in A.terms[1:]:
        out = out + _diag(t, alg)
    return out


@dispatch(precedence=STRUCTURE)
@when(lambda A: A.is_square, "a square operator", lambda A, alg: _exact_diag(A, alg))
def _diag(A: LowRank, alg: Algorithm):
    """diag(U V^H)_i = Σ_r U_ir conj(V_ir), O(n r) (square A)."""
    return A.xp.sum(A.U * A.xp.conj(A.V), axis=1)


@dispatch(precedence=STRUCTURE)
@when(lambda A: isinstance(A.factors[0], ScalarMul), "a scalar first factor (c A)", lambda A, alg: _exact_diag(A, alg))
def _diag(A: Product, alg: Algorithm):
    """diag(c A) = c diag(A)."""
    fs = A.factors
    rest = fs[1] if len(fs) == 2 else Product(*fs[1:])
    return fs[0].c * _diag(rest, alg)


def _exact_diag(A, alg):
    return _diag.invoke(LinearOperator, type(alg))(A, alg)


@dispatch(precedence=STRUCTURE)
def _diag(A: Adjoint, alg: Algorithm):
    return A.xp.conj(_diag(A.A, alg))


@dispatch(precedence=STRUCTURE)
def _diag(A: Transpose, alg: Algorithm):
    return _diag(A.A, alg)


# -------------------------------------------------------------------------- trace
@dispatch
def _trace(A: LinearOperator, alg: Algorithm):
    return A.xp.sum(_diag(A, alg))


@dispatch
def _trace(A: LinearOperator, alg: StochasticTrace):
    """The trace estimator on the operator as a whole (exact where structure gives it)."""
    return _trace_info(A, alg).value


@dispatch(precedence=STRUCTURE)
@when(square_parts("factors"), "square factors", lambda A, alg: A.xp.sum(_diag(A, alg)))
def _trace(A: Kronecker, alg: Algorithm):
    """tr(⊗ A_i) = Π tr(A_i) (square factors)."""
    out = 1
    for f in A.factors:
        out = out * _trace(f, alg)
    return out


@dispatch(precedence=STRUCTURE)
def _trace(A: KroneckerSum, alg: Algorithm):
    """tr(⊕ A_i) = Σ_i tr(A_i) N / n_i."""
    N = A.shape[0]
    out = 0
    for f in A.factors:
        out = out + _trace(f, alg) * (N // f.shape[0])
    return out


@dispatch(precedence=STRUCTURE)
def _trace(A: Sum, alg: Algorithm):
    out = 0
    for t in A.terms:
        out = out + _trace(t, alg)
    return out


@dispatch(precedence=STRUCTURE)
@when(square_parts("blocks"), "square blocks", lambda A, alg: A.xp.sum(_diag(A, alg)))
def _trace(A: BlockDiag, alg: Algorithm):
    """The blocks' traces, summed."""
    out = 0
    for b in A.blocks:
        out = out + _trace(b, alg)
    return out
