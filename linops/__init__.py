"""linops: structured linear operators that compose, with solvers chosen by structure.

>>> import numpy as np, linops as lo
>>> K = lo.Kronecker(lo.Dense(np.eye(3) * 2), lo.Dense(np.eye(4)))
>>> float(lo.logdet(K))  # 4 log det(2 I_3)
8.317766166719343

Importing linops loads numpy only. plum (the dispatcher) loads with the first use of a
function such as ``lo.solve``; scipy, torch and jax when first needed.
"""

from typing import TYPE_CHECKING

from . import errors
from .algorithms import (
    CG, GMRES, LU, MINRES, SLQ, SVD, Algorithm, Auto, Cholesky, Eig, Eigh, EstimateInfo, Exact, Hutchinson, Lanczos,
    SolveInfo,
)
from .algorithms import LOBPCG, Arnoldi, RandomizedSVD, SubspaceIteration
from .annotations import PSD, SelfAdjoint, Unitary
from .errors import (
    BackendMismatchError,
    DeviceMismatchError,
    ConvergenceError,
    ConvergenceWarning,
    DomainError,
    LinopsError,
    NonFiniteError,
    NotPSDError,
    NotSelfAdjointError,
    NotSquareError,
    NumericalError,
    ShapeError,
    SingularMatrixError,
)
from .operators import (
    Adjoint,
    Block,
    BlockDiag,
    Dense,
    Diagonal,
    Identity,
    Kronecker,
    KroneckerSum,
    LinearOperator,
    LowRank,
    Monarch,
    BTT,
    Permutation,
    Product,
    ScalarMul,
    Sliced,
    Sum,
    Transpose,
    Triangular,
    Tridiagonal,
    Zero,
    monarch_project,
    monarch_shapes,
    btt_project,
    btt_shapes,
)

__version__ = "0.1.0"

# The dispatched functions load on first use: plum (and its beartype) cost about 0.18 s to
# import, more than the rest of linops together, and a user who only builds operators
# should not pay it. `lo.solve` etc. behave exactly as if imported eagerly.
_FUNCTIONS = frozenset(
    ("solve", "inv", "logdet", "slogdet", "det", "trace", "diag", "eigh", "eig", "svd",
     "exp", "log", "sqrt", "isqrt", "pow", "apply", "explain", "lstsq", "pinv")
)

if TYPE_CHECKING:
    from .functions import (
        apply, det, diag, eig, eigh, exp, explain, inv, isqrt, log, logdet, pow, slogdet, solve, sqrt, svd, trace,
    )
    from .functions import lstsq, pinv


def __getattr__(name):
    if name in _FUNCTIONS:
        from . import functions

        value = getattr(functions, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'linops' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _FUNCTIONS)


def to_dense(A):
    """The dense array of operator ``A`` (arrays pass through unchanged)."""
    return A.to_dense() if isinstance(A, LinearOperator) else A


__all__ = [
    # operators
    "LinearOperator", "Dense", "Diagonal", "Identity", "ScalarMul", "Zero", "Sum", "Product", "Adjoint",
    "Transpose", "Sliced", "Block", "BlockDiag", "Kronecker", "KroneckerSum", "LowRank", "Permutation",
    "Triangular", "Tridiagonal", "to_dense", "Monarch", "monarch_project", "monarch_shapes", "BTT", "btt_project", "btt_shapes",
    # annotations
    "PSD", "SelfAdjoint", "Unitary",
    # functions
    "solve", "inv", "logdet", "slogdet", "det", "trace", "diag", "eigh", "eig", "svd",
    "exp", "log", "sqrt", "isqrt", "pow", "apply", "explain",
    # algorithms
    "Algorithm", "Auto", "Cholesky", "LU", "Eigh", "Eig", "SVD", "Exact", "CG", "MINRES", "GMRES", "Lanczos", "SLQ", "Hutchinson",
    "SolveInfo", "EstimateInfo",
    "Arnoldi", "LOBPCG", "SubspaceIteration", "RandomizedSVD",
    # errors
    "errors", "LinopsError", "ShapeError", "NotSquareError", "BackendMismatchError", "DeviceMismatchError",
    "NumericalError", "SingularMatrixError", "NotPSDError", "NotSelfAdjointError", "NonFiniteError", "DomainError",
    "ConvergenceError", "ConvergenceWarning",
]

from .algorithms import DiagonalEstimator, DiagPlusPlus, HutchPlusPlus, XTrace  # noqa: E402

__all__ += ["HutchPlusPlus", "XTrace", "DiagonalEstimator", "DiagPlusPlus"]

from .algorithms import LSMR, BiCGStab  # noqa: E402

__all__ += ["BiCGStab", "LSMR", "lstsq", "pinv"]

from .algorithms import (  # noqa: E402
    NystromPrecond, PivotedCholeskyInfo, PivotedCholeskyPrecond, Preconditioner, jacobi, nystrom, pivoted_cholesky,
)

__all__ += ["jacobi", "pivoted_cholesky", "nystrom", "PivotedCholeskyInfo", "Preconditioner", "PivotedCholeskyPrecond",
            "NystromPrecond"]

from .operators import (  # noqa: E402
    DFT, Circulant, Convolution, Hartley, Householder, Toeplitz, circulant_approximation, toeplitz_preconditioner,
)

__all__ += ["DFT", "Hartley", "Toeplitz", "Circulant", "Convolution", "circulant_approximation",
            "toeplitz_preconditioner", "Householder"]

from .operators import RBF, Hessian, Jacobian, KernelMatrix, LinearKernel, Matern, Periodic, Sparse  # noqa: E402

__all__ += ["KernelMatrix", "RBF", "Matern", "Periodic", "LinearKernel", "Sparse", "Jacobian", "Hessian"]

from .operators import Butterfly, RealPart, TensorTrain, tt_project, tt_shapes  # noqa: E402

__all__ += ["TensorTrain", "tt_project", "tt_shapes", "Butterfly", "RealPart"]

from .operators import (  # noqa: E402
    MLR, BandedMLR, Einsum, EinsumSizes, einsum_counts, einsum_exponents, einsum_points, einsum_rank, einsum_sizes,
)

__all__ += ["Einsum", "EinsumSizes", "einsum_points", "einsum_sizes", "einsum_exponents", "einsum_rank", "einsum_counts", "MLR", "BandedMLR"]
