"""Algorithms: small frozen configuration objects passed as ``alg=``, and ``Auto``'s decision list.

Everything loads with ``import linops`` except the preconditioners and low-rank approximations,
which build operators: they load on first use of one of their names (PEP 562).
"""

from .._lazy import lazy_attributes

from .base import LU, SVD, Algorithm, Auto, Cholesky, Eig, Eigh, Exact
from .cg import CG, cg
from .estimators import (
    DiagonalEstimator, DiagPlusPlus, Hutchinson, HutchPlusPlus, StochasticDiag, StochasticTrace, diag_bks, diag_pp,
    hutch_pp, hutchinson, slq,
)
from .gmres import GMRES, gmres
from .info import EstimateInfo, SolveInfo
from .lanczos import SLQ, Lanczos, lanczos
from .minres import MINRES, minres

from .arnoldi import Arnoldi, arnoldi
from .bicgstab import BiCGStab, bicgstab
from .lobpcg import LOBPCG, lobpcg
from .lsmr import LSMR, lsmr
from .randomized import RandomizedSVD, randomized_svd
from .subspace import SubspaceIteration, subspace_iteration
from .xtrace import XTrace, xtrace

# (a function named like its module, e.g. ``arnoldi``, must be imported eagerly: importing the
# submodule later would rebind the package attribute to the module)

#: public name -> the module (in this package) that defines it, imported on first access;
#: these two build operators, so they would load every core operator module
LAZY = {
    **dict.fromkeys(("PivotedCholeskyInfo", "nystrom", "pivoted_cholesky"), "lowrank_approx"),
    **dict.fromkeys(("NystromPrecond", "PivotedCholeskyPrecond", "Preconditioner", "jacobi"), "preconditioners"),
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), LAZY)


__all__ = ["Algorithm", "Auto", "Cholesky", "LU", "Eigh", "Eig", "SVD", "Exact", "CG", "cg", "SolveInfo",
           "Lanczos", "lanczos", "SLQ", "slq", "Hutchinson", "hutchinson", "EstimateInfo",
           "MINRES", "minres", "GMRES", "gmres", "HutchPlusPlus", "hutch_pp", "DiagonalEstimator", "diag_bks",
           "DiagPlusPlus", "diag_pp", "StochasticTrace", "StochasticDiag", "Arnoldi", "arnoldi", "BiCGStab", "bicgstab",
           "LOBPCG", "lobpcg", "LSMR", "lsmr", "RandomizedSVD", "randomized_svd", "SubspaceIteration",
           "subspace_iteration", "XTrace", "xtrace", *LAZY]
