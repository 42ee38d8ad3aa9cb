"""Preconditioners for CG (and SLQ): Jacobi, pivoted Cholesky + diagonal, Nyström.

How to pass one: every solver takes ``precond=`` an *operator* ``M ≈ A^{-1}``::

    P = lo.PivotedCholeskyPrecond(rank=100).build(A)     # P ≈ A, a Preconditioner
    x = lo.solve(A, b, alg=lo.CG(precond=P.inverse()))    # P^{-1} applied in O(n r)
    x = lo.solve(A, b, alg=lo.CG(precond=lo.jacobi(A)))   # diag(A)^{-1}

and ``lo.SLQ(precond=lo.PivotedCholeskyPrecond(rank=100))`` preconditions the log-determinant
and its gradient (:mod:`linops.functions.stochastic_logdet`). ``lo.Auto`` picks one itself when
it picks CG (its docstring).

A :class:`Preconditioner` is ``P = D^{1/2} (I + V diag(λ) V^H) D^{1/2}``: a positive diagonal
``D`` (n), orthonormal ``V`` (n, r), ``λ >= 0``. Every kernel-plus-noise preconditioner has this
form: ``L L^H + D`` is it with ``V diag(λ) V^H`` the eigendecomposition of ``D^{-1/2} L L^H D^{-1/2}``
(one thin QR, O(n r^2)). It gives, each in O(n r) per column: ``P x``, ``P^{-1} x`` (Woodbury in
closed form), ``F x`` and ``F^{-1} x``, ``F^{-H} x`` for the factor ``F = D^{1/2} S``,
``S = I + V (sqrt(1 + λ) - 1) V^H`` (``P = F F^H``, so ``z = F e`` samples ``E[z z^H] = P``), and
``log det P = Σ log d_i + Σ log(1 + λ_i)`` (determinant lemma).

Preconditioners are constants: :meth:`PivotedCholeskyPrecond.build` works on a detached copy of
the operator (no torch graph, ``lax.stop_gradient`` in JAX).
"""

from __future__ import annotations

from dataclasses import dataclass
from ..backends import on_backend_load
from ..errors import NonFiniteError, NotPSDError, SingularMatrixError
from ..operators.base import LinearOperator
from .lowrank_approx import _diagonal, check_rank, factor, nystrom_factors

__all__ = ["Preconditioner", "ScaledLowRankUpdate", "PivotedCholeskyPrecond", "NystromPrecond", "jacobi", "split_diagonal", "auto_preconditioner"]


class Preconditioner:
    """``P = D^{1/2} (I + V diag(λ) V^H) D^{1/2} ≈ A`` for ``d`` (n,) > 0, ``V`` (n, r) orthonormal, λ (r,) >= 0.

    ``inverse()`` is the operator to pass as ``CG(precond=...)``; ``operator()`` is P itself.
    ``spec`` and ``aux`` record how it was built (for the differentiable rebuild SLQ uses).
    """

    def __init__(self, d, V, lam, spec=None, aux=()):
        self.d, self.V, self.lam, self.spec, self.aux = d, V, lam, spec, aux
        from ..backends import backend_of

        self.xp = backend_of(V)
        self.n = V.shape[0]

    @classmethod
    def from_factor(cls, L, d, spec=None, aux=()):
        """``P = L L^H + diag(d)`` for ``L`` (n, r) and a positive ``d`` (n,); one thin QR, O(n r^2)."""
        from ..backends import backend_of

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
        from ..backends import backend_of

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
    terms when ``A`` is a Sum that has them and other terms too; otherwise ``(A, None)``."""
    from ..operators import Diagonal, Identity, ScalarMul, Sum

    if not isinstance(A, Sum):
        return A, None
    diag_like = (Diagonal, Identity, ScalarMul)
    dterms = [t for t in A.terms if isinstance(t, diag_like)]
    rest = [t for t in A.terms if not isinstance(t, diag_like)]
    if not dterms or not rest:
        return A, None
    xp, n = A.xp, A.shape[0]
    rdt = xp.real_dtype(A.dtype)
    d = xp.zeros((n,), rdt, A.device)
    for t in dterms:
        if isinstance(t, Diagonal):
            if xp.is_complex(t.d.dtype):
                return A, None
            d = d + t.d
        else:
            c = 1 if isinstance(t, Identity) else t.c
            if isinstance(c, complex) or (hasattr(c, "dtype") and xp.is_complex(c.dtype)):
                return A, None
            d = d + c
    return (rest[0] if len(rest) == 1 else Sum(*rest)), d


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


def jacobi(A):
    """``diag(A)^{-1}`` as a Diagonal operator, the Jacobi preconditioner (``CG(precond=lo.jacobi(A))``).

    The diagonal comes from ``lo.diag`` (structure rules where they apply: O(n) for Dense,
    Diagonal, Kronecker, Sum, ...). Raises SingularMatrixError for a zero entry, NotPSDError for a
    negative one when ``A`` is annotated PSD (CG needs a positive definite preconditioner).
    """
    from ..annotations import annotate
    from ..operators import Diagonal

    if A.shape[0] != A.shape[1]:
        from ..errors import NotSquareError

        raise NotSquareError(f"jacobi needs a square operator, got {A._label()}")
    from ..functions.diagonals import diag

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
        if "PSD" in A.annotations and (np.real(dn) < 0).any():
            i = int(np.flatnonzero(np.real(dn) < 0)[0])
            raise NotPSDError(
                f"jacobi: {A._label()} is annotated PSD but diagonal entry {i} is {dn[i]:.3g} < 0, so it is not PSD"
            )
    out = Diagonal(1 / d)
    return annotate(out, "PSD") if "PSD" in A.annotations else out


# -------------------------------------------------------------------- specs
@dataclass(frozen=True)
class PivotedCholeskyPrecond:
    """Build ``P = L L^H + D ≈ A``: L a rank-``rank`` pivoted Cholesky factor, D a positive diagonal.

    For ``A = X + D`` (a Sum with Diagonal / Identity / ``c I`` terms, e.g. a kernel plus noise)
    L factors X and D is those terms (GPyTorch's preconditioner). Otherwise L factors A and D is
    the residual diagonal ``diag(A - L L^H)``, raised to at least its mean (the pivots' own entries
    are exactly 0), so P matches A's diagonal. ``tol``: stop the factorisation when the trace
    error is below ``tol * tr(X)``. Cost: r columns of X, O(n r^2).

    ``build(A)`` returns a :class:`Preconditioner`; in ``lo.SLQ(precond=...)`` the log-determinant
    gradient also differentiates P through its (fixed) pivots, a control variate that removes most
    of the probes' variance (Wenger et al. 2022).
    """

    rank: int = 100
    tol: float = 1e-10

    def __post_init__(self):
        check_rank(self.rank, 1 << 62, "PivotedCholeskyPrecond")
        if not (isinstance(self.tol, (int, float)) and self.tol >= 0):
            raise ValueError(f"PivotedCholeskyPrecond: tol must be a number >= 0, got {self.tol!r}")

    def build(self, A) -> Preconditioner:
        A = detached(A)
        xp, n = A.xp, A.shape[0]
        X, d = split_diagonal(A)
        if d is not None:
            _positive_noise(xp, d, A._label())
        L, info = factor(X, check_rank(self.rank, n, "PivotedCholeskyPrecond"), self.tol)
        floor = None
        if d is None:
            dx = _diagonal(X)
            res = dx - xp.sum(xp.real(xp.conj(L) * L), axis=1)
            floor = xp.sum(res) / n
            top = dx[xp.topk(dx, 1)[0]]
            floor = xp.where(floor > 0, floor, n * xp.eps(xp.real_dtype(A.dtype)) * top)
            d = xp.where(res > floor, res, floor + 0 * res)
        aux = (info.pivots, info.valid, floor) if floor is not None else (info.pivots, info.valid)
        return Preconditioner.from_factor(L, d, self, aux)

    def differentiable(self, A, P: Preconditioner):
        """``(apply, logdet)`` of ``P(A)`` rebuilt from ``A``'s arrays with P's pivots fixed, so that
        gradients reach A: ``L = C chol(X[S, S])^{-H}`` with ``C = X[:, S]``; ``P(A_0) = P``."""
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
            if xp.name == "torch":
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


@dataclass(frozen=True)
class NystromPrecond:
    """The randomized Nyström preconditioner (Frangella, Tropp, Udell 2023) for ``A = X + D``.

    ``X ≈ U diag(λ) U^H`` by :func:`~linops.nystrom` (``rank`` products, ``seed``), then
    ``P = U diag(λ - λ_r) U^H + (λ_r + D)``: the spectrum X's sketch missed is taken at its smallest
    kept eigenvalue λ_r. For ``D = μ I`` this is Frangella et al.'s P up to a scalar factor (which
    CG ignores). Without a diagonal term (``A`` not such a Sum), ``D = 0``. Cost: r products, O(n r^2).
    Under ``lo.SLQ`` its gradient uses the preconditioned probes without the control variate.
    """

    rank: int = 100
    seed: int = 0

    def __post_init__(self):
        check_rank(self.rank, 1 << 62, "NystromPrecond")
        if not isinstance(self.seed, int):
            raise ValueError(f"NystromPrecond: seed must be an integer, got {self.seed!r}")

    def build(self, A) -> Preconditioner:
        A = detached(A)
        xp, n = A.xp, A.shape[0]
        X, d = split_diagonal(A)
        if d is not None:
            _positive_noise(xp, d, A._label())
        U, lam = nystrom_factors(X, self.rank, self.seed)
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
        return Preconditioner.from_factor(F, d, self)


# ---------------------------------------------------------------------- Auto
def _cheap_diagonal(A) -> bool:
    """Whether ``lo.diag(A)`` costs O(n)-ish (structure rules or a Dense matrix), not n products."""
    from ..operators import (
        Adjoint, BlockDiag, Dense, Diagonal, Identity, Kronecker, KroneckerSum, LowRank, Permutation, Product,
        ScalarMul, Sum, Transpose, Triangular, Tridiagonal,
    )

    if isinstance(A, (Dense, Diagonal, Identity, ScalarMul, LowRank, Triangular, Tridiagonal, Permutation)):
        return True
    if isinstance(A, (Kronecker, KroneckerSum)):
        return all(f.is_square and _cheap_diagonal(f) for f in A.factors)
    if isinstance(A, BlockDiag):
        return all(b.is_square and _cheap_diagonal(b) for b in A.blocks)
    if isinstance(A, Sum):
        return all(_cheap_diagonal(t) for t in A.terms)
    if isinstance(A, Product):
        fs = A.factors
        return isinstance(fs[0], ScalarMul) and len(fs) == 2 and _cheap_diagonal(fs[1])
    if isinstance(A, (Adjoint, Transpose)):
        return _cheap_diagonal(A.A)
    return False


def auto_preconditioner(A, rank: int):
    """``(M or None, reason)``: the preconditioner ``Auto`` gives CG for PSD ``A`` (see ``Auto``)."""
    X, d = split_diagonal(A)
    if d is not None and rank > 0 and _cheap_diagonal(X):
        r = min(rank, A.shape[0])
        try:
            P = PivotedCholeskyPrecond(rank=r).build(A)
        except NotPSDError:  # the non-diagonal terms are not PSD on their own
            P = None
        if P is not None:
            return P.inverse(), (
                f"; preconditioner: pivoted Cholesky (rank <= {r}) of the non-diagonal terms plus the diagonal "
                f"terms, applied by Woodbury (built here: {r} columns, O(n r^2))"
            )
    if _cheap_diagonal(A):
        try:
            return jacobi(A), "; preconditioner: Jacobi (the diagonal is cheap)"
        except (SingularMatrixError, NotPSDError, NonFiniteError) as e:  # CG itself will say what is wrong
            return None, f"; no preconditioner (Jacobi does not apply: {type(e).__name__})"
    return None, "; no preconditioner (no diagonal term to split off and no cheap diagonal)"
