"""The public dispatched functions; one module per function family, its rules beside it.

``inverse`` (inv, solve), ``determinants`` (slogdet, logdet, det), ``diagonals`` (diag,
trace), ``eigen`` (eigh, eig, svd), ``matfun`` (exp, log, sqrt, isqrt, pow, apply).
``rules`` is the public extension point (the plum functions, for your own rules).
"""

from . import iterative, rules  # noqa: F401  (iterative registers the CG/MINRES/GMRES rules)
from .determinants import det, logdet, slogdet
from .diagonals import diag, trace
from .eigen import eig, eigh, svd
from .explain import explain
from .inverse import inv, solve
from .matfun import apply, exp, isqrt, log, pow, sqrt

__all__ = [
    "inv", "solve", "logdet", "slogdet", "det", "trace", "diag", "eigh", "eig", "svd",
    "exp", "log", "sqrt", "isqrt", "pow", "apply", "explain", "rules",
]
