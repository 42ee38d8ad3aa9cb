"""Matrix functions of large operators, applied lazily by Krylov methods: ``f(A) B`` without ``f(A)``.

``lo.exp(A, alg=lo.Lanczos())`` (self-adjoint A) or ``alg=lo.Arnoldi()`` (any square A) returns a
:class:`KrylovFunction`; each product ``F @ B`` runs the process from B's columns
(:mod:`linops.algorithms.matfun_krylov`): m products with A per column, O(n m) memory, and
nothing dense. ``Auto`` picks these for n > ``dense_n`` when no structure rule applies.

Gradients with respect to B and to A's arrays are implicit (torch: a ``torch.autograd.Function``
whose inputs are B and A's tensors; jax: ``jax.custom_vjp``): ``dL/dB = f(A)^H G`` and
``dL/dA = L_f(A^H, G B^H)`` (Fréchet derivative) from Krylov processes from B and from G,
contracted with A's derivative by one product; the iterations are not recorded.

``lo.trace(F, alg=lo.SLQ(...))`` of such an operator estimates ``tr f(A)`` by stochastic
Lanczos quadrature (self-adjoint A), with a standard error.
"""

from __future__ import annotations

import functools

from ..algorithms import SLQ, Algorithm, Arnoldi, Lanczos
from ..algorithms.estimators import slq
from ..algorithms.info import report
from ..algorithms.matfun_krylov import KrylovFn, fab, fab_vjp
from ..errors import NotSelfAdjointError
from ..operators import LinearOperator
from ..operators.base import array_leaves
from ._dispatch import dispatch
from .matfun import _EXP, _LOG, ScalarFunction, _result_tags

__all__ = ["KrylovFunction"]


def _kernel_fn(fn: ScalarFunction, xp) -> KrylovFn:
    """The scalar function with its derivative: exact for exp, log and powers, numerical otherwise."""
    f = lambda z: fn.f(xp, z)  # noqa: E731
    if fn is _EXP:
        return KrylovFn(fn.name, f, f, relative=False, is_exp=True)
    if fn is _LOG:
        return KrylovFn(fn.name, f, lambda z: 1 / z, branch_cut=True)
    if fn.power is not None:
        p = fn.power
        return KrylovFn(fn.name, f, lambda z: p * z ** (p - 1), branch_cut=float(p) != int(p))

    def df(z):  # central difference, relative step eps^(1/3) (error ~ eps^(2/3) for smooth f)
        h = xp.eps(xp.real_dtype(z.dtype) if xp.is_complex(z.dtype) else z.dtype) ** (1 / 3)
        a = xp.abs(z)
        step = h * xp.where(a > 0, a, 1 + 0 * a)
        step = xp.astype(step, z.dtype)
        return (f(z + step) - f(z - step)) / (2 * step)

    return KrylovFn(fn.name, f, df)


def _concrete(xp, arrays) -> bool:
    return all(xp.is_concrete(a) for a in arrays)


class KrylovFunction(LinearOperator):
    """``f(A)`` applied by Lanczos (self-adjoint A) or Arnoldi: ``F @ B`` = ``f(A) B``, never formed.

    Each product costs m products with A per column (m adapts to ``alg.tol``; see
    :mod:`linops.algorithms.matfun_krylov`) and O(n m) memory. ``F.H`` is F for self-adjoint
    A (f real on its eigenvalues), else ``f(A^H)``. ``matmat_with_info(B)`` also returns the
    :class:`SolveInfo` (Krylov dimension, per-column error estimate).
    """

    _leaves = ("A",)

    def __init__(self, A: LinearOperator, fn: ScalarFunction, alg: Algorithm):
        self.A = A
        self.fn = fn
        self.alg = alg
        super().__init__(A.shape, A.dtype, A.xp, A.device, _result_tags(A, fn))

    @property
    def method(self) -> str:
        return "Lanczos" if isinstance(self.alg, Lanczos) else "Arnoldi"

    def _label(self) -> str:
        base = super()._label()  # "KrylovFunction(nxn, dtype, tags)"
        head = f"KrylovFunction({self.fn.name} by {self.method}(tol={self.alg.tol:g}), "
        return head + base[len("KrylovFunction("):]

    def matmat_with_info(self, B):
        """``(f(A) B, SolveInfo)`` for B (n,) or (n, k); raises or warns as ``alg.on_failure`` says."""
        vec = B.ndim == 1
        Y, info = _apply(self, B[:, None] if vec else B)
        report(info, self.alg.tol, self.alg.on_failure, self.xp)
        return (Y[:, 0] if vec else Y), info

    def _matmat(self, X):
        return self.matmat_with_info(X)[0]

    def _transpose(self):
        if "SelfAdjoint" in self.annotations and not self.xp.is_complex(self.dtype):
            return self
        return KrylovFunction(self.A.T, self.fn, self.alg)  # f(A)^T = f(A^T)

    def _adjoint(self):
        return KrylovFunction(self.A.H, self.fn, self.alg)  # f(A)^H = f(A^H) for f real on the reals

    def _rmatmat(self, X):
        return self.T._matmat(X.T).T


# ------------------------------------------------------------------ the product, with gradients
def _widen(xp, A, X):
    """X in the dtype of the product (a real vector with a complex operator: complex)."""
    dt = xp.result_type(A.dtype, X.dtype)
    return X if dt == X.dtype else xp.astype(X, dt)


def _stages(F: KrylovFunction, A: LinearOperator, vjp: bool):
    """For jax, ``(krylov, finish)`` compiled apart: the process once per (operator structure,
    shapes, m), the small-matrix stage once per (f, shapes); eager jax would otherwise re-trace
    and re-compile on every call. ``(None, None)`` (the plain functions) elsewhere."""
    if A.xp.name != "jax":
        return None, None
    compiled = _jax_stages()
    krylov = lambda V0, m, adjoint=False: compiled[0](A.H if adjoint else A, V0, m=m, method=F.method)  # noqa: E731
    finish = lambda *arrays: compiled[2 if vjp else 1](*arrays, fn=F.fn, method=F.method)  # noqa: E731
    return krylov, finish


def _forward(F: KrylovFunction, A: LinearOperator, B, adaptive: bool):
    xp = A.xp
    alg = F.alg
    B = _widen(xp, A, B)
    return fab(A._matmat, B, xp, _kernel_fn(F.fn, xp), alg.tol, alg.max_iters, F.method, adaptive, A._label(),
               *_stages(F, A, False))


def _backward(F: KrylovFunction, A: LinearOperator, B, G, adaptive: bool):
    """``(dB, V, C)`` with ``dL/dB = dB`` and ``dL = Re <C, dA V>`` (torch convention)."""
    xp = A.xp
    alg = F.alg
    B, G = _widen(xp, A, B), _widen(xp, A, G)
    dB, V, C, info = fab_vjp(A._matmat, A.H._matmat, B, G, xp, _kernel_fn(F.fn, xp), alg.tol, alg.max_iters,
                             F.method, adaptive, A._label(), *_stages(F, A, True))
    report(info, alg.tol, alg.on_failure, xp)
    return dB, V, C


@functools.lru_cache(maxsize=None)
def _jax_stages():
    import jax

    from ..algorithms.matfun_krylov import _krylov, fab_finish, fab_vjp_finish
    from ..backends import backend_named

    xp = backend_named("jax")
    krylov = jax.jit(lambda A, V0, m, method: _krylov(A._matmat, V0, xp, m, method), static_argnames=("m", "method"))
    finish = jax.jit(lambda *a, fn, method: fab_finish(xp, _kernel_fn(fn, xp), method, *a),
                     static_argnames=("fn", "method"))
    finish_vjp = jax.jit(lambda *a, fn, method: fab_vjp_finish(xp, _kernel_fn(fn, xp), method, *a),
                         static_argnames=("fn", "method"))
    return krylov, finish, finish_vjp


def _apply(F: KrylovFunction, B):
    A, xp = F.A, F.xp
    arrays, rebuild = array_leaves(A)
    if xp.name == "jax":
        return _apply_jax(F, B)
    if xp.name == "torch":
        import torch

        if torch.is_grad_enabled() and (B.requires_grad or any(getattr(a, "requires_grad", False) for a in arrays)):
            sink: list = []
            Y = _torch_function().apply(B, F, rebuild, sink, *arrays)
            return Y, sink[0]
    return _forward(F, A, B, True)


def _apply_jax(F: KrylovFunction, B):
    """The product through ``jax.custom_vjp``; the info's arrays are extra (non-differentiated) outputs."""
    import jax

    from ..algorithms.info import SolveInfo

    xp = F.xp
    dims: list = []  # the Krylov dimension, a Python int even under jit

    def adaptive(op, *arrs):
        return _concrete(xp, array_leaves(op)[0]) and _concrete(xp, arrs)

    @jax.custom_vjp
    def run(op, B):
        Y, info = _forward(F, op, B, adaptive(op, B))
        dims.append(info.iterations)
        return Y, info.converged, info.relative_residuals, info.history

    def fwd(op, B):
        return run(op, B), (op, B)

    def bwd(res, cts):
        op, B = res
        G = xp.conj(cts[0])  # jax's cotangent: dL = Re sum(ct * dy); torch's convention: G = conj(ct)
        dB, V, C = _backward(F, op, B, G, adaptive(op, B, G))
        V, C = jax.lax.stop_gradient(V), jax.lax.stop_gradient(C)
        _, pull = jax.vjp(lambda o: xp.real(xp.sum(xp.conj(C) * o._matmat(V))), op)
        one = xp.ones((), xp.real_dtype(C.dtype) if xp.is_complex(C.dtype) else C.dtype)
        return pull(one)[0], xp.conj(dB)

    run.defvjp(fwd, bwd)
    Y, converged, rel, hist = run(F.A, B)
    return Y, SolveInfo(F.method, dims[-1], converged, rel, hist, converged & ~converged)


_FUNCTION = None


def _torch_function():
    global _FUNCTION
    if _FUNCTION is not None:
        return _FUNCTION
    import torch

    class KrylovMatfun(torch.autograd.Function):
        """y = f(A) b with inputs (b, *A's tensors); backward: Krylov processes from b and from g."""

        @staticmethod
        def forward(ctx, B, F, rebuild, sink, *arrays):
            with torch.no_grad():
                Y, info = _forward(F, rebuild(arrays), B, True)
            sink.append(info)
            ctx.F, ctx.rebuild = F, rebuild
            ctx.save_for_backward(B, *arrays)
            return Y

        @staticmethod
        def backward(ctx, G):
            B, *arrays = ctx.saved_tensors
            with torch.no_grad():
                dB, V, C = _backward(ctx.F, ctx.rebuild(arrays), B, G, True)
            wanted = [i for i, _ in enumerate(arrays) if ctx.needs_input_grad[4 + i]]
            grads = [None] * len(arrays)
            if wanted:
                with torch.enable_grad():
                    leaves = [a.detach().requires_grad_(i in wanted) for i, a in enumerate(arrays)]
                    AV = ctx.rebuild(leaves)._matmat(V)
                    got = torch.autograd.grad(AV, [leaves[i] for i in wanted], grad_outputs=C, allow_unused=True)
                for i, g in zip(wanted, got, strict=True):
                    grads[i] = g
            return (dB if ctx.needs_input_grad[0] else None, None, None, None, *grads)

    _FUNCTION = KrylovMatfun
    return _FUNCTION


# ---------------------------------------------------------------------------------- rules
# plum files methods by name: these join matfun's ``_matfun`` and diagonals' ``_trace``
@dispatch
def _matfun(A: LinearOperator, alg: Lanczos, fn):
    """f(A) b = ||b|| Q_m f(T_m) e1 by Lanczos (self-adjoint A), applied lazily; nothing dense is formed."""
    if "SelfAdjoint" not in A.annotations:
        raise NotSelfAdjointError(
            f"lo.{fn.name} with alg=Lanczos needs a self-adjoint operator, and {A._label()} is not annotated so: "
            "wrap it in lo.SelfAdjoint(...) (or lo.PSD) if it is, or use alg=lo.Arnoldi() for a general operator"
        )
    return KrylovFunction(A, fn, alg)


@dispatch
def _matfun(A: LinearOperator, alg: Arnoldi, fn):
    """f(A) b = ||b|| Q_m f(H_m) e1 by Arnoldi (any square A), applied lazily; nothing dense is formed."""
    return KrylovFunction(A, fn, alg)


@dispatch
def _trace(A: KrylovFunction, alg: SLQ):
    """tr f(A) by stochastic Lanczos quadrature of the inner operator (self-adjoint A); an EstimateInfo."""
    return slq_trace(A, alg)


def slq_trace(F: KrylovFunction, alg: SLQ):
    """``EstimateInfo`` of ``tr f(A)`` for ``F = f(A)`` by SLQ: ``num_probes`` Lanczos runs of ``steps``."""
    A = F.A
    if "SelfAdjoint" not in A.annotations:
        raise NotSelfAdjointError(f"tr f(A) by SLQ needs a self-adjoint A, and {A._label()} is not annotated so")
    xp = A.xp
    fn = F.fn
    return slq(A._matmat, A.shape[0], A.dtype, A.device, xp, lambda x: fn.f(xp, x), alg.num_probes, alg.steps, alg.seed)
