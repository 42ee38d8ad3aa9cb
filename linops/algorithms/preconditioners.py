"""Preconditioner specifications: which preconditioner to build, and with what options, never arrays.

A spec is a small frozen (hashable) dataclass, like an ``alg=`` object::

    x = lo.solve(A, b, alg=lo.CG(precond=lo.PivotedCholeskyPrecond(rank=100)))  # built from A in the solve
    x = lo.solve(A, b, alg=lo.CG(precond=lo.JacobiPrecond()))                   # diag(A)^{-1}
    M = lo.build_preconditioner(lo.NystromPrecond(rank=50), A)                   # M ≈ A^{-1}, an operator
    x = lo.solve(A, b, alg=lo.CG(precond=M))                                     # a ready operator works too

``lo.SLQ(precond=spec)`` preconditions the log-determinant and its gradient. ``lo.Auto`` picks a
spec when it picks CG (:func:`auto_spec`; ``lo.explain`` shows it).

The builders, which need ``lo.diag``'s structure rules, live a layer up in
:mod:`linops.functions.preconditioning` (``build_preconditioner``, ``jacobi``, ``pivoted_cholesky``,
``Preconditioner``); the pure array algorithms they run are in :mod:`.lowrank_approx`. This module
imports nothing from that layer: ``spec.build(A)`` (the factored ``Preconditioner``, kept for old
code) and the old names ``linops.algorithms.jacobi`` etc. reach it through ``linops.algorithms.provide``,
which the package root ``linops/__init__.py`` fills, as ``backends.on_backend_load`` lets a layer above
hook in.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import provided
from .lowrank_approx import check_rank, check_tol

__all__ = ["PreconditionerSpec", "JacobiPrecond", "PivotedCholeskyPrecond", "NystromPrecond", "FirstOf",
           "auto_spec", "diagonal_split"]


@dataclass(frozen=True)
class PreconditionerSpec:
    """Base class of the preconditioner specs (pass one as ``CG(precond=...)`` or ``SLQ(precond=...)``)."""

    def build(self, A):
        """The factored preconditioner ``P ≈ A`` (a ``lo.Preconditioner``: ``P.inverse()`` is the operator
        CG applies, ``P.half``/``P.logdet`` serve SLQ), built from operator ``A`` on a detached copy.
        For the operator ``M ≈ A^{-1}`` itself use ``lo.build_preconditioner(spec, A)``."""
        return provided("factored_preconditioner")(self, A)


@dataclass(frozen=True)
class JacobiPrecond(PreconditionerSpec):
    """``P = diag(A)``, applied as ``diag(A)^{-1}`` (``lo.jacobi(A)``): O(n) to build where ``lo.diag``
    has a structure rule (Dense, Diagonal, Kronecker, Sum, ...), n products otherwise.

    Building raises SingularMatrixError for a zero diagonal entry, NotPSDError for a negative one
    of an operator annotated PSD, NonFiniteError for NaN/inf.
    """


@dataclass(frozen=True)
class PivotedCholeskyPrecond(PreconditionerSpec):
    """``P = L L^H + D ≈ A``: L a rank-``rank`` pivoted Cholesky factor, D a positive diagonal.

    For ``A = X + D`` (a Sum with Diagonal / Identity / ``c I`` terms, e.g. a kernel plus noise)
    L factors X and D is those terms (GPyTorch's preconditioner). Otherwise L factors A and D is
    the residual diagonal ``diag(A - L L^H)``, raised to at least its mean (the pivots' own entries
    are exactly 0), so P matches A's diagonal. ``tol``: stop the factorisation when the trace
    error is below ``tol * tr(X)``. Cost: the diagonal of X, r columns of X, O(n r^2); applied by
    Woodbury in O(n r) per column.

    In ``lo.SLQ(precond=...)`` the log-determinant gradient also differentiates P through its
    (fixed) pivots, a control variate that removes most of the probes' variance (Wenger et al. 2022).
    Building raises NotPSDError when the diagonal terms are not positive or X has a negative
    diagonal entry.
    """

    rank: int = 100
    tol: float = 1e-10

    def __post_init__(self):
        check_rank(self.rank, 1 << 62, "PivotedCholeskyPrecond")
        check_tol(self.tol, "PivotedCholeskyPrecond")


@dataclass(frozen=True)
class NystromPrecond(PreconditionerSpec):
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


@dataclass(frozen=True)
class FirstOf(PreconditionerSpec):
    """The first of ``specs`` that applies to the operator, or no preconditioner if none does.

    A spec does not apply when building it raises NotPSDError or SingularMatrixError (diagonal
    terms that are not positive, a zero diagonal entry, ...); other errors (NaN, wrong shapes)
    propagate. ``lo.Auto`` gives CG ``FirstOf((PivotedCholeskyPrecond(rank=r), JacobiPrecond()))``
    or ``FirstOf((JacobiPrecond(),))``. Under ``lo.SLQ`` "none" is the identity.
    """

    specs: tuple = ()

    def __post_init__(self):
        specs = tuple(self.specs) if isinstance(self.specs, (list, tuple)) else None
        if not specs or not all(isinstance(s, PreconditionerSpec) for s in specs):
            raise TypeError(
                f"FirstOf: specs must be a non-empty tuple of preconditioner specs such as "
                f"(lo.PivotedCholeskyPrecond(rank=50), lo.JacobiPrecond()), got {self.specs!r}"
            )
        object.__setattr__(self, "specs", specs)


# ---------------------------------------------------------------------- Auto's choice
def _is_complex(xp, c) -> bool:
    return isinstance(c, complex) or (hasattr(c, "dtype") and xp.is_complex(c.dtype))


def diagonal_split(A):
    """``(rest, diagonal_terms)`` (two lists) when ``A`` is a Sum with real Diagonal / Identity / ``c I``
    terms and other terms too; otherwise None. Types and dtypes only: no array is read."""
    from ..operators import Diagonal, Identity, ScalarMul, Sum

    if not isinstance(A, Sum):
        return None
    like = (Diagonal, Identity, ScalarMul)
    dterms = [t for t in A.terms if isinstance(t, like)]
    rest = [t for t in A.terms if not isinstance(t, like)]
    if not dterms or not rest:
        return None
    for t in dterms:
        if isinstance(t, Diagonal) and A.xp.is_complex(t.d.dtype):
            return None
        if isinstance(t, ScalarMul) and _is_complex(A.xp, t.c):
            return None
    return rest, dterms


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


def auto_spec(A, rank: int) -> tuple[PreconditionerSpec | None, str]:
    """``(spec or None, reason)``: the preconditioner ``Auto`` gives CG for PSD ``A`` (see ``Auto``),
    decided from ``A``'s types alone; the solve builds it (:class:`FirstOf`: falls back when it does
    not apply)."""
    split = diagonal_split(A)
    if split is not None and rank > 0:
        rest = split[0]
        if all(_cheap_diagonal(t) for t in rest):  # X = the rest, a Sum of them when several
            r = min(rank, A.shape[0])
            return FirstOf((PivotedCholeskyPrecond(rank=r), JacobiPrecond())), (
                f"; preconditioner: pivoted Cholesky (rank <= {r}) of the non-diagonal terms plus the diagonal "
                f"terms, applied by Woodbury (built in the solve: {r} columns, O(n r^2)); Jacobi if the diagonal "
                "terms are not positive"
            )
    if _cheap_diagonal(A):
        return FirstOf((JacobiPrecond(),)), (
            "; preconditioner: Jacobi (the diagonal is cheap; none if it has a zero entry, or a negative one)"
        )
    return None, "; no preconditioner (no diagonal term to split off and no cheap diagonal)"
