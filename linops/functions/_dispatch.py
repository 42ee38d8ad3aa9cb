"""The one plum dispatcher of linops' functions, the structure-rule precedence, and shared checks.

Rules are plum methods on ``(operator type, algorithm type)``. A *structure rule*
(registered on ``(SomeOperator, Algorithm)``) applies under every algorithm and passes the
algorithm on to the parts it produces; a *generic rule* is registered on
``(LinearOperator, SomeAlgorithm)``. Where both match, e.g. ``(Kronecker, LU)``, plum
would call it ambiguous: ``STRUCTURE`` precedence settles it in favour of the structure.
This is the only use of precedence in linops.
"""

from __future__ import annotations

from plum import Dispatcher

from ..errors import NotSquareError, ShapeError
from ..operators.base import LinearOperator

dispatch = Dispatcher()

#: precedence of structure rules over the generic (operator, algorithm) rules
STRUCTURE = 1


def as_operator(A, fn: str) -> LinearOperator:
    if isinstance(A, LinearOperator):
        return A
    raise TypeError(
        f"lo.{fn} takes a LinearOperator, got {type(A).__name__}; wrap an array with lo.Dense(M)"
    )


def require_square(A, fn: str) -> LinearOperator:
    A = as_operator(A, fn)
    if A.shape[0] != A.shape[1]:
        raise NotSquareError(f"lo.{fn} needs a square operator, got {A._label()}")
    return A


def check_rhs(A: LinearOperator, b, fn: str) -> None:
    xp = A.xp
    if not isinstance(b, xp.array_types):
        A._check_array(b, f"in lo.{fn}")
    if b.ndim not in (1, 2) or b.shape[0] != A.shape[0]:
        raise ShapeError(
            f"lo.{fn}: right-hand side of shape {tuple(b.shape)} does not fit {A._label()}; "
            f"expected ({A.shape[0]},) or ({A.shape[0]}, k)"
        )
