"""Operators: the LinearOperator base and one module per family."""

from .algebra import Adjoint, Product, Sliced, Sum, Transpose
from .banded import Triangular, Tridiagonal
from .base import LinearOperator
from .block import Block, BlockDiag
from .dense import Dense
from .diagonal import Diagonal, Identity, ScalarMul, Zero
from .jacobian import Hessian, Jacobian
from .kernels import RBF, KernelMatrix, LinearKernel, Matern, Periodic
from .kronecker import Kronecker, KroneckerSum
from .lowrank import LowRank
from .btt import BTT, btt_project, btt_shapes
from .monarch import Monarch, monarch_project, monarch_shapes
from .permutation import Permutation
from .sparse import Sparse
from .fourier import DFT, Hartley, Toeplitz
from .convolution import Circulant, Convolution, circulant_approximation, toeplitz_preconditioner
from .householder import Householder

__all__ = [
    "LinearOperator", "Dense", "Diagonal", "Identity", "ScalarMul", "Zero", "Sum", "Product", "Adjoint",
    "Transpose", "Sliced", "Block", "BlockDiag", "Kronecker", "KroneckerSum", "LowRank", "Permutation",
    "Triangular", "Tridiagonal", "Monarch", "monarch_project", "monarch_shapes", "BTT", "btt_project", "btt_shapes",
    "KernelMatrix", "RBF", "Matern", "Periodic", "LinearKernel", "Sparse", "Jacobian", "Hessian",
]

__all__ += ["DFT", "Hartley", "Toeplitz", "Circulant", "Convolution", "circulant_approximation",
            "toeplitz_preconditioner", "Householder"]

from .tensor_train import TensorTrain, tt_project, tt_shapes  # noqa: E402
from .butterfly import Butterfly, RealPart  # noqa: E402

__all__ += ["TensorTrain", "tt_project", "tt_shapes", "Butterfly", "RealPart"]

from .einsum_family import Einsum, EinsumSizes, einsum_counts, einsum_exponents, einsum_points, einsum_rank, einsum_sizes  # noqa: E402
from .mlr import MLR, BandedMLR  # noqa: E402

__all__ += ["Einsum", "EinsumSizes", "einsum_points", "einsum_sizes", "einsum_exponents", "einsum_rank", "einsum_counts", "MLR", "BandedMLR"]
