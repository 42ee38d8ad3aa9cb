"""The public dispatched functions; one module per function family, its rules beside it."""

from .eigen import eig, eigh, svd
from .explain import explain
from .inverse import inv, solve
from .logdet import det, logdet, slogdet
from .matfun import apply, exp, isqrt, log, pow, sqrt
from .trace import diag, trace

__all__ = [
    "inv", "solve", "logdet", "slogdet", "det", "trace", "diag", "eigh", "eig", "svd",
    "exp", "log", "sqrt", "isqrt", "pow", "apply", "explain",
]
