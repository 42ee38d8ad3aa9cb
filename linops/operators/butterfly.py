"""Butterfly matrices (Dao et al., ICML 2019, "Learning Fast Algorithms for Linear Transforms Using
Butterfly Factorizations"), and the real part of a complex operator (for the DCT).

Layout: ``n = 2^L``; ``blocks`` is an array ``(L, n/2, 2, 2)``. Factor ``F_k`` (k = 0..L-1) mixes
entries ``i`` and ``i + 2^k`` inside each run of ``2^(k+1)`` entries: reading a vector as the grid
``x[a, b, c] = x[a 2^(k+1) + b 2^k + c]`` (``a < n / 2^(k+1)``, ``b < 2``, ``c < 2^k``)::

    (F_k x)[a, i, c] = Σ_j blocks[k, a 2^k + c, i, j] x[a, j, c]

The butterfly is ``B = F_{L-1} ... F_1 F_0 P`` (``reverse=False``: factor 0, span 1, acts
first) or ``B = P F_0 F_1 ... F_{L-1}`` (``reverse=True``), where ``P`` is the bit-reversal
permutation (``(P x)[i] = x[bitrev(i)]``, its own inverse) when ``bit_reversal`` is set and the
identity otherwise. ``reverse`` makes the family closed under transpose, adjoint and inverse:
``B^{-1}`` is the butterfly of the inverted 2 x 2 blocks (closed form) with ``reverse`` flipped.

Products are reshapes and elementwise arithmetic, never a dense matrix: per factor and
column, 4 multiplications and 2 additions per 2 x 2 block, ``3 n`` operations, so
``flops(c) = 3 c n log2 n`` (in the data's arithmetic; as multiply-adds counted twice,
``4 c n log2 n``). Parameters ``4 (n/2) L = 2 n log2 n``.

Initialisations: :meth:`Butterfly.fft` (radix-2 decimation in time, equal to ``numpy.fft.fft``),
:meth:`Butterfly.ifft`, :meth:`Butterfly.hadamard` (Sylvester's Walsh-Hadamard matrix),
:meth:`Butterfly.random` (orthogonal / unitary blocks, annotated Unitary) and
:meth:`Butterfly.dct` (a :class:`RealPart` of a product, see there).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..backends import backend_named, backend_of
from ..errors import ShapeError
from .base import LinearOperator

__all__ = ["Butterfly", "RealPart", "bit_reversal_permutation"]


@lru_cache(maxsize=64)
def _bitrev(n: int) -> np.ndarray:
    L = n.bit_length() - 1
    i = np.arange(n)
    out = np.zeros(n, np.int64)
    for b in range(L):
        out |= ((i >> b) & 1) << (L - 1 - b)
    return out


def bit_reversal_permutation(n: int) -> np.ndarray:
    """The indices ``bitrev(i)`` for ``i < n = 2^L``: ``i``'s L-bit binary expansion reversed."""
    _check_n(n, "bit_reversal_permutation")
    return _bitrev(int(n)).copy()


def _check_n(n, where: str) -> int:
    if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 2 and (int(n) & (int(n) - 1)) == 0):
        raise ShapeError(f"{where}: the size must be a power of two n = 2^L >= 2, got {n!r}")
    return int(n)


def _backend_dtype(dtype, backend, default, complex_: bool | None):
    """(backend, dtype) for the constructors: ``backend`` names the library, else the dtype's."""
    if backend is not None:
        be = backend_named(backend) if isinstance(backend, str) else backend
    else:
        be = backend_of(dtype) if dtype is not None else None
        be = be if be is not None else backend_named("numpy")
    dt = be.as_dtype(dtype if dtype is not None else default)
    if complex_ is True and not be.is_complex(dt):
        dt = be.complex_dtype(dt)
    elif complex_ is False and be.is_complex(dt):
        dt = be.real_dtype(dt)
    return be, dt


def _make(be, a: np.ndarray, dt, device):
    return be.asarray(a, dt, device)


class Butterfly(LinearOperator):
    """The ``n x n`` butterfly ``F_{L-1} ... F_0 P`` (or ``P F_0 ... F_{L-1}``): module docstring.

    * ``blocks``: array ``(L, n/2, 2, 2)``, real or complex, ``n = 2^L``.
    * ``bit_reversal``: include the bit-reversal permutation ``P`` (applied first, or last
      when ``reverse``); ``reverse``: the factor order of the module docstring.

    Parameters ``2 n log2 n``; ``flops(c) = 3 c n log2 n``; memory O(n c).
    """

    _leaves = ("blocks",)

    def __init__(self, blocks, bit_reversal: bool = False, reverse: bool = False, annotations=()):
        xp = backend_of(blocks)
        if xp is None or getattr(blocks, "ndim", None) != 4 or tuple(blocks.shape[2:]) != (2, 2):
            raise ShapeError(
                "Butterfly: blocks must be an array (L, n/2, 2, 2) of 2 x 2 blocks, got "
                f"{type(blocks).__name__} of shape {tuple(getattr(blocks, 'shape', ()))}"
            )
        L, h = int(blocks.shape[0]), int(blocks.shape[1])
        if L < 1 or h != 2 ** (L - 1):
            raise ShapeError(
                f"Butterfly: {L} factors need n/2 = 2^(L-1) = {2 ** max(L - 1, 0)} blocks each, got blocks of shape "
                f"{tuple(blocks.shape)}"
            )
        self.blocks = blocks
        self.bit_reversal, self.reverse = bool(bit_reversal), bool(reverse)
        super().__init__((2 * h, 2 * h), blocks.dtype, xp, xp.device_of(blocks), annotations)

    # ------------------------------------------------------------------ sizes
    @property
    def levels(self) -> int:
        """``L = log2 n``."""
        return int(self.blocks.shape[0])

    @property
    def num_params(self) -> int:
        return 4 * self.shape[0] // 2 * self.levels

    def flops(self, columns: int = 1) -> int:
        """Arithmetic operations of a product with ``columns`` columns: ``3 n log2 n`` per column."""
        return 3 * columns * self.shape[0] * self.levels

    # --------------------------------------------------------------- products
    def _factor(self, X, k: int, left: bool):
        """``F_k X`` for X (n, c) (``left``), or ``X F_k`` for X (c, n)."""
        n = self.shape[0]
        C = 1 << k
        A = n // (2 * C)
        B = self.blocks[k].reshape(A, C, 2, 2)
        b00, b01, b10, b11 = B[:, :, 0, 0], B[:, :, 0, 1], B[:, :, 1, 0], B[:, :, 1, 1]
        xp = self.xp
        if left:
            c = X.shape[1]
            T = X.reshape(A, 2, C, c)
            x0, x1 = T[:, 0], T[:, 1]  # (A, C, c)
            y0 = b00[..., None] * x0 + b01[..., None] * x1
            y1 = b10[..., None] * x0 + b11[..., None] * x1
            return xp.stack([y0, y1], 1).reshape(n, c)
        c = X.shape[0]
        T = X.reshape(c, A, 2, C)
        x0, x1 = T[:, :, 0], T[:, :, 1]  # (c, A, C)
        y0 = x0 * b00 + x1 * b10
        y1 = x0 * b01 + x1 * b11
        return xp.stack([y0, y1], 2).reshape(c, n)

    def _perm(self, X, axis: int):
        idx = self.xp.asarray(_bitrev(self.shape[0]), device=self.device)
        return X[idx] if axis == 0 else X[:, idx]

    def _matmat(self, X):
        order = range(self.levels - 1, -1, -1) if self.reverse else range(self.levels)
        if self.bit_reversal and not self.reverse:
            X = self._perm(X, 0)
        for k in order:
            X = self._factor(X, k, True)
        if self.bit_reversal and self.reverse:
            X = self._perm(X, 0)
        return X

    def _rmatmat(self, X):  # X @ B for X (c, n); the bit reversal is symmetric: X P = X[:, bitrev]
        order = range(self.levels) if self.reverse else range(self.levels - 1, -1, -1)
        if self.bit_reversal and self.reverse:
            X = self._perm(X, 1)
        for k in order:
            X = self._factor(X, k, False)
        if self.bit_reversal and not self.reverse:
            X = self._perm(X, 1)
        return X

    def to_dense(self):
        return self._matmat(self.xp.eye(self.shape[0], self.dtype, self.device))

    # ------------------------------------------------------------ structure
    def _rebuilt(self, blocks, reverse: bool):
        return Butterfly(blocks, self.bit_reversal, reverse)

    def _transpose(self):
        """``(F_{L-1} .. F_0 P)^T = P F_0^T .. F_{L-1}^T``: transposed blocks, order flipped."""
        return self._rebuilt(self.xp.moveaxis(self.blocks, 3, 2), not self.reverse)

    def _adjoint(self):
        return self._rebuilt(self.xp.conj(self.xp.moveaxis(self.blocks, 3, 2)), not self.reverse)

    def _scale(self, c):
        xp = self.xp
        first = c * self.blocks[:1]
        return self._rebuilt(xp.concat([first, self.blocks[1:]], 0), self.reverse)

    def block_dets(self):
        """``det`` of every 2 x 2 block, array ``(L, n/2)``."""
        B = self.blocks
        return B[..., 0, 0] * B[..., 1, 1] - B[..., 0, 1] * B[..., 1, 0]

    def inverse(self):
        """``B^{-1}``: every block inverted in closed form, ``[[a, b], [c, d]]^{-1} =
        [[d, -b], [-c, a]] / (ad - bc)``, and the factor order reversed (no check for zero
        determinants here: :func:`linops.inv` checks them)."""
        xp = self.xp
        B = self.blocks
        det = self.block_dets()[..., None, None]
        adj = xp.stack([xp.stack([B[..., 1, 1], -B[..., 0, 1]], -1), xp.stack([-B[..., 1, 0], B[..., 0, 0]], -1)], -2)
        return Butterfly(adj / det, self.bit_reversal, not self.reverse, self.annotations & {"Unitary"})

    def __repr__(self) -> str:
        n, L = self.shape[0], self.levels
        order = "P F_0..F_{L-1}" if self.reverse else "F_{L-1}..F_0 P"
        if not self.bit_reversal:
            order = order.replace(" P", "").replace("P ", "")
        return f"{self._label()[:-1]}; {L} factors of {n // 2} 2x2 blocks, {order}, {self.num_params} parameters)"

    # -------------------------------------------------------------- initialisations
    @staticmethod
    def fft(n: int, norm: str = "backward", dtype: Any = None, backend: Any = None, device: Any = None) -> Butterfly:
        """The DFT as a butterfly: ``Butterfly.fft(n) @ x == numpy.fft.fft(x, norm=norm)``.

        Radix-2 decimation in time: bit-reversal permutation, then factor ``k`` (span
        ``h = 2^k``) with blocks ``[[1, w^c], [1, -w^c]]``, ``w = exp(-2 pi i / 2h)``, ``c < h``.
        ``norm="ortho"`` scales every block by ``1/sqrt 2`` (then unitary, annotated Unitary),
        ``"forward"`` by ``1/2``. The dtype is complex (a real ``dtype`` is promoted).
        """
        return _fourier(n, norm, dtype, backend, device, inverse=False)

    @staticmethod
    def ifft(n: int, norm: str = "backward", dtype: Any = None, backend: Any = None, device: Any = None) -> Butterfly:
        """``numpy.fft.ifft`` as a butterfly: conjugate twiddles, scaled ``1/2`` per factor by default."""
        return _fourier(n, norm, dtype, backend, device, inverse=True)

    @staticmethod
    def hadamard(n: int, normalized: bool = False, dtype: Any = None, backend: Any = None, device: Any = None) -> Butterfly:
        """Sylvester's Walsh-Hadamard matrix ``H_2 ⊗ ... ⊗ H_2`` (= ``scipy.linalg.hadamard(n)``):
        every block ``[[1, 1], [1, -1]]`` (times ``1/sqrt 2`` if ``normalized``: orthogonal,
        annotated Unitary). Symmetric: annotated SelfAdjoint."""
        n = _check_n(n, "Butterfly.hadamard")
        be, dt = _backend_dtype(dtype, backend, np.float64, None)
        L = n.bit_length() - 1
        h = np.array([[1.0, 1.0], [1.0, -1.0]]) / (np.sqrt(2.0) if normalized else 1.0)
        blocks = np.broadcast_to(h, (L, n // 2, 2, 2))
        tags = ("SelfAdjoint", "Unitary") if normalized else ("SelfAdjoint",)
        return Butterfly(_make(be, np.ascontiguousarray(blocks), dt, device), annotations=tags)

    @staticmethod
    def random(n: int, seed: int = 0, bit_reversal: bool = False, dtype: Any = None, backend: Any = None,
               device: Any = None) -> Butterfly:
        """A random orthogonal (real dtype) or unitary (complex dtype) butterfly, annotated Unitary.

        Real blocks are rotations ``[[cos t, -sin t], [sin t, cos t]]`` with a random row sign
        (determinant ±1); complex blocks ``e^{iφ/2} [[e^{iα} cos t, e^{iβ} sin t],
        [-e^{-iβ} sin t, e^{-iα} cos t]]``. Angles uniform, from ``numpy.random.default_rng(seed)``.
        """
        n = _check_n(n, "Butterfly.random")
        be, dt = _backend_dtype(dtype, backend, np.float64, None)
        rng = np.random.default_rng(seed)
        L = n.bit_length() - 1
        t = rng.uniform(0, 2 * np.pi, (L, n // 2))
        c, s = np.cos(t), np.sin(t)
        if be.is_complex(dt):
            al, bt, ph = (rng.uniform(0, 2 * np.pi, (L, n // 2)) for _ in range(3))
            ea, eb, ep = np.exp(1j * al), np.exp(1j * bt), np.exp(0.5j * ph)
            blocks = ep[..., None, None] * np.stack(
                [np.stack([ea * c, eb * s], -1), np.stack([-s / eb, c / ea], -1)], -2)
        else:
            sign = rng.choice([-1.0, 1.0], (L, n // 2))
            blocks = np.stack([np.stack([c, -s], -1), np.stack([sign * s, sign * c], -1)], -2)
        return Butterfly(_make(be, blocks, dt, device), bit_reversal, annotations=("Unitary",))

    @staticmethod
    def dct(n: int, dtype: Any = None, backend: Any = None, device: Any = None) -> RealPart:
        """The orthonormal DCT-II, ``== scipy.fft.dct(x, norm="ortho")``, as ``Re(D F Q)``.

        Makhoul's algorithm (1980): ``Q`` is the permutation ``v[m] = x[2m]``,
        ``v[n-1-m] = x[2m+1]`` (m < n/2), ``F`` the complex FFT butterfly and ``D`` the diagonal
        twiddle ``s_k exp(-i pi k / 2n)`` with ``s_0 = sqrt(1/n)``, ``s_k = sqrt(2/n)``; then
        ``DCT x = Re(D F Q x)`` for real x. Returned as ``RealPart(Product(Diagonal, Butterfly,
        Permutation))`` of real dtype, annotated Unitary (the orthonormal DCT-II is orthogonal).
        Cost: one complex FFT butterfly, ``3 n log2 n`` complex operations per column, plus O(n).
        """
        from .diagonal import Diagonal
        from .permutation import Permutation

        n = _check_n(n, "Butterfly.dct")
        be, rdt = _backend_dtype(dtype, backend, np.float64, False)
        cdt = be.complex_dtype(rdt)
        k = np.arange(n)
        scale = np.where(k == 0, np.sqrt(1.0 / n), np.sqrt(2.0 / n))
        twiddle = _make(be, scale * np.exp(-0.5j * np.pi * k / n), cdt, device)
        perm = np.empty(n, np.int64)
        m = np.arange(n // 2)
        perm[m], perm[n - 1 - m] = 2 * m, 2 * m + 1
        F = Butterfly.fft(n, dtype=cdt, backend=be, device=device)
        Q = Permutation(be.asarray(perm, device=device), dtype=cdt)
        return RealPart(Diagonal(twiddle) @ F @ Q, annotations=("Unitary",))


def _fourier(n, norm, dtype, backend, device, inverse: bool) -> Butterfly:
    where = "Butterfly.ifft" if inverse else "Butterfly.fft"
    n = _check_n(n, where)
    if norm not in ("backward", "ortho", "forward"):
        raise ValueError(f"{where}: norm must be 'backward', 'ortho' or 'forward', got {norm!r}")
    be, dt = _backend_dtype(dtype, backend, np.complex128, True)
    L = n.bit_length() - 1
    sign = 1.0 if inverse else -1.0
    unscaled = "forward" if inverse else "backward"  # the norm with no factor for this direction
    s = 1.0 if norm == unscaled else (np.sqrt(0.5) if norm == "ortho" else 0.5)
    blocks = np.empty((L, n // 2, 2, 2), np.complex128)
    for k in range(L):
        h = 1 << k
        w = np.exp(sign * 1j * np.pi * np.arange(h) / h)  # exp(∓2πi c / 2h), c < h
        w = np.tile(w, n // (2 * h))  # block index a h + c
        blocks[k, :, 0, 0] = blocks[k, :, 1, 0] = s
        blocks[k, :, 0, 1], blocks[k, :, 1, 1] = s * w, -s * w
    return Butterfly(_make(be, blocks, dt, device), bit_reversal=True, annotations=("Unitary",) if norm == "ortho" else ())


class RealPart(LinearOperator):
    """``Re(A)``: the entrywise real part of a complex operator ``A``'s matrix, of real dtype.

    ``Re(A) X = Re(A X)`` for real ``X``; for complex ``X``, ``Re(A) Re(X) + i Re(A) Im(X)``
    (two products with A). ``X Re(A) = Re(X A)`` likewise. Costs those of ``A``.
    """

    _leaves = ("A",)

    def __init__(self, A: LinearOperator, annotations=()):
        if not isinstance(A, LinearOperator):
            raise TypeError(f"RealPart takes a LinearOperator, got {type(A).__name__}")
        self.A = A
        super().__init__(A.shape, A.xp.real_dtype(A.dtype), A.xp, A.device, annotations)

    def _apply(self, X, f):
        xp = self.xp
        cdt = self.A.dtype
        if xp.is_complex(X.dtype):
            re = xp.real(f(xp.astype(xp.real(X), cdt)))
            im = xp.real(f(xp.astype(xp.real(-1j * X), cdt)))
            return re + 1j * im
        return xp.real(f(xp.astype(X, cdt)))

    def _matmat(self, X):
        return self._apply(X, self.A._matmat)

    def _rmatmat(self, X):
        return self._apply(X, self.A._rmatmat)

    def _transpose(self):
        return RealPart(self.A.T)

    _adjoint = _transpose  # a real matrix: the adjoint is the transpose

    def _scale(self, c):
        """``Re(c A) = c Re(A)`` for real ``c`` only; a complex ``c`` takes the generic product."""
        if isinstance(c, complex) or (hasattr(c, "dtype") and self.xp.is_complex(c.dtype)):
            return super()._scale(c)
        return RealPart(self.A._scale(c))
