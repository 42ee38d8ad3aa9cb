"""Products of Householder reflections (and of generalised ``I - β v v^H`` factors), compact WY form.

``Householder(V)`` is ``H = H_1 H_2 ... H_k`` with ``H_i = I - τ_i v_i v_i^H``, ``τ_i = 2 / |v_i|^2``
for the k columns of ``V`` (n, k): a unitary n x n operator (annotated Unitary). In compact WY
form ``H = I - V T V^H`` with T (k x k) upper triangular, the recurrence
``T_j = [[T_{j-1}, -τ_j T_{j-1} V_{:j}^H v_j], [0, τ_j]]`` (LAPACK's larft, forward columnwise),
evaluated in closed form as one triangular solve (:meth:`Householder.wy`).

``Householder(V, beta)`` is the generalised (DeltaNet / DeltaProduct) transition
``Π (I - β_i v_i v_i^H / |v_i|^2)``: τ_i = β_i / |v_i|^2, ``det = Π (1 - β_i)`` (matrix determinant
lemma); β_i in [0, 2] keeps every factor's spectral norm <= 1. It is unitary only for β_i in {0, 2}
(not annotated: β is data).

T is not stored (operators hold no caches, and a stored T would cut the gradient to V): a product
with k or more columns forms it from the Gram matrix ``V^H V`` (O(n k^2 + k^3)) and applies
``X - V (T (V^H X))`` with BLAS-3 products; with fewer columns the k factors are applied one
after the other. Both cost O(n k) per column.
"""

from __future__ import annotations

import numpy as np

from ..backends import backend_of, common_backend
from ..errors import ShapeError
from .base import LinearOperator
from .fourier import label_with, take

__all__ = ["Householder"]


class Householder(LinearOperator):
    """``H_1 H_2 ... H_k`` with ``H_i = I - β_i v_i v_i^H / |v_i|^2`` for the columns of ``V`` (n, k).

    ``beta`` omitted: β_i = 2, Householder reflections, a unitary product (Unitary; ``det = (-1)^k``;
    ``inv = H^H = H_k ... H_1``, again a Householder product). ``beta`` (k,) real: the
    generalised DeltaProduct transition, ``det = Π (1 - β_i)``, inverse the reversed product with
    ``β_i / (β_i - 1)`` (singular where β_i = 1). One factor (k = 1) is also SelfAdjoint.

    Products O(n k) per column (compact WY ``I - V T V^H``, see the module docstring); n k
    parameters (+ k for beta). Gradients reach V (and beta) through ordinary autodiff.
    """

    _leaves = ("V", "beta")

    def __init__(self, V, beta=None):
        xp = backend_of(V)
        if xp is None or not xp.is_array(V):
            raise TypeError(f"Householder needs a 2-D numpy, torch or jax array V (n, k), got {type(V).__name__}")
        if V.ndim != 2 or V.shape[0] < 1 or V.shape[1] < 1:
            raise ShapeError(f"Householder needs V of shape (n, k) with n, k >= 1 (one vector per column), got {tuple(V.shape)}")
        n, k = V.shape
        if beta is not None:
            xp = common_backend(xp, backend_of(beta), what="Householder vectors and beta")
            if getattr(beta, "ndim", None) != 1 or beta.shape[0] != k:
                raise ShapeError(f"Householder: beta must have shape ({k},), one per column of V, got {tuple(getattr(beta, 'shape', ()))}")
            if xp.is_complex(beta.dtype):
                raise TypeError("Householder: beta must be real (I - beta v v^H with complex beta is not supported)")
            beta = xp.astype(beta, xp.real_dtype(V.dtype)) if beta.dtype != xp.real_dtype(V.dtype) else beta
        if xp.is_concrete(V):
            norms = np.linalg.norm(np.asarray(xp.to_numpy(V)), axis=0)
            if (norms == 0).any():
                raise ValueError(
                    f"Householder: column {int(np.flatnonzero(norms == 0)[0])} of V is zero; every factor needs a "
                    "non-zero vector"
                )
        self.V, self.beta = V, beta
        tags = ["Unitary"] if beta is None else []
        if k == 1:
            tags.append("SelfAdjoint")
        super().__init__((n, n), V.dtype, xp, xp.device_of(V), tags)

    @property
    def num_vectors(self) -> int:
        return self.V.shape[1]

    @property
    def num_params(self) -> int:
        n, k = self.V.shape
        return n * k + (0 if self.beta is None else k)

    def tau(self):
        """τ_i = β_i / |v_i|^2 (k,), real."""
        xp = self.xp
        sq = xp.sum(xp.real(xp.conj(self.V) * self.V), axis=0)
        return (2 if self.beta is None else self.beta) / sq

    def wy(self):
        """The upper triangular T (k x k) of the compact WY form ``H = I - V T V^H``, O(n k^2 + k^3).

        The recurrence above sums up to ``T^{-1} = striu(V^H V) + diag(1/τ)`` (Puglisi), so
        ``T = (I + diag(τ) striu(V^H V))^{-1} diag(τ)``: one unit upper triangular solve, valid for
        τ_i = 0 (β_i = 0) too, with fixed shapes (no per-column concatenation under jax).
        """
        xp, V = self.xp, self.V
        tau = xp.astype(self.tau(), self.dtype)
        G = xp.conj(V).T @ V
        k = V.shape[1]
        U = xp.eye(k, self.dtype, self.device) + tau[:, None] * xp.triu(G, 1)
        return xp.solve_triangular(U, xp.diag(tau), lower=False)

    def _matmat(self, X):
        xp, V = self.xp, self.V
        k = V.shape[1]
        if X.shape[1] >= k:
            return X - V @ (self.wy() @ (xp.conj(V).T @ X))
        tau = xp.astype(self.tau(), self.dtype)
        for i in range(k - 1, -1, -1):  # H_k first
            v = V[:, i : i + 1]
            X = X - tau[i] * (v @ (xp.conj(v).T @ X))
        return X

    def _rmatmat(self, X):
        xp, V = self.xp, self.V
        k = V.shape[1]
        if X.shape[0] >= k:
            return X - ((X @ V) @ self.wy()) @ xp.conj(V).T
        tau = xp.astype(self.tau(), self.dtype)
        for i in range(k):  # X H_1 first
            v = V[:, i : i + 1]
            X = X - tau[i] * ((X @ v) @ xp.conj(v).T)
        return X

    def to_dense(self):
        xp, V = self.xp, self.V
        return xp.eye(V.shape[0], self.dtype, self.device) - V @ self.wy() @ xp.conj(V).T

    def reversed(self, V=None, beta=None) -> Householder:
        """The product of the same kind of factors in reverse order (``V``, ``beta`` given: of those)."""
        xp = self.xp
        k = self.V.shape[1]
        order = np.arange(k - 1, -1, -1)
        V = take(xp, self.V if V is None else V, order, self.device, axis=1)
        b = self.beta if beta is None else beta
        return Householder(V, None if b is None else take(xp, b, order, self.device))

    def _adjoint(self):  # (H_1 ... H_k)^H = H_k^H ... H_1^H, each factor Hermitian (real β)
        return self.reversed()

    def _transpose(self):  # (I - τ v v^H)^T = I - τ conj(v) v^T
        return self.reversed(self.xp.conj(self.V))

    def _label(self):
        k = self.V.shape[1]
        what = f"{k} reflection{'s' if k != 1 else ''}" if self.beta is None else f"{k} factors I - beta v v^H"
        return label_with(self, what)
