"""Zoo cases for Monarch, Block Tensor-Train, Tensor-Train, Butterfly, Einsum-family and multi-level low-rank operators.

Each case is registered with ``@case(...)`` from :mod:`tests.zoo` and returns ``(operator,
dense numpy twin)``; the twin is built independently with numpy, never with ``to_dense``.
"""

from __future__ import annotations

import numpy as np

import linops as lo

from .zoo import case


def monarch_twin(R, L, d_in, d_out):
    """``P2 L P1 R`` from explicit block-diagonal and permutation matrices, cut to d_out x d_in."""
    from scipy.linalg import block_diag

    k, q, p = R.shape
    l_, s, r = L.shape
    P1 = np.zeros((k * q, k * q))
    for i in range(r):
        for j in range(l_):
            P1[j * r + i, i * l_ + j] = 1
    P2 = np.zeros((l_ * s, l_ * s))
    for t in range(s):
        for j in range(l_):
            P2[t * l_ + j, j * s + t] = 1
    return (P2 @ block_diag(*L) @ P1 @ block_diag(*R))[:d_out, :d_in]


def _monarch(g, d_in, d_out, nblocks, shift=0.0):
    (k, q, p), (l_, s, r) = lo.monarch_shapes(d_in, d_out, nblocks)
    R = g._round(g.randn(k, q, p) / np.sqrt(p) + shift * np.eye(q, p))
    L = g._round(g.randn(l_, s, r) / np.sqrt(r) + shift * np.eye(s, r))
    return lo.Monarch(g.arr(R), g.arr(L), d_in, d_out), monarch_twin(R, L, d_in, d_out)


@case()
def monarch(g):
    return _monarch(g, 9, 9, 3, shift=2.0)


@case(square=False, invertible=False)
def monarch_rect(g):
    return _monarch(g, 7, 10, 3)


@case()
def monarch_padded(g):
    return _monarch(g, 8, 8, 3, shift=2.0)


def btt_twin(R, L, d_in, d_out):
    """W[(o1, o2), (i1, i2)] = Σ_α L[o2, o1, i1, α] R[i1, o2, α, i2], element by element."""
    n1, m2, r, n2 = R.shape
    m1 = L.shape[1]
    W = np.zeros((m1 * m2, n1 * n2), dtype=np.result_type(R, L))
    for o1 in range(m1):
        for o2 in range(m2):
            for i1 in range(n1):
                for i2 in range(n2):
                    W[o1 * m2 + o2, i1 * n2 + i2] = sum(L[o2, o1, i1, a] * R[i1, o2, a, i2] for a in range(r))
    return W[:d_out, :d_in]


def _btt(g, d_in, d_out, rank, shift=0.0):
    (n1, n2), (m1, m2) = lo.btt_shapes(d_in, d_out)
    R = g.randn(n1, m2, rank, n2) / np.sqrt(n2)
    L = g.randn(m2, m1, n1, rank) / np.sqrt(n1 * rank)
    if shift:  # rank 1, square grids: make the Monarch blocks R[i1, :, 0, :] and L[o2, :, :, 0] well conditioned
        R[:, :, 0, :] += shift * np.eye(m2, n2)
        L[:, :, :, 0] += shift * np.eye(m1, n1)
    R, L = g._round(R), g._round(L)
    return lo.BTT(g.arr(R), g.arr(L), d_in, d_out), btt_twin(R, L, d_in, d_out)


@case()
def btt_rank1(g):
    return _btt(g, 9, 9, 1, shift=2.0)


@case(square=False, invertible=False)
def btt_rect(g):
    return _btt(g, 7, 10, 2)
