"""Krylov approximations of ``f(A) B`` and of its gradients, never forming ``f(A)``.

For each column ``b`` of ``B`` (p columns run as p independent processes):

* **Lanczos** (self-adjoint A): ``f(A) b ≈ ||b|| Q_m f(T_m) e1``, ``T_m`` the m x m
  tridiagonal matrix and ``Q_m`` the orthonormal basis of ``K_m(A, b)`` (:func:`lanczos`);
  ``f(T_m)`` from T's eigendecomposition. Exact for polynomials of degree < m.
* **Arnoldi** (any square A): ``f(A) b ≈ ||b|| Q_m f(H_m) e1`` with the Hessenberg ``H_m``
  (:func:`arnoldi`); ``f(H_m)`` by ``xp.expm`` for exp, else by a small eigendecomposition
  ``V f(Λ) V^{-1}`` (diagonalisable H; real part kept for real A).

**Krylov dimension.** Eagerly m starts at ``START`` and doubles (each try starts afresh,
so the products used are at most twice the final m) until, per column,
``||y_m - y_{m/2}|| <= tol ||y_m||`` (read from the coefficients, since Q is orthonormal),
or m reaches ``max_iters`` (None: n). A tol below ``100 eps`` of the dtype is raised to it.
A process that finds an invariant subspace, or m = n, is exact. Under ``jax.jit`` or
``jax.vmap`` values cannot be inspected: exactly ``min(n, max_iters)`` steps run (None:
``min(n, JIT_STEPS)``), and ``info`` holds the same estimate.

**Gradients** (:func:`fab_vjp`), for ``y = f(A) b`` and ``g = dL/dy``: ``dL/db = f(A)^H g``
(the same formula for ``A^H`` from ``g``) and ``dL/dA = L_f(A^H, g b^H)``, the Fréchet
derivative. With ``W_m`` the basis and ``K_m`` the small matrix of the process of ``A^H``
from ``g``, and ``V_m``, ``H_m`` those of A from b,
``L_f(A^H, g b^H) ≈ W_m M V_m^H``, ``M`` = the upper right block of
``f([[K_m, ||g|| ||b|| e1 e1^T], [0, H_m^H]])`` (exact for polynomials of degree <= m).
``M`` comes from the two eigendecompositions with divided differences of f (self-adjoint A,
or f other than exp), or from ``xp.expm`` of the 2m x 2m block matrix (exp, general A).
The caller contracts ``<W_m M, dA V_m>`` by one product with A's derivative.
Memory O(n m p); nothing is recorded through the iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import DomainError, NonFiniteError
from .arnoldi import arnoldi
from .info import SolveInfo
from .lanczos import _tridiagonal, lanczos

__all__ = [
    "KrylovFn", "fab", "fab_attempt", "fab_finish", "fab_vjp", "fab_vjp_attempt", "fab_vjp_finish", "START", "JIT_STEPS",
]

#: first Krylov dimension tried eagerly
START = 20
#: the fixed Krylov dimension under jax.jit / vmap when max_iters is None
JIT_STEPS = 100


@dataclass(frozen=True)
class KrylovFn:
    """What the kernels need of a scalar function.

    * ``f(z)``: elementwise on a backend array (real for self-adjoint A, complex for Arnoldi).
    * ``df(z)``: its derivative (for divided differences of nearly equal eigenvalues).
    * ``relative``: nearly equal means ``|x - y| <= eps^(1/3) max(|x|, |y|)`` (log, powers,
      callables); otherwise ``|x - y| <= eps^(1/3)`` (exp, whose scale is that of its argument's
      differences: ``e^x - e^y = e^y (e^(x-y) - 1)``).
    * ``is_exp``: use ``xp.expm`` for non-normal small matrices.
    * ``branch_cut``: undefined on the closed negative real axis (log, fractional powers).
    """

    name: str
    f: Callable[[Any], Any]
    df: Callable[[Any], Any]
    relative: bool = True
    is_exp: bool = False
    branch_cut: bool = False


# ------------------------------------------------------------------ small-matrix helpers
def _call(fun, z):
    """``fun`` on an array of any shape (callables may expect 1-D input); numpy warnings off."""
    with np.errstate(all="ignore"):
        return fun(z.reshape(-1)).reshape(z.shape)


def _rdtype(xp, dtype):
    return xp.real_dtype(dtype) if xp.is_complex(dtype) else dtype


def _krylov(matmat, V0, xp, m: int, method: str):
    """``(S (p, m, m), Q (p, m, n), nrm (p,), alive (p, m))``; dead rows' diagonal is filled.

    Past a breakdown the basis rows are zero and S's rows/columns too; their diagonal is set
    to ``S[0, 0]`` (the Rayleigh quotient of b, inside f's domain when any value is), which
    leaves ``f(S) e1`` unchanged and keeps f finite. A zero column gives a zero process (fill 1).
    """
    if method == "Lanczos":
        alpha, beta, Q = lanczos(matmat, V0, xp, m)
        S = _tridiagonal(xp, alpha, beta)
    else:
        H, Q = arnoldi(matmat, V0, xp, m)
        S, Q = H[:, :m, :], Q[:, :m, :]
    nrm = xp.sqrt(xp.sum(xp.real(xp.conj(V0) * V0), axis=0))
    alive = xp.sum(xp.real(xp.conj(Q) * Q), axis=2) > 0.25
    s00 = S[:, 0, 0]
    fill = xp.where(alive[:, 0], s00, 1 + 0 * s00)
    dead = xp.astype(~alive, S.dtype)
    S = S + (dead * fill[:, None])[:, :, None] * xp.eye(m, S.dtype, xp.device_of(S))[None]
    return S, Q, nrm, alive


def _e1(xp, p, k, dtype, dev):
    return xp.concat([xp.ones((p, 1), dtype, dev), xp.zeros((p, k - 1), dtype, dev)], 1)


def _coeffs(xp, fn: KrylovFn, S, hermitian: bool, real_out: bool):
    """``(c, lam, flam)``: ``c = f(S) e1`` (p, k), and the eigenvalues and f of them (None for expm)."""
    p, k, _ = S.shape
    if hermitian:
        lam, U = xp.eigh(S)
        flam = _call(fn.f, lam)
        c = xp.einsum("pij,pj->pi", xp.astype(U, flam.dtype) if xp.is_complex(flam.dtype) else U, flam * U[:, 0, :])
        return c, lam, flam
    if fn.is_exp:
        c = xp.expm(S)[:, :, 0]
        return c, None, c
    lam, V = xp.eig(S)
    flam = _call(fn.f, lam)
    e1 = _e1(xp, p, k, V.dtype, xp.device_of(V))
    w = xp.solve(V, e1[:, :, None])[:, :, 0]
    c = xp.einsum("pij,pj->pi", V, flam * w)
    return (xp.real(c) if real_out else c), lam, flam


def _divided_differences(xp, fn: KrylovFn, x, y, fx, fy):
    """``D[p, i, l] = (f(x_i) - f(y_l)) / (x_i - y_l)``, ``f'`` at the midpoint for nearly equal pairs."""
    d = x[:, :, None] - y[:, None, :]
    num = fx[:, :, None] - fy[:, None, :]
    mid = (x[:, :, None] + y[:, None, :]) / 2
    delta = xp.eps(_rdtype(xp, d.dtype)) ** (1 / 3)
    if fn.relative:
        ax, ay = xp.abs(x)[:, :, None], xp.abs(y)[:, None, :]
        scale = xp.where(ax > ay, ax, ay)
    else:
        scale = 1
    close = xp.abs(d) <= delta * scale
    return xp.where(close, _call(fn.df, mid), num / xp.where(close, 1 + 0 * d, d))


def _frechet(xp, fn: KrylovFn, K, Hb, s, hermitian: bool, real_out: bool):
    """``M`` (p, k, k): the upper right block of ``f([[K, s e1 e1^T], [0, Hb^H]])``."""
    p, k, _ = K.shape
    dev = xp.device_of(K)
    if hermitian:
        x, X = xp.eigh(K)
        y, Y = xp.eigh(Hb)
        D = _divided_differences(xp, fn, x, y, _call(fn.f, x), _call(fn.f, y))
        inner = D * (s[:, None, None] * X[:, 0, :, None] * Y[:, 0, None, :])
        if xp.is_complex(inner.dtype):
            X, Y = xp.astype(X, inner.dtype), xp.astype(Y, inner.dtype)
        return xp.einsum("pij,pjl,pml->pim", X, inner, Y)
    Hh = xp.conj(xp.moveaxis(Hb, 1, 2))
    if fn.is_exp:
        E = xp.zeros((p, k, k), K.dtype, dev)
        E = xp.index_set(E, 0, xp.astype(s, K.dtype)[:, None] * _e1(xp, p, k, K.dtype, dev), axis=1)
        E = xp.moveaxis(E, 1, 2)  # s at (0, 0) only: E[:, :, 0] = s e1 -> s e1 e1^T
        Z = xp.concat([xp.concat([K, E], 2), xp.concat([0 * K, Hh], 2)], 1)
        return xp.expm(Z)[:, :k, k:]
    lx, X = xp.eig(K)
    ly, Y = xp.eig(Hh)
    D = _divided_differences(xp, fn, lx, ly, _call(fn.f, lx), _call(fn.f, ly))
    e1 = _e1(xp, p, k, X.dtype, dev)
    xt = xp.solve(X, e1[:, :, None])[:, :, 0]  # X^{-1} e1
    eye = xp.eye(k, Y.dtype, dev)[None] + 0 * Y
    Yinv = xp.solve(Y, eye)
    inner = D * (xp.astype(s, D.dtype)[:, None, None] * xt[:, :, None] * Y[:, 0, None, :])
    M = xp.einsum("pij,pjl,plm->pim", X, inner, Yinv)
    return xp.real(M) if real_out else M


def _pad(xp, C, k):
    """Zero-pad the last axis (and the one before, for matrices) of ``C`` to length k."""
    h = C.shape[-1]
    if h == k:
        return C
    dev = xp.device_of(C)
    if C.ndim == 2:
        return xp.concat([C, xp.zeros((C.shape[0], k - h), C.dtype, dev)], 1)
    C = xp.concat([C, xp.zeros((C.shape[0], h, k - h), C.dtype, dev)], 2)
    return xp.concat([C, xp.zeros((C.shape[0], k - h, k), C.dtype, dev)], 1)


def _reldiff(xp, a, b):
    """Per process ``||a - b|| / ||a||`` over all but the first axis (0 where a = 0)."""
    p = a.shape[0]
    dn = xp.sqrt(xp.sum(xp.real(xp.conj(a - b) * (a - b)).reshape(p, -1), axis=1))
    an = xp.sqrt(xp.sum(xp.real(xp.conj(a) * a).reshape(p, -1), axis=1))
    return xp.where(an > 0, dn / xp.where(an > 0, an, 1 + 0 * an), 0 * an)


def _check_domain(xp, fn: KrylovFn, lam, flam, used, real_a: bool, what: str) -> None:
    """NonFiniteError / DomainError (eager only) when f cannot be applied at the eigenvalue estimates."""
    used = np.broadcast_to(np.asarray(xp.to_numpy(used))[:, None], tuple(flam.shape))  # per process
    if lam is None:  # expm: only finiteness
        if not np.isfinite(np.asarray(xp.to_numpy(flam))[used]).all():
            raise NonFiniteError(f"exp of the Krylov matrix of {what} is not finite: the operator or the vector "
                                 "holds NaN or infinity, or exp overflows (scale the operator down)")
        return
    lam_np = np.asarray(xp.to_numpy(lam))[used]
    f_np = np.asarray(xp.to_numpy(flam))[used]
    if not np.isfinite(lam_np).all():
        raise NonFiniteError(f"the Krylov process of {what} produced NaN or infinity: the operator or the vector "
                             "holds NaN or infinity")
    bad = ~np.isfinite(f_np)
    if fn.branch_cut and real_a and np.iscomplexobj(lam_np):  # Arnoldi: a real A needs no negative real eigenvalue
        bad |= (lam_np.real < 0) & (np.abs(lam_np.imag) <= 1e3 * np.finfo(lam_np.real.dtype).eps * np.abs(lam_np))
    if bad.any():
        worst = complex(lam_np[bad].ravel()[0])
        worst = worst.real if worst.imag == 0 else worst
        raise DomainError(
            f"{fn.name}(A) for A = {what}: f is undefined or not finite at the eigenvalue estimate {worst:.6g} "
            f"of the operator (a Ritz value, which lies in its spectrum's range); {fn.name} needs "
            + ("eigenvalues off the closed negative real axis (a positive definite operator)" if fn.branch_cut
               else "eigenvalues where it is finite")
        )


def _dimensions(n: int, max_iters: int | None, adaptive: bool):
    if adaptive:
        cap = min(n, max_iters or n)
        return min(cap, START), cap
    m = min(n, max_iters or JIT_STEPS)
    return m, m


def _tol(xp, dtype, tol):
    return max(tol, 100 * xp.eps(_rdtype(xp, dtype)))


# ------------------------------------------------------------------------- the kernels
def _default_krylov(matmat, matmat_h, xp, method):
    return lambda V0, m, adjoint=False: _krylov(matmat_h if adjoint else matmat, V0, xp, m, method)


def fab_attempt(matmat: Callable, B, xp, fn: KrylovFn, m: int, method: str, krylov: Callable | None = None,
                finish: Callable | None = None):
    """One try at Krylov dimension m: ``(Y, rel, exact, lam, flam, finite, used)``.

    ``Y = f(A) B`` (n, p); ``rel`` (p,) the estimate ``||y_m - y_{m/2}|| / ||y_m||``; ``exact``
    (p,) where the process found an invariant subspace (or m = n); ``lam``, ``flam`` the
    eigenvalues of the small matrix and f of them (for the domain check; None for expm);
    ``finite`` whether the small matrix is finite (NaN/inf in A or B shows there first);
    ``used`` (p,) the non-zero columns. Pure array code, in two stages that ``jax.jit`` can
    compile apart: ``krylov(V0, m, adjoint=False)`` runs the process (of A, or of A^H), depends on
    the operator (default :func:`_krylov`); ``finish(*arrays)`` (default :func:`fab_finish`)
    depends only on f and the shapes.
    """
    krylov = krylov or _default_krylov(matmat, None, xp, method)
    finish = finish or (lambda *a: fab_finish(xp, fn, method, *a))
    return finish(*krylov(B, m))


def fab_finish(xp, fn: KrylovFn, method: str, S, Q, nrm, alive):
    """The second stage of :func:`fab_attempt`, from the process ``(S, Q, nrm, alive)``."""
    n, m = Q.shape[2], S.shape[1]
    hermitian = method == "Lanczos"
    real_out = not xp.is_complex(Q.dtype)
    finite = xp.sum(xp.abs(S)) < float("inf")
    S = xp.where(finite, S, xp.zeros(S.shape, S.dtype, xp.device_of(S)))  # eigensolvers never see NaN
    c, lam, flam = _coeffs(xp, fn, S, hermitian, real_out)
    h = max(1, m // 2)
    rel = _reldiff(xp, c, _pad(xp, _coeffs(xp, fn, S[:, :h, :h], hermitian, real_out)[0], m))
    exact = ~alive[:, m - 1] if m < n else nrm >= 0  # an invariant subspace, or the whole space
    if not xp.is_complex(c.dtype) and xp.is_complex(Q.dtype):
        c = xp.astype(c, Q.dtype)
    Y = nrm[None, :] * xp.einsum("pjn,pj->np", Q, c)
    Y = xp.where((nrm > 0)[None, :], Y, 0 * Q[:, 0, :].T)
    Y = xp.where(finite, Y, Y * float("nan"))  # NaN in, NaN out (eagerly the driver raises instead)
    return Y, rel, exact, lam, flam, finite, nrm > 0


def fab_vjp_attempt(matmat: Callable, matmat_h: Callable, B, G, xp, fn: KrylovFn, m: int, method: str,
                    krylov: Callable | None = None, finish: Callable | None = None):
    """One try of :func:`fab_vjp` at dimension m: ``(dB, V, C)`` and the checks of :func:`fab_attempt`."""
    p = B.shape[1]
    krylov = krylov or _default_krylov(matmat, matmat_h, xp, method)
    finish = finish or (lambda *a: fab_vjp_finish(xp, fn, method, *a))
    if method == "Lanczos":  # one run of 2p processes: A^H = A
        S, Q, nrm, alive = krylov(xp.concat([B, G], 1), m)
        return finish(S[:p], Q[:p], nrm[:p], alive[:p], S[p:], Q[p:], nrm[p:], alive[p:])
    return finish(*krylov(B, m), *krylov(G, m, True))


def fab_vjp_finish(xp, fn: KrylovFn, method: str, Sb, Qb, nb, ab, Sg, Qg, ng, ag):
    """The second stage of :func:`fab_vjp_attempt`, from the processes of A from B and of A^H from G."""
    p, m, n = Qg.shape
    hermitian = method == "Lanczos"
    real_out = not (xp.is_complex(Qb.dtype) or xp.is_complex(Qg.dtype))
    finite = (xp.sum(xp.abs(Sb)) + xp.sum(xp.abs(Sg))) < float("inf")
    zero = xp.zeros(Sb.shape, Sb.dtype, xp.device_of(Sb))
    Sb, Sg = xp.where(finite, Sb, zero), xp.where(finite, Sg, zero)
    c, lam, flam = _coeffs(xp, fn, Sg, hermitian, real_out)
    s = ng * nb
    M = _frechet(xp, fn, Sg, Sb, s, hermitian, real_out)
    h = max(1, m // 2)
    c_half = _coeffs(xp, fn, Sg[:, :h, :h], hermitian, real_out)[0]
    M_half = _frechet(xp, fn, Sg[:, :h, :h], Sb[:, :h, :h], s, hermitian, real_out)
    r1, r2 = _reldiff(xp, c, _pad(xp, c_half, m)), _reldiff(xp, M, _pad(xp, M_half, m))
    rel = xp.where(r1 > r2, r1, r2)
    exact = (~ag[:, m - 1] & ~ab[:, m - 1]) if m < n else ng >= 0
    cdt = Qg.dtype
    if not xp.is_complex(c.dtype) and xp.is_complex(cdt):
        c = xp.astype(c, cdt)
    dB = ng[None, :] * xp.einsum("pjn,pj->np", Qg, c)
    dB = xp.where((ng > 0)[None, :], dB, 0 * Qg[:, 0, :].T)
    if xp.is_complex(cdt) and not xp.is_complex(M.dtype):
        M = xp.astype(M, cdt)
    C = xp.einsum("pjn,pjl->npl", Qg, M).reshape(n, p * m)
    V = xp.moveaxis(Qb, 2, 0).reshape(n, p * m)  # V[:, j m + i] = Qb[j, i]
    nan = float("nan")
    dB, C = xp.where(finite, dB, dB * nan), xp.where(finite, C, C * nan)
    return dB, V, C, rel, exact, lam, flam, finite, ng > 0


def _drive(attempt: Callable, xp, fn: KrylovFn, n: int, dtype, tol: float, max_iters, method: str,
           adaptive: bool, what: str, real: bool):
    """Run ``attempt(m)`` with m doubling until every column converges (eager) or once (traced)."""
    m, cap = _dimensions(n, max_iters, adaptive)
    tol = _tol(xp, dtype, tol)
    rows = []
    while True:
        out = attempt(m)
        rel, exact, lam, flam, finite, used = out[-6:]
        if adaptive:
            if not bool(xp.to_numpy(finite)):
                raise NonFiniteError(f"the Krylov process of {what} produced NaN or infinity: the operator or the "
                                     "vector holds NaN or infinity")
            _check_domain(xp, fn, lam, flam, used, real, what)
        converged = (rel <= tol) | exact
        rows.append(rel)
        if not adaptive or m >= cap or bool(xp.to_numpy(converged).all()):
            break
        m = min(cap, 2 * m)
    info = SolveInfo(method, m, converged, rel, xp.stack(rows, 0), converged & ~converged)
    return out[:-6], info


def fab(matmat: Callable, B, xp, fn: KrylovFn, tol: float, max_iters: int | None, method: str,
        adaptive: bool = True, what: str = "the operator", krylov: Callable | None = None,
        finish: Callable | None = None):
    """``(f(A) B, SolveInfo)`` for B (n, p) by Lanczos (``method="Lanczos"``) or Arnoldi.

    ``adaptive`` (the values are concrete): double m until converged; otherwise one fixed m.
    ``info.iterations`` is the final Krylov dimension, ``info.relative_residuals`` the
    per-column estimate ``||y_m - y_{m/2}|| / ||y_m||``. ``krylov``, ``finish``: see :func:`fab_attempt`.
    """
    attempt = lambda m: fab_attempt(matmat, B, xp, fn, m, method, krylov, finish)  # noqa: E731
    (Y,), info = _drive(attempt, xp, fn, B.shape[0], B.dtype, tol, max_iters, method, adaptive, what,
                        not xp.is_complex(B.dtype))
    return Y, info


def fab_vjp(matmat: Callable, matmat_h: Callable, B, G, xp, fn: KrylovFn, tol: float, max_iters: int | None,
            method: str, adaptive: bool = True, what: str = "the operator", krylov: Callable | None = None,
            finish: Callable | None = None):
    """The pieces of the gradient of ``y = f(A) B`` for the cotangent ``G`` (n, p).

    Returns ``(dB, V, C, info)``: ``dB = f(A)^H G`` (n, p), and V, C (n, p m) with
    ``dL/dA = Σ_cols W_m M V_m^H``, so that ``<dL/dA, dA> = Re <C, dA V>`` (C = W_m M);
    ``matmat_h`` applies ``A^H`` (unused by Lanczos, where ``A^H = A``). Torch convention:
    ``dL = Re <G, dy>``. The dimension grows until ``f(A)^H g`` and ``M`` settle to ``tol``.
    """
    attempt = lambda m: fab_vjp_attempt(matmat, matmat_h, B, G, xp, fn, m, method, krylov, finish)  # noqa: E731
    real = not (xp.is_complex(B.dtype) or xp.is_complex(G.dtype))
    (dB, V, C), info = _drive(attempt, xp, fn, B.shape[0], B.dtype, tol, max_iters, method, adaptive, what, real)
    return dB, V, C, info
