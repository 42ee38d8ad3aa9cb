"""linops: structured linear operators that compose, with solvers chosen by structure.

>>> import numpy as np, linops as lo
>>> K = lo.Kronecker(lo.Dense(np.eye(3) * 2), lo.Dense(np.eye(4)))
>>> float(lo.logdet(K))  # 4 log det(2 I_3)
8.317766166719343

Importing linops loads numpy only. plum (the dispatcher) loads with the first use of a
function such as ``lo.solve``; scipy, torch and jax when first needed.
"""

from typing import TYPE_CHECKING

from . import algorithms, errors, operators
from .algorithms import (
    CG, GMRES, LU, MINRES, SLQ, SVD, Algorithm, Auto, Cholesky, DiagonalEstimator, DiagPlusPlus, Eig, Eigh,
    EstimateInfo, Exact, Hutchinson, HutchPlusPlus, Lanczos, SolveInfo,
)
from .annotations import PSD, SelfAdjoint, Unitary
from .errors import (
    BackendMismatchError,
    ConvergenceError,
    ConvergenceWarning,
    DeviceMismatchError,
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
    Permutation,
    Product,
    ScalarMul,
    Sliced,
    Sum,
    Transpose,
    Triangular,
    Tridiagonal,
    Zero,
)

__version__ = "0.1.0"

# The dispatched functions load on first use: plum (and its beartype) cost about 0.18 s to
# import, more than the rest of linops together, and a user who only builds operators
# should not pay it. `lo.solve` etc. behave exactly as if imported eagerly. The larger
# operator families (Monarch, kernels, Fourier, ...) and the less common algorithms load on
# first use of their names too (`operators.LAZY`, `algorithms.LAZY`).
_FUNCTIONS = frozenset(
    ("solve", "inv", "logdet", "slogdet", "det", "trace", "diag", "eigh", "eig", "svd",
     "exp", "log", "sqrt", "isqrt", "pow", "apply", "explain", "lstsq", "pinv", "build_preconditioner")
)

if TYPE_CHECKING:
    from .algorithms import (  # noqa: F401
        LOBPCG, LSMR, Arnoldi, BiCGStab, FirstOf, JacobiPrecond, NystromPrecond, PivotedCholeskyInfo,
        PivotedCholeskyPrecond, PreconditionerSpec, RandomizedSVD, SubspaceIteration, XTrace, nystrom,
    )
    from .functions import (  # noqa: F401
        apply, det, diag, eig, eigh, exp, explain, inv, isqrt, log, logdet, lstsq, pinv, pow, slogdet, solve, sqrt,
        svd, trace,
    )
    from .functions.preconditioning import (  # noqa: F401
        Preconditioner, build_preconditioner, jacobi, pivoted_cholesky,
    )
    from .operators import (  # noqa: F401
        BTT, DFT, MLR, RBF, BandedMLR, Butterfly, Circulant, Convolution, Einsum, EinsumSizes, Hartley, Hessian,
        Householder, Jacobian, KernelMatrix, LinearKernel, Matern, Monarch, Periodic, RealPart, Sparse, TensorTrain,
        Toeplitz, btt_project, btt_shapes, circulant_approximation, einsum_counts, einsum_exponents, einsum_points,
        einsum_project, einsum_rank, einsum_sizes, monarch_project, monarch_shapes, toeplitz_preconditioner, tt_project, tt_shapes,
    )

_ALGORITHMS_PUBLIC = frozenset(
    ("Arnoldi", "LOBPCG", "SubspaceIteration", "RandomizedSVD", "XTrace", "BiCGStab", "LSMR", "jacobi",
     "pivoted_cholesky", "nystrom", "PivotedCholeskyInfo", "Preconditioner", "PivotedCholeskyPrecond", "NystromPrecond",
     "JacobiPrecond", "FirstOf", "PreconditionerSpec")
)


# placement on a JAX device mesh (linops.sharding): loads plum and, on use, jax
_SHARDING = frozenset(("shard", "ShardedKernel"))


def _from_preconditioning(name):
    def load():
        from .functions import preconditioning

        return getattr(preconditioning, name)

    return load


# the preconditioner builders need lo.diag, so they live in linops.functions.preconditioning; the
# algorithms layer (never importing upward) serves its old names and spec.build(A) through these loaders
for _name in (*algorithms.UPWARD, "factored_preconditioner"):
    algorithms.provide(_name, _from_preconditioning(_name))
del _name


def __getattr__(name):
    if name in _FUNCTIONS:
        from . import functions

        value = getattr(functions, name)
    elif name in operators.LAZY:
        value = getattr(operators, name)
    elif name in _ALGORITHMS_PUBLIC:
        value = getattr(algorithms, name)  # eager there or lazy (algorithms.LAZY)
    elif name in _SHARDING:
        from . import sharding

        value = getattr(sharding, name)
    else:
        raise AttributeError(f"module 'linops' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | _FUNCTIONS | set(operators.LAZY) | _ALGORITHMS_PUBLIC | _SHARDING)


def to_dense(A):
    """The dense array of operator ``A`` (arrays pass through unchanged)."""
    return A.to_dense() if isinstance(A, LinearOperator) else A


__all__ = [
    # operators
    "LinearOperator", "Dense", "Diagonal", "Identity", "ScalarMul", "Zero", "Sum", "Product", "Adjoint",
    "Transpose", "Sliced", "Block", "BlockDiag", "Kronecker", "KroneckerSum", "LowRank", "Permutation",
    "Triangular", "Tridiagonal", "to_dense", *sorted(operators.LAZY),
    # annotations
    "PSD", "SelfAdjoint", "Unitary",
    # functions
    *sorted(_FUNCTIONS),
    # algorithms
    "Algorithm", "Auto", "Cholesky", "LU", "Eigh", "Eig", "SVD", "Exact", "CG", "MINRES", "GMRES", "Lanczos", "SLQ",
    "Hutchinson", "HutchPlusPlus", "DiagonalEstimator", "DiagPlusPlus", "SolveInfo", "EstimateInfo",
    *sorted(_ALGORITHMS_PUBLIC),
    # sharding
    *sorted(_SHARDING),
    # errors
    "errors", "LinopsError", "ShapeError", "NotSquareError", "BackendMismatchError", "DeviceMismatchError",
    "NumericalError", "SingularMatrixError", "NotPSDError", "NotSelfAdjointError", "NonFiniteError", "DomainError",
    "ConvergenceError", "ConvergenceWarning",
]
