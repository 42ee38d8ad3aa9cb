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
