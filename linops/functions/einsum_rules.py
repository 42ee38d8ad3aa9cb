"""Exact rules of the Einsum family and of multi-level low-rank (MLR) operators.

* Einsum ``diag``: ``W[i, i] = Σ_r A[f, d, r, g, a] B[f, e, r, g, b]`` with ``(f, e, d)`` and
  ``(g, b, a)`` the output and input grid positions of ``i``: a gather, O(min(m, n) r), any θ.
  ``trace`` sums it.
* Einsum ``inv``/``slogdet`` at the structured points, unpadded: the Kronecker points with square
  factors go through :meth:`Einsum.as_kronecker` (factorwise), the Monarch/BTT points whose
  Monarch form has square blocks through :meth:`Einsum.as_monarch` (``P @ Monarch``: a
  permutation and the blockwise Monarch rules). Every other θ falls through to the generic rules.
* MLR ``diag``: the levels' block diagonals, ``Σ_l Σ_t U_l[k, i, t] conj(V_l[k, i, t])``, O(n Σ r_l);
  ``trace`` sums it. BandedMLR: the same with the diagonal couplings (offset 0) only.
* MLR ``solve``: no rule here. ``D + MLR`` would be Woodbury with capacitance size
  ``Σ_l 2^l r_l``, but the Woodbury rule lives on ``Sum`` (``inverse.py``) and recognises
  ``LowRank`` terms only: ``lo.solve(D + M.as_lowrank(), b)`` reaches it (block-sparse factors
  stored dense); a bare ``MLR`` goes to the generic rules (dense LU/Cholesky, or Krylov).
"""

from __future__ import annotations

import numpy as np

from ..algorithms import Algorithm
from ..operators import LinearOperator, Product
from ..operators.einsum_family import Einsum
from ..operators.mlr import MLR, BandedMLR
from ..operators.monarch import Monarch
from ._dispatch import STRUCTURE, dispatch, when
from .determinants import _slogdet
from .diagonals import _diag, _trace
from .inverse import _inv

__all__ = ["structured_form"]


# ------------------------------------------------------------------------ Einsum
def _unpadded_square(A: Einsum) -> bool:
    s = A.sizes
    return A.is_square and (A.d_in, A.d_out) == (s.n_in, s.n_out)


def structured_form(A: Einsum) -> LinearOperator | None:
    """``A`` as a Kronecker product with square factors, or as ``P @ Monarch`` with square Monarch
    blocks (unpadded, square ``A``), else None: the forms whose exact rules beat dense ones."""
    if not _unpadded_square(A):
        return None
    s = A.sizes
    if s.f == s.g == s.r == 1 and s.d == s.a and s.e == s.b:
        return A.as_kronecker()
    if s.b == s.d == 1:
        P, M = A.as_monarch().factors
        if isinstance(M, Monarch) and M.is_block_square:
            return Product(P, M)
    return None


def _has_form(A: Einsum) -> bool:
    return structured_form(A) is not None


_NEEDS = "a Kronecker point with square factors or a Monarch/BTT point with square blocks, unpadded"


@dispatch(precedence=STRUCTURE)
@when(_has_form, _NEEDS, lambda A, alg: _inv.invoke(LinearOperator, type(alg))(A, alg))
def _inv(A: Einsum, alg: Algorithm):  # noqa: F811
    """Through the Kronecker (factorwise) or P @ Monarch (blockwise) form of a structured Einsum point."""
    return _inv(structured_form(A), alg)


@dispatch(precedence=STRUCTURE)
@when(_has_form, _NEEDS, lambda A, alg: _slogdet.invoke(LinearOperator, type(alg))(A, alg))
def _slogdet(A: Einsum, alg: Algorithm):  # noqa: F811
    """Through the Kronecker or P @ Monarch form: log|det| of the factors or blocks, summed."""
    return _slogdet(structured_form(A), alg)


def _einsum_diag(A: Einsum):
    xp = A.xp
    s = A.sizes
    i = np.arange(min(A.shape))
    f, e, d = np.unravel_index(i, (s.f, s.e, s.d))
    g, b, a = np.unravel_index(i, (s.g, s.b, s.a))
    idx = lambda v: xp.asarray(v, device=A.device)  # noqa: E731
    Ai = A.A[idx(f), idx(d), :, idx(g), idx(a)]  # (n, r)
    Bi = A.B[idx(f), idx(e), :, idx(g), idx(b)]
    return xp.sum(Ai * Bi, axis=1)


@dispatch(precedence=STRUCTURE)
def _diag(A: Einsum, alg: Algorithm):  # noqa: F811
    """W[i, i] = Σ_r A[f, d, r, g, a] B[f, e, r, g, b] at the grid positions of i: a gather, O(n r)."""
    return _einsum_diag(A)


@dispatch(precedence=STRUCTURE)
def _trace(A: Einsum, alg: Algorithm):  # noqa: F811
    """tr W = Σ_i Σ_r A[f, d, r, g, a] B[f, e, r, g, b] (the gathered diagonal, summed), O(n r)."""
    return A.xp.sum(_einsum_diag(A))


# --------------------------------------------------------------------------- MLR
def _mlr_diag(A):
    xp = A.xp
    N = A.padded_size
    out = None
    for U, V in zip(A.U, A.V, strict=True):
        if isinstance(A, BandedMLR):
            w = A.bandwidth
            U, V = U[w], V[w]  # offset 0: the diagonal blocks
        d = xp.sum(U * xp.conj(V), axis=2).reshape(N)
        out = d if out is None else out + d
    return out[: A.n]


@dispatch(precedence=STRUCTURE)
def _diag(A: MLR, alg: Algorithm):  # noqa: F811
    """diag W = Σ_l (the diagonals of level l's blocks U V^H: Σ_t U[k, i, t] conj(V[k, i, t])), O(n Σ r_l)."""
    return _mlr_diag(A)


@dispatch(precedence=STRUCTURE)
def _trace(A: MLR, alg: Algorithm):  # noqa: F811
    """tr W = Σ_l Σ_k tr(U_{l,k} V_{l,k}^H) = Σ_l Σ U_l ∘ conj(V_l) (unpadded rows), O(n Σ r_l)."""
    return A.xp.sum(_mlr_diag(A))


@dispatch(precedence=STRUCTURE)
def _diag(A: BandedMLR, alg: Algorithm):  # noqa: F811
    """Only the diagonal couplings (offset 0) reach the diagonal: as MLR, O(n Σ r_l)."""
    return _mlr_diag(A)


@dispatch(precedence=STRUCTURE)
def _trace(A: BandedMLR, alg: Algorithm):  # noqa: F811
    """tr W from the diagonal couplings (offset 0), O(n Σ r_l)."""
    return A.xp.sum(_mlr_diag(A))

