"""Zoo cases for Tensor-Train (MPS) and Butterfly operators.

Each case is registered with ``@case(...)`` from :mod:`tests.zoo` and returns ``(operator,
dense numpy twin)``; the twin is built independently with numpy, never with ``to_dense``.
"""

from __future__ import annotations

import itertools

import numpy as np

import linops as lo

from .zoo import case, to_np


# --------------------------------------------------------------------------------- Tensor-Train
def tt_twin(cores, d_in, d_out):
    """``Σ_α kron(G_1[0, :, :, α_1], G_2[α_1, :, :, α_2], ..., G_d[α_{d-1}, :, :, 0])``, cut to d_out x d_in."""
    ranks = [1] + [G.shape[3] for G in cores]
    W = 0
    for alpha in itertools.product(*(range(r) for r in ranks[1:-1])):
        a = (0,) + alpha + (0,)
        K = np.ones((1, 1))
        for k, G in enumerate(cores):
            K = np.kron(K, G[a[k], :, :, a[k + 1]])
        W = W + K
    return W[:d_out, :d_in]


def _tt(g, ns, ms, ranks, d_in=None, d_out=None, shift=0.0, scale=0.3):
    """Random cores; ``shift`` adds ``shift * I`` to every core's (0, 0) rank slice (well conditioned)."""
    cores = []
    for k in range(len(ns)):
        G = scale * g.randn(ranks[k], ms[k], ns[k], ranks[k + 1])
        if shift:
            G[0, :, :, 0] += shift * np.eye(ms[k], ns[k])
        cores.append(g._round(G))
    d_in = d_in or int(np.prod(ns))
    d_out = d_out or int(np.prod(ms))
    return lo.TensorTrain([g.arr(G) for G in cores], d_in, d_out), tt_twin(cores, d_in, d_out)


@case()
def tensor_train(g):
    return _tt(g, (2, 2, 2), (2, 2, 2), (1, 2, 2, 1), shift=1.0)


@case(square=False, invertible=False)
def tensor_train_rect(g):
    return _tt(g, (3, 2), (2, 5), (1, 2, 1), d_in=5, d_out=9, scale=1.0)


@case()
def tensor_train_rank1(g):
    return _tt(g, (2, 3, 2), (2, 3, 2), (1, 1, 1, 1), shift=1.5)


@case(self_adjoint=True, psd=True)
def tensor_train_rank1_psd(g):
    """A rank-1 TT of Hermitian positive definite cores (the eigh rule through Kronecker)."""
    cores = [g.spd(n)[None, :, :, None] for n in (2, 3)]
    return lo.PSD(lo.TensorTrain([g.arr(G) for G in cores])), tt_twin(cores, 6, 6)


# ------------------------------------------------------------------------------------ Butterfly
def bitrev_matrix(n):
    """The permutation matrix of the bit reversal, from the binary strings."""
    L = n.bit_length() - 1
    p = [int(format(i, f"0{L}b")[::-1], 2) for i in range(n)]
    return np.eye(n)[p]


def butterfly_twin(blocks, bit_reversal=False):
    """``F_{L-1} ... F_0 P`` with each factor filled in entry by entry from its 2 x 2 blocks."""
    L, h = blocks.shape[:2]
    n = 2 * h
    W = bitrev_matrix(n) if bit_reversal else np.eye(n)
    for k in range(L):
        C = 2**k
        F = np.zeros((n, n), dtype=blocks.dtype)
        for a in range(n // (2 * C)):
            for c in range(C):
                i0 = a * 2 * C + c
                for i in range(2):
                    for j in range(2):
                        F[i0 + i * C, i0 + j * C] = blocks[k, a * C + c, i, j]
        W = F @ W
    return W


def _twin_blocks(g, op):
    return to_np(op.blocks).astype(np.complex128 if g.cfg.complex else np.float64)


def _kw(g):
    return dict(dtype=g.cfg.native_dtype(), backend=g.cfg.backend, device=g.cfg.device)


@case()
def butterfly_random(g):
    """Orthogonal (real) or unitary (complex) 2 x 2 blocks, annotated Unitary."""
    op = lo.Butterfly.random(8, seed=3, **_kw(g))
    return op, butterfly_twin(_twin_blocks(g, op))


@case()
def butterfly_general(g):
    """Random well-conditioned blocks (not unitary), with the bit-reversal permutation."""
    blocks = g._round(0.4 * g.randn(3, 4, 2, 2) + 1.5 * np.eye(2))
    return lo.Butterfly(g.arr(blocks), bit_reversal=True), butterfly_twin(blocks, bit_reversal=True)


@case()
def butterfly_fft(g):
    """The FFT butterfly (complex configurations; twin ``np.fft.fft``) or, for real ones, its real
    sibling the Walsh-Hadamard butterfly (twin: ``np.kron`` of ``[[1, 1], [1, -1]]``)."""
    n = 8
    if g.cfg.complex:
        return lo.Butterfly.fft(n, **_kw(g)), np.fft.fft(np.eye(n), axis=0)
    H2 = np.array([[1.0, 1.0], [1.0, -1.0]])
    return lo.Butterfly.hadamard(n, **_kw(g)), np.kron(np.kron(H2, H2), H2)
