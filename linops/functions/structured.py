"""Exact rules of the structured-matrix family (Monarch, BTT).

* Monarch ``P2 L P1 R`` with square blocks and no padding: ``inv`` and ``slogdet`` through the
  factorisation (``Monarch.factors``): the permutations are unitary, the block-diagonal factors
  are inverted and their determinants taken block by block, so the cost is that of the ``k + l``
  small blocks, O(k p^3 + l r^3), never the dense O(n^3). Padded or rectangular-block Monarch
  matrices fall through to the generic rules.
* BTT: through its Monarch form (``BTT.as_monarch``), so rank-1 BTT with square grids inverts
  blockwise and everything else goes the generic way.
"""

from __future__ import annotations

from ..algorithms import Algorithm
from ..operators import LinearOperator, Product
from ..operators.btt import BTT
from ..operators.monarch import Monarch
from ._dispatch import STRUCTURE, dispatch, when
from .determinants import _slogdet
from .inverse import _inv

__all__: list[str] = []


def _block_square(A: Monarch) -> bool:
    return A.is_block_square


def _generic_inv(A, alg):
    return _inv.invoke(LinearOperator, type(alg))(A, alg)


def _generic_slogdet(A, alg):
    return _slogdet.invoke(LinearOperator, type(alg))(A, alg)


@dispatch(precedence=STRUCTURE)
@when(_block_square, "square blocks and no padding", _generic_inv)
def _inv(A: Monarch, alg: Algorithm):
    """M^{-1} = R^{-1} P1^T L^{-1} P2^T: blockwise inverses of the two block-diagonal factors."""
    return _inv(Product(*A.factors()), alg)


@dispatch(precedence=STRUCTURE)
@when(_block_square, "square blocks and no padding", _generic_slogdet)
def _slogdet(A: Monarch, alg: Algorithm):
    """log|det M| = Σ log|det R_i| + Σ log|det L_j| (the permutations contribute a sign)."""
    return _slogdet(Product(*A.factors()), alg)


@dispatch(precedence=STRUCTURE)
def _inv(A: BTT, alg: Algorithm):
    """A BTT matrix is a Monarch matrix (``A.as_monarch()``): its rules apply (blockwise when square)."""
    return _inv(A.as_monarch(), alg)


@dispatch(precedence=STRUCTURE)
def _slogdet(A: BTT, alg: Algorithm):
    """Through ``A.as_monarch()`` (blockwise when its blocks are square)."""
    return _slogdet(A.as_monarch(), alg)
