"""Convolutions by FFT: :class:`Convolution` (N-D; full, same, valid, circular) and :class:`Circulant`.

``Convolution(kernel, input_shape, mode)`` maps a flattened (C order) array ``x`` of
``input_shape`` to the flattened ``scipy.signal.convolve(x, kernel, mode)`` (``mode="circular"``:
the periodic convolution ``y[i] = sum_j h[j] x[(i - j) mod n]``, a block-circulant matrix with
circulant blocks). Products use N-D FFTs of size ``fft_shape`` (the smallest size that avoids
wrap-around where the output is read, rounded up to a 5-smooth length), O(P log P) per column
for P = prod(fft_shape); the transpose is the correlation with the same kernel
(``transposed=True``), the adjoint the correlation with the conjugate kernel.

A circular convolution is diagonalised by the N-D DFT: ``A = U^H diag(λ) U`` with
``λ = fftn(kernel padded to input_shape)`` (:meth:`Convolution.spectrum`), so its inverse,
log-determinant, eigendecomposition and matrix functions are exact and O(N log N)
(:mod:`linops.functions.fourier`). :class:`Circulant` ``(c)`` is the 1-D case with first column ``c``.
"""

from __future__ import annotations

from math import prod

import numpy as np

from ..backends import backend_of
from ..errors import NotPSDError, ShapeError, SingularMatrixError
from .base import LinearOperator, combine, with_annotations
from .fourier import Toeplitz, fast_len, fftn, ifftn, is_complex_array, label_with, take

__all__ = ["Convolution", "Circulant", "circulant_approximation", "toeplitz_preconditioner"]

_MODES = ("full", "same", "valid", "circular")


def _geometry(n: int, k: int, mode: str):
    """``(start, out_len, fft_len)`` of one axis: the output is entries [start, start + out_len) of
    the full linear convolution (length n + k - 1), read from a circular one of length fft_len."""
    if mode == "circular":
        return 0, n, n
    s, o = {"full": (0, n + k - 1), "same": ((k - 1) // 2, n), "valid": (min(n, k) - 1, abs(n - k) + 1)}[mode]
    # no wrap-around into [s, s + o) forward, nor into [0, n) for the correlation
    return s, o, fast_len(max(n + k - 1 - s, s + o))


class Convolution(LinearOperator):
    """``x -> convolve(x, kernel, mode)`` on flattened arrays of ``input_shape``, by FFT.

    * ``kernel``: a d-D array (d = len(input_shape)); its entries are the parameters (gradients
      reach them through the FFTs).
    * ``mode``: "full" (output n + k - 1 per axis), "same" (n, centred as scipy), "valid"
      (|n - k| + 1), or "circular" (n, periodic; needs k <= n per axis).
    * ``transposed``: the transposed operator (correlation), shape swapped.

    Products: O(P log P) per column, P = prod(fft_shape); X @ A (the transpose's products) the
    same. Circular mode: annotated SelfAdjoint when the concrete kernel, padded to input_shape,
    is Hermitian-symmetric (``h[-j mod n] == conj(h[j])``); PSD is the caller's promise.
    """

    _leaves = ("kernel",)

    def __init__(self, kernel, input_shape, mode: str = "full", transposed: bool = False):
        xp = backend_of(kernel)
        if xp is None or not xp.is_array(kernel):
            raise TypeError(f"{type(self).__name__} needs a numpy, torch or jax array kernel, got {type(kernel).__name__}")
        if mode not in _MODES:
            raise ValueError(f"Convolution: mode must be one of {_MODES}, got {mode!r}")
        shape = (input_shape,) if isinstance(input_shape, (int, np.integer)) else tuple(input_shape)
        if not shape or kernel.ndim != len(shape) or min(shape) < 1 or min(kernel.shape) < 1:
            raise ShapeError(
                f"Convolution needs a kernel with one axis per input axis and positive sizes: kernel shape "
                f"{tuple(kernel.shape)}, input_shape {shape!r}"
            )
        kshape = tuple(int(k) for k in kernel.shape)
        shape = tuple(int(n) for n in shape)
        if mode == "circular" and any(k > n for k, n in zip(kshape, shape, strict=True)):
            raise ShapeError(
                f"a circular convolution needs a kernel no larger than the input on every axis: kernel "
                f"{kshape}, input {shape}; pad the input or use mode='full'"
            )
        geo = [_geometry(n, k, mode) for n, k in zip(shape, kshape, strict=True)]
        self.kernel = kernel
        self.input_shape, self.mode, self.transposed = shape, mode, bool(transposed)
        self.start = tuple(g[0] for g in geo)
        self.output_shape = tuple(g[1] for g in geo)
        self.fft_shape = tuple(g[2] for g in geo)
        m, n = prod(self.output_shape), prod(shape)
        tags = ("SelfAdjoint",) if mode == "circular" and _hermitian_kernel(xp, kernel, shape) else ()
        super().__init__((n, m) if transposed else (m, n), kernel.dtype, xp, xp.device_of(kernel), tags)

    @property
    def num_params(self) -> int:
        return prod(self.kernel.shape)

    # --------------------------------------------------------------- products
    def _apply(self, Xb, forward: bool):
        """The convolution (``forward``) or the correlation on batch-first arrays (b, *shape)."""
        xp, h = self.xp, self.kernel
        d = len(self.input_shape)
        axes, kaxes = tuple(range(1, d + 1)), tuple(range(d))
        L = self.fft_shape
        real = not is_complex_array(xp, h) and not is_complex_array(xp, Xb)
        H = fftn(xp, h if forward or real else xp.conj(h), L, kaxes, real)
        if not forward:
            H = xp.conj(H)  # the transpose's spectrum: conj(fft(conj h))
            for a, s in zip(axes, self.start, strict=True):  # place y at its offset in the full-length signal
                if s:
                    pad = list(Xb.shape)
                    pad[a] = s
                    Xb = xp.concat([xp.zeros(tuple(pad), Xb.dtype, self.device), Xb], a)
        Y = ifftn(xp, fftn(xp, Xb, L, axes, real) * H[None], L, axes, real)
        if forward:
            crop = tuple(slice(s, s + o) for s, o in zip(self.start, self.output_shape, strict=True))
        else:
            crop = tuple(slice(0, n) for n in self.input_shape)
        return Y[(slice(None),) + crop]

    def _matmat(self, X):
        k = X.shape[1]
        src = self.output_shape if self.transposed else self.input_shape
        return self._apply(X.T.reshape(k, *src), not self.transposed).reshape(k, -1).T

    def _rmatmat(self, X):  # X A = (A^T X^T)^T, batch-first already
        k = X.shape[0]
        src = self.input_shape if self.transposed else self.output_shape
        return self._apply(X.reshape(k, *src), self.transposed).reshape(k, -1)

    # ---------------------------------------------------------------- algebra
    def _like(self, kernel, transposed: bool) -> LinearOperator:
        """The same geometry with another kernel (and orientation)."""
        return Convolution(kernel, self.input_shape, self.mode, transposed)

    def _transpose(self):
        return self._like(self.kernel, not self.transposed)

    def _adjoint(self):
        return self._like(self.xp.conj(self.kernel), not self.transposed)

    def _scale(self, c):
        return self._like(c * self.kernel, self.transposed)

    def _add_same(self, other):
        same = (self.input_shape, self.mode, self.transposed, tuple(self.kernel.shape))
        if same != (other.input_shape, other.mode, other.transposed, tuple(other.kernel.shape)):
            return None
        (a, b), *_ = combine((self, other), "terms of a sum")
        return a._like(a.kernel + b.kernel, a.transposed)

    def _compose_same(self, other):
        """Two circular convolutions on one grid compose into one: spectra multiply."""
        if self.mode != "circular" or other.mode != "circular" or self.input_shape != other.input_shape:
            return None
        (a, b), *_ = combine((self, other), "factors of a product")
        real = not (a.xp.is_complex(a.dtype) or b.xp.is_complex(b.dtype))
        return a.from_spectrum(a.spectrum() * b.spectrum(), real)

    # ------------------------------------------------- circular: the spectrum
    def spectrum(self):
        """The eigenvalues ``λ`` (complex, shape ``input_shape``) of a circular convolution:
        ``A = U^H diag(λ.ravel()) U`` with U the unitary N-D DFT. O(N log N)."""
        if self.mode != "circular":
            raise ValueError(f"spectrum() is defined for mode='circular', not {self.mode!r}")
        xp = self.xp
        axes = tuple(range(len(self.input_shape)))
        if not self.transposed:
            return fftn(xp, self.kernel, self.input_shape, axes, False)
        return xp.conj(fftn(xp, xp.conj(self.kernel), self.input_shape, axes, False))

    def from_spectrum(self, lam, real: bool) -> LinearOperator:
        """The circular convolution on this grid with eigenvalues ``lam`` (``real``: keep the real part)."""
        xp = self.xp
        kernel = ifftn(xp, lam, self.input_shape, tuple(range(len(self.input_shape))), False)
        return self._like(xp.real(kernel) if real else kernel, False)

    def _label(self):
        fmt = "x".join
        extra = f"{self.mode}, input {fmt(map(str, self.input_shape))}, kernel {fmt(map(str, self.kernel.shape))}"
        return label_with(self, extra + (", transposed" if self.transposed else ""))


def _hermitian_kernel(xp, kernel, shape) -> bool:
    """Whether the kernel padded to ``shape`` satisfies h[-j mod n] == conj(h[j]) (concrete kernels only)."""
    if not xp.is_concrete(kernel):
        return False
    h = np.zeros(shape, dtype=np.result_type(xp.to_numpy(kernel).dtype, np.float32))
    h[tuple(slice(0, k) for k in kernel.shape)] = xp.to_numpy(kernel)
    axes = tuple(range(h.ndim))
    return bool(np.array_equal(np.roll(np.flip(h, axes), 1, axes), np.conj(h)))


class Circulant(Convolution):
    """The n x n circulant matrix ``C[i, j] = c[(i - j) mod n]`` with first column ``c``.

    ``C = U^H diag(fft(c)) U`` (U the unitary DFT): products by FFT, O(n log n) per column (real c:
    half-spectrum transforms); exact solve/inverse, (s)logdet, eig/eigh, diag/trace and matrix
    functions in O(n log n) (:mod:`linops.functions.fourier`). ``C.T``, ``C.H``, ``c * C``, sums
    and products of circulants stay circulant; a contiguous block ``C[i:j, k:l]`` is a Toeplitz.
    n parameters. Annotated SelfAdjoint when the concrete c is Hermitian-symmetric
    (``c[-k mod n] == conj(c[k])``); PSD is the caller's promise (``lo.PSD(C)``).
    """

    def __init__(self, c):
        xp = backend_of(c)
        if xp is None or not xp.is_array(c):
            raise TypeError(f"Circulant needs a 1-D numpy, torch or jax array, got {type(c).__name__}")
        if c.ndim != 1:
            raise ShapeError(f"Circulant needs a 1-D first column c, got shape {tuple(c.shape)}")
        super().__init__(c, (c.shape[0],), "circular")

    @property
    def c(self):
        return self.kernel

    def _like(self, kernel, transposed):
        if transposed:  # C^T[i, j] = c[(j - i) mod n]: first column c[-k mod n]
            n = kernel.shape[0]
            kernel = take(self.xp, kernel, (-np.arange(n)) % n, self.device)
        return Circulant(kernel)

    def to_dense(self):
        n = self.shape[0]
        return take(self.xp, self.c, (np.arange(n)[:, None] - np.arange(n)[None, :]) % n, self.device)

    def _slice(self, rows, cols):
        """A contiguous block of a circulant is a Toeplitz matrix."""
        if not (isinstance(rows, slice) and isinstance(cols, slice)) or rows.step not in (None, 1) \
                or cols.step not in (None, 1):
            return None
        n = self.shape[0]
        (i0, i1, _), (j0, j1, _) = rows.indices(n), cols.indices(n)
        if i1 <= i0 or j1 <= j0:
            return None
        d = i0 - j0
        return Toeplitz(take(self.xp, self.c, (d + np.arange(i1 - i0)) % n, self.device),
                        take(self.xp, self.c, (d - np.arange(j1 - j0)) % n, self.device))

    def _label(self):
        return LinearOperator._label(self)


# -------------------------------------------------------- circulant preconditioners
def circulant_approximation(T: Toeplitz, kind: str = "chan") -> Circulant:
    """A circulant ``C ≈ T`` for a square Toeplitz T, O(n).

    ``kind="chan"``: T. Chan's optimal circulant, the Frobenius-nearest one,
    ``c_k = ((n - k) t_k + k t_{k-n}) / n``; positive definite whenever T is.
    ``kind="strang"``: G. Strang's, which copies the central diagonals (``t_k`` for k <= n/2,
    ``t_{k-n}`` above); it may be indefinite for a positive definite T.
    """
    if not isinstance(T, Toeplitz):
        raise TypeError(f"circulant_approximation needs a Toeplitz operator, got {type(T).__name__}")
    if kind not in ("chan", "strang"):
        raise ValueError(f"kind must be 'chan' or 'strang', got {kind!r}")
    n = T.shape[0]
    if T.shape[1] != n:
        from ..errors import NotSquareError

        raise NotSquareError(f"a circulant preconditioner needs a square Toeplitz operator, got {T._label()}")
    xp, dev = T.xp, T.device
    # u[k] = t_{k-n} = r[n - k] for k = 1..n-1 (u[0] is never used)
    u = xp.concat([T.c[:1], take(xp, T.r, n - np.arange(1, n), dev)]) if n > 1 else T.c
    k = np.arange(n)
    if kind == "chan":
        w = xp.asarray(k / n, dtype=xp.real_dtype(T.dtype), device=dev)
        c = (1 - w) * T.c + w * u
    else:
        c = xp.where(xp.asarray(k <= n // 2, device=dev), T.c, u)
    return Circulant(c)


def toeplitz_preconditioner(T: Toeplitz, kind: str = "chan") -> Circulant:
    """``M = C^{-1}`` for the circulant approximation C of T (:func:`circulant_approximation`), for
    ``lo.CG(precond=M)``: a Circulant, applied in O(n log n). For a T that is PSD (or only
    SelfAdjoint) the eigenvalues of C are taken real and must be positive (NotPSDError
    otherwise, e.g. for Strang's circulant of some PSD T; use kind="chan"). For a
    non-Hermitian T (GMRES, BiCGStab) any non-singular C will do.
    """
    C = circulant_approximation(T, kind)
    xp = T.xp
    lam = C.spectrum()
    hermitian = "SelfAdjoint" in T.annotations
    if hermitian:
        lam = xp.real(lam)
    if xp.is_concrete(lam):
        ln = xp.to_numpy(lam)
        if hermitian and ln.min() <= 0:
            raise NotPSDError(
                f"the {kind} circulant approximation of {T._label()} is not positive definite (eigenvalue "
                f"{float(ln.min()):.3g} at frequency {int(ln.argmin())}); use kind='chan', which is positive "
                "definite whenever T is"
            )
        if not hermitian and np.abs(ln).min() == 0:
            raise SingularMatrixError(f"the {kind} circulant approximation of {T._label()} is singular")
    M = C.from_spectrum(1 / lam, not xp.is_complex(T.dtype))
    tags = T.annotations & {"PSD", "SelfAdjoint"}
    return with_annotations(M, M.annotations | tags) if tags else M

