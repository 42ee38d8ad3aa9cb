"""Algorithms: small frozen configuration objects passed as ``alg=``, and ``Auto``'s decision list."""

from .base import LU, SVD, Algorithm, Auto, Cholesky, Eig, Eigh, Exact

__all__ = ["Algorithm", "Auto", "Cholesky", "LU", "Eigh", "Eig", "SVD", "Exact"]
