"""``log det A`` by stochastic Lanczos quadrature, with the implicit (BBMM) gradient.

The value comes from SLQ (:func:`linops.algorithms.estimators.slq`). The gradient is not
backpropagated through Lanczos: ``d log det A = tr(A^{-1} dA)`` is estimated with the same
probes, ``(1/p) Σ_j (A^{-1} z_j)^H dA z_j``, the solves by CG to ``alg.grad_tol``; torch gets
it through a ``torch.autograd.Function``, jax through ``jax.custom_vjp``.
"""

from __future__ import annotations

from ..algorithms import CG
from ..algorithms.info import report
from ..operators import LinearOperator
from ..operators.base import array_leaves
from .iterative import _kernel

__all__ = ["slq_logdet"]


def slq_logdet(A: LinearOperator, alg):
    """``EstimateInfo`` of ``log det A`` by SLQ; its value carries the implicit (BBMM) gradient."""
    from ..algorithms.estimators import slq

    xp = A.xp

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
                for i, gr in zip(wanted, got):
                    grads[i] = None if gr is None else g * gr
            return (None, None, None, None, *grads)

    _SLQ_FUNCTION = SLQLogdet
    return _SLQ_FUNCTION
