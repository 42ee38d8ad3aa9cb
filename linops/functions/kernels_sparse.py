"""Exact rules for kernel matrices and sparse matrices (Jacobian/Hessian need none: Krylov rules apply).

* KernelMatrix: ``diag`` = ``k(x_i, y_i)`` (the outputscale for a stationary kernel with Y = X),
  ``trace`` its sum: O(n d), never a product.
* Sparse: ``diag`` and ``trace`` summed from the stored entries, O(nnz).
* Sparse (scipy, square, n <= ``SPLU_MAX_N``) under ``Auto`` and ``LU``: ``inv``/``solve`` by a
  sparse LU (``scipy.sparse.linalg.splu``, COLAMD ordering), factorised once and kept in a
  ``SparseLUInverse``; ``slogdet`` from the same factors, ``det = sign(P_r) sign(P_c) Π U_ii``.
  Other algorithms (``CG``, ``MINRES``, ``GMRES``, ...) go through the generic Krylov rules;
  torch and JAX sparse matrices have no sparse factorisation and use the generic rules too.
"""

from __future__ import annotations

import numpy as np

from ..algorithms import LU, Algorithm, Auto
from ..errors import SingularMatrixError
from ..operators.base import LinearOperator
from ..operators.kernels import KernelMatrix
from ..operators.sparse import Sparse
from ._dispatch import STRUCTURE, dispatch, when
from .determinants import _slogdet
from .diagonals import _diag, _trace
from .inverse import Inverse, _inv

__all__ = ["SparseLUInverse", "SPLU_MAX_N"]

#: largest n for which Auto / LU factorise a scipy sparse matrix (fill-in grows fast in 3-D)
SPLU_MAX_N = 1_000_000


# ------------------------------------------------------------------ kernels
@dispatch(precedence=STRUCTURE)
def _diag(A: KernelMatrix, alg: Algorithm):  # noqa: F811
    """diag K(X, Y) = k(x_i, y_i): O(n d) (the outputscale for a stationary K(X, X))."""
    return A.diagonal_values()


@dispatch(precedence=STRUCTURE)
def _trace(A: KernelMatrix, alg: Algorithm):  # noqa: F811
    """tr K(X, X) = Σ_i k(x_i, x_i): O(n d)."""
    return A.xp.sum(A.diagonal_values())


# ------------------------------------------------------------------- sparse
@dispatch(precedence=STRUCTURE)
def _diag(A: Sparse, alg: Algorithm):  # noqa: F811
    """diag of a sparse matrix: its stored diagonal entries, O(nnz)."""
    return A.diagonal_values()


@dispatch(precedence=STRUCTURE)
def _trace(A: Sparse, alg: Algorithm):  # noqa: F811
    """tr of a sparse matrix: the sum of its stored diagonal entries, O(nnz)."""
    return A.trace_value()


class SparseLUInverse(Inverse):
    """``A^{-1}`` from scipy's sparse LU (SuperLU): ``P_r A P_c = L U``; a solve costs O(nnz(L + U) k)."""

    def __init__(self, A: Sparse):
        from scipy.sparse.linalg import splu

        try:
            self.lu = splu(A.sparse().tocsc())
        except RuntimeError as e:  # SuperLU: "Factor is exactly singular"
            raise SingularMatrixError(
                f"{A._label()} is singular (sparse LU: {e}); regularise it (A + c I) or use lo.lstsq"
            ) from None
        super().__init__(A)

    def _solve(self, X, adjoint):
        cplx = np.iscomplexobj(X) and not np.iscomplexobj(self.lu.U.data)
        if cplx:  # SuperLU of a real matrix solves real right-hand sides only
            return self._solve(X.real, adjoint) + 1j * self._solve(X.imag, adjoint)
        return self.lu.solve(np.ascontiguousarray(X), trans="H" if adjoint else "N")


def _splu_ok(A: Sparse) -> bool:
    return A.xp.name == "numpy" and A.shape[0] <= SPLU_MAX_N


_SPLU_NEEDS = f"a scipy sparse matrix with n <= {SPLU_MAX_N}"


def _generic_inv(A, alg):
    return _inv.invoke(LinearOperator, type(alg))(A, alg)


@dispatch
@when(_splu_ok, _SPLU_NEEDS, _generic_inv)
def _inv(A: Sparse, alg: Auto):  # noqa: F811
    """A^{-1} by sparse LU (scipy splu), factorised once."""
    return SparseLUInverse(A)


@dispatch
@when(_splu_ok, _SPLU_NEEDS, _generic_inv)
def _inv(A: Sparse, alg: LU):  # noqa: F811
    """A^{-1} by sparse LU (scipy splu), factorised once."""
    return SparseLUInverse(A)


def _parity(perm) -> int:
    """+1 or -1: the sign of a permutation, from its cycle count (O(n))."""
    perm = np.asarray(perm)
    seen = np.zeros(perm.shape[0], dtype=bool)
    swaps = 0
    for i in range(perm.shape[0]):
        if seen[i]:
            continue
        j, length = i, 0
        while not seen[j]:
            seen[j] = True
            j = perm[j]
            length += 1
        swaps += length - 1
    return -1 if swaps % 2 else 1


def _generic_slogdet(A, alg):
    return _slogdet.invoke(LinearOperator, type(alg))(A, alg)


def _sparse_slogdet(A: Sparse):
    from scipy.sparse.linalg import splu

    try:
        lu = splu(A.sparse().tocsc())
    except RuntimeError:  # exactly singular
        return np.zeros((), A.dtype), np.array(-np.inf)
    u = lu.U.diagonal()
    logabs = np.sum(np.log(np.abs(u)))
    sign = np.prod(u / np.abs(u)) * _parity(lu.perm_r) * _parity(lu.perm_c)
    return sign, logabs


@dispatch
@when(_splu_ok, _SPLU_NEEDS, _generic_slogdet)
def _slogdet(A: Sparse, alg: Auto):  # noqa: F811
    """log|det A| = Σ log|U_ii| from a sparse LU (scipy splu); sign from U and the permutations."""
    return _sparse_slogdet(A)


@dispatch
@when(_splu_ok, _SPLU_NEEDS, _generic_slogdet)
def _slogdet(A: Sparse, alg: LU):  # noqa: F811
    """log|det A| = Σ log|U_ii| from a sparse LU (scipy splu); sign from U and the permutations."""
    return _sparse_slogdet(A)
