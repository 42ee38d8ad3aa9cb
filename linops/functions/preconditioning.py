"""Building preconditioners from their specs (:mod:`linops.algorithms.preconditioners`).

* :func:`build_preconditioner` ``(spec, A) -> M ≈ A^{-1}``, the operator CG applies; ``_kernel``
  (:mod:`.iterative`) calls it when ``CG(precond=...)`` holds a spec;
* :func:`factored_preconditioner` ``(spec, A) -> P ≈ A`` as a :class:`Preconditioner` (``spec.build(A)``),
  which SLQ needs for its probes and ``log det P``; :func:`differentiable_preconditioner` rebuilds
  a pivoted-Cholesky P from A's arrays for SLQ's control variate;
* the public helpers :func:`jacobi` and :func:`pivoted_cholesky`, which take the diagonal from
  ``lo.diag``'s structure rules (the reason they live in ``functions``).

A :class:`Preconditioner` is ``P = D^{1/2} (I + V diag(λ) V^H) D^{1/2}``: a positive diagonal
``D`` (n), orthonormal ``V`` (n, r), ``λ >= 0``. Every kernel-plus-noise preconditioner has this
form: ``L L^H + D`` is it with ``V diag(λ) V^H`` the eigendecomposition of ``D^{-1/2} L L^H D^{-1/2}``
(one thin QR, O(n r^2)). It gives, each in O(n r) per column: ``P x``, ``P^{-1} x`` (Woodbury in
closed form), ``F x`` and ``F^{-1} x``, ``F^{-H} x`` for the factor ``F = D^{1/2} S``,
``S = I + V (sqrt(1 + λ) - 1) V^H`` (``P = F F^H``, so ``z = F e`` samples ``E[z z^H] = P``), and
``log det P = Σ log d_i + Σ log(1 + λ_i)`` (determinant lemma).

Preconditioners are constants: every builder works on a detached copy of the operator (no torch
graph, ``lax.stop_gradient`` in JAX).
"""

from __future__ import annotations

from ..algorithms.lowrank_approx import check_rank, check_tol, factor, nystrom_factors
from ..algorithms.preconditioners import (
    FirstOf, JacobiPrecond, NystromPrecond, PivotedCholeskyPrecond, PreconditionerSpec, diagonal_split,
)
from ..backends import backend_of, on_backend_load
from ..errors import NonFiniteError, NotPSDError, NotSquareError, SingularMatrixError
from ..operators.base import LinearOperator
from .diagonals import diag

__all__ = ["build_preconditioner", "factored_preconditioner", "differentiable_preconditioner", "Preconditioner",
           "ScaledLowRankUpdate", "jacobi", "pivoted_cholesky", "split_diagonal", "detached"]


class Preconditioner:
    """``P = D^{1/2} (I + V diag(λ) V^H) D^{1/2} ≈ A`` for ``d`` (n,) > 0, ``V`` (n, r) orthonormal, λ (r,) >= 0.

    ``inverse()`` is the operator to pass as ``CG(precond=...)``; ``operator()`` is P itself.
    ``spec`` and ``aux`` record how it was built (for the differentiable rebuild SLQ uses).
    """

    def __init__(self, d, V, lam, spec=None, aux=()):
        self.d, self.V, self.lam, self.spec, self.aux = d, V, lam, spec, aux
        self.xp = backend_of(V)
        self.n = V.shape[0]

    @classmethod
    def from_factor(cls, L, d, spec=None, aux=()):
        """``P = L L^H + diag(d)`` for ``L`` (n, r) and a positive ``d`` (n,); one thin QR, O(n r^2)."""
        xp = backend_of(L)
        t = 1 / xp.sqrt(d)
        Q, R = xp.qr(xp.astype(t, L.dtype)[:, None] * L)
        w, W = xp.eigh(R @ xp.conj(R).T)
        lam = xp.where(w > 0, w, 0 * w)
        return cls(d, Q @ W, lam, spec, aux)

    # -------------------------------------------------------------- products
    def _low(self, X, coef):
        xp = self.xp
        return X + self.V @ (xp.astype(coef, self.V.dtype)[:, None] * (xp.conj(self.V).T @ X))

    def _scaled(self, s, X):
        return self.xp.astype(s, X.dtype)[:, None] * X

    def matmat(self, X):
        """``P X``."""
        s = self.xp.sqrt(self.d)
        return self._scaled(s, self._low(self._scaled(s, X), self.lam))

    def solve(self, X):
        """``P^{-1} X`` (Woodbury in closed form)."""
        t = 1 / self.xp.sqrt(self.d)
        return self._scaled(t, self._low(self._scaled(t, X), 1 / (1 + self.lam) - 1))

    def half(self, X):
        """``F X`` with ``F F^H = P``: probes ``z = F e`` have ``E[z z^H] = P`` when ``E[e e^H] = I``."""
        return self._scaled(self.xp.sqrt(self.d), self._low(X, self.xp.sqrt(1 + self.lam) - 1))

    def half_inv(self, X):
        """``F^{-1} X``."""
        return self._low(self._scaled(1 / self.xp.sqrt(self.d), X), 1 / self.xp.sqrt(1 + self.lam) - 1)

    def half_inv_h(self, X):
        """``F^{-H} X``."""
        return self._scaled(1 / self.xp.sqrt(self.d), self._low(X, 1 / self.xp.sqrt(1 + self.lam) - 1))

    def logdet(self):
        """``log det P = Σ log d + Σ log(1 + λ)``, O(n + r)."""
        xp = self.xp
        return xp.sum(xp.log(self.d)) + xp.sum(xp.log(1 + self.lam))

    # ------------------------------------------------------------- operators
    def inverse(self):
        """``P^{-1}`` as a PSD operator, O(n r) per column: pass it as ``CG(precond=...)``."""
        xp = self.xp
        return ScaledLowRankUpdate(1 / xp.sqrt(self.d), self.V, 1 / (1 + self.lam) - 1)

    def operator(self):
        """``P`` as a PSD operator."""
        return ScaledLowRankUpdate(self.xp.sqrt(self.d), self.V, self.lam)

    def __repr__(self):
        return f"Preconditioner(n={self.n}, rank={self.V.shape[1]}, {self.xp.name})"


class ScaledLowRankUpdate(LinearOperator):
    """``diag(s) (I + V diag(c) V^H) diag(s)`` for real ``s`` (n), orthonormal ``V`` (n, r), real ``c`` (r),
    annotated PSD (all ``1 + c > 0``, as built by :class:`Preconditioner`). Products O(n r)."""

    _leaves = ("s", "V", "c")

    def __init__(self, s, V, c):
        self.s, self.V, self.c = s, V, c
        xp = backend_of(V)
        super().__init__((V.shape[0], V.shape[0]), V.dtype, xp, xp.device_of(V), ("PSD", "SelfAdjoint"))

    def _matmat(self, X):
        xp = self.xp
        s = xp.astype(self.s, X.dtype)[:, None]
        Y = s * X
        return s * (Y + self.V @ (xp.astype(self.c, X.dtype)[:, None] * (xp.conj(self.V).T @ Y)))

    def _rmatmat(self, X):
        return self.xp.conj(self._matmat(self.xp.conj(X).T)).T

    def _adjoint(self):
        return self

    def _transpose(self):
        return ScaledLowRankUpdate(self.s, self.xp.conj(self.V), self.c)


def _register_with_jax(_backend) -> None:
    import jax

    jax.tree_util.register_pytree_node(
        Preconditioner,
        lambda p: ((p.d, p.V, p.lam, p.aux), p.spec),
        lambda spec, ch: Preconditioner(ch[0], ch[1], ch[2], spec, ch[3]),
    )


on_backend_load("jax", _register_with_jax)


# ------------------------------------------------------------------ helpers
def detached(A):
    """A copy of operator ``A`` whose arrays carry no gradient (torch ``detach``, JAX ``stop_gradient``)."""
    if A.xp.name == "numpy":
        return A
    from ..operators.base import array_leaves

    arrays, rebuild = array_leaves(A)
    if A.xp.name == "torch":
        return rebuild([a.detach() for a in arrays])
    from jax import lax

    return rebuild([lax.stop_gradient(a) for a in arrays])


def split_diagonal(A):
    """``(X, d)`` with ``A = X + diag(d)``: ``d`` the sum of ``A``'s Diagonal, Identity and ``c I``
    terms when ``A`` is a Sum that has real ones and other terms too; otherwise ``(A, None)``."""
    from ..operators import Diagonal, Identity, Sum

    split = diagonal_split(A)
    if split is None:
        return A, None
    rest, dterms = split
    xp = A.xp
    d = xp.zeros((A.shape[0],), xp.real_dtype(A.dtype), A.device)
    for t in dterms:
        if isinstance(t, Diagonal):
            d = d + t.d
        else:
            d = d + (1 if isinstance(t, Identity) else t.c)
    return (rest[0] if len(rest) == 1 else Sum(*rest)), d


def _diagonal(A):
    """``real(diag(A))`` by ``lo.diag``'s structure rules (O(n) for Dense, Diagonal, Kronecker, Sum, ...)."""
    return A.xp.real(diag(A))


def _positive_noise(xp, d, label):
    if not xp.is_concrete(d):
        return
    import numpy as np

    dn = np.asarray(xp.to_numpy(d))
    if not (dn > 0).all():
        i = int(np.flatnonzero(~(dn > 0))[0])
        raise NotPSDError(
            f"the diagonal terms of {label} must be positive for a low-rank + diagonal preconditioner, "
            f"entry {i} is {dn[i]:.3g}; use lo.jacobi or no preconditioner"
        )


def _square(A, who: str) -> None:
    if not isinstance(A, LinearOperator):
        raise TypeError(f"{who} takes a LinearOperator, got {type(A).__name__}")
    if A.shape[0] != A.shape[1]:
        raise NotSquareError(f"{who} needs a square operator, got {A._label()}")


# ------------------------------------------------------------- public helpers
def jacobi(A):
    """``diag(A)^{-1}`` as a Diagonal operator, the Jacobi preconditioner (``CG(precond=lo.jacobi(A))``).

    The diagonal comes from ``lo.diag`` (structure rules where they apply: O(n) for Dense,
    Diagonal, Kronecker, Sum, ...). Raises SingularMatrixError for a zero entry, NotPSDError for a
    negative one when ``A`` is annotated PSD (CG needs a positive definite preconditioner).
    """
    from ..annotations import annotate
    from ..operators import Diagonal

    _square(A, "jacobi")
    d = _checked_diagonal(A)
    out = Diagonal(1 / d)
    return annotate(out, "PSD") if "PSD" in A.annotations else out


def _checked_diagonal(A, positive: bool = False):
    """``diag(A)`` of the detached ``A``, its entries checked where they are concrete (not under jit)."""
    xp = A.xp
    d = diag(detached(A))
    if xp.is_concrete(d):
        import numpy as np

        dn = np.asarray(xp.to_numpy(d))
        if not np.isfinite(dn).all():
            raise NonFiniteError(f"the diagonal of {A._label()} contains NaN or infinity")
        if (dn == 0).any():
            i = int(np.flatnonzero(dn == 0)[0])
            raise SingularMatrixError(f"jacobi: diagonal entry {i} of {A._label()} is zero, so diag(A) has no inverse")
        if (positive or "PSD" in A.annotations) and (np.real(dn) < 0).any():
            i = int(np.flatnonzero(np.real(dn) < 0)[0])
            promise = "is annotated PSD" if "PSD" in A.annotations else "needs a positive diagonal here (SLQ)"
            raise NotPSDError(
                f"jacobi: {A._label()} {promise} but diagonal entry {i} is {dn[i]:.3g} < 0, so it is not PSD"
            )
    return d


def pivoted_cholesky(A, rank: int, tol: float = 1e-10, return_info: bool = False):
    """``L`` (n, r') with ``A ≈ L L^H`` for a PSD operator ``A``, r' <= ``rank``.

    Greedy: each step takes the largest remaining diagonal entry ``i`` of ``A - L L^H`` as pivot
    and appends the scaled column ``(A - L L^H)[:, i] / sqrt(d_i)``. It stops early when the trace
    error ``tr(A - L L^H)`` falls to ``tol * tr(A)`` (relative) or the largest remaining entry to
    ``n eps max(diag A)`` (the rest is rounding). At ``rank`` = rank(A) the factor reproduces a PSD
    ``A`` up to rounding. Cost: the diagonal (``lo.diag``), r' columns of A, O(n r'^2)
    (:func:`linops.algorithms.lowrank_approx.factor`).

    ``return_info=True`` returns ``(L, PivotedCholeskyInfo)`` (pivots, trace errors). Raises
    NotPSDError for a negative diagonal entry, NonFiniteError for NaN/inf on it.
    """
    _square(A, "pivoted_cholesky")
    r = check_rank(rank, A.shape[0], "pivoted_cholesky")
    check_tol(tol, "pivoted_cholesky")
    L, info = factor(A, _diagonal(A), r, tol)
    return (L, info) if return_info else L


# ------------------------------------------------------------------ builders
_DOES_NOT_APPLY = (NotPSDError, SingularMatrixError)


def _build_pivoted(spec: PivotedCholeskyPrecond, A) -> Preconditioner:
    A = detached(A)
    xp, n = A.xp, A.shape[0]
    X, d = split_diagonal(A)
    if d is not None:
        _positive_noise(xp, d, A._label())
    dx = _diagonal(X)
    L, info = factor(X, dx, check_rank(spec.rank, n, "PivotedCholeskyPrecond"), spec.tol)
    floor = None
    if d is None:
        res = dx - xp.sum(xp.real(xp.conj(L) * L), axis=1)
        floor = xp.sum(res) / n
        top = dx[xp.topk(dx, 1)[0]]
        floor = xp.where(floor > 0, floor, n * xp.eps(xp.real_dtype(A.dtype)) * top)
        d = xp.where(res > floor, res, floor + 0 * res)
    aux = (info.pivots, info.valid, floor) if floor is not None else (info.pivots, info.valid)
    return Preconditioner.from_factor(L, d, spec, aux)


def _build_nystrom(spec: NystromPrecond, A) -> Preconditioner:
    A = detached(A)
    xp, n = A.xp, A.shape[0]
    X, d = split_diagonal(A)
    if d is not None:
        _positive_noise(xp, d, A._label())
    U, lam = nystrom_factors(X, spec.rank, spec.seed)
    lam_r = lam[-1]
    if d is None:
        lam_r = xp.where(lam_r > 0, lam_r, n * xp.eps(xp.real_dtype(A.dtype)) * lam[0])
        if xp.is_concrete(lam_r) and not float(lam_r) > 0:
            raise SingularMatrixError(f"NystromPrecond: {A._label()} is zero to rounding, no preconditioner exists")
        d = lam_r + xp.zeros((n,), xp.real_dtype(A.dtype), A.device)
    else:
        d = d + lam_r
    shifted = lam - lam_r
    F = U * xp.astype(xp.sqrt(xp.where(shifted > 0, shifted, 0 * shifted)), A.dtype)[None, :]
    return Preconditioner.from_factor(F, d, spec)


def _rank0(A, d, spec) -> Preconditioner:
    """``P = diag(d)`` (no low-rank part) as a Preconditioner."""
    xp = A.xp
    V = xp.zeros((A.shape[0], 0), A.dtype, A.device)
    return Preconditioner(d, V, xp.zeros((0,), xp.real_dtype(A.dtype), A.device), spec)


def factored_preconditioner(spec: PreconditionerSpec, A) -> Preconditioner:
    """``P ≈ A`` as a :class:`Preconditioner` built from ``A`` by ``spec`` (what ``spec.build(A)`` returns).

    JacobiPrecond: ``P = diag(A)`` (real and positive: NotPSDError otherwise). FirstOf: the first
    spec that applies; the identity if none does.
    """
    _square(A, f"{type(spec).__name__}.build")
    if isinstance(spec, PivotedCholeskyPrecond):
        return _build_pivoted(spec, A)
    if isinstance(spec, NystromPrecond):
        return _build_nystrom(spec, A)
    if isinstance(spec, JacobiPrecond):
        return _rank0(A, A.xp.real(_checked_diagonal(A, positive=True)), spec)
    if isinstance(spec, FirstOf):
        for s in spec.specs:
            try:
                return factored_preconditioner(s, A)
            except _DOES_NOT_APPLY:
                continue
        xp = A.xp
        return _rank0(A, xp.ones((A.shape[0],), xp.real_dtype(A.dtype), A.device), spec)
    raise TypeError(f"no builder for the preconditioner spec {spec!r}")


def build_preconditioner(spec, A):
    """The operator ``M ≈ A^{-1}`` that ``CG(precond=spec)`` applies, built from ``A``, or None.

    ``spec``: a preconditioner spec (JacobiPrecond: ``lo.jacobi(A)``, a Diagonal; PivotedCholeskyPrecond,
    NystromPrecond: ``P^{-1}`` applied by Woodbury, O(n r) per column; FirstOf: the first that applies,
    None if none does); a built :class:`Preconditioner` (its inverse); a LinearOperator or None
    (returned as given). Cost: the spec's build (its docstring), on a detached copy of ``A``.
    """
    if spec is None or isinstance(spec, LinearOperator):
        return spec
    if isinstance(spec, Preconditioner):
        return spec.inverse()
    if not isinstance(spec, PreconditionerSpec):
        raise TypeError(
            f"precond must be a LinearOperator M ≈ A^-1, a preconditioner spec such as "
            f"lo.PivotedCholeskyPrecond(rank=50) or lo.JacobiPrecond(), a built lo.Preconditioner or None; "
            f"got {type(spec).__name__}"
        )
    _square(A, "build_preconditioner")
    if isinstance(spec, JacobiPrecond):
        return jacobi(A)
    if isinstance(spec, FirstOf):
        for s in spec.specs:
            try:
                return build_preconditioner(s, A)
            except _DOES_NOT_APPLY:
                continue
        return None
    return factored_preconditioner(spec, A).inverse()


def differentiable_preconditioner(spec, A, P: Preconditioner):
    """``(apply, logdet)`` of ``P(A)`` rebuilt from ``A``'s arrays so that gradients reach A, or None
    when ``spec`` has no such rebuild (only PivotedCholeskyPrecond, and a FirstOf that built one).

    Pivoted Cholesky: P's pivots S held fixed, ``L = C chol(X[S, S])^{-H}`` with ``C = X[:, S]``;
    ``P(A_0) = P``. Cost: r products with X, O(n r^2).
    """
    if isinstance(spec, FirstOf):
        spec = P.spec if isinstance(P.spec, PivotedCholeskyPrecond) else None
    if not isinstance(spec, PivotedCholeskyPrecond) or P.spec != spec:
        return None
    xp, n = A.xp, A.shape[0]
    X, d = split_diagonal(A)
    piv, valid = P.aux[0], P.aux[1]
    r = piv.shape[0]
    if r == 0:
        L = xp.zeros((n, 0), A.dtype, A.device)
    else:
        v = xp.astype(xp.asarray(valid) if xp.name != "numpy" else valid, A.dtype)
        if xp.name == "torch":
            v = v.to(A.device)
            piv = piv.to(A.device)
        E = xp.astype(xp.arange(n, A.device)[:, None] == piv[None, :], A.dtype)  # unit vectors e_S (n, r)
        C = X._matmat(E) * v[None, :]
        KSS = C[piv, :] * v[:, None] + xp.diag(1 - v)  # masked steps (jax) become identity rows
        Lc = xp.cholesky((KSS + xp.conj(KSS).T) / 2)
        L = xp.conj(xp.solve_triangular(Lc, xp.conj(C).T, lower=True)).T
    if d is None:
        res = _diagonal(X) - xp.sum(xp.real(xp.conj(L) * L), axis=1)
        floor = P.aux[2]
        d = xp.where(res > floor, res, floor + 0 * res)
    t = xp.astype(1 / xp.sqrt(d), A.dtype)
    G = t[:, None] * L
    cap = xp.eye(L.shape[1], A.dtype, A.device) + xp.conj(G).T @ G
    logdet = xp.sum(xp.log(d)) + 2 * xp.sum(xp.log(xp.real(xp.diagonal(xp.cholesky(cap)))))

    def apply(W):
        return L @ (xp.conj(L).T @ W) + xp.astype(d, W.dtype)[:, None] * W

    return apply, logdet
