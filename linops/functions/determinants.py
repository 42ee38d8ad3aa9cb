"""``slogdet``, ``logdet`` and ``det``, with their structure rules.

* Kronecker ``⊗ A_i`` (A_i n_i x n_i, N = Π n_i): ``log|det| = Σ (N / n_i) log|det A_i|``.
* KroneckerSum (self-adjoint): ``Σ log|λ_i + μ_j|`` from the factors' eigenvalues.
* BlockDiag, Product of square factors: sums; Diagonal, Triangular: the diagonal;
  Identity 0; ``c I``: ``n log|c|``; Permutation: its parity.
* Diagonal-like + low rank: matrix determinant lemma
  ``det(D + U V^H) = det(D) det(I + V^H D^{-1} U)``, O(n r^2).
* Inverses: ``-log|det A|``, reusing the stored factorisation.
* Otherwise: dense Cholesky (annotated PSD) or LU, chosen by ``Auto``.
"""

from __future__ import annotations

from ..algorithms import LU, SLQ, Algorithm, Auto, Cholesky, EstimateInfo
from ..errors import DomainError, NotPSDError, SingularMatrixError
from ..operators import (
    Adjoint,
    BlockDiag,
    Dense,
    Diagonal,
    Identity,
    Kronecker,
    KroneckerSum,
    LinearOperator,
    Permutation,
    Product,
    ScalarMul,
    Sum,
    Transpose,
    Triangular,
)
from ._dispatch import generic_methods, dense_checked, square_parts, self_adjoint, when, STRUCTURE, dispatch, require_square
from .inverse import CholeskyInverse, Inverse, LUInverse, diagonal_plus_low_rank, is_diagonal_plus_low_rank

__all__ = ["slogdet", "logdet", "det"]


def slogdet(A: LinearOperator, alg: Algorithm = Auto()):
    """``(sign, log|det A|)``; sign is ±1 (a unit complex number for complex A), 0 if singular."""
    A = require_square(A, "slogdet")
    return _slogdet(A, alg)


def logdet(A: LinearOperator, alg: Algorithm = Auto(), return_info: bool = False):
    """``log det A``. For a real operator with negative determinant raises DomainError
    (under ``jax.jit``, where values cannot be inspected, the result is NaN).

    ``alg=lo.SLQ(...)`` estimates it stochastically (PSD A); ``return_info=True`` then returns
    ``(value, EstimateInfo)`` with the standard error (for exact algorithms stderr is 0).
    """
    A = require_square(A, "logdet")
    if isinstance(alg, SLQ):
        info = _slq_logdet(A, alg)
        return (info.value, info) if return_info else info.value
    sign, logabs = _slogdet(A, alg)
    if return_info:
        value = _logdet_value(A, sign, logabs)
        return value, EstimateInfo("exact", value, 0 * logabs, 0, None)
    return _logdet_value(A, sign, logabs)


def _logdet_value(A, sign, logabs):
    xp = A.xp
    if xp.is_complex(A.dtype):
        return xp.log(xp.astype(sign, A.dtype)) + logabs
    if xp.is_concrete(sign) and float(xp.to_numpy(sign)) < 0:
        raise DomainError(
            f"logdet of {A._label()}: the determinant is negative, so its logarithm is not real; "
            "use lo.slogdet for (sign, log|det|)"
        )
    return logabs + xp.log(sign) if not xp.is_concrete(sign) else logabs


def _slq_logdet(A: LinearOperator, alg: SLQ):
    from .stochastic_logdet import slq_logdet

    return slq_logdet(A, alg)


def det(A: LinearOperator, alg: Algorithm = Auto()):
    """``det A = sign * exp(log|det A|)`` (may overflow where ``slogdet`` does not)."""
    A = require_square(A, "det")
    sign, logabs = _slogdet(A, alg)
    return sign * A.xp.exp(logabs)


def _phase(xp, x):
    """``x / |x|`` with 0 where x is 0."""
    a = xp.abs(x)
    return xp.where(a == 0, 0 * x, x / xp.where(a == 0, 1 + 0 * a, a))


def _from_diagonal(xp, d):
    return xp.prod(_phase(xp, d)), xp.sum(xp.log(xp.abs(d)))


# --------------------------------------------------------------------------- rules
generic_methods("_slogdet", "slogdet", "lo.Auto(), lo.Cholesky(), lo.LU() or lo.SLQ()")


@dispatch
def _slogdet(A: LinearOperator, alg: SLQ):
    """Stochastic Lanczos quadrature (PSD A): the sign is taken to be +1."""
    xp = A.xp
    return xp.ones((), A.dtype, A.device), _slq_logdet(A, alg).value


@dispatch
def _slogdet(A: LinearOperator, alg: Cholesky):
    try:
        return _from_factors(CholeskyInverse(A, alg))
    except NotPSDError:
        return _semidefinite(A)


@dispatch
def _slogdet(A: Dense, alg: Cholesky):
    """A matrix: 2 Σ log diag(L), straight from the factor (no inverse operator is built)."""
    xp = A.xp
    try:
        L = xp.cholesky(dense_checked(A, alg.check_symmetric, "logdet"))
    except NotPSDError:
        return _semidefinite(A)
    return xp.ones((), A.dtype, A.device), 2 * xp.sum(xp.log(xp.real(xp.diagonal(L))))


def _semidefinite(A: LinearOperator):
    """After a failed Cholesky: (0, -inf) if A is positive semi-definite and (numerically)
    singular, which the PSD promise allows; NotPSDError if it has a negative eigenvalue."""
    xp = A.xp
    w = xp.eigh(A.to_dense())[0]
    if not xp.is_concrete(w):  # traced: values cannot be inspected; report the promise broken
        raise _indefinite(A, float("nan"))
    wn = xp.to_numpy(w)
    tol = A.shape[0] * xp.eps(A.dtype) * max(float(abs(wn).max(initial=0)), 1e-300)
    if wn.min(initial=0) < -tol:
        raise _indefinite(A, float(wn.min()))
    zero = xp.zeros((), A.dtype, A.device)
    return zero, -float("inf") + xp.zeros((), xp.real_dtype(A.dtype), A.device)


def _indefinite(A, lowest):
    return NotPSDError(
        f"{A._label()} was promised PSD but has eigenvalue {lowest:.3g} < 0: it is indefinite; "
        "drop the PSD annotation (lo.LU() handles indefinite operators)"
    )


@dispatch
def _slogdet(A: LinearOperator, alg: LU):
    try:
        Ainv = LUInverse(A)
    except SingularMatrixError:
        xp = A.xp
        return xp.zeros((), A.dtype, A.device), -float("inf") + xp.zeros((), xp.real_dtype(A.dtype), A.device)
    return _from_factors(Ainv)


def _from_factors(Ainv: Inverse):
    """``(sign, log|det A|)`` of ``A = Ainv.A`` from the factorisation the inverse holds."""
    xp = Ainv.xp
    if isinstance(Ainv, CholeskyInverse):
        return xp.ones((), Ainv.dtype, Ainv.device), 2 * xp.sum(xp.log(xp.real(xp.diagonal(Ainv.L))))
    if isinstance(Ainv, LUInverse):
        return xp.lu_slogdet(Ainv.lu)
    return _slogdet(Ainv.A, Auto())


@dispatch(precedence=STRUCTURE)
def _slogdet(A: Inverse, alg: Algorithm):
    """log|det A^{-1}| = -log|det A|, from the stored factors when there are any."""
    sign, logabs = _from_factors(A)
    return A.xp.conj(sign), -logabs


@dispatch(precedence=STRUCTURE)
def _slogdet(A: Diagonal, alg: Algorithm):
    return _from_diagonal(A.xp, A.d)


@dispatch(precedence=STRUCTURE)
def _slogdet(A: Triangular, alg: Algorithm):
    return _from_diagonal(A.xp, A.xp.diagonal(A.triangle))


@dispatch(precedence=STRUCTURE)
def _slogdet(A: Identity, alg: Algorithm):
    xp = A.xp
    return xp.ones((), A.dtype, A.device), xp.zeros((), xp.real_dtype(A.dtype), A.device)


@dispatch(precedence=STRUCTURE)
def _slogdet(A: ScalarMul, alg: Algorithm):
    xp = A.xp
    c = A.c * xp.ones((), A.dtype, A.device)
    n = A.shape[0]
    return _phase(xp, c) ** n, n * xp.log(xp.abs(c))


@dispatch(precedence=STRUCTURE)
@when(lambda A: A.xp.is_concrete(A.perm), "concrete indices (not traced by jax.jit)", lambda A, alg: _generic(A, alg))
def _slogdet(A: Permutation, alg: Algorithm):
    """The sign is the permutation's parity, from its cycles; |det| = 1."""
    import numpy as np

    xp = A.xp
    p = np.asarray(xp.to_numpy(A.perm))
    seen = np.zeros(len(p), bool)
    transpositions = 0
    for i in range(len(p)):  # parity = n - number of cycles
        if not seen[i]:
            j = i
            while not seen[j]:
                seen[j] = True
                j = p[j]
            transpositions -= 1
    transpositions += len(p)
    sign = -1.0 if transpositions % 2 else 1.0
    return sign * xp.ones((), A.dtype, A.device), xp.zeros((), xp.real_dtype(A.dtype), A.device)


@dispatch(precedence=STRUCTURE)
@when(square_parts("factors"), "square factors", lambda A, alg: _generic(A, alg))
def _slogdet(A: Kronecker, alg: Algorithm):
    """log|det(⊗ A_i)| = Σ (N / n_i) log|det A_i|; sign = Π sign_i^(N / n_i)."""
    N = A.shape[0]
    sign, logabs = 1, 0
    for f in A.factors:
        s, la = _slogdet(f, alg)
        p = N // f.shape[0]
        sign = sign * s**p
        logabs = logabs + p * la
    return sign, logabs


@dispatch(precedence=STRUCTURE)
@when(self_adjoint, "self-adjoint factors (annotate them)", lambda A, alg: _generic(A, alg))
def _slogdet(A: KroneckerSum, alg: Algorithm):
    """From the eigenvalues λ_i + μ_j of a self-adjoint Kronecker sum."""
    from .eigen import kronecker_sum_eigh

    lam, _ = kronecker_sum_eigh(A, alg if not isinstance(alg, (Cholesky, LU)) else Auto())
    return _from_diagonal(A.xp, lam)


@dispatch(precedence=STRUCTURE)
@when(square_parts("blocks"), "square blocks", lambda A, alg: _generic(A, alg))
def _slogdet(A: BlockDiag, alg: Algorithm):
    """log|det| of the blocks, summed."""
    return _combine(_slogdet(b, alg) for b in A.blocks)


@dispatch(precedence=STRUCTURE)
@when(square_parts("factors"), "square factors", lambda A, alg: _generic(A, alg))
def _slogdet(A: Product, alg: Algorithm):
    """log|det| of the factors, summed."""
    return _combine(_slogdet(f, alg) for f in A.factors)


@dispatch(precedence=STRUCTURE)
def _slogdet(A: Adjoint, alg: Algorithm):
    sign, logabs = _slogdet(A.A, alg)
    return A.xp.conj(sign), logabs


@dispatch(precedence=STRUCTURE)
def _slogdet(A: Transpose, alg: Algorithm):
    return _slogdet(A.A, alg)


@dispatch(precedence=STRUCTURE)
@when(is_diagonal_plus_low_rank, "terms: diagonal-like + low rank", lambda A, alg: _generic(A, alg))
def _slogdet(A: Sum, alg: Algorithm):
    """Matrix determinant lemma: det(D + U V^H) = det(D) det(I_r + V^H D^{-1} U)."""
    D, U, V = diagonal_plus_low_rank(A)
    xp = A.xp
    cap = xp.eye(U.shape[1], A.dtype, A.device) + xp.conj(V).T @ ((1 / D.d)[:, None] * U)
    return _combine([_from_diagonal(xp, D.d), _slogdet(Dense(cap), Auto())])


def _combine(pairs):
    sign, logabs = 1, 0
    for s, la in pairs:
        sign = sign * s
        logabs = logabs + la
    return sign, logabs


def _generic(A, alg):
    return _slogdet.invoke(LinearOperator, type(alg))(A, alg)
