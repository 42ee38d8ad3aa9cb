"""Operators: the LinearOperator base and one module per family."""

from .algebra import Adjoint, Product, Sliced, Sum, Transpose
from .banded import Triangular, Tridiagonal
from .base import LinearOperator
from .block import Block, BlockDiag
from .dense import Dense
from .diagonal import Diagonal, Identity, ScalarMul, Zero
from .kronecker import Kronecker, KroneckerSum
from .lowrank import LowRank
from .permutation import Permutation

__all__ = [
    "LinearOperator", "Dense", "Diagonal", "Identity", "ScalarMul", "Zero", "Sum", "Product", "Adjoint",
    "Transpose", "Sliced", "Block", "BlockDiag", "Kronecker", "KroneckerSum", "LowRank", "Permutation",
    "Triangular", "Tridiagonal",
]
