"""Algorithm objects and ``Auto``, the documented decision list that picks one.

An algorithm is a frozen dataclass: its fields are its options, misspelt options raise
``TypeError`` at construction, and two equal configurations compare equal. Rules in
:mod:`linops.functions` are plum methods on (operator type, algorithm type).

How a call is resolved, e.g. ``lo.inv(A, alg=lo.Auto())``:

1. **Structure first.** If ``type(A)`` has a structure rule for the function (Kronecker,
   BlockDiag, Diagonal, LowRank + Diagonal, ...), it runs, whatever the algorithm, and
   passes ``alg`` on to the parts it produces (each Kronecker factor is then resolved on
   its own). These rules carry ``precedence=STRUCTURE`` in plum.
2. **Otherwise** ``Auto.select`` (below) maps the function, the annotations and the size
   to a concrete algorithm, and plum dispatches on it. ``lo.explain`` shows both steps.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Algorithm", "Auto", "Cholesky", "LU", "Eigh", "Eig", "SVD", "Exact"]


@dataclass(frozen=True)
class Algorithm:
    """Base class of the ``alg=`` objects."""


def check_stopping(alg) -> None:
    """Validate the fields iterative algorithms share: ``tol > 0``, ``max_iters`` a positive
    integer or None, ``on_failure`` "raise" or "warn" (called from their ``__post_init__``)."""
    name = type(alg).__name__
    if not alg.tol > 0:
        raise ValueError(f"{name}: tol must be positive, got {alg.tol!r}")
    m = alg.max_iters
    if m is not None and not (isinstance(m, int) and not isinstance(m, bool) and m >= 1):
        raise ValueError(f"{name}: max_iters must be a positive integer or None, got {m!r}")
    if alg.on_failure not in ("raise", "warn"):
        raise ValueError(f"{name}: on_failure must be 'raise' or 'warn', got {alg.on_failure!r}")


def colnorm(xp, X):
    """Euclidean norms of the columns of ``X`` (n, k), real-valued."""
    return xp.sqrt(xp.real(xp.coldot(X, X)))


@dataclass(frozen=True)
class Cholesky(Algorithm):
    """Dense Cholesky factorisation, O(n^3/3); needs a Hermitian positive definite operator.

    ``check_symmetric`` compares ``A`` with ``A^H`` (O(n^2), skipped under ``jax.jit``) so an
    operator wrongly promised PSD raises :class:`~linops.errors.NotSelfAdjointError` instead
    of being silently replaced by its lower triangle.
    """

    check_symmetric: bool = True


@dataclass(frozen=True)
class LU(Algorithm):
    """Dense LU factorisation with partial pivoting, O(2n^3/3); any square non-singular operator."""


@dataclass(frozen=True)
class Eigh(Algorithm):
    """Dense Hermitian eigendecomposition, O(n^3); also used for matrix functions of self-adjoint operators."""

    check_symmetric: bool = True


@dataclass(frozen=True)
class Eig(Algorithm):
    """Dense general eigendecomposition, O(n^3) (complex output); jax supports it on CPU only."""


@dataclass(frozen=True)
class SVD(Algorithm):
    """Dense thin singular value decomposition, O(m n min(m, n))."""


@dataclass(frozen=True)
class Exact(Algorithm):
    """Exact trace / diagonal from the dense matrix (``n`` products with the operator)."""


_FAMILY = {
    "inv": "factor",
    "solve": "factor",
    "logdet": "factor",
    "slogdet": "factor",
    "det": "factor",
    "eigh": "eigh",
    "eig": "eig",
    "svd": "svd",
    "trace": "exact",
    "diag": "exact",
    "apply": "matfun",
    "lstsq": "lstsq",
    "pinv": "lstsq",
}


@dataclass(frozen=True)
class Auto(Algorithm):
    """Pick an algorithm from the structure, the annotations and the size.

    Decision list for an operator without a structure rule (first match wins):

    =============================  ================================================
    solve, inv; PSD, n > dense_n   ``CG(tol=krylov_tol, precond=...)`` (below)
    solve, inv; self-adjoint, ...  ``MINRES(tol=krylov_tol)``
    solve, inv; other, n > dense_n ``GMRES(tol=krylov_tol)``
    solve, inv, logdet, det        ``Cholesky()`` if annotated PSD, else ``LU()``
    eigh with k; n > dense_n       ``Lanczos(tol=lanczos_tol)``
    eigh                           ``Eigh()``
    svd with k; min(m,n)>dense_n   ``Lanczos(tol=lanczos_tol)`` (Golub-Kahan)
    eig / svd                      ``Eig()`` / ``SVD()``
    lstsq, pinv; max(m,n)>dense_n  ``LSMR(atol=btol=krylov_tol)``
    lstsq, pinv                    ``SVD()`` (square Dense: LU/Cholesky if well conditioned)
    trace, diag                    ``Exact()``
    exp, ..., apply; n > dense_n   ``Lanczos(tol=lanczos_tol)`` if self-adjoint, else
                                   ``Arnoldi(tol=lanczos_tol)``: f(A) b lazily, never formed
    exp, log, sqrt, pow, apply     ``Eigh()`` if self-adjoint, else ``Eig()``
    =============================  ================================================

    Fields (the thresholds, documented here rather than hidden in globals):

    * ``dense_n`` (default 4000): above this size a PSD solve uses conjugate gradients
      instead of a dense O(n^3) Cholesky with O(n^2) memory.
    * ``krylov_tol`` (default 1e-10): the relative residual CG/MINRES/GMRES must reach when
      Auto picks them.
    * ``lanczos_tol`` (default 1e-8): the Ritz residual (relative to max |θ|) for
      ``eigh(A, k)`` with n > dense_n and no structure rule, which Auto gives to Lanczos, and
      for ``svd(A, k)`` with min(m, n) > dense_n (Golub-Kahan-Lanczos, relative to σ_1);
      for a matrix function with n > dense_n it is the agreement ``||y_m - y_{m/2}|| <= tol ||y_m||``
      of successive Krylov approximations of ``f(A) b`` (Lanczos or Arnoldi).

    * ``precond`` (default True) and ``precond_rank`` (default 100): when Auto picks CG it
      also picks its preconditioner, first match wins:

      1. ``A = X + D``, a Sum whose Diagonal / Identity / ``c I`` terms form a positive D (a
         kernel plus noise) and whose other terms X have a cheap diagonal: ``P = L L^H + D``
         with L the pivoted Cholesky factor of X of rank ``min(precond_rank, n)``, applied by
         Woodbury (``lo.PivotedCholeskyPrecond``); ``precond_rank=0`` skips this;
      2. a cheap diagonal (a structure rule gives it, or a Dense matrix): Jacobi, ``lo.JacobiPrecond``;
      3. otherwise none.

      Auto decides from the operator's types and returns a *spec*, never arrays:
      ``CG(precond=FirstOf((PivotedCholeskyPrecond(rank=r), JacobiPrecond())))`` for 1 (Jacobi
      when D turns out not positive), ``CG(precond=FirstOf((JacobiPrecond(),)))`` for 2 (none when
      a diagonal entry is zero, or negative), ``CG()`` for 3. The solve builds it from A (rank-r
      pivoted Cholesky: r columns of X and O(n r^2) work), once per solve and once more for a
      gradient's adjoint solve; ``lo.explain`` shows the spec and builds nothing.
      ``precond=False``: plain CG.

    logdet/det stay dense at every size under Auto: a stochastic estimate is a choice the
    caller makes explicitly (``alg=lo.SLQ(...)``), since it changes the answer's accuracy.
    """

    dense_n: int = 4000
    krylov_tol: float = 1e-10
    lanczos_tol: float = 1e-8
    precond: bool = True
    precond_rank: int = 100

    def __post_init__(self):
        r = self.precond_rank
        if not (isinstance(r, int) and not isinstance(r, bool) and r >= 0):
            raise ValueError(f"Auto: precond_rank must be an integer >= 0, got {r!r}")

    def select(self, fn: str, A) -> tuple[Algorithm, str]:
        """The concrete algorithm for ``fn`` on ``A`` and the reason, without running anything."""
        family = _FAMILY.get(fn)
        tags = A.annotations
        n = A.shape[0]
        if fn in ("inv", "solve") and n > self.dense_n:
            big = f"n = {n} > dense_n = {self.dense_n}"
            if "PSD" in tags:
                from .cg import CG

                why = f"annotated PSD and {big}: conjugate gradients"
                if not self.precond:
                    return CG(tol=self.krylov_tol), why + " (precond=False: no preconditioner)"
                from .preconditioners import auto_spec

                spec, how = auto_spec(A, self.precond_rank)
                return CG(tol=self.krylov_tol, precond=spec), why + how
            if "SelfAdjoint" in tags:
                from .minres import MINRES

                return MINRES(tol=self.krylov_tol), f"self-adjoint and {big}: MINRES"
            from .gmres import GMRES

            return GMRES(tol=self.krylov_tol), f"{big}, no symmetry known: restarted GMRES"
        if family == "factor":
            if "PSD" in tags:
                return Cholesky(), "annotated PSD: dense Cholesky"
            return LU(), "not annotated PSD: dense LU with partial pivoting"
        if family == "eigh":
            return Eigh(), "dense Hermitian eigendecomposition"
        if family == "eig":
            return Eig(), "dense general eigendecomposition"
        if family == "svd":
            if min(A.shape) > self.dense_n:
                from .lanczos import Lanczos

                return Lanczos(tol=self.lanczos_tol), (
                    f"min(m, n) = {min(A.shape)} > dense_n = {self.dense_n}: Golub-Kahan-Lanczos for k triplets "
                    "(all triplets: dense SVD)"
                )
            return SVD(), "dense singular value decomposition"
        if family == "exact":
            return Exact(), "exact, from the dense matrix"
        if family == "lstsq":
            size = max(A.shape)
            if size <= self.dense_n:
                return SVD(), f"max(m, n) = {size} <= dense_n = {self.dense_n}: dense thin SVD (minimum-norm)"
            from .lsmr import LSMR

            tol = self.krylov_tol
            return LSMR(atol=tol, btol=tol), f"max(m, n) = {size} > dense_n = {self.dense_n}: LSMR"
        if family == "matfun":
            if n > self.dense_n:
                big = f"n = {n} > dense_n = {self.dense_n}"
                if "SelfAdjoint" in tags:
                    from .lanczos import Lanczos

                    return Lanczos(tol=self.lanczos_tol), f"self-adjoint and {big}: f(A) b by Lanczos, never formed"
                from .arnoldi import Arnoldi

                return Arnoldi(tol=self.lanczos_tol), f"{big}, no symmetry known: f(A) b by Arnoldi, never formed"
            if "SelfAdjoint" in tags:
                return Eigh(), "self-adjoint: f applied to the eigenvalues"
            return Eig(), "not self-adjoint: general eigendecomposition (expm for exp)"
        raise ValueError(f"Auto has no decision for function {fn!r}; known: {sorted(_FAMILY)}")
