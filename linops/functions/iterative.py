"""Iterative inverses: ``inv(A, alg=CG(...))`` holds the algorithm, not factors, and solves on demand.

Gradients are implicit. For ``x = A^{-1} b`` and a loss with gradient ``g = dL/dx``:
``dL/db = λ`` and ``dL/dθ = -<λ, (dA/dθ) x>`` with ``λ = A^{-H} g`` (one adjoint solve).
torch gets this through a ``torch.autograd.Function`` whose inputs are ``b`` and the
operator's tensors (the flatten protocol rebuilds the operator inside); jax through
``lax.custom_linear_solve``. Neither records the iterations, so the memory of a gradient
does not grow with their number.
"""

from __future__ import annotations

import dataclasses

from ..algorithms import CG, GMRES, MINRES, Algorithm
from ..algorithms.bicgstab import BiCGStab, bicgstab
from ..algorithms.base import colnorm
from ..algorithms.cg import cg
from ..algorithms.gmres import gmres
from ..algorithms.minres import minres
from ..errors import NotSelfAdjointError
from ..algorithms.info import SolveInfo, report
from ..operators import LinearOperator
from ..operators.base import array_leaves
from ._dispatch import dispatch
from .inverse import Inverse

__all__ = ["IterativeInverse", "solve_iterative"]


class IterativeInverse(Inverse):
    """``A^{-1}`` applied by an iterative method (``alg``); each product is one solve."""

    def __init__(self, A: LinearOperator, alg: Algorithm):
        self.alg = alg
        super().__init__(A)

    def _solve(self, X, adjoint):
        X, info = solve_iterative(self.A.H if adjoint else self.A, X, self.alg, "H" if adjoint else "")
        report(info, self.alg.tol, self.alg.on_failure, self.xp)
        return X

    def solve_with_info(self, B):
        """``(A^{-1} B, SolveInfo)``; raises or warns on non-convergence as ``alg.on_failure`` says."""
        vec = B.ndim == 1
        X, info = solve_iterative(self.A, B[:, None] if vec else B, self.alg)
        report(info, self.alg.tol, self.alg.on_failure, self.xp)
        return (X[:, 0] if vec else X), info


def _kernel(A: LinearOperator, alg: Algorithm, side: str = ""):
    """``B -> (X, info)`` running ``alg`` on ``A`` with no gradient handling.

    ``side`` is "", "H" or "T" when ``A`` is the original operator, its adjoint or its
    transpose: the preconditioner is transformed the same way. A preconditioner *spec*
    (``CG(precond=lo.PivotedCholeskyPrecond(...))``, or the one ``Auto`` picks) is built here, from
    the original operator, on every call (:func:`.preconditioning.build_preconditioner`).
    """
    max_iters = alg.max_iters if alg.max_iters is not None else 10 * A.shape[0]
    M = _built(alg, A, side).precond  # a spec is built from the original operator
    if M is not None and side:
        M = M.H if side == "H" else M.T
    xp = A.xp
    matmat, pc, low = _working_precision(A, M)
    bar = _Progress(type(alg).__name__, max_iters) if getattr(alg, "progress", False) and xp.name != "jax" else None
    if bar is not None:
        matmat = bar.counting(matmat)
    if isinstance(alg, CG):
        check = alg.check_residual if alg.check_residual is not None else xp.eps(xp.real_dtype(A.dtype)) > 1e-10
        run = lambda B: cg(matmat, B, xp, alg.tol, max_iters, pc, alg.restart, check)  # noqa: E731
    elif isinstance(alg, MINRES):
        run = lambda B: minres(matmat, B, xp, alg.tol, max_iters, pc)  # noqa: E731
    elif isinstance(alg, GMRES):
        run = lambda B: gmres(matmat, B, xp, alg.tol, max_iters, alg.restart, pc)  # noqa: E731
    elif isinstance(alg, BiCGStab):
        run = lambda B: bicgstab(matmat, B, xp, alg.tol, max_iters, pc)  # noqa: E731
    else:  # pragma: no cover - rules guard this
        raise TypeError(f"no iterative kernel for {alg!r}")
    if bar is not None:
        run = bar.around(run)
    if not low:
        return run
    work = xp.as_dtype("complex64" if xp.is_complex(A.dtype) else "float32")

    label = str(A.dtype).replace("torch.", "")

    def in_working_precision(B):
        X, info = run(xp.astype(B, work))
        info = dataclasses.replace(info, method=f"{info.method} ({label} operator, float32 vectors)")
        return xp.astype(X, A.dtype), info

    return in_working_precision


def _built(alg: Algorithm, A: LinearOperator, side: str) -> Algorithm:
    """``alg`` with its preconditioner spec, if any, built from the original operator (``A`` is
    that operator's adjoint or transpose when ``side`` says so): what ``_kernel`` would build."""
    M = getattr(alg, "precond", None)
    if M is None or isinstance(M, LinearOperator):
        return alg
    from .preconditioning import build_preconditioner

    return dataclasses.replace(alg, precond=build_preconditioner(M, A.H if side == "H" else A.T if side == "T" else A))


def _working_precision(A: LinearOperator, M):
    """``(matmat, precond, low)``: for a float16/bfloat16 operator (``low``), products that take
    and return float32 while running in the operator's own dtype, so the iteration's vectors
    and inner products accumulate in float32; otherwise the operators' own products.

    Each column is scaled to unit norm before it is rounded to 16 bits and scaled back after
    the product (O(n k)): a stagnating iteration's search directions grow, and float16
    overflows past 65504."""
    xp = A.xp
    low = xp.eps(xp.real_dtype(A.dtype)) > 1e-5
    if not low:
        return A._matmat, (M._matmat if M is not None else None), False
    work = xp.as_dtype("complex64" if xp.is_complex(A.dtype) else "float32")

    def cast(op):
        def product(P):  # columns scaled to unit norm first: float16 overflows past 65504
            s = colnorm(xp, P)
            s = xp.where(s > 0, s, 1 + 0 * s)
            return xp.astype(op._matmat(xp.astype(P / s, op.dtype)), work) * s

        return product

    return cast(A), (cast(M) if M is not None else None), True


class _Progress:
    """An opt-in tqdm bar (``alg.progress=True``) counting products with the operator, one bar
    per solve, closed with the final worst relative residual. Eager backends only: under
    ``jax.jit`` the loop is compiled and runs without Python callbacks."""

    def __init__(self, name: str, total: int):
        try:
            from tqdm.auto import tqdm
        except ImportError as e:
            raise ImportError("progress=True needs tqdm: pip install tqdm (or linops[progress])") from e
        self.tqdm, self.name, self.total, self.bar = tqdm, name, total, None

    def counting(self, matmat):
        def counted(P):
            if self.bar is not None:
                self.bar.update(1)
            return matmat(P)

        return counted

    def around(self, run):
        def with_bar(B):
            self.bar = self.tqdm(total=self.total, desc=self.name, unit="product", leave=False)
            try:
                X, info = run(B)
                self.bar.set_postfix_str(f"worst residual {float(info.relative_residuals.max()):.2e}")
                return X, info
            finally:
                self.bar.close()
                self.bar = None

        return with_bar


def solve_iterative(A: LinearOperator, B, alg: Algorithm, side: str = ""):
    """``(A^{-1} B, info)`` with implicit gradients on torch and jax."""
    xp = A.xp
    if xp.name == "jax":
        return _solve_jax(A, B, alg, side)
    if xp.name == "torch":
        import torch

        arrays, rebuild = array_leaves(A)
        if torch.is_grad_enabled() and (B.requires_grad or any(getattr(a, "requires_grad", False) for a in arrays)):
            sink: list[SolveInfo] = []
            X = _torch_function().apply(B, alg, rebuild, sink, side, *arrays)
            return X, sink[0]
    return _kernel(A, alg, side)(B)


# ------------------------------------------------------------------------------ jax
def _solve_jax(A, B, alg, side):
    from jax import lax

    def matvec(X):
        return A._matmat(X)

    def solve(_matvec, C):
        return _kernel(A, alg, side)(C)

    def transpose_solve(_vecmat, C):  # A^T y = c  <=>  A^H conj(y) = conj(c)
        conj = A.xp.conj
        X, info = _kernel(A.H, alg, "H" if not side else "")(conj(C))
        return conj(X), info

    return lax.custom_linear_solve(matvec, B, solve, transpose_solve, has_aux=True)


# ---------------------------------------------------------------------------- torch
_FUNCTION = None


def _torch_function():
    global _FUNCTION
    if _FUNCTION is not None:
        return _FUNCTION
    import torch

    class IterativeSolve(torch.autograd.Function):
        """x = A^{-1} b with inputs (b, *A's tensors); backward is one adjoint solve."""

        @staticmethod
        def forward(ctx, B, alg, rebuild, sink, side, *arrays):
            A = rebuild(arrays)
            with torch.no_grad():
                alg = _built(alg, A, side)  # a preconditioner spec is built once, for both solves
                X, info = _kernel(A, alg, side)(B)
            sink.append(info)
            ctx.alg, ctx.rebuild, ctx.side = alg, rebuild, side
            ctx.save_for_backward(X, *arrays)
            return X

        @staticmethod
        def backward(ctx, G):
            X, *arrays = ctx.saved_tensors
            A = ctx.rebuild(arrays)
            with torch.no_grad():
                lam, info = _kernel(A.H, ctx.alg, "H" if not ctx.side else "")(G)
            report(info, ctx.alg.tol, ctx.alg.on_failure, A.xp)
            grads = [None] * len(arrays)
            wanted = [i for i, a in enumerate(arrays) if ctx.needs_input_grad[5 + i]]
            if wanted:
                with torch.enable_grad():
                    leaves = [a.detach().requires_grad_(i in wanted) for i, a in enumerate(arrays)]
                    AX = ctx.rebuild(leaves)._matmat(X.detach())
                    got = torch.autograd.grad(AX, [leaves[i] for i in wanted], grad_outputs=-lam, allow_unused=True)
                for i, g in zip(wanted, got, strict=True):
                    grads[i] = g
            return (lam, None, None, None, None, *grads)

    _FUNCTION = IterativeSolve
    return _FUNCTION


# ---------------------------------------------------------------------------- rules
@dispatch
def _inv(A: LinearOperator, alg: CG):
    """Conjugate gradients (Hermitian positive definite A); implicit gradients."""
    return IterativeInverse(A, alg)


@dispatch
def _inv(A: LinearOperator, alg: MINRES):
    """MINRES (self-adjoint, possibly indefinite A: annotate it lo.SelfAdjoint); implicit gradients."""
    if "SelfAdjoint" not in A.annotations:
        raise NotSelfAdjointError(
            f"MINRES needs a self-adjoint operator, and {A._label()} is not annotated so: wrap it in "
            "lo.SelfAdjoint(...) if it is, or use lo.GMRES() for a general operator"
        )
    return IterativeInverse(A, alg)


@dispatch
def _inv(A: LinearOperator, alg: GMRES):
    """Restarted GMRES (any square non-singular A); implicit gradients."""
    return IterativeInverse(A, alg)


@dispatch
def _inv(A: LinearOperator, alg: BiCGStab):
    """BiCGStab (any square non-singular A; O(n k) memory); implicit gradients."""
    return IterativeInverse(A, alg)
