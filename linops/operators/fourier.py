"""Fourier-family operators: DFT, Hartley and Toeplitz, and the FFT helpers they share.

* :class:`DFT` ``(n)``: the discrete Fourier transform ``DFT(n) @ x == numpy.fft.fft(x, norm=...)``;
  unitary for ``norm="ortho"``. No parameters; O(n log n) per column.
* :class:`Hartley` ``(shape)``: the (N-D, non-separable) discrete Hartley transform
  ``H = Re(F) - Im(F)`` of the unitary DFT ``F``: real, symmetric, orthogonal, ``H^2 = I``.
  It holds the real eigenvectors of a real symmetric circulant (see ``convolution``).
* :class:`Toeplitz` ``(c, r)``: the m x n matrix with first column ``c`` and first row ``r``,
  applied by embedding it in a circulant of FFT size ``L >= m + n - 1``, O(L log L) per column.

The circulant family (Circulant, Convolution) lives in :mod:`linops.operators.convolution`.
Every product here works on numpy, torch and jax through ``xp.fft`` / ``rfft`` (real data use
the half-spectrum transforms), and is differentiable by the libraries' own autodiff.
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from ..backends import backend_named, backend_of, common_backend
from ..errors import ShapeError
from .base import LinearOperator, combine
from .diagonal import _Weak

__all__ = ["DFT", "Hartley", "Toeplitz", "fast_len", "fftn", "ifftn"]

_NORMS = ("ortho", "backward", "forward")


# ------------------------------------------------------------------------------ helpers
def fast_len(n: int) -> int:
    """The smallest 5-smooth integer (2^a 3^b 5^c) >= n: an FFT size the libraries handle fast."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def take(xp, x, idx: np.ndarray, device=None, axis: int = 0):
    """``x`` gathered along ``axis`` at the integer positions ``idx`` (a numpy array, any shape)."""
    ix = xp.asarray(np.asarray(idx, dtype=np.int64), device=device)
    return x[(slice(None),) * axis + (ix,)]


def is_complex_array(xp, x) -> bool:
    return xp.is_complex(x.dtype)


def fftn(xp, x, sizes, axes, real: bool):
    """The N-D FFT of ``x`` over ``axes``, zero-padded to ``sizes``; ``real``: rfft on the last axis."""
    if real:
        x = xp.rfft(x, sizes[-1], axes[-1])
        sizes, axes = sizes[:-1], axes[:-1]
    for s, a in zip(sizes, axes, strict=True):
        x = xp.fft(x, s, a)
    return x


def ifftn(xp, x, sizes, axes, real: bool):
    """Inverse of :func:`fftn` (``real``: a real result with ``sizes[-1]`` entries on the last axis)."""
    last = (sizes[-1], axes[-1]) if real else None
    if real:
        sizes, axes = sizes[:-1], axes[:-1]
    for s, a in zip(sizes, axes, strict=True):
        x = xp.ifft(x, s, a)
    if last is not None:
        x = xp.irfft(x, last[0], last[1])
    return x


def label_with(op: LinearOperator, extra: str) -> str:
    """The standard label with family details appended: ``Name(m x n, dtype, tags; extra)``."""
    base = LinearOperator._label(op)
    return f"{base[:-1]}; {extra})"


def _complex_weak(dtype, device, backend):
    """(backend or None, complex dtype) for a parameter-free transform, as ``Identity`` does."""
    from .diagonal import _weak_dtype

    xp, dt = _weak_dtype(dtype if dtype is not None else np.complex128, backend)
    be = xp if xp is not None else backend_named("numpy")
    if not be.is_complex(dt):
        dt = be.complex_dtype(dt)
    return xp, dt


class _Transform(_Weak):
    """Shared machinery of the parameter-free, weakly typed transforms (DFT, Hartley)."""

    def _xp_for(self, X):
        return backend_of(X) if self._weak else self.xp

    @property
    def num_params(self) -> int:
        return 0


# ---------------------------------------------------------------------------------- DFT
class DFT(_Transform):
    """The n x n discrete Fourier transform, ``DFT(n, norm) @ x == numpy.fft.fft(x, norm=norm)``.

    ``F[j, k] = s exp(-2 pi i j k / n)`` with ``s = 1/sqrt(n)`` ("ortho", the default: unitary,
    annotated Unitary), 1 ("backward") or 1/n ("forward"). ``inverse=True`` is ``ifft`` with the
    same ``norm``, so ``DFT(n, norm, inverse=True)`` is the exact inverse of ``DFT(n, norm)``.
    F is symmetric: ``F.T`` is F; ``F.H`` of the ortho DFT is its inverse.

    Products cost O(n log n) per column; 0 parameters. Weakly typed like ``Identity`` (it adopts
    the backend of the array or operators it meets) unless ``dtype`` is a torch/jax dtype or
    ``backend`` is given; its dtype is always complex (a real ``dtype`` is promoted).
    """

    def __init__(self, n: int, norm: str = "ortho", inverse: bool = False, dtype: Any = None, device: Any = None,
                 backend: Any = None):
        if norm not in _NORMS:
            raise ValueError(f"DFT: norm must be one of {_NORMS}, got {norm!r}")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ShapeError(f"DFT needs a positive integer size n, got {n!r}")
        self.norm, self.inverse = norm, bool(inverse)
        xp, dt = _complex_weak(dtype, device, backend)
        super().__init__((int(n), int(n)), dt, device, ("Unitary",) if norm == "ortho" else (), xp)

    def _apply(self, X, axis):
        xp = self._xp_for(X)
        f = xp.ifft if self.inverse else xp.fft
        return f(X, None, axis, self.norm)

    def _matmat(self, X):
        return self._apply(X, 0)

    def _rmatmat(self, X):  # X F = (F X^T)^T: F is symmetric
        return self._apply(X, 1)

    def _adjoint(self):  # conj(F): the other direction, with the scaling of the other side
        norm = {"ortho": "ortho", "backward": "forward", "forward": "backward"}[self.norm]
        return self._remake(norm, not self.inverse)

    def _remake(self, norm, inverse):
        if self._weak:
            return DFT(self.shape[0], norm, inverse)
        return DFT(self.shape[0], norm, inverse, self.dtype, self.device, backend=self.xp)

    def _bind(self, xp, dtype, device):
        return DFT(self.shape[0], self.norm, self.inverse, dtype, device, backend=xp)

    def _label(self):
        return label_with(self, f"norm={self.norm}" + (", inverse" if self.inverse else ""))


# ------------------------------------------------------------------------------ Hartley
class Hartley(_Transform):
    """The discrete Hartley transform on arrays of ``shape`` (flattened, C order), N = prod(shape).

    ``H[j, k] = cas(2 pi sum_d j_d k_d / n_d) / sqrt(N)`` with ``cas = cos + sin``, i.e.
    ``H x = Re(F x) - Im(F x)`` for the unitary N-D DFT F and real x. H is real, symmetric and
    orthogonal (``H @ H = I``; annotated SelfAdjoint and Unitary). It diagonalises every real
    symmetric circulant / circular convolution on ``shape``, with real eigenvectors.
    O(N log N) per column; 0 parameters; weakly typed like :class:`DFT` (default float64).
    """

    def __init__(self, shape, dtype: Any = None, device: Any = None, backend: Any = None):
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
        if not shape or min(shape) < 1:
            raise ShapeError(f"Hartley needs a non-empty shape of positive sizes, got {shape!r}")
        self.grid = shape
        N = prod(shape)
        super().__init__((N, N), dtype, device, ("SelfAdjoint", "Unitary"), backend)

    def _apply(self, Xb):  # Xb: (k, *grid)
        xp = self._xp_for(Xb)
        axes = tuple(range(1, len(self.grid) + 1))
        if is_complex_array(xp, Xb):  # H x = ((1 + i) F x + (1 - i) F^H x) / 2
            F = fftn(xp, Xb, self.grid, axes, False)
            G = Xb
            for a in axes:
                G = xp.ifft(G, None, a, "ortho")
            N = prod(self.grid)
            return ((1 + 1j) * F / N**0.5 + (1 - 1j) * G) / 2
        F = fftn(xp, Xb, self.grid, axes, False) / prod(self.grid) ** 0.5
        return xp.real(F) - F.imag

    def _matmat(self, X):
        k = X.shape[1]
        return self._apply(X.T.reshape(k, *self.grid)).reshape(k, -1).T

    def _rmatmat(self, X):  # symmetric
        return self._apply(X.reshape(X.shape[0], *self.grid)).reshape(X.shape[0], -1)

    def _transpose(self):
        return self

    def _adjoint(self):
        return self

    def _bind(self, xp, dtype, device):
        return Hartley(self.grid, dtype, device, backend=xp)

    def _label(self):
        return label_with(self, "grid " + "x".join(map(str, self.grid)))


# ----------------------------------------------------------------------------- Toeplitz
def toeplitz_product(xp, col, upper, X, axis: int, device=None):
    """``T @ X`` along ``axis`` for the Toeplitz matrix with first column ``col`` (m) and
    super-diagonals ``upper`` (n - 1: t_{-1}, ..., t_{-(n-1)}), by a circulant of size L >= m + n - 1.

    The circulant's first column is ``[col, 0, ..., 0, reversed(upper)]``; the result is the
    first m entries of its product with X zero-padded to L. O(L log L) per column.
    """
    m, n = col.shape[0], upper.shape[0] + 1
    L = fast_len(m + n - 1)
    parts = [col]
    if L - m - n + 1 > 0:
        parts.append(xp.zeros((L - m - n + 1,), col.dtype, device))
    if n > 1:
        parts.append(take(xp, upper, np.arange(n - 2, -1, -1), device))
    g = xp.concat(parts) if len(parts) > 1 else col
    real = not is_complex_array(xp, g) and not is_complex_array(xp, X)
    shape = [1, 1]
    shape[axis] = -1
    if real:
        G = xp.rfft(g).reshape(*shape)
        Y = xp.irfft(xp.rfft(X, L, axis) * G, L, axis)
    else:
        G = xp.fft(g).reshape(*shape)
        Y = xp.ifft(xp.fft(X, L, axis) * G, L, axis)
    return Y[:m] if axis == 0 else Y[:, :m]


class Toeplitz(LinearOperator):
    """The m x n Toeplitz matrix ``T[i, j] = t_{i-j}`` with first column ``c`` (m) and first row ``r`` (n).

    As in ``scipy.linalg.toeplitz``: ``r[0]`` is ignored (the diagonal is ``c[0]``), and ``r``
    omitted means ``r = conj(c)`` (a Hermitian Toeplitz matrix, annotated SelfAdjoint when
    ``c[0]`` is real). A square operator whose concrete ``r`` equals ``conj(c)`` is annotated
    SelfAdjoint too; positive definiteness is the caller's promise (``lo.PSD(T)``).

    Products embed T in a circulant of FFT size ``L = fast_len(m + n - 1)``: O(L log L) per
    column, O(L) memory, never the m x n matrix. m + n - 1 parameters. ``T.T``, ``T.H``,
    ``c * T``, ``T + T'`` and contiguous slices ``T[i:j, k:l]`` stay Toeplitz. ``lo.solve`` of
    a PSD Toeplitz runs CG preconditioned by T. Chan's optimal circulant (see
    :func:`linops.toeplitz_preconditioner`) when CG is asked for or n > ``Auto.dense_n``.
    """

    _leaves = ("c", "r")

    def __init__(self, c, r=None):
        hermitian = r is None
        xc = backend_of(c)
        if xc is None or not xc.is_array(c):
            raise TypeError(f"Toeplitz needs a 1-D numpy, torch or jax array c, got {type(c).__name__}")
        if r is None:
            r = xc.conj(c)
        xp = common_backend(xc, backend_of(r), what="Toeplitz column and row")
        if c.ndim != 1 or getattr(r, "ndim", None) != 1 or c.shape[0] < 1 or r.shape[0] < 1:
            raise ShapeError(
                f"Toeplitz needs non-empty 1-D arrays c (first column, m) and r (first row, n), got shapes "
                f"{tuple(c.shape)} and {tuple(getattr(r, 'shape', ()))}"
            )
        dtype = xp.result_type(c.dtype, r.dtype)
        self.c = c if c.dtype == dtype else xp.astype(c, dtype)
        self.r = r if r.dtype == dtype else xp.astype(r, dtype)
        m, n = c.shape[0], r.shape[0]
        tags = ("SelfAdjoint",) if m == n and _is_hermitian(xp, self.c, self.r, hermitian) else ()
        super().__init__((m, n), dtype, xp, xp.device_of(c), tags)

    @property
    def num_params(self) -> int:
        return self.shape[0] + self.shape[1] - 1

    @property
    def fft_size(self) -> int:
        return fast_len(self.shape[0] + self.shape[1] - 1)

    def _matmat(self, X):
        return toeplitz_product(self.xp, self.c, self.r[1:], X, 0, self.device)

    def _rmatmat(self, X):  # X T = (T^T X^T)^T; T^T has first column (c[0], r[1:]) and row c
        col = self.xp.concat([self.c[:1], self.r[1:]])
        return toeplitz_product(self.xp, col, self.c[1:], X, 1, self.device)

    def _sequence(self):
        """``t_k`` for k = -(n-1), ..., m-1 (position k + n - 1)."""
        n = self.shape[1]
        if n == 1:
            return self.c
        return self.xp.concat([take(self.xp, self.r, np.arange(n - 1, 0, -1), self.device), self.c])

    def to_dense(self):
        m, n = self.shape
        idx = np.arange(m)[:, None] - np.arange(n)[None, :] + n - 1
        return take(self.xp, self._sequence(), idx, self.device)

    def _transpose(self):
        return Toeplitz(self.xp.concat([self.c[:1], self.r[1:]]), self.c)

    def _adjoint(self):
        conj = self.xp.conj
        return Toeplitz(conj(self.xp.concat([self.c[:1], self.r[1:]])), conj(self.c))

    def _scale(self, a):
        return Toeplitz(a * self.c, a * self.r)

    def _add_same(self, other):
        if self.shape != other.shape:
            return None
        (a, b), *_ = combine((self, other), "terms of a sum")
        return Toeplitz(a.c + b.c, a.r + b.r)

    def _slice(self, rows, cols):
        """A contiguous block ``T[i0:i1, j0:j1]`` is Toeplitz: column t_{d+i}, row t_{d-j}, d = i0 - j0."""
        if not (isinstance(rows, slice) and isinstance(cols, slice)) or rows.step not in (None, 1) \
                or cols.step not in (None, 1):
            return None
        (i0, i1, _), (j0, j1, _) = rows.indices(self.shape[0]), cols.indices(self.shape[1])
        if i1 <= i0 or j1 <= j0:
            return None
        off = i0 - j0 + self.shape[1] - 1
        seq = self._sequence()
        return Toeplitz(take(self.xp, seq, off + np.arange(i1 - i0), self.device),
                        take(self.xp, seq, off - np.arange(j1 - j0), self.device))

    def _label(self):
        return label_with(self, f"FFT size {self.fft_size}")


def _is_hermitian(xp, c, r, from_c: bool) -> bool:
    """Whether square Toeplitz(c, r) is Hermitian, decided only where it is cheap and concrete."""
    complex_ = xp.is_complex(c.dtype)
    if from_c and not complex_:
        return True
    if not (xp.is_concrete(c) and xp.is_concrete(r)):
        return False
    cn, rn = xp.to_numpy(c), xp.to_numpy(r)
    return bool(np.imag(cn[0]) == 0 and np.array_equal(rn[1:], np.conj(cn[1:])))
