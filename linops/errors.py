"""The exceptions linops raises, one named type per kind of failure.

Every error derives from :class:`LinopsError` and from the builtin exception a
caller would expect (``ValueError`` for bad shapes, ``TypeError`` for mixed
backends, ``numpy.linalg.LinAlgError`` for numerical failures), so existing
``except`` clauses keep working.
"""

from __future__ import annotations

from numpy.linalg import LinAlgError

__all__ = [
    "LinopsError",
    "ShapeError",
    "NotSquareError",
    "BackendMismatchError",
    "DeviceMismatchError",
    "NumericalError",
    "SingularMatrixError",
    "NotPSDError",
    "NotSelfAdjointError",
    "NonFiniteError",
    "DomainError",
    "ConvergenceError",
    "ConvergenceWarning",
]


class LinopsError(Exception):
    """Base class of every exception raised by linops."""


class ShapeError(LinopsError, ValueError):
    """Operands whose shapes do not fit together (``A @ x``, ``A + B``, blocks, factors)."""


class NotSquareError(ShapeError):
    """A function that needs a square operator (solve, logdet, eigh, exp, ...) got a rectangular one."""


class BackendMismatchError(LinopsError, TypeError):
    """Arrays or operators of different array libraries (numpy, torch, jax) were combined."""


class DeviceMismatchError(LinopsError, ValueError):
    """Arrays or operators on different devices (``cpu`` and ``cuda:0``, say) were combined."""


class NumericalError(LinopsError, LinAlgError):
    """Base class of the failures found while computing (singular, indefinite, non-finite)."""


class SingularMatrixError(NumericalError):
    """A factorisation met an exactly singular operator, so its inverse or solve does not exist."""


class NotPSDError(NumericalError):
    """An operator promised (or required) to be positive definite is not: its Cholesky factorisation failed."""


class NotSelfAdjointError(NumericalError):
    """``eigh`` (or a rule that needs ``A == A.H``) got an operator that is not self-adjoint."""


class NonFiniteError(NumericalError):
    """An input or an intermediate result holds NaN or infinity where a finite value was required."""


class DomainError(LinopsError, ValueError):
    """The result is outside the operator's field, e.g. ``logdet`` of a real matrix with negative determinant."""


class ConvergenceError(NumericalError):
    """An iterative method stopped at its iteration cap before reaching its tolerance.

    ``.info`` holds the method's report (iterations, residual history, converged flags).
    """

    def __init__(self, message: str, info=None):
        super().__init__(message)
        self.info = info


class ConvergenceWarning(UserWarning):
    """Issued instead of ConvergenceError when the algorithm was built with ``on_failure="warn"``."""
