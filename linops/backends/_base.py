"""The interface every backend implements: what an algorithm may ask of an array library.

The array operators (``@``, ``+``, indexing, ``.T`` on 2-D arrays) work alike in the
three libraries and are used directly; this class holds what differs: creation,
linear algebra with error reporting, control flow, random numbers and devices.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import NonFiniteError, NotPSDError, SingularMatrixError


class Backend:
    """One array library. Subclasses fill in every method; instances are singletons."""

    name: str = "abstract"
    array_types: tuple[type, ...] = ()

    def __repr__(self) -> str:
        return f"<linops backend {self.name}>"

    def __reduce__(self):  # pickles as a reference to the singleton
        from . import backend_named

        return (backend_named, (self.name,))

    # ----------------------------------------------------------------- types
    def is_array(self, x: Any) -> bool:
        return isinstance(x, self.array_types)

    def is_dtype(self, x: Any) -> bool:
        raise NotImplementedError

    def as_dtype(self, dtype: Any) -> Any:
        """This library's dtype object for ``dtype`` (its own, or a numpy dtype / name)."""
        raise NotImplementedError

    def result_type(self, *dtypes: Any) -> Any:
        raise NotImplementedError

    def is_complex(self, dtype: Any) -> bool:
        raise NotImplementedError

    def real_dtype(self, dtype: Any) -> Any:
        raise NotImplementedError

    def complex_dtype(self, dtype: Any) -> Any:
        raise NotImplementedError

    def eps(self, dtype: Any) -> float:
        raise NotImplementedError

    def default_float(self) -> Any:
        raise NotImplementedError

    def device_of(self, x: Any) -> Any:
        """The device ``x`` lives on (None where the library decides, e.g. under ``jax.jit``)."""
        return None

    def is_concrete(self, x: Any) -> bool:
        """False for values being traced (jax.jit), whose contents cannot be inspected."""
        return True

    # -------------------------------------------------------------- creation
    def asarray(self, x: Any, dtype: Any = None, device: Any = None) -> Any:
        raise NotImplementedError

    def zeros(self, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        raise NotImplementedError

    def ones(self, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        raise NotImplementedError

    def eye(self, n: int, dtype: Any, device: Any = None) -> Any:
        raise NotImplementedError

    def arange(self, n: int, device: Any = None) -> Any:
        raise NotImplementedError

    def astype(self, x: Any, dtype: Any) -> Any:
        raise NotImplementedError

    # --------------------------------------------------------- array helpers
    def concat(self, xs: list, axis: int = 0) -> Any:
        raise NotImplementedError

    def stack(self, xs: list, axis: int = 0) -> Any:
        raise NotImplementedError

    def conj(self, x: Any) -> Any:
        raise NotImplementedError

    def real(self, x: Any) -> Any:
        raise NotImplementedError

    def diagonal(self, x: Any) -> Any:
        raise NotImplementedError

    def diag(self, v: Any) -> Any:
        """The square matrix with ``v`` on its diagonal."""
        raise NotImplementedError

    def tril(self, x: Any, k: int = 0) -> Any:
        raise NotImplementedError

    def triu(self, x: Any, k: int = 0) -> Any:
        raise NotImplementedError

    def kron(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def einsum(self, spec: str, *xs: Any) -> Any:
        raise NotImplementedError

    def moveaxis(self, x: Any, src: int, dst: int) -> Any:
        raise NotImplementedError

    def argsort(self, x: Any, descending: bool = False) -> Any:
        raise NotImplementedError

    def topk(self, x: Any, k: int, largest: bool = True) -> Any:
        """Indices of the k largest (or smallest) entries of real 1-D ``x``, best first; O(n + k log k)."""
        raise NotImplementedError

    def index_set(self, x: Any, idx: Any, values: Any, axis: int = 0) -> Any:
        """A copy of ``x`` with entries ``idx`` along ``axis`` set to ``values`` (functional in jax)."""
        raise NotImplementedError

    def all_finite(self, x: Any) -> bool | None:
        """Whether every entry is finite; None when ``x`` is traced and cannot be inspected."""
        raise NotImplementedError

    def to_numpy(self, x: Any) -> Any:
        raise NotImplementedError

    # elementwise and reductions (the array libraries spell these alike, but not as methods)
    def exp(self, x: Any) -> Any:
        raise NotImplementedError

    def log(self, x: Any) -> Any:
        raise NotImplementedError

    def sqrt(self, x: Any) -> Any:
        raise NotImplementedError

    def abs(self, x: Any) -> Any:
        raise NotImplementedError

    def where(self, c: Any, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def prod(self, x: Any) -> Any:
        raise NotImplementedError

    def sum(self, x: Any, axis: int | None = None) -> Any:
        raise NotImplementedError

    def coldot(self, x: Any, y: Any) -> Any:
        """Column inner products ``sum_i conj(x[i, j]) y[i, j]`` of (n, k) arrays, shape (k,);
        one fused pass, no temporary (the Krylov loops call it several times per step)."""
        raise NotImplementedError

    # ------------------------------------------------------------ linear algebra
    def cholesky(self, a: Any) -> Any:
        """Lower Cholesky factor; NotPSDError when ``a`` is not positive definite."""
        raise NotImplementedError

    def cho_solve(self, L: Any, b: Any) -> Any:
        """``(L L^H)^{-1} b`` from the lower Cholesky factor ``L``; ``b`` is (n,) or (n, k)."""
        raise NotImplementedError

    def solve_triangular(self, t: Any, b: Any, lower: bool, adjoint: bool = False) -> Any:
        """``t^{-1} b`` (or ``t^{-H} b``) for triangular ``t``."""
        raise NotImplementedError

    def lu_factor(self, a: Any) -> Any:
        """An opaque LU factorisation; SingularMatrixError for an exactly singular ``a``."""
        raise NotImplementedError

    def lu_solve(self, lu: Any, b: Any, adjoint: bool = False) -> Any:
        """``A^{-1} b`` (or ``A^{-H} b``) from :meth:`lu_factor`; ``b`` is (n,) or (n, k)."""
        raise NotImplementedError

    def lu_slogdet(self, lu: Any) -> tuple[Any, Any]:
        """(sign, log|det|) from an LU factorisation."""
        raise NotImplementedError

    def solve(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def eigh(self, a: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def eig(self, a: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def svd(self, a: Any) -> tuple[Any, Any, Any]:
        """Thin SVD ``a = u diag(s) vh`` with ``s`` descending."""
        raise NotImplementedError

    def qr(self, a: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def slogdet(self, a: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def expm(self, a: Any) -> Any:
        raise NotImplementedError

    def tridiagonal_solve(self, lower: Any, diag: Any, upper: Any, b: Any) -> Any:
        """Solve with the tridiagonal matrix of bands ``lower`` (n-1), ``diag`` (n), ``upper`` (n-1)."""
        raise NotImplementedError

    # ------------------------------------------------------------------- fft
    # numpy.fft conventions: ``n`` pads with zeros (or truncates) along ``axis``; ``norm`` is
    # None/"backward" (forward unscaled), "ortho" (both 1/sqrt(n)) or "forward" (forward 1/n).
    def fft(self, x: Any, n: int | None = None, axis: int = -1, norm: str | None = None) -> Any:
        """1-D discrete Fourier transform along ``axis``, O(n log n); complex output."""
        raise NotImplementedError

    def ifft(self, x: Any, n: int | None = None, axis: int = -1, norm: str | None = None) -> Any:
        """Inverse of :meth:`fft` (same ``norm``)."""
        raise NotImplementedError

    def rfft(self, x: Any, n: int | None = None, axis: int = -1, norm: str | None = None) -> Any:
        """:meth:`fft` of real ``x``, keeping the n // 2 + 1 non-negative frequencies."""
        raise NotImplementedError

    def irfft(self, x: Any, n: int | None = None, axis: int = -1, norm: str | None = None) -> Any:
        """Inverse of :meth:`rfft`: a real array of length ``n`` (default 2 (m - 1)) along ``axis``."""
        raise NotImplementedError

    # --------------------------------------------------------- control flow, AD
    def while_loop(self, cond: Callable, body: Callable, state: Any) -> Any:
        """``while cond(state): state = body(state)``; compiles to ``lax.while_loop`` in jax."""
        while cond(state):
            state = body(state)
        return state

    def linear_transpose(self, f: Callable, like: Any, ct: Any) -> Any:
        """``J^T ct`` for the linear map ``f`` at arrays shaped like ``like`` (no conjugation)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- random
    def normal(self, key: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        """Standard normal samples from an explicit key/generator (see :func:`make_key`)."""
        raise NotImplementedError

    def make_key(self, seed: int) -> Any:
        raise NotImplementedError

    # ------------------------------------------------- shared error reporting
    def check_finite(self, x: Any, what: Any) -> None:
        """NonFiniteError if ``x`` holds NaN/inf; ``what`` is a string or a callable giving one
        (so that the message costs nothing when the check passes)."""
        if self.all_finite(x) is False:
            raise NonFiniteError(f"{what() if callable(what) else what} contains NaN or infinity")

    def hermitian_gap(self, M: Any) -> tuple[float, float] | None:
        """``(asymmetry, scale)`` of square ``M``, or None for a traced ``M``.

        Small M: ``max |M - M^H|`` and ``max |M|``, exactly. Large M (n > 128): from two
        fixed random probes Z, ``||(M - M^H) Z|| / ||Z||`` and ``||M Z|| / ||Z||``: two BLAS
        products instead of elementwise passes with n x n temporaries. A non-Hermitian M is
        caught with probability one; NaN or inf in M makes the scale non-finite either way.
        """
        if not self.is_concrete(M):
            return None
        n = M.shape[0]
        if n <= 128:
            Mn = self.to_numpy(M)
            if Mn.size == 0:
                return 0.0, 0.0
            gap = np.abs(Mn - (Mn.T.conj() if Mn.dtype.kind == "c" else Mn.T))
            return float(np.maximum.reduce(gap, axis=None)), float(np.maximum.reduce(np.abs(Mn), axis=None))
        Z = self.normal(self.make_key(0), (n, 2), M.dtype, self.device_of(M))
        MZ = M @ Z
        MhZ = self.conj(M).T @ Z

        def norm(X):
            return float(self.sqrt(self.sum(self.real(self.conj(X) * X))))

        zn = norm(Z)
        return norm(MZ - MhZ) / zn, norm(MZ) / zn

    @staticmethod
    def _not_psd(where: str = "") -> NotPSDError:
        return NotPSDError(
            "Cholesky factorisation failed: the operator is not positive definite"
            + (f" ({where})" if where else "")
            + "; if it is only semi-definite add a small multiple of the identity, "
            "if it is indefinite use alg=lo.LU()"
        )

    @staticmethod
    def _singular(index: int | None = None) -> SingularMatrixError:
        at = f" (zero pivot at row {index})" if index is not None else ""
        return SingularMatrixError(f"the operator is singular{at}: it has no inverse")
