"""Zoo cases for Einsum-family and multi-level low-rank (MLR) operators.

Each case is registered with ``@case(...)`` from :mod:`tests.zoo` and returns ``(operator,
dense numpy twin)``; the twin is built independently with numpy, never with ``to_dense``.
"""

from __future__ import annotations

import numpy as np

import linops as lo

from .zoo import case


# ------------------------------------------------------------------- dense twins
def einsum_twin(A, B, d_in, d_out):
    """``W[(f, e, d), (g, b, a)] = Σ_r A[f, d, r, g, a] B[f, e, r, g, b]``, entry by entry, cut to d_out x d_in."""
    F, D, R, G, Asz = A.shape
    E, Bsz = B.shape[1], B.shape[4]
    W = np.zeros((F * E * D, G * Bsz * Asz), dtype=np.result_type(A, B))
    for f in range(F):
        for e in range(E):
            for d in range(D):
                for g in range(G):
                    for b in range(Bsz):
                        for a in range(Asz):
                            W[(f * E + e) * D + d, (g * Bsz + b) * Asz + a] = np.dot(A[f, d, :, g, a], B[f, e, :, g, b])
    return W[:d_out, :d_in]


def mlr_twin(Us, Vs, n):
    """``Σ_l BlockDiag_k(U_l[k] V_l[k]^H)`` with explicit block placement, cut to n x n."""
    N = Us[0].shape[0] * Us[0].shape[1]
    W = np.zeros((N, N), dtype=np.result_type(*Us, *Vs))
    for U, V in zip(Us, Vs, strict=True):
        nb, m, _ = U.shape
        for k in range(nb):
            W[k * m:(k + 1) * m, k * m:(k + 1) * m] += U[k] @ V[k].conj().T
    return W[:n, :n]


def banded_mlr_twin(Us, Vs, n):
    """Level l adds ``U_l[o + w, k] V_l[o + w, k]^H`` at block (k, k + o) for |o| <= w inside the grid."""
    N = Us[0].shape[1] * Us[0].shape[2]
    W = np.zeros((N, N), dtype=np.result_type(*Us, *Vs))
    for U, V in zip(Us, Vs, strict=True):
        O, nb, m, _ = U.shape
        w = O // 2
        for o in range(-w, w + 1):
            for k in range(nb):
                j = k + o
                if 0 <= j < nb:
                    W[k * m:(k + 1) * m, j * m:(j + 1) * m] += U[o + w, k] @ V[o + w, k].conj().T
    return W[:n, :n]


# ------------------------------------------------------------------------ Einsum
def _einsum(g, theta, d_in, d_out, shift=0.0):
    s = lo.einsum_sizes(theta, d_in, d_out)
    A = g.randn(s.f, s.d, s.r, s.g, s.a) / np.sqrt(s.a * s.r)
    B = g.randn(s.f, s.e, s.r, s.g, s.b) / np.sqrt(s.g * s.b)
    if shift:  # well-conditioned structured factors: add shift * I to A[f, d, 0, g, a] over (f, a) or (d, a) ...
        if s.f == s.a and s.d == s.b == 1:  # Monarch point: R blocks A[:, 0, 0, g, :] and L blocks B[f, :, 0, :, 0]
            A[:, 0, 0, :, :] += shift * np.eye(s.f)[:, None, :]
            B[:, :, 0, :, 0] += shift * np.eye(s.e)[None]
        else:  # Kronecker point: A[0, :, 0, 0, :] and B[0, :, 0, 0, :]
            A[0, :, 0, 0, :] += shift * np.eye(s.d)
            B[0, :, 0, 0, :] += shift * np.eye(s.e)
    A, B = g._round(A), g._round(B)
    return lo.Einsum(g.arr(A), g.arr(B), d_in, d_out, theta), einsum_twin(A, B, d_in, d_out)


@case()
def einsum_monarch(g):
    return _einsum(g, lo.einsum_points()["monarch"], 16, 16, shift=2.0)


@case()
def einsum_kronecker(g):
    return _einsum(g, lo.einsum_points()["kronecker"], 16, 16, shift=2.0)


@case(square=False, invertible=False)
def einsum_interior_padded(g):
    # sizes a, b, g = 3, 2, 2 (12 >= 11) and d, e, f = 2, 3, 2 (12 >= 10), r = 3
    return _einsum(g, (0.5, 0.25, 0.25, 0.25, 0.5, 0.25, 0.5), 11, 10)


@case(invertible=False)
def einsum_interior_square(g):
    # sizes a, b, g = 4, 2, 2 (16 >= 13) and d, e, f = 2, 4, 2, r = 4: padded on both sides
    return _einsum(g, (0.5, 0.25, 0.25, 0.25, 0.5, 0.25, 0.5), 13, 13)


@case(square=False, invertible=False)
def einsum_lowrank(g):
    return _einsum(g, lo.einsum_points(rho=0.5)["low_rank"], 12, 9)


# --------------------------------------------------------------------------- MLR
def _mlr_levels(g, N, ranks, shift=0.0):
    """Random levels; the last level has full-rank square blocks ``shift I + noise`` when shift > 0."""
    Us, Vs = [], []
    L = len(ranks) - 1
    for l, r in enumerate(ranks):
        nb, m = 2**l, N // 2**l
        U = g.randn(nb, m, r) * 0.5 / np.sqrt(m)
        V = g.randn(nb, m, r) * 0.5 / np.sqrt(m)
        if shift and l == L:
            U = U + shift * np.eye(m)[None]
            V = V + np.eye(m)[None]
        Us.append(g._round(U))
        Vs.append(g._round(V))
    return Us, Vs


@case()
def mlr3(g):
    Us, Vs = _mlr_levels(g, 16, (2, 1, 4), shift=2.0)
    return lo.MLR([(g.arr(u), g.arr(v)) for u, v in zip(Us, Vs, strict=True)]), mlr_twin(Us, Vs, 16)


@case(self_adjoint=True, psd=True)
def mlr3_psd_padded(g):
    Us, _ = _mlr_levels(g, 16, (2, 2, 4), shift=1.5)  # n = 13 of N = 16: the leading 13 x 13 of a PD matrix
    return lo.MLR([g.arr(u) for u in Us], n=13), mlr_twin(Us, Us, 13)


@case()
def mlr_banded(g):
    Us, Vs = [], []
    for l, r in enumerate((1, 2, 4)):
        nb, m = 2**l, 16 // 2**l
        U = g.randn(3, nb, m, r) * 0.3 / np.sqrt(m)
        V = g.randn(3, nb, m, r) * 0.3 / np.sqrt(m)
        if l == 2:  # diagonal couplings of the last level: 2 I + noise, well conditioned
            U[1] += 2.0 * np.eye(m)[None]
            V[1] += np.eye(m)[None]
        Us.append(g._round(U))
        Vs.append(g._round(V))
    op = lo.BandedMLR([(g.arr(u), g.arr(v)) for u, v in zip(Us, Vs, strict=True)])
    return op, banded_mlr_twin(Us, Vs, 16)
