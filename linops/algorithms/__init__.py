"""Algorithms: small frozen configuration objects passed as ``alg=``, and ``Auto``'s decision list.

Everything loads with the package except the preconditioner specs and low-rank
approximations, which load on first use of one of their names (PEP 562). ``Preconditioner``,
``jacobi`` and ``pivoted_cholesky`` are defined a layer up (``linops.functions.preconditioning``:
they need ``lo.diag``) and stay importable from here for old code: this package never imports
that layer, the package root registers a loader for each with :func:`provide`.
"""

from typing import Any, Callable

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
    **dict.fromkeys(("PivotedCholeskyInfo", "nystrom"), "lowrank_approx"),
    **dict.fromkeys(("NystromPrecond", "PivotedCholeskyPrecond", "JacobiPrecond", "FirstOf", "PreconditionerSpec"),
                    "preconditioners"),
}

#: names defined in a layer above -> loader, registered by the package root (``linops/__init__.py``)
_UPPER: dict[str, Callable[[], Any]] = {}


def provide(name: str, loader: Callable[[], Any]) -> None:
    """Register ``loader() -> object`` for ``name``, an object a layer above defines (the package root
    registers ``linops.functions.preconditioning``'s builders): inversion, not an upward import."""
    _UPPER[name] = loader


def provided(name: str):
    """The object registered for ``name`` by :func:`provide`, loaded on first use."""
    try:
        loader = _UPPER[name]
    except KeyError:
        raise LookupError(f"linops.algorithms: {name!r} is defined in linops.functions and no loader is registered "
                          "for it; the package root linops/__init__.py registers it") from None
    return loader()


#: the old public names that now live a layer up, still served here
UPWARD = ("Preconditioner", "jacobi", "pivoted_cholesky")

_lazy_getattr, _lazy_dir = lazy_attributes(__name__, globals(), LAZY)


def __getattr__(name):
    if name in UPWARD:
        value = globals()[name] = provided(name)
        return value
    return _lazy_getattr(name)


def __dir__():
    return sorted(set(_lazy_dir()) | set(UPWARD))


__all__ = ["Algorithm", "Auto", "Cholesky", "LU", "Eigh", "Eig", "SVD", "Exact", "CG", "cg", "SolveInfo",
           "Lanczos", "lanczos", "SLQ", "slq", "Hutchinson", "hutchinson", "EstimateInfo",
           "MINRES", "minres", "GMRES", "gmres", "HutchPlusPlus", "hutch_pp", "DiagonalEstimator", "diag_bks",
           "DiagPlusPlus", "diag_pp", "StochasticTrace", "StochasticDiag", "Arnoldi", "arnoldi", "BiCGStab", "bicgstab",
           "LOBPCG", "lobpcg", "LSMR", "lsmr", "RandomizedSVD", "randomized_svd", "SubspaceIteration",
           "subspace_iteration", "XTrace", "xtrace", *LAZY, *UPWARD]
