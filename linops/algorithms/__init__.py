"""Algorithms: small frozen configuration objects passed as ``alg=``, and ``Auto``'s decision list."""

from .base import LU, SVD, Algorithm, Auto, Cholesky, Eig, Eigh, Exact
from .cg import CG, cg
from .gmres import GMRES, gmres
from .estimators import Hutchinson, hutchinson, slq
from .info import EstimateInfo, SolveInfo
from .lanczos import SLQ, Lanczos, lanczos
from .minres import MINRES, minres

__all__ = ["Algorithm", "Auto", "Cholesky", "LU", "Eigh", "Eig", "SVD", "Exact", "CG", "cg", "SolveInfo",
           "Lanczos", "lanczos", "SLQ", "slq", "Hutchinson", "hutchinson", "EstimateInfo",
           "MINRES", "minres", "GMRES", "gmres"]

from .arnoldi import Arnoldi, arnoldi  # noqa: E402
from .lobpcg import LOBPCG, lobpcg  # noqa: E402
from .randomized import RandomizedSVD, randomized_svd  # noqa: E402
from .subspace import SubspaceIteration, subspace_iteration  # noqa: E402

__all__ += ["Arnoldi", "arnoldi", "LOBPCG", "lobpcg", "SubspaceIteration", "subspace_iteration",
            "RandomizedSVD", "randomized_svd"]

from .estimators import (  # noqa: E402
    DiagonalEstimator, DiagPlusPlus, HutchPlusPlus, StochasticDiag, StochasticTrace, diag_bks, diag_pp, hutch_pp,
)
from .xtrace import XTrace, xtrace  # noqa: E402

__all__ += ["HutchPlusPlus", "hutch_pp", "XTrace", "xtrace", "DiagonalEstimator", "diag_bks", "DiagPlusPlus", "diag_pp",
            "StochasticTrace", "StochasticDiag"]

from .bicgstab import BiCGStab, bicgstab  # noqa: E402
from .lsmr import LSMR, lsmr  # noqa: E402

__all__ += ["BiCGStab", "bicgstab", "LSMR", "lsmr"]

from .lowrank_approx import PivotedCholeskyInfo, nystrom, pivoted_cholesky  # noqa: E402
from .preconditioners import NystromPrecond, PivotedCholeskyPrecond, Preconditioner, jacobi  # noqa: E402

__all__ += ["jacobi", "pivoted_cholesky", "nystrom", "PivotedCholeskyInfo", "Preconditioner",
            "PivotedCholeskyPrecond", "NystromPrecond"]
