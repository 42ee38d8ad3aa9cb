"""Structure annotations: PSD, SelfAdjoint, Unitary.

Annotations are data on an operator (``op.annotations``, a frozenset of names), not
subclasses: ``lo.PSD(A)`` returns a copy of ``A`` carrying the promise. Operators
derive what is true of them from their parts when they are built (the helpers below):

============  ===================================================================
Kronecker     every annotation shared by all factors (PSD, SelfAdjoint, Unitary)
BlockDiag     every annotation shared by all blocks
KroneckerSum  PSD and SelfAdjoint shared by all factors
Sum           PSD and SelfAdjoint shared by all terms
Product       ``B.H @ B`` is PSD; ``c * A`` keeps A's for a positive Python ``c``
Adjoint, .T   the annotations of the operand
Identity      PSD, SelfAdjoint, Unitary; Permutation: Unitary; real Diagonal: SelfAdjoint
inv(A)        the annotations of ``A``
============  ===================================================================

A promise is checked where that is cheap: a Cholesky factorisation of an operator
annotated PSD that is not raises :class:`~linops.errors.NotPSDError`.
"""

from __future__ import annotations

from .errors import NotSquareError
from .operators.base import LinearOperator, with_annotations

__all__ = ["PSD", "SelfAdjoint", "Unitary", "annotate", "shared", "is_psd", "is_self_adjoint", "is_unitary"]

_IMPLIES = {"PSD": ("PSD", "SelfAdjoint"), "SelfAdjoint": ("SelfAdjoint",), "Unitary": ("Unitary",)}


def annotate(A: LinearOperator, *tags: str) -> LinearOperator:
    """A copy of square operator ``A`` that also carries ``tags`` (and what they imply)."""
    if not isinstance(A, LinearOperator):
        raise TypeError(f"annotations apply to LinearOperators, got {type(A).__name__}; wrap arrays in lo.Dense")
    if not A.is_square:
        raise NotSquareError(f"{'/'.join(tags)} needs a square operator, got {A._label()}")
    full = set(A.annotations)
    for t in tags:
        full.update(_IMPLIES[t])
    if full == A.annotations:
        return A
    return with_annotations(A, full)


def PSD(A: LinearOperator) -> LinearOperator:
    """Promise that ``A`` is Hermitian positive semi-definite (Cholesky, CG and SLQ become available).

    A singular PSD operator is allowed: its slogdet is (0, -inf); solves with it raise
    SingularMatrixError or NotPSDError (Cholesky cannot tell singular from indefinite).
    """
    return annotate(A, "PSD")


def SelfAdjoint(A: LinearOperator) -> LinearOperator:
    """Promise that ``A == A.H`` (``eigh``, MINRES and Lanczos become available)."""
    return annotate(A, "SelfAdjoint")


def Unitary(A: LinearOperator) -> LinearOperator:
    """Promise that ``A.H @ A == I`` (so ``inv(A)`` is ``A.H``)."""
    return annotate(A, "Unitary")


def is_psd(A: LinearOperator) -> bool:
    return "PSD" in A.annotations


def is_self_adjoint(A: LinearOperator) -> bool:
    return "SelfAdjoint" in A.annotations


def is_unitary(A: LinearOperator) -> bool:
    return "Unitary" in A.annotations


def shared(ops, keep=("PSD", "SelfAdjoint", "Unitary")) -> frozenset:
    """The annotations in ``keep`` that every operator of ``ops`` carries."""
    out = set(keep)
    for op in ops:
        out &= op.annotations
    return frozenset(out)
