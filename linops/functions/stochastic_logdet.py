"""``log det A`` by stochastic Lanczos quadrature, with the implicit (BBMM) gradient.

The value comes from SLQ (:func:`linops.algorithms.estimators.slq`). The gradient is not
backpropagated through Lanczos: ``d log det A = tr(A^{-1} dA)`` is estimated with the same
probes, ``(1/p) Σ_j (A^{-1} z_j)^H dA z_j``, the solves by CG to ``alg.grad_tol``; torch gets
it through a ``torch.autograd.Function``, jax through ``jax.custom_vjp``.

With ``alg.precond`` (a preconditioner P = F F^H ≈ A, a spec of :mod:`linops.algorithms.preconditioners`
built by :mod:`.preconditioning`, or a built ``lo.Preconditioner``):

* value: ``log det A = log det P + tr log(F^{-1} A F^{-H})``, the first term exact (determinant
  lemma), the second by SLQ with Rademacher probes on an operator close to I (small variance,
  fast Lanczos convergence);
* gradient: probes ``z = F e`` (e Rademacher, so ``E[z z^H] = P``), ``u = A^{-1} z`` by CG
  preconditioned with P, ``w = P^{-1} z``; ``E[u^H dA w] = tr(A^{-1} dA)``. This alone hardly
  lowers the variance (for ``dA = I`` it is the plain estimator's), so for a spec with a
  differentiable rebuild (``lo.PivotedCholeskyPrecond``: P(θ) with the pivots held fixed) the
  estimate is ``d log det P(θ) + (1/p) Σ_j [u_j^H dA w_j - w_j^H dP w_j]`` (Wenger et al. 2022):
  still unbiased, and its variance vanishes as P(θ) -> A(θ) together with its derivative. P is
  built once per call from the detached operator; stderr and samples carry no gradient.
"""

from __future__ import annotations

from ..algorithms import CG
from ..algorithms.info import EstimateInfo, report
from ..algorithms.preconditioners import PreconditionerSpec
from ..errors import ShapeError
from ..operators import LinearOperator
from ..operators.base import array_leaves
from .iterative import _kernel
from .preconditioning import differentiable_preconditioner, factored_preconditioner

__all__ = ["slq_logdet"]


def slq_logdet(A: LinearOperator, alg):
    """``EstimateInfo`` of ``log det A`` by SLQ; its value carries the implicit (BBMM) gradient."""
    from ..algorithms.estimators import slq

    xp = A.xp
    if alg.precond is not None:
        return _slq_preconditioned(A, alg)

    def estimate(op):
        return slq(op._matmat, op.shape[0], op.dtype, op.device, op.xp, op.xp.log, alg.num_probes, alg.steps, alg.seed)

    if xp.name == "jax":
        return _slq_jax(A, alg, estimate)
    if xp.name == "torch":
        import torch

        arrays, rebuild = array_leaves(A)
        if torch.is_grad_enabled() and any(getattr(a, "requires_grad", False) for a in arrays):
            sink: list = []
            value = _torch_slq_function().apply(alg, rebuild, estimate, sink, *arrays)
            info = sink[0]
            return type(info)(info.method, value, info.stderr, info.num_probes, info.samples)
    return estimate(A)


def _probe_solves(A, alg):
    """The probes Z (n, p) and ``U = A^{-1} Z`` by CG, without gradient tracking."""
    from ..algorithms.lanczos import rademacher

    xp = A.xp
    Z = rademacher(xp, xp.make_key(alg.seed), (A.shape[0], alg.num_probes), A.dtype, A.device)
    U, info = _kernel(A, CG(tol=alg.grad_tol))(Z)
    report(info, alg.grad_tol, "warn", xp)
    return Z, U


def _slq_jax(A, alg, estimate):
    import jax

    @jax.custom_vjp
    def value(op):
        return estimate(op).value

    def fwd(op):
        return value(op), op

    def bwd(op, g):
        Z, U = _probe_solves(op, alg)
        U = jax.lax.stop_gradient(U)
        xp = op.xp
        p = alg.num_probes
        _, pull = jax.vjp(lambda o: xp.real(xp.sum(xp.conj(U) * o._matmat(Z))) / p, op)
        return pull(g)

    value.defvjp(fwd, bwd)
    info = estimate(A)
    return type(info)(info.method, value(A), info.stderr, info.num_probes, info.samples)


_SLQ_FUNCTION = None


def _torch_slq_function():
    global _SLQ_FUNCTION
    if _SLQ_FUNCTION is not None:
        return _SLQ_FUNCTION
    import torch

    class SLQLogdet(torch.autograd.Function):
        """log det A by SLQ with inputs (A's tensors); backward: tr(A^{-1} dA) with the probes' CG solves."""

        @staticmethod
        def forward(ctx, alg, rebuild, estimate, sink, *arrays):
            with torch.no_grad():
                info = estimate(rebuild(arrays))
            sink.append(info)
            ctx.alg, ctx.rebuild = alg, rebuild
            ctx.save_for_backward(*arrays)
            return info.value

        @staticmethod
        def backward(ctx, g):
            arrays = ctx.saved_tensors
            A = ctx.rebuild(arrays)
            with torch.no_grad():
                Z, U = _probe_solves(A, ctx.alg)
            wanted = [i for i, _ in enumerate(arrays) if ctx.needs_input_grad[4 + i]]
            grads = [None] * len(arrays)
            if wanted:
                with torch.enable_grad():
                    leaves = [a.detach().requires_grad_(i in wanted) for i, a in enumerate(arrays)]
                    est = (U.conj() * ctx.rebuild(leaves)._matmat(Z)).sum().real / ctx.alg.num_probes
                    got = torch.autograd.grad(est, [leaves[i] for i in wanted], allow_unused=True)
                for i, gr in zip(wanted, got, strict=True):
                    grads[i] = None if gr is None else g * gr
            return (None, None, None, None, *grads)

    _SLQ_FUNCTION = SLQLogdet
    return _SLQ_FUNCTION


# ------------------------------------------------------------------ preconditioned
def _build(alg, A):
    """The preconditioner for ``A``: built by the spec, or the Preconditioner given (size checked)."""
    p = alg.precond
    pc = factored_preconditioner(p, A) if isinstance(p, PreconditionerSpec) else p
    if pc.n != A.shape[0] or pc.xp is not A.xp:
        raise ShapeError(
            f"SLQ: the preconditioner is {pc.n} x {pc.n} on {pc.xp.name}, the operator {A._label()}: build it from "
            "this operator (or pass a spec such as lo.PivotedCholeskyPrecond(rank=50))"
        )
    return pc


def _estimate_pc(op, pc, alg) -> EstimateInfo:
    """``log det P + SLQ(F^{-1} A F^{-H})``, its stderr the SLQ term's."""
    from ..algorithms.estimators import slq

    xp = op.xp
    info = slq(lambda X: pc.half_inv(op._matmat(pc.half_inv_h(X))), op.shape[0], op.dtype, op.device, xp, xp.log,
               alg.num_probes, alg.steps, alg.seed)
    ld = pc.logdet()
    return EstimateInfo("SLQ (preconditioned)", info.value + ld, info.stderr, info.num_probes, info.samples + ld)


def _precond_probes(A, pc, alg):
    """``U = A^{-1} Z`` (CG preconditioned by P) and ``W = P^{-1} Z`` for probes ``Z = F E``, no gradients."""
    from ..algorithms.lanczos import rademacher

    xp = A.xp
    E = rademacher(xp, xp.make_key(alg.seed), (A.shape[0], alg.num_probes), A.dtype, A.device)
    U, info = _kernel(A, CG(tol=alg.grad_tol, precond=pc.inverse()))(pc.half(E))
    report(info, alg.grad_tol, "warn", xp)
    return U, pc.half_inv_h(E)


def _surrogate(op, pc, U, W, alg):
    """A scalar function of ``op`` whose gradient at the build point is the estimate of ``d log det A``."""
    xp, p = op.xp, alg.num_probes
    out = xp.real(xp.sum(xp.conj(U) * op._matmat(W))) / p
    rebuilt = differentiable_preconditioner(alg.precond, op, pc)
    if rebuilt is not None:  # P was built here from a pivoted-Cholesky spec: the control variate applies
        apply_p, logdet_p = rebuilt
        out = out + logdet_p - xp.real(xp.sum(xp.conj(W) * apply_p(W))) / p
    return out


def _slq_preconditioned(A, alg):
    xp = A.xp
    if xp.name == "jax":
        return _slq_pc_jax(A, alg)
    if xp.name == "torch":
        import torch

        arrays, rebuild = array_leaves(A)
        if torch.is_grad_enabled() and any(getattr(a, "requires_grad", False) for a in arrays):
            sink: list = []
            value = _torch_pc_function().apply(alg, rebuild, sink, *arrays)
            info = sink[0]
            return EstimateInfo(info.method, value, info.stderr, info.num_probes, info.samples)
    return _estimate_pc(A, _build(alg, A), alg)


def _slq_pc_jax(A, alg):
    import jax

    def forward(op):
        pc = _build(alg, op)
        info = _estimate_pc(op, pc, alg)
        return (info.value, info.stderr, info.samples), pc

    @jax.custom_vjp
    def run(op):
        return forward(op)[0]

    def fwd(op):
        out, pc = forward(op)
        return out, (op, pc)

    def bwd(res, g):
        op, pc = res
        U, W = jax.lax.stop_gradient(_precond_probes(op, pc, alg))
        _, pull = jax.vjp(lambda o: _surrogate(o, pc, U, W, alg), op)
        return pull(g[0])

    run.defvjp(fwd, bwd)
    value, stderr, samples = run(A)
    stop = jax.lax.stop_gradient
    return EstimateInfo("SLQ (preconditioned)", value, stop(stderr), alg.num_probes, stop(samples))


_PC_FUNCTION = None


def _torch_pc_function():
    global _PC_FUNCTION
    if _PC_FUNCTION is not None:
        return _PC_FUNCTION
    import torch

    class SLQLogdetPreconditioned(torch.autograd.Function):
        """log det A by preconditioned SLQ with inputs (A's tensors); backward: the preconditioned estimate."""

        @staticmethod
        def forward(ctx, alg, rebuild, sink, *arrays):
            with torch.no_grad():
                op = rebuild(arrays)
                pc = _build(alg, op)
                info = _estimate_pc(op, pc, alg)
            sink.append(info)
            ctx.alg, ctx.rebuild, ctx.pc = alg, rebuild, pc
            ctx.save_for_backward(*arrays)
            return info.value

        @staticmethod
        def backward(ctx, g):
            arrays = ctx.saved_tensors
            with torch.no_grad():
                U, W = _precond_probes(ctx.rebuild(arrays), ctx.pc, ctx.alg)
            wanted = [i for i, _ in enumerate(arrays) if ctx.needs_input_grad[3 + i]]
            grads = [None] * len(arrays)
            if wanted:
                with torch.enable_grad():
                    leaves = [a.detach().requires_grad_(i in wanted) for i, a in enumerate(arrays)]
                    est = _surrogate(ctx.rebuild(leaves), ctx.pc, U, W, ctx.alg)
                    got = torch.autograd.grad(est, [leaves[i] for i in wanted], allow_unused=True)
                for i, gr in zip(wanted, got, strict=True):
                    grads[i] = None if gr is None else g * gr
            return (None, None, None, *grads)

    _PC_FUNCTION = SLQLogdetPreconditioned
    return _PC_FUNCTION
