"""``inv`` (a lazy inverse operator, factorised once) and ``solve``, with every inverse rule.

``lo.solve(A, b)`` is ``lo.inv(A) @ b``: keep ``lo.inv(A)`` to solve many right-hand
sides with one factorisation. Rules, each stating its identity:

* Diagonal ``1/d``; Identity; ``c I`` -> ``(1/c) I``; Permutation -> ``P^T``; Unitary -> ``A^H``.
* Kronecker -> Kronecker of the factors' inverses (square factors).
* KroneckerSum (self-adjoint) -> ``Q (⊕ Λ_i)^{-1} Q^H`` with ``Q = ⊗ Q_i`` from the factors'
  eigendecompositions: the fast Poisson solver.
* BlockDiag -> BlockDiag of the blocks' inverses; Product of square factors -> reversed
  product of inverses; Adjoint / Transpose -> adjoint / transpose of the inverse.
* Triangular -> substitution; Tridiagonal -> banded solver.
* Diagonal-like + low rank (``D + U V^H``, also ``Dense(U) @ Dense(V.T) + D``) ->
  Woodbury, O(n r^2), never forming an n x n matrix.
* Anything else -> dense Cholesky (annotated PSD) or LU, chosen by ``Auto``.
"""

from __future__ import annotations

from ..algorithms import LU, Algorithm, Auto, Cholesky
from ..backends import is_concrete
from ..errors import NonFiniteError, SingularMatrixError
from ..operators import (
    Adjoint,
    BlockDiag,
    Dense,
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
from ._dispatch import generic_methods, STRUCTURE, check_rhs, dense_checked, dispatch, require_square, self_adjoint, square_parts, when

__all__ = ["inv", "solve", "Inverse", "CholeskyInverse", "LUInverse"]


def inv(A: LinearOperator, alg: Algorithm = Auto()) -> LinearOperator:
    """The inverse of square ``A`` as an operator; the factorisation happens here, once.

    ``alg``: ``Auto()`` (structure, then Cholesky for PSD, else LU), or a concrete
    algorithm. Raises NotSquareError, SingularMatrixError, NotPSDError (Cholesky of a
    non-PSD operator) or NonFiniteError (NaN/inf in a matrix to factorise).
    """
    A = require_square(A, "inv")
    return _inv(A, alg)


def solve(A: LinearOperator, b, alg: Algorithm = Auto(), return_info: bool = False):
    """``A^{-1} b`` for ``b`` of shape (n,) or (n, k); same rules and errors as :func:`inv`.

    With ``return_info=True`` returns ``(x, info)``: an iterative method's
    :class:`~linops.algorithms.SolveInfo`, or for a direct method one with zero
    iterations and the relative residual measured with one product.
    """
    A = require_square(A, "solve")
    check_rhs(A, b, "solve")
    if not return_info and type(A) is Dense:  # one-off solves with a matrix: the hot path
        return _solve_dense_auto(A, b, alg) if type(alg) is Auto else _solve_dense(A, b, alg)
    Ainv = _inv(A, alg)
    if not return_info:
        return Ainv @ b
    if hasattr(Ainv, "solve_with_info"):
        return Ainv.solve_with_info(b)
    x = Ainv @ b
    return x, _direct_info(A, Ainv, x, b)


@dispatch
def _solve_dense(A: Dense, b, alg: Algorithm):
    """A one-off solve with a matrix: factor and solve, with no inverse operator built."""
    return _inv(A, alg) @ b


@dispatch
def _solve_dense(A: Dense, b, alg: Auto):
    return _solve_dense_auto(A, b, alg)


def _solve_dense_auto(A: Dense, b, alg: Auto):
    if "Unitary" in A.annotations:
        return A.H @ b
    concrete = alg.select("solve", A)[0]
    direct = _DIRECT.get(type(concrete))  # skip a second dispatch on the hot path
    return direct(A, b, concrete) if direct is not None else _solve_dense(A, b, concrete)


@dispatch
def _solve_dense(A: Dense, b, alg: LU):
    return _lu_solve(A, b, alg)


@dispatch
def _solve_dense(A: Dense, b, alg: Cholesky):
    return _cholesky_solve(A, b, alg)


def _lu_solve(A: Dense, b, alg: LU):
    # NaN/inf in A always reach x through the elimination, so x is checked (O(n k)) and A's
    # O(n^2) scan runs only to name the culprit
    xp = A.xp
    x = xp.lu_solve(xp.lu_factor(A.M), b)
    if xp.all_finite(x) is False:
        dense_checked(A, False, "solve")
        xp.check_finite(b, "the right-hand side")
        raise NonFiniteError(f"lo.solve with {A._label()}: the solution overflowed (the matrix is nearly singular)")
    return x


def _cholesky_solve(A: Dense, b, alg: Cholesky):
    xp = A.xp
    return xp.cho_solve(xp.cholesky(dense_checked(A, alg.check_symmetric, "solve")), b)


_DIRECT = {LU: _lu_solve, Cholesky: _cholesky_solve}


def _direct_info(A, Ainv, x, b):
    from ..algorithms.info import SolveInfo

    xp = A.xp
    X, B = (x[:, None], b[:, None]) if b.ndim == 1 else (x, b)
    col = lambda Y: xp.sqrt(xp.sum(xp.real(xp.conj(Y) * Y), axis=0))  # noqa: E731
    bn = col(B)
    rel = col(B - A @ X) / xp.where(bn > 0, bn, 1 + 0 * bn)
    return SolveInfo(type(Ainv).__name__, 0, rel == rel, rel, rel[None, :], rel < 0)


# ---------------------------------------------------------------- inverse operators
class Inverse(LinearOperator):
    """Base of the factorised inverses: ``A`` is kept for ``repr`` and for ``inv(inv(A)) == A``."""

    _leaves = ("A",)

    def __init__(self, A: LinearOperator):
        self.A = A
        super().__init__(A.shape, A.dtype, A.xp, A.device, A.annotations & {"PSD", "SelfAdjoint", "Unitary"})

    def _rmatmat(self, X):  # X A^{-1} = (A^{-H} X^H)^H
        conj = self.xp.conj
        return conj(self._solve(conj(X).T, adjoint=True)).T

    def _matmat(self, X):
        return self._solve(X, adjoint=False)


class CholeskyInverse(Inverse):
    """``A^{-1} = L^{-H} L^{-1}`` from the Cholesky factor ``L``; applying it costs 2 n^2 k."""

    _leaves = ("A", "L")

    def __init__(self, A: LinearOperator, alg: Cholesky = Cholesky()):
        M = dense_checked(A, alg.check_symmetric, "inv")
        self.L = A.xp.cholesky(M)
        super().__init__(A)

    def _solve(self, X, adjoint):  # A is Hermitian: A^{-H} = A^{-1}
        return self.xp.cho_solve(self.L, X)


class LUInverse(Inverse):
    """``A^{-1}`` from an LU factorisation with partial pivoting; applying it costs 2 n^2 k."""

    _leaves = ("A", "lu")

    def __init__(self, A: LinearOperator):
        M = dense_checked(A, False, "inv")
        self.lu = A.xp.lu_factor(M)
        super().__init__(A)

    def _solve(self, X, adjoint):
        return self.xp.lu_solve(self.lu, X, adjoint=adjoint)


class TriangularInverse(Inverse):
    """Substitution with a triangular operator, O(n^2 k)."""

    def __init__(self, A: Triangular):
        d = A.xp.diagonal(A.triangle)
        _check_nonzero(A.xp, d, A)
        super().__init__(A)

    def _solve(self, X, adjoint):
        return self.xp.solve_triangular(self.A.triangle, X, lower=self.A.lower, adjoint=adjoint)


class TridiagonalInverse(Inverse):
    """Tridiagonal solve (LAPACK gtsv, jax's tridiagonal_solve, or the Thomas algorithm in torch), O(n k)."""

    def _solve(self, X, adjoint):
        T = self.A.H if adjoint else self.A
        return self.xp.tridiagonal_solve(T.lower, T.diag, T.upper, X)


def _check_nonzero(xp, d, A):
    if xp.is_concrete(d):
        import numpy as np

        zero = np.flatnonzero(np.asarray(xp.to_numpy(d)) == 0)
        if zero.size:
            raise SingularMatrixError(f"{A._label()} is singular: diagonal entry {int(zero[0])} is zero")


# ----------------------------------------------------------------------------- rules
@dispatch
def _inv(A: LinearOperator, alg: Auto):
    if "Unitary" in A.annotations:
        return A.H
    concrete, _ = alg.select("inv", A)
    return _inv(A, concrete)


generic_methods("_inv", "inv/solve", "lo.Auto(), lo.Cholesky(), lo.LU(), lo.CG(), lo.MINRES(), lo.GMRES() or lo.BiCGStab()", resolve=False)


@dispatch
def _inv(A: LinearOperator, alg: Cholesky):
    return CholeskyInverse(A, alg)


@dispatch
def _inv(A: LinearOperator, alg: LU):
    return LUInverse(A)


@dispatch(precedence=STRUCTURE)
def _inv(A: Inverse, alg: Algorithm):
    """inv(inv(A)) = A."""
    return A.A


@dispatch(precedence=STRUCTURE)
def _inv(A: Diagonal, alg: Algorithm):
    """diag(d)^{-1} = diag(1/d)."""
    _check_nonzero(A.xp, A.d, A)
    return Diagonal(1 / A.d)


@dispatch(precedence=STRUCTURE)
def _inv(A: Identity, alg: Algorithm):
    return A


@dispatch(precedence=STRUCTURE)
def _inv(A: ScalarMul, alg: Algorithm):
    """(c I)^{-1} = (1/c) I."""
    if is_concrete(A.c) and A.c == 0:
        raise SingularMatrixError(f"{A._label()} is zero, so singular")
    return ScalarMul(1 / A.c, A.shape[0], like=A)


@dispatch(precedence=STRUCTURE)
def _inv(A: Permutation, alg: Algorithm):
    """P^{-1} = P^T."""
    return A.T


@dispatch(precedence=STRUCTURE)
@when(square_parts("factors"), "square factors", lambda A, alg: _generic(A, alg))
def _inv(A: Kronecker, alg: Algorithm):
    """(A_1 ⊗ ... ⊗ A_p)^{-1} = A_1^{-1} ⊗ ... ⊗ A_p^{-1} (square factors)."""
    return Kronecker(*(inv(f, alg) for f in A.factors))


@dispatch(precedence=STRUCTURE)
@when(self_adjoint, "self-adjoint factors (annotate them)", lambda A, alg: _generic(A, alg))
def _inv(A: KroneckerSum, alg: Algorithm):
    """(⊕ A_i)^{-1} = Q diag(1 / (⊕ λ_i)) Q^H with A_i = Q_i Λ_i Q_i^H (self-adjoint factors)."""
    from .eigen import kronecker_sum_eigh

    lam, Q = kronecker_sum_eigh(A)
    _check_nonzero(A.xp, lam, A)
    out = Product(Q, Diagonal(1 / lam), Q.H)
    return _tagged(out, A)


@dispatch(precedence=STRUCTURE)
@when(square_parts("blocks"), "square blocks", lambda A, alg: _generic(A, alg))
def _inv(A: BlockDiag, alg: Algorithm):
    """diag(B_1, ..., B_p)^{-1} = diag(B_1^{-1}, ..., B_p^{-1}) (square blocks)."""
    return BlockDiag(*(inv(b, alg) for b in A.blocks))


@dispatch(precedence=STRUCTURE)
@when(square_parts("factors"), "square factors", lambda A, alg: _generic(A, alg))
def _inv(A: Product, alg: Algorithm):
    """(F_1 ... F_p)^{-1} = F_p^{-1} ... F_1^{-1} (square factors)."""
    return Product(*(inv(f, alg) for f in reversed(A.factors)))


@dispatch(precedence=STRUCTURE)
def _inv(A: Adjoint, alg: Algorithm):
    """(A^H)^{-1} = (A^{-1})^H."""
    return inv(A.A, alg).H


@dispatch(precedence=STRUCTURE)
def _inv(A: Transpose, alg: Algorithm):
    """(A^T)^{-1} = (A^{-1})^T."""
    return inv(A.A, alg).T


@dispatch(precedence=STRUCTURE)
def _inv(A: Triangular, alg: Algorithm):
    """Triangular substitution."""
    return TriangularInverse(A)


@dispatch(precedence=STRUCTURE)
def _inv(A: Tridiagonal, alg: Algorithm):
    """Banded tridiagonal solve."""
    A.xp.check_finite(A.diag, lambda: f"the diagonal of {A._label()}")
    return TridiagonalInverse(A)


@dispatch(precedence=STRUCTURE)
@when(lambda A: is_diagonal_plus_low_rank(A), "terms: diagonal-like + low rank", lambda A, alg: _generic(A, alg))
def _inv(A: Sum, alg: Algorithm):
    """Woodbury: (D + U V^H)^{-1} = D^{-1} - D^{-1} U (I + V^H D^{-1} U)^{-1} V^H D^{-1}."""
    D, U, V = diagonal_plus_low_rank(A)
    xp = A.xp
    _check_nonzero(xp, D.d, A)
    dinv = 1 / D.d
    W = dinv[:, None] * U  # D^{-1} U                    (n, r)
    cap = xp.eye(U.shape[1], A.dtype, A.device) + xp.conj(V).T @ W  # I + V^H D^{-1} U   (r, r)
    psd = "PSD" in A.annotations and U is V
    C = Dense(cap, ("PSD",) if psd else ())
    # D^{-1} - W C^{-1} V^H D^{-1}: C is factored once here; applying costs O(n r + r^2) per column
    low_rank = Product(Dense(-W), inv(C, Auto()), Dense(xp.conj(dinv)[:, None] * V).H)
    return _tagged(Sum(Diagonal(dinv), low_rank), A)


def _generic(A, alg):
    """Fall through from a structure rule that does not apply to the generic (LinearOperator, alg) rule."""
    return _inv.invoke(LinearOperator, type(alg))(A, alg)


def _tagged(out: LinearOperator, A: LinearOperator) -> LinearOperator:
    from ..annotations import annotate

    tags = A.annotations & {"PSD", "SelfAdjoint"}
    return annotate(out, *tags) if tags else out


def _thin_product(t, n) -> bool:
    """``F @ G...`` with a thin first factor (n x r, r < n): a low-rank term ``U V^H``."""
    return isinstance(t, Product) and t.factors[0].shape[1] < n


def is_diagonal_plus_low_rank(A: Sum) -> bool:
    """Whether :func:`diagonal_plus_low_rank` applies (a cheap check on the terms' types)."""
    n = A.shape[0]
    has_d = any(isinstance(t, (Diagonal, Identity, ScalarMul)) for t in A.terms)
    has_r = any(isinstance(t, LowRank) or _thin_product(t, n) for t in A.terms)
    others = all(isinstance(t, (Diagonal, Identity, ScalarMul, LowRank)) or _thin_product(t, n) for t in A.terms)
    return has_d and has_r and others


def diagonal_plus_low_rank(A: Sum):
    """``(Diagonal D, U, V)`` with ``A = D + U V^H`` if the terms allow it, else None.

    Diagonal, Identity and ``c I`` terms form ``D`` (at least one needed); LowRank terms and
    products ``F @ G`` with a thin middle (``F`` n x r, r < n) form ``U`` and ``V``.
    """
    xp = A.xp
    n = A.shape[0]
    d = None
    Us, Vs = [], []
    for t in A.terms:
        if isinstance(t, Diagonal):
            d = t.d if d is None else d + t.d
        elif isinstance(t, (Identity, ScalarMul)):
            c = 1 if isinstance(t, Identity) else t.c
            d = c * xp.ones((n,), A.dtype, A.device) if d is None else d + c
        elif isinstance(t, LowRank):
            Us.append(t.U)
            Vs.append(t.V)
        elif _thin_product(t, n):
            F, *rest = t.factors
            G = rest[0] if len(rest) == 1 else Product(*rest)
            r = F.shape[1]
            Us.append(F.to_dense())  # r products
            Vs.append(G.H._matmat(xp.eye(r, A.dtype, A.device)))  # V = G^H, r products
        else:
            return None
    if d is None or not Us:
        return None
    same = len(Us) == 1 and Us[0] is Vs[0]
    U = Us[0] if len(Us) == 1 else xp.concat(Us, 1)
    V = Vs[0] if len(Vs) == 1 else xp.concat(Vs, 1)
    dtype = A.dtype
    U = xp.astype(U, dtype)
    return Diagonal(xp.astype(d, dtype)), U, (U if same else xp.astype(V, dtype))
