"""The operator zoo: every operator type, small and random, with its dense numpy twin.

A case is a function ``(g: Gen) -> (operator, dense numpy array)`` registered with
:func:`case` and its properties (square, invertible, self-adjoint, PSD). ``Gen`` makes
arrays of the configuration's backend and dtype; the dense twin is built independently
with numpy (never with ``to_dense``). New cases join every test that iterates ``CASES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import linops as lo


@dataclass(frozen=True)
class Config:
    backend: str
    dtype: str
    device: str | None = None  # torch only ("cuda"); jax places arrays on its default device

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.dtype}"

    @property
    def complex(self) -> bool:
        return self.dtype.startswith("complex")

    @property
    def single(self) -> bool:
        return self.dtype in ("float32", "complex64")

    @property
    def tol(self) -> float:
        return 2e-3 if self.single else 1e-8

    def native_dtype(self):
        if self.backend == "torch":
            import torch

            return getattr(torch, self.dtype)
        if self.backend == "jax":
            import jax.numpy as jnp

            return jnp.dtype(self.dtype)
        return np.dtype(self.dtype)

    def arr(self, a):
        """numpy array -> this configuration's array (dtype converted unless integer)."""
        a = np.asarray(a)
        dt = a.dtype if a.dtype.kind in "iub" else np.dtype(self.dtype)
        if self.backend == "torch":
            import torch

            return torch.as_tensor(a.astype(dt), device=self.device)
        if self.backend == "jax":
            import jax.numpy as jnp

            return jnp.asarray(a.astype(dt))
        return a.astype(dt)


CONFIGS = [
    Config("numpy", "float64"),
    Config("numpy", "complex128"),
    Config("torch", "float32"),
    Config("torch", "float64"),
    Config("torch", "complex128"),
    Config("jax", "float32"),
    Config("jax", "float64"),
    Config("jax", "complex64"),
]


def to_np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().resolve_conj().resolve_neg()
    return np.asarray(x)


class Gen:
    """Random arrays for one configuration; ``dense`` twins stay numpy complex128/float64."""

    def __init__(self, cfg: Config, seed: int = 0):
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)

    def randn(self, *shape) -> np.ndarray:
        r = self.rng.standard_normal(shape)
        if self.cfg.complex:
            r = (r + 1j * self.rng.standard_normal(shape)) / np.sqrt(2)
        return self._round(r)

    def _round(self, a):
        # the twin sees the same rounding the backend array does
        return np.asarray(a).astype(self.cfg.dtype).astype(np.complex128 if self.cfg.complex else np.float64)

    def wellcond(self, n) -> np.ndarray:
        return self._round(self.randn(n, n) / np.sqrt(n) + 2.0 * np.eye(n))

    def spd(self, n) -> np.ndarray:
        X = self.randn(n, n) / np.sqrt(n)
        return self._round(X @ X.conj().T + np.eye(n))

    def positive(self, n, lo_=1.0, hi=2.0) -> np.ndarray:
        return self._round(self.rng.uniform(lo_, hi, n))

    def arr(self, a):
        return self.cfg.arr(a)

    def dense(self, M, psd=False):
        op = lo.Dense(self.arr(M))
        return lo.PSD(op) if psd else op


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Gen], tuple]
    square: bool = True
    invertible: bool = True
    self_adjoint: bool = False
    psd: bool = False

    def make(self, cfg: Config, seed: int = 0):
        return self.build(Gen(cfg, seed))


CASES: list[Case] = []


def case(**props):
    def register(fn):
        CASES.append(Case(fn.__name__, fn, **props))
        return fn

    return register


# ------------------------------------------------------------------------ the cases
@case()
def dense(g):
    M = g.wellcond(5)
    return g.dense(M), M


@case(square=False, invertible=False)
def dense_rect(g):
    M = g.randn(4, 6)
    return g.dense(M), M


@case(self_adjoint=True, psd=True)
def dense_psd(g):
    M = g.spd(5)
    return g.dense(M, psd=True), M


@case(self_adjoint=True)
def diagonal(g):
    d = g.positive(5) * np.array([1, -1, 1, -1, 1])
    if g.cfg.complex:
        return lo.Diagonal(g.arr(d * np.exp(0.3j))), np.diag(d * np.exp(0.3j))
    return lo.Diagonal(g.arr(d)), np.diag(d)


@case(self_adjoint=True, psd=True)
def identity(g):
    return lo.Identity(5, dtype=g.cfg.native_dtype(), device=g.cfg.device, backend=g.cfg.backend), np.eye(5)


@case(self_adjoint=True, psd=True)
def scalarmul(g):
    return lo.ScalarMul(2.5, 5, dtype=g.cfg.native_dtype(), device=g.cfg.device, backend=g.cfg.backend), 2.5 * np.eye(5)


@case(square=False, invertible=False)
def zero(g):
    return lo.Zero(4, 6, dtype=g.cfg.native_dtype(), device=g.cfg.device, backend=g.cfg.backend), np.zeros((4, 6))


@case()
def sum_dense_diag(g):
    M, d = g.wellcond(5), g.positive(5, 0.5, 1.0)
    return g.dense(M) + lo.Diagonal(g.arr(d)), M + np.diag(d)


@case(self_adjoint=True, psd=True)
def sum_psd(g):
    A, B = g.spd(5), g.spd(5)
    return lo.Sum(g.dense(A, True), g.dense(B, True)), A + B


@case()
def product(g):
    A, B = g.wellcond(5), g.wellcond(5)
    return g.dense(A) @ g.dense(B), A @ B


@case(square=False, invertible=False)
def product_rect(g):
    A, B = g.randn(4, 3), g.randn(3, 6)
    return g.dense(A) @ g.dense(B), A @ B


@case(self_adjoint=True, psd=True)
def gram(g):
    A = g.wellcond(5)
    op = g.dense(A)
    return op.H @ op, A.conj().T @ A


@case(square=False, invertible=False)
def adjoint(g):
    M = g.randn(6, 4)
    return g.dense(M).H, M.conj().T


@case(square=False, invertible=False)
def transpose(g):
    M = g.randn(6, 4)
    return g.dense(M).T, M.T


@case()
def sliced_dense(g):
    M = g.wellcond(8)
    rows, cols = slice(1, 6), np.array([1, 2, 3, 4, 5])
    return g.dense(M)[rows, cols], M[1:6][:, cols]


@case()
def sliced_kronecker(g):
    A, B = g.wellcond(3), g.wellcond(3)
    idx = np.array([0, 2, 4, 6, 8])
    return lo.Kronecker(g.dense(A), g.dense(B))[idx, idx], np.kron(A, B)[idx][:, idx]


@case()
def block(g):
    A, B, D = g.wellcond(3), g.randn(3, 4), g.wellcond(4)
    full = np.block([[A, B], [np.zeros((4, 3)), D]])
    return lo.Block([[g.dense(A), g.dense(B)], [None, g.dense(D)]]), full


@case()
def blockdiag(g):
    A, d = g.wellcond(3), g.positive(2)
    full = np.zeros((5, 5), dtype=A.dtype)
    full[:3, :3], full[3:, 3:] = A, np.diag(d)
    return lo.BlockDiag(g.dense(A), lo.Diagonal(g.arr(d))), full


@case(self_adjoint=True, psd=True)
def blockdiag_psd(g):
    A, B = g.spd(3), g.spd(2)
    full = np.zeros((5, 5), dtype=A.dtype)
    full[:3, :3], full[3:, 3:] = A, B
    return lo.BlockDiag(g.dense(A, True), g.dense(B, True)), full


@case()
def kronecker(g):
    A, B, C = g.wellcond(2), g.wellcond(3), g.wellcond(2)
    return lo.Kronecker(g.dense(A), g.dense(B), g.dense(C)), np.kron(np.kron(A, B), C)


@case(self_adjoint=True, psd=True)
def kronecker_psd(g):
    A, B, C = g.spd(2), g.spd(3), g.spd(2)
    return lo.Kronecker(g.dense(A, True), g.dense(B, True), g.dense(C, True)), np.kron(np.kron(A, B), C)


@case(square=False, invertible=False)
def kronecker_rect(g):
    A, B = g.randn(2, 3), g.randn(3, 2)
    return lo.Kronecker(g.dense(A), g.dense(B)), np.kron(A, B)


@case()
def kronecker_sum(g):
    A, B = g.wellcond(3), g.wellcond(4)
    return lo.KroneckerSum(g.dense(A), g.dense(B)), np.kron(A, np.eye(4)) + np.kron(np.eye(3), B)


@case(self_adjoint=True, psd=True)
def kronecker_sum_psd(g):
    A, B, C = g.spd(2), g.spd(3), g.spd(2)
    full = np.kron(np.kron(A, np.eye(3)), np.eye(2)) + np.kron(np.kron(np.eye(2), B), np.eye(2))
    full = full + np.kron(np.eye(6), C)
    return lo.KroneckerSum(g.dense(A, True), g.dense(B, True), g.dense(C, True)), full


@case(square=False, invertible=False)
def lowrank(g):
    U, V = g.randn(5, 2), g.randn(6, 2)
    return lo.LowRank(g.arr(U), g.arr(V)), U @ V.conj().T


@case(self_adjoint=True, psd=True)
def lowrank_plus_diagonal(g):
    U, d = g.randn(6, 2), g.positive(6)
    return lo.LowRank(g.arr(U)) + lo.PSD(lo.Diagonal(g.arr(d))), U @ U.conj().T + np.diag(d)


@case()
def dense_product_plus_diagonal(g):
    U, d = g.randn(6, 2), g.positive(6)
    return g.dense(U) @ g.dense(U.T) + lo.Diagonal(g.arr(d)), U @ U.T + np.diag(d)


@case(self_adjoint=True, psd=True)
def lowrank_plus_identity(g):
    U = g.randn(6, 2)
    return lo.LowRank(g.arr(U)) + lo.Identity(6), U @ U.conj().T + np.eye(6)


@case()
def permutation(g):
    p = np.array([3, 0, 4, 1, 2])
    return lo.Permutation(g.arr(p), dtype=g.cfg.native_dtype()), np.eye(5)[p]


@case()
def triangular_lower(g):
    M = g.wellcond(5)
    return lo.Triangular(g.arr(M), lower=True), np.tril(M)


@case()
def triangular_upper(g):
    M = g.wellcond(5)
    return lo.Triangular(g.arr(M), lower=False), np.triu(M)


@case()
def tridiagonal(g):
    lo_, d, up = g.randn(5), g.positive(6, 3, 4), g.randn(5)
    full = np.diag(d) + np.diag(lo_, -1) + np.diag(up, 1)
    return lo.Tridiagonal(g.arr(lo_), g.arr(d), g.arr(up)), full


@case(self_adjoint=True, psd=True)
def inverse_psd(g):
    M = g.spd(5)
    return lo.inv(g.dense(M, True)), np.linalg.inv(M)


@case()
def inverse_lu(g):
    M = g.wellcond(5)
    return lo.inv(g.dense(M)), np.linalg.inv(M)


@case()
def scaled_kronecker(g):
    A, B = g.wellcond(2), g.wellcond(3)
    return -1.5 * lo.Kronecker(g.dense(A), g.dense(B)), -1.5 * np.kron(A, B)


@case(self_adjoint=True, psd=True)
def scaled_sum(g):
    A = g.spd(4)
    return 0.5 * (g.dense(A, True) + lo.Identity(4)), 0.5 * (A + np.eye(4))


# Operator families with many cases register them from their own modules (imported here, after
# `case` and `Gen` exist): zoo_structured (Monarch, BTT, ...), zoo_signal (Toeplitz, circulant,
# FFT, Householder, ...), zoo_kernels (kernel matrices, sparse, Jacobians), zoo_tensor
# (Tensor-Train, Butterfly), zoo_einsum (the Einsum family, multi-level low rank).
from . import zoo_einsum, zoo_kernels, zoo_signal, zoo_structured, zoo_tensor  # noqa: E402, F401

CASE_IDS = [c.name for c in CASES]
