"""Algorithms: small frozen configuration objects passed as ``alg=``, and ``Auto``'s decision list.

The algorithms the functions reach by default load with ``import linops``; the rest load on
first use of one of their names (PEP 562).
"""

from importlib import import_module

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

#: public name -> the module (in this package) that defines it, imported on first access
LAZY = {
    **dict.fromkeys(("Arnoldi", "arnoldi"), "arnoldi"),
    **dict.fromkeys(("LOBPCG", "lobpcg"), "lobpcg"),
    **dict.fromkeys(("RandomizedSVD", "randomized_svd"), "randomized"),
    **dict.fromkeys(("SubspaceIteration", "subspace_iteration"), "subspace"),
    **dict.fromkeys(("XTrace", "xtrace"), "xtrace"),
    **dict.fromkeys(("BiCGStab", "bicgstab"), "bicgstab"),
    **dict.fromkeys(("LSMR", "lsmr"), "lsmr"),
    **dict.fromkeys(("PivotedCholeskyInfo", "nystrom", "pivoted_cholesky"), "lowrank_approx"),
    **dict.fromkeys(("NystromPrecond", "PivotedCholeskyPrecond", "Preconditioner", "jacobi"), "preconditioners"),
}


def __getattr__(name):
    if name in LAZY:
        value = getattr(import_module(f"{__name__}.{LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(LAZY))


__all__ = ["Algorithm", "Auto", "Cholesky", "LU", "Eigh", "Eig", "SVD", "Exact", "CG", "cg", "SolveInfo",
           "Lanczos", "lanczos", "SLQ", "slq", "Hutchinson", "hutchinson", "EstimateInfo",
           "MINRES", "minres", "GMRES", "gmres", "HutchPlusPlus", "hutch_pp", "DiagonalEstimator", "diag_bks",
           "DiagPlusPlus", "diag_pp", "StochasticTrace", "StochasticDiag", *LAZY]
