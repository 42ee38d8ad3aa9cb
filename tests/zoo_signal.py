"""Zoo cases for Toeplitz, circulant, DFT and convolution operators, Householder products.

Each case is registered with ``@case(...)`` from :mod:`tests.zoo` and returns ``(operator,
dense numpy twin)``; the twin is built independently with numpy, never with ``to_dense``.
Names start with ``circulant``, ``toeplitz``, ``dft``, ``convolution`` or ``householder`` so that
``-k "circulant or toeplitz or dft or convolution or householder"`` selects exactly them.
"""

from __future__ import annotations

import numpy as np

import linops as lo

from .zoo import case


# ------------------------------------------------------------------- dense twins, by loops
def circulant_matrix(c):
    n = len(c)
    return np.array([[c[(i - j) % n] for j in range(n)] for i in range(n)])


def toeplitz_matrix(c, r):
    return np.array([[c[i - j] if i >= j else r[j - i] for j in range(len(r))] for i in range(len(c))])


def convolution_matrix(h, shape, mode):
    """Column j is the convolution of the j-th unit array of ``shape`` with h (direct sums, no FFT)."""
    N = int(np.prod(shape))
    cols = []
    for j in range(N):
        e = np.zeros(N)
        e[j] = 1.0
        cols.append(_direct_convolve(e.reshape(shape), h, mode).ravel())
    return np.stack(cols, 1)


def _direct_convolve(x, h, mode):
    full_shape = tuple(a + b - 1 for a, b in zip(x.shape, h.shape, strict=True))
    full = np.zeros(full_shape, dtype=np.result_type(x, h))
    for idx in np.ndindex(*h.shape):
        sl = tuple(slice(i, i + n) for i, n in zip(idx, x.shape, strict=True))
        full[sl] += h[idx] * x
    if mode == "full":
        return full
    if mode == "circular":
        out = np.zeros(x.shape, dtype=full.dtype)
        for idx in np.ndindex(*full_shape):
            out[tuple(i % n for i, n in zip(idx, x.shape, strict=True))] += full[idx]
        return out
    if mode == "same":
        start = [(k - 1) // 2 for k in h.shape]
        return full[tuple(slice(s, s + n) for s, n in zip(start, x.shape, strict=True))]
    start = [min(n, k) - 1 for n, k in zip(x.shape, h.shape, strict=True)]  # valid
    size = [abs(n - k) + 1 for n, k in zip(x.shape, h.shape, strict=True)]
    return full[tuple(slice(s, s + o) for s, o in zip(start, size, strict=True))]


def householder_matrix(V, beta=None):
    n, k = V.shape
    H = np.eye(n, dtype=V.dtype)
    for i in range(k):
        v = V[:, i : i + 1]
        b = 2.0 if beta is None else beta[i]
        H = H @ (np.eye(n) - b * (v @ v.conj().T) / np.vdot(v, v).real)
    return H


def hermitian_from_spectrum(g, lam_shape, low, high):
    """A kernel of ``lam_shape`` whose padded spectrum is real in [low, high] (Hermitian-symmetric
    exactly, also after rounding); real symmetric for real configurations."""
    lam = g.rng.uniform(low, high, lam_shape)
    axes = tuple(range(len(lam_shape)))
    if not g.cfg.complex:  # λ[-k] = λ[k] makes the kernel real
        lam = (lam + np.roll(np.flip(lam, axes), 1, axes)) / 2
    h = np.fft.ifftn(lam)
    h = (h + np.conj(np.roll(np.flip(h, axes), 1, axes))) / 2  # exact Hermitian symmetry
    return g._round(h if g.cfg.complex else h.real)


# ------------------------------------------------------------------------------ circulant
@case()
def circulant(g):
    c = 0.3 * g.randn(6)
    c[0] += 2.0
    c = g._round(c)
    return lo.Circulant(g.arr(c)), circulant_matrix(c)


@case(self_adjoint=True, psd=True)
def circulant_psd(g):
    c = hermitian_from_spectrum(g, (7,), 0.5, 2.0)
    return lo.PSD(lo.Circulant(g.arr(c))), circulant_matrix(c)


@case(self_adjoint=True)
def circulant_indefinite(g):
    lam_shape = (8,)
    c = hermitian_from_spectrum(g, lam_shape, 0.5, 2.0)
    # flip the sign of a symmetric set of frequencies: λ = ±[0.5, 2], still Hermitian
    sign = np.where(np.arange(8) % 4 < 2, 1.0, -1.0)
    sign = sign * np.roll(sign[::-1], 1)
    lam = np.fft.fft(c) * sign
    c = np.fft.ifft(lam)
    c = (c + np.conj(np.roll(c[::-1], 1))) / 2
    c = g._round(c if g.cfg.complex else c.real)
    return lo.Circulant(g.arr(c)), circulant_matrix(c)


# ------------------------------------------------------------------------------- Toeplitz
@case()
def toeplitz(g):
    c, r = 0.4 * g.randn(6), 0.4 * g.randn(6)
    c[0] += 2.5
    c, r = g._round(c), g._round(r)
    return lo.Toeplitz(g.arr(c), g.arr(r)), toeplitz_matrix(c, r)


@case(square=False, invertible=False)
def toeplitz_rect(g):
    c, r = g.randn(5), g.randn(7)
    r[0] = c[0]
    return lo.Toeplitz(g.arr(c), g.arr(r)), toeplitz_matrix(c, r)


@case(self_adjoint=True, psd=True)
def toeplitz_psd(g):
    """The Kac-Murdock-Szegő matrix t_k = ρ^k (Hermitian: (ρ e^{iθ})^k for complex configurations)."""
    rho = 0.6 * (np.exp(0.7j) if g.cfg.complex else 1.0)
    c = g._round(rho ** np.arange(7))
    c[0] = 1.0
    return lo.PSD(lo.Toeplitz(g.arr(c))), toeplitz_matrix(c, c.conj())


# ------------------------------------------------------------------------------------ DFT
@case()
def dft(g):
    """The unitary DFT (complex configurations) or its real sibling, the Hartley transform."""
    n = 6
    j = np.arange(n)
    if g.cfg.complex:
        F = np.exp(-2j * np.pi * np.outer(j, j) / n) / np.sqrt(n)
        return lo.DFT(n, dtype=g.cfg.native_dtype(), backend=g.cfg.backend), F
    theta = 2 * np.pi * np.outer(j, j) / n
    return lo.Hartley(n, dtype=g.cfg.native_dtype(), backend=g.cfg.backend), (np.cos(theta) + np.sin(theta)) / np.sqrt(n)


@case(self_adjoint=True)
def dft_hartley_2d(g):
    shape = (2, 3)
    idx = np.array(list(np.ndindex(*shape)))
    theta = 2 * np.pi * sum(np.outer(idx[:, d], idx[:, d]) / shape[d] for d in range(2))
    H = (np.cos(theta) + np.sin(theta)) / np.sqrt(6)
    return lo.Hartley(shape, dtype=g.cfg.native_dtype(), backend=g.cfg.backend), H


# ---------------------------------------------------------------------------- convolution
@case()
def convolution_circular_2d(g):
    h = 0.3 * g.randn(2, 3)
    h[0, 0] += 2.0
    h = g._round(h)
    return lo.Convolution(g.arr(h), (3, 4), "circular"), convolution_matrix(h, (3, 4), "circular")


@case(self_adjoint=True, psd=True)
def convolution_circular_2d_psd(g):
    h = hermitian_from_spectrum(g, (3, 4), 0.5, 2.0)
    return lo.PSD(lo.Convolution(g.arr(h), (3, 4), "circular")), convolution_matrix(h, (3, 4), "circular")


@case()
def convolution_same_2d(g):
    h = 0.2 * g.randn(3, 3)
    h[1, 1] += 2.0
    h = g._round(h)
    return lo.Convolution(g.arr(h), (3, 4), "same"), convolution_matrix(h, (3, 4), "same")


@case(square=False, invertible=False)
def convolution_full_1d(g):
    h = g.randn(4)
    return lo.Convolution(g.arr(h), 7, "full"), convolution_matrix(h, (7,), "full")


@case(square=False, invertible=False)
def convolution_valid_2d(g):
    h = g.randn(2, 3)
    return lo.Convolution(g.arr(h), (4, 5), "valid"), convolution_matrix(h, (4, 5), "valid")


@case(square=False, invertible=False)
def convolution_transposed(g):
    h = g.randn(3)
    M = convolution_matrix(h, (5,), "full")
    return lo.Convolution(g.arr(h), 5, "full", transposed=True), M.T


# ---------------------------------------------------------------------------- Householder
@case()
def householder(g):
    V = g.randn(6, 3)
    return lo.Householder(g.arr(V)), householder_matrix(V)


@case()
def householder_delta(g):
    """Generalised DeltaProduct factors I - β v v^H / |v|^2 with β in (0, 2), β != 1."""
    V, beta = g.randn(6, 3), np.array([0.5, 1.5, 0.3])
    return lo.Householder(g.arr(V), real_arr(g, beta)), householder_matrix(V, beta)


def real_arr(g, a):
    """A real array of the configuration's backend and precision (``Config.arr`` would make it complex)."""
    a = np.asarray(a, np.float32 if g.cfg.dtype in ("float32", "complex64") else np.float64)
    if g.cfg.backend == "torch":
        import torch

        return torch.as_tensor(a, device=g.cfg.device)
    if g.cfg.backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(a)
    return a
