"""Rules for the Fourier family (Circulant, Convolution, Toeplitz, DFT, Hartley) and Householder products.

Circular convolutions (``Circulant``, ``Convolution(mode="circular")``), with ``λ = A.spectrum()``
(the N-D FFT of the kernel, ``A = U^H diag(λ) U``), all O(N log N):

* ``inv``: the circular convolution with spectrum ``1 / λ``; SingularMatrixError names the
  frequency of an eigenvalue with ``|λ| <= N eps max |λ|``.
* ``slogdet``: ``Σ log |λ|`` and the product of the phases (±1 for a real operator).
* ``eig``: ``(λ, U^H)`` with ``U^H = ⊗ DFT(n_d, inverse=True)`` (unitary); ``eigh`` (annotated
  SelfAdjoint): ``(Re λ, U^H)``, or for a real operator ``(λ, Hartley)``, a real orthogonal basis.
* ``exp``, ``log``, ``sqrt``, ``pow``, ``apply``: the circular convolution with spectrum ``f(λ)``.
* ``diag`` / ``trace``: the constant diagonal (also for linear modes in 1-D or with equal input and
  output shapes: ``kernel[start]``).

Toeplitz: ``diag`` is ``c[0]``; ``solve``/``inv`` of an operator annotated PSD under ``lo.CG()``
(or ``Auto`` with n > ``dense_n``) run CG preconditioned by the inverse of T. Chan's circulant
(:func:`linops.toeplitz_preconditioner`); otherwise the generic rules (dense LU/Cholesky).

DFT: ``inv`` is the other direction (``DFT(n, norm, inverse=True)``); ``slogdet`` in closed form
from the multiplicities of its eigenvalues 1, -1, -i, i; ``diag`` is ``s exp(-2 pi i j^2 / n)``.
Hartley: ``inv(H) = H``.

Householder ``H_1 ... H_k``: ``inv`` is the reversed product (β_i -> β_i / (β_i - 1)); ``slogdet``
``((-1)^k, 0)``, or ``Π (1 - β_i)`` for the generalised factors; ``diag = 1 - rowsum((V T) ∘ conj V)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..algorithms import CG, Algorithm, Auto
from ..annotations import annotate
from ..errors import SingularMatrixError
from ..operators import DFT, Convolution, Hartley, Householder, Kronecker, LinearOperator, Toeplitz
from ..operators.base import array_leaves
from ..operators.convolution import toeplitz_preconditioner
from ._dispatch import STRUCTURE, dispatch, when
from .diagonals import _diag
from .determinants import _slogdet
from .eigen import _eig, _eigh
from .inverse import _inv
from .matfun import _matfun, _result_tags

__all__: list[str] = []


def _generic(fn, *types):
    """The fallback of a conditional rule: the generic (LinearOperator, type(alg)) method."""
    return lambda A, alg, *rest: fn.invoke(LinearOperator, type(alg), *types)(A, alg, *rest)


def _tagged(out, A, tags=("PSD", "SelfAdjoint")):
    keep = A.annotations & set(tags)
    return annotate(out, *keep) if keep and out.is_square else out


def _circular(A) -> bool:
    return A.mode == "circular"


def _sign_logabs(xp, lam, dtype):
    """``(Π λ/|λ|, Σ log|λ|)`` over all entries of ``lam``; the sign is cast to ``dtype``, and is
    exactly ±1 (or 0) when ``dtype`` is real."""
    lam = lam.reshape(-1)
    a = xp.abs(lam)
    zero = a == 0
    safe = xp.where(zero, 1 + 0 * a, a)
    sign = xp.prod(xp.where(zero, 0 * lam, lam / safe))
    if not xp.is_complex(dtype):
        s = xp.real(sign)
        sign = s / xp.where(s == 0, 1 + 0 * s, xp.abs(s))
    logabs = xp.sum(xp.log(safe))  # log of the non-zero |λ|; -inf (no warning) if one is zero
    logabs = xp.where(xp.sum(xp.astype(zero, a.dtype)) > 0, -float("inf") + 0 * logabs, logabs)
    return xp.astype(sign, dtype), logabs


def _check_invertible(A, lam):
    """SingularMatrixError if some |λ| <= N eps max|λ| (concrete spectra only)."""
    xp = A.xp
    if not xp.is_concrete(lam):
        return
    a = np.abs(np.asarray(xp.to_numpy(lam))).ravel()
    tol = a.size * xp.eps(xp.real_dtype(A.dtype)) * a.max(initial=0)
    bad = np.flatnonzero(a <= tol)
    if bad.size:
        at = np.unravel_index(bad[0], A.input_shape)
        at = int(at[0]) if len(at) == 1 else tuple(int(i) for i in at)
        raise SingularMatrixError(
            f"{A._label()} is singular: its eigenvalue at frequency {at} is {complex(xp.to_numpy(lam).ravel()[bad[0]]):.3g}"
            f" (|λ| <= N eps max|λ| = {tol:.3g}; {bad.size} such); it has no inverse. Regularise it "
            "(add a multiple of the identity to the kernel's first entry) or use lo.lstsq"
        )


def _spectrum(A):
    """λ of a circular convolution; real for one annotated SelfAdjoint."""
    lam = A.spectrum()
    return A.xp.real(lam) if "SelfAdjoint" in A.annotations else lam


# ------------------------------------------------------------------ circular convolutions
@dispatch(precedence=STRUCTURE)
@when(_circular, "mode='circular' (a circulant)", _generic(_inv))
def _inv(A: Convolution, alg: Algorithm):
    """A = U^H diag(λ) U  =>  A^{-1} = U^H diag(1/λ) U: the circular convolution with spectrum 1/λ, O(N log N)."""
    lam = _spectrum(A)
    _check_invertible(A, lam)
    return _tagged(A.from_spectrum(1 / lam, not A.xp.is_complex(A.dtype)), A)


@dispatch(precedence=STRUCTURE)
@when(_circular, "mode='circular' (a circulant)", _generic(_slogdet))
def _slogdet(A: Convolution, alg: Algorithm):
    """log|det A| = Σ log|λ| over the FFT eigenvalues; sign = Π λ/|λ|, O(N log N)."""
    return _sign_logabs(A.xp, _spectrum(A), A.dtype)


def _fourier_basis(A):
    """U^H = ⊗_d DFT(n_d, inverse=True): the unitary eigenvectors of every circular convolution on A's grid."""
    xp = A.xp
    cdt = A.dtype if xp.is_complex(A.dtype) else xp.complex_dtype(A.dtype)
    parts = [DFT(n, "ortho", True, cdt, A.device, backend=xp) for n in A.input_shape]
    return parts[0] if len(parts) == 1 else Kronecker(*parts)


@dispatch(precedence=STRUCTURE)
@when(_circular, "mode='circular' (a circulant)", _generic(_eig))
def _eig(A: Convolution, alg: Algorithm):
    """Eigenvalues λ = fftn(kernel); eigenvectors the inverse unitary DFT (never formed)."""
    return A.spectrum().reshape(-1), _fourier_basis(A)


@dispatch(precedence=STRUCTURE)
@when(lambda A: _circular(A) and "SelfAdjoint" in A.annotations, "mode='circular' and annotated SelfAdjoint",
      _generic(_eigh))
def _eigh(A: Convolution, alg: Algorithm):
    """Eigenvalues Re fftn(kernel); eigenvectors the Hartley transform (real A) or the inverse unitary DFT."""
    xp = A.xp
    w = xp.real(A.spectrum()).reshape(-1)
    if xp.is_complex(A.dtype):
        return w, _fourier_basis(A)
    return w, Hartley(A.input_shape, A.dtype, A.device, backend=xp)


@dispatch(precedence=STRUCTURE)
@when(_circular, "mode='circular' (a circulant)", _generic(_matfun, object))
def _matfun(A: Convolution, alg: Algorithm, fn):
    """f(A) = U^H diag(f(λ)) U: the circular convolution with spectrum f(λ) (real part kept for real A)."""
    out = A.from_spectrum(fn.f(A.xp, _spectrum(A)), not A.xp.is_complex(A.dtype))
    tags = _result_tags(A, fn)
    return annotate(out, *tags) if tags else out


def _constant_diagonal(A) -> bool:
    return _circular(A) or len(A.input_shape) == 1 or A.input_shape == A.output_shape


@dispatch(precedence=STRUCTURE)
@when(_constant_diagonal, "a circular, 1-D, or shape-preserving convolution", _generic(_diag))
def _diag(A: Convolution, alg: Algorithm):
    """Every diagonal entry is kernel[start] (kernel[0] for a circulant), O(min(m, n))."""
    xp = A.xp
    n = min(A.shape)
    if all(s < k for s, k in zip(A.start, A.kernel.shape, strict=True)):
        return A.kernel[tuple(A.start)] * xp.ones((n,), A.dtype, A.device)
    return xp.zeros((n,), A.dtype, A.device)


# ------------------------------------------------------------------------------ Toeplitz
@dispatch(precedence=STRUCTURE)
def _diag(A: Toeplitz, alg: Algorithm):
    """Every diagonal entry is c[0], O(min(m, n))."""
    return A.c[0] * A.xp.ones((min(A.shape),), A.dtype, A.device)


def _detached(op):
    """``op`` with its arrays cut from autodiff: a preconditioner is a constant."""
    arrays, rebuild = array_leaves(op)
    if op.xp.name == "torch":
        return rebuild([a.detach() for a in arrays])
    if op.xp.name == "jax":
        from jax import lax

        return rebuild([lax.stop_gradient(a) for a in arrays])
    return op


def _psd(A) -> bool:
    return "PSD" in A.annotations


@dispatch
@when(_psd, "annotated PSD (CG with a circulant preconditioner)", _generic(_inv))
def _inv(A: Toeplitz, alg: CG):
    """CG preconditioned by the inverse of T. Chan's circulant approximation (unless alg.precond is given)."""
    if alg.precond is None:
        alg = dataclasses.replace(alg, precond=toeplitz_preconditioner(_detached(A)))
    return _inv.invoke(LinearOperator, CG)(A, alg)


@dispatch
@when(_psd, "annotated PSD (above Auto.dense_n: circulant-preconditioned CG)", _generic(_inv))
def _inv(A: Toeplitz, alg: Auto):
    """Annotated PSD and n > Auto.dense_n: circulant-preconditioned CG to Auto.krylov_tol; otherwise Auto's dense choice."""
    if A.shape[0] > alg.dense_n:
        if not getattr(alg, "precond", True):  # Auto(precond=False): plain CG
            return _inv.invoke(LinearOperator, CG)(A, CG(tol=alg.krylov_tol))
        return _inv(A, CG(tol=alg.krylov_tol))
    return _inv.invoke(LinearOperator, Auto)(A, alg)


# ----------------------------------------------------------------------------------- DFT
def _dft_scale(A: DFT) -> float:
    n = A.shape[0]
    if A.norm == "ortho":
        return n**-0.5
    return 1.0 / n if (A.norm == "forward") != A.inverse else 1.0


@dispatch(precedence=STRUCTURE)
def _inv(A: DFT, alg: Algorithm):
    """The DFT's inverse is the transform in the other direction with the same norm (ifft <-> fft)."""
    return A._remake(A.norm, not A.inverse)


@dispatch(precedence=STRUCTURE)
def _slogdet(A: DFT, alg: Algorithm):
    """The unitary DFT has eigenvalues 1, -1, -i, i with multiplicities ⌊n/4⌋+1, ⌊(n+2)/4⌋, ⌊(n+1)/4⌋,
    ⌊(n-1)/4⌋, so det = i^(2b + 3c + d); |det| = (s sqrt(n))^n for the scale s."""
    xp, n = A.xp, A.shape[0]
    b, c, d = (n + 2) // 4, (n + 1) // 4, (n - 1) // 4
    sign = 1j ** ((2 * b + 3 * c + d) % 4)
    sign = np.conj(sign) if A.inverse else sign
    logabs = n * np.log(_dft_scale(A) * n**0.5)
    return (xp.asarray(np.asarray(sign), dtype=A.dtype, device=A.device),
            xp.asarray(np.asarray(logabs), dtype=xp.real_dtype(A.dtype), device=A.device))


@dispatch(precedence=STRUCTURE)
def _diag(A: DFT, alg: Algorithm):
    """F[j, j] = s exp(-2 pi i (j^2 mod n) / n) (conjugated for the inverse), O(n)."""
    n = A.shape[0]
    j = np.arange(n, dtype=np.int64)
    d = _dft_scale(A) * np.exp((2j if A.inverse else -2j) * np.pi * ((j * j) % n) / n)
    return A.xp.asarray(d, dtype=A.dtype, device=A.device)


@dispatch(precedence=STRUCTURE)
def _inv(A: Hartley, alg: Algorithm):
    """The Hartley transform is an involution: H^{-1} = H."""
    return A


# --------------------------------------------------------------------------- Householder
@dispatch(precedence=STRUCTURE)
def _inv(A: Householder, alg: Algorithm):
    """(H_1 ... H_k)^{-1} = H_k^{-1} ... H_1^{-1}, with (I - β v v^H/|v|^2)^{-1} = I - β/(β-1) v v^H/|v|^2
    (β = 2: the reversed product of the same reflections, H^H)."""
    if A.beta is None:
        return A.reversed()
    xp = A.xp
    if xp.is_concrete(A.beta):
        one = np.flatnonzero(np.asarray(xp.to_numpy(A.beta)) == 1)
        if one.size:
            raise SingularMatrixError(f"{A._label()} is singular: factor {int(one[0])} has beta = 1 (a projection)")
    return A.reversed(beta=A.beta / (A.beta - 1))


@dispatch(precedence=STRUCTURE)
def _slogdet(A: Householder, alg: Algorithm):
    """det(I - β v v^H/|v|^2) = 1 - β (determinant lemma): reflections give ((-1)^k, 0)."""
    xp = A.xp
    if A.beta is None:
        k = A.V.shape[1]
        # log|det| = 0 for every V; written as 0 * Σ τ so that autodiff sees a (zero) dependence on V
        return (xp.asarray(np.asarray(-1.0 if k % 2 else 1.0), dtype=A.dtype, device=A.device),
                0 * xp.sum(A.tau()))
    return _sign_logabs(xp, 1 - A.beta, A.dtype)


@dispatch(precedence=STRUCTURE)
def _diag(A: Householder, alg: Algorithm):
    """diag(I - V T V^H) = 1 - rowsum((V T) ∘ conj V), O(n k^2)."""
    xp, V = A.xp, A.V
    return 1 - xp.sum((V @ A.wy()) * xp.conj(V), axis=1)
