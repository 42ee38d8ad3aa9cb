"""Operators: the LinearOperator base and one module per family.

The core families load with ``import linops``; the larger structured families (Monarch, BTT,
Tensor-Train, Butterfly, Einsum, MLR, Fourier, convolution, Householder, kernels, sparse,
Jacobian) load on first use of one of their names (PEP 562), so ``import linops`` stays cheap.
"""

from .._lazy import lazy_attributes

from .algebra import Adjoint, Product, Sliced, Sum, Transpose
from .banded import Triangular, Tridiagonal
from .base import LinearOperator
from .block import Block, BlockDiag
from .dense import Dense
from .diagonal import Diagonal, Identity, ScalarMul, Zero
from .kronecker import Kronecker, KroneckerSum
from .lowrank import LowRank
from .permutation import Permutation

#: public name -> the module (in this package) that defines it, imported on first access
LAZY = {
    **dict.fromkeys(("Monarch", "monarch_project", "monarch_shapes"), "monarch"),
    **dict.fromkeys(("BTT", "btt_project", "btt_shapes"), "btt"),
    **dict.fromkeys(("TensorTrain", "tt_project", "tt_shapes"), "tensor_train"),
    **dict.fromkeys(("Butterfly", "RealPart"), "butterfly"),
    **dict.fromkeys(("Einsum", "EinsumSizes", "einsum_counts", "einsum_exponents", "einsum_points", "einsum_rank",
                     "einsum_sizes", "einsum_project", "check_theta"), "einsum_family"),
    **dict.fromkeys(("MLR", "BandedMLR"), "mlr"),
    **dict.fromkeys(("DFT", "Hartley", "Toeplitz"), "fourier"),
    **dict.fromkeys(("Circulant", "Convolution", "circulant_approximation", "toeplitz_preconditioner"), "convolution"),
    "Householder": "householder",
    **dict.fromkeys(("KernelMatrix", "RBF", "Matern", "Periodic", "LinearKernel"), "kernels"),
    "Sparse": "sparse",
    **dict.fromkeys(("Jacobian", "Hessian"), "jacobian"),
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), LAZY)


__all__ = [
    "LinearOperator", "Dense", "Diagonal", "Identity", "ScalarMul", "Zero", "Sum", "Product", "Adjoint",
    "Transpose", "Sliced", "Block", "BlockDiag", "Kronecker", "KroneckerSum", "LowRank", "Permutation",
    "Triangular", "Tridiagonal", *LAZY,
]
