"""Exact rules of the tensor families (TensorTrain, Butterfly).

* TensorTrain with all ranks 1 and no padding is the Kronecker product ``⊗_k G_k[0, :, :, 0]``
  (``TensorTrain.as_kronecker``): ``inv`` and ``slogdet`` go through the Kronecker rules (factor
  by factor when the cores are square, O(Σ n_k^3)); ``eigh`` too when every core's matrix is
  Hermitian (checked on concrete values; a traced TT takes the generic rule). Any other TT (a
  rank above 1, or padding) takes the generic dense rules.
* Butterfly ``B = F_{L-1} ... F_0 P``: ``B^{-1} = P^{-1} F_0^{-1} ... F_{L-1}^{-1}``, each factor
  inverted block by block in closed form (``Butterfly.inverse``: a butterfly in reverse factor
  order), O(n log n) to build and to apply; ``log|det B| = Σ_{k,t} log|det blocks[k, t]|`` and
  the sign is the product of the blocks' determinant phases times the bit reversal's parity,
  O(n log n). Each factor is a permuted direct sum of its 2 x 2 blocks, hence these identities.
"""

from __future__ import annotations

import numpy as np

from ..algorithms import Algorithm
from ..errors import SingularMatrixError
from ..operators import LinearOperator
from ..operators.butterfly import Butterfly, _bitrev
from ..operators.tensor_train import TensorTrain
from ._dispatch import STRUCTURE, dispatch, when
from .determinants import _slogdet
from .eigen import _eigh
from .inverse import _inv

__all__: list[str] = []


# ------------------------------------------------------------------------- TensorTrain
def _rank_one(A: TensorTrain) -> bool:
    return all(r == 1 for r in A.ranks) and not A.padded


def _rank_one_hermitian(A: TensorTrain) -> bool:
    if not _rank_one(A) or any(int(G.shape[1]) != int(G.shape[2]) for G in A.cores):
        return False
    xp = A.xp
    for G in A.cores:
        gap = xp.hermitian_gap(G[0, :, :, 0])
        if gap is None:  # traced values: the check cannot run, so the rule does not apply
            return False
        asym, scale = gap
        if not asym <= 100 * xp.eps(A.dtype) * max(scale, 1e-300) * G.shape[1] ** 0.5:
            return False
    return True


def _generic(fn):
    return lambda A, alg: fn.invoke(LinearOperator, type(alg))(A, alg)


@dispatch(precedence=STRUCTURE)
@when(_rank_one, "all TT ranks 1 and no padding", _generic(_inv))
def _inv(A: TensorTrain, alg: Algorithm):
    """A rank-1 TT is ``⊗_k G_k[0, :, :, 0]``: ``(⊗ A_k)^{-1} = ⊗ A_k^{-1}`` (square cores)."""
    return _inv(A.as_kronecker(), alg)


@dispatch(precedence=STRUCTURE)
@when(_rank_one, "all TT ranks 1 and no padding", _generic(_slogdet))
def _slogdet(A: TensorTrain, alg: Algorithm):
    """A rank-1 TT is ``⊗_k A_k``: ``log|det| = Σ (N / n_k) log|det A_k|`` (square cores)."""
    return _slogdet(A.as_kronecker(), alg)


@dispatch(precedence=STRUCTURE)
@when(_rank_one_hermitian, "all TT ranks 1, no padding and Hermitian core matrices (concrete values)",
      _generic(_eigh))
def _eigh(A: TensorTrain, alg: Algorithm):
    """``⊗ A_k`` with Hermitian ``A_k``: eigenvalues all products of the cores', vectors ``⊗ Q_k``."""
    from ..annotations import SelfAdjoint
    from ..operators import Kronecker

    return _eigh(Kronecker(*(SelfAdjoint(f) for f in A.as_kronecker().factors)), alg)


# --------------------------------------------------------------------------- Butterfly
def _bitrev_sign(n: int) -> int:
    p = _bitrev(n)
    return -1 if int(np.count_nonzero(p > np.arange(n))) % 2 else 1  # an involution: count its 2-cycles


@dispatch(precedence=STRUCTURE)
def _inv(A: Butterfly, alg: Algorithm):
    """``B^{-1}``: the 2 x 2 blocks inverted in closed form, factor order reversed (a Butterfly)."""
    xp = A.xp
    det = A.block_dets()
    if xp.is_concrete(det):
        zero = np.argwhere(np.asarray(xp.to_numpy(det)) == 0)
        if zero.size:
            k, t = (int(v) for v in zero[0])
            raise SingularMatrixError(f"{A._label()} is singular: block {t} of factor {k} has determinant 0")
    return A.inverse()


@dispatch(precedence=STRUCTURE)
def _slogdet(A: Butterfly, alg: Algorithm):
    """``log|det B| = Σ log|det blocks|``; sign: Π of the blocks' det phases × parity of P."""
    xp = A.xp
    det = A.block_dets().reshape(-1)
    a = xp.abs(det)
    phase = xp.where(a == 0, 0 * det, det / xp.where(a == 0, 1 + 0 * a, a))
    sign = xp.prod(phase)
    if A.bit_reversal and _bitrev_sign(A.shape[0]) < 0:
        sign = -sign
    safe = xp.where(a == 0, 1 + 0 * a, a)  # a zero block determinant gives -inf, without a log(0) warning
    return sign, xp.sum(xp.where(a == 0, 0 * a - float("inf"), xp.log(safe)))
