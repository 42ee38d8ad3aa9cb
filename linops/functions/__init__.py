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
from .lstsq import lstsq, pinv
from .matfun import apply, exp, isqrt, log, pow, sqrt
from . import structured  # noqa: F401,E402  (registers the Monarch/BTT rules)
from . import krylov_matfun  # noqa: F401,E402  (registers the Lanczos/Arnoldi matfun rules and tr f(A) by SLQ)
from . import fourier  # noqa: F401,E402  (registers the Circulant/Convolution/Toeplitz/DFT/Householder rules)
from . import kernels_sparse  # noqa: F401,E402  (registers the kernel-matrix and sparse rules)
from . import einsum_rules  # noqa: F401,E402  (registers the Einsum-family and MLR rules)
from . import tensor_rules  # noqa: F401,E402  (registers the TensorTrain/Butterfly rules)
from .preconditioning import Preconditioner, build_preconditioner, jacobi, pivoted_cholesky  # noqa: E402,F401

__all__ = [
    "inv", "solve", "logdet", "slogdet", "det", "trace", "diag", "eigh", "eig", "svd",
    "exp", "log", "sqrt", "isqrt", "pow", "apply", "explain", "rules",
    "lstsq", "pinv",
]
