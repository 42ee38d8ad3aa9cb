"""Flax NNX BTT mixture of experts: the math of :class:`linops.nn.moe.BTTMoE` in JAX.

Same cores (``R`` (n1, m2, E, n2), ``L`` (m2, m1, n1, E), muP-initialised as the cores of
``linops.nn.BTT(rank=E)`` and carrying the ``mup_*`` metadata of :class:`linops.nn.nnx.StructuredLinear`,
so :func:`linops.nn.nnx.mup_adamw` gives them their learning rates), the same zero-initialised
router (an ``nnx.Linear``, kernel (d_in, E)), top-``k`` gates (softmax over the chosen logits) and
auxiliary loss (see :mod:`linops.nn.moe`). Only the gather form is here: each token's ``k`` core
slices are gathered, so the shapes are fixed (``jax.jit``, ``jax.vmap``, ``nnx.jit`` work) and the
flops are those of ``k`` experts; the memory is ``T k n1 m2 (n2 + m1)`` entries for ``T`` tokens.

After each call ``layer.aux_loss[...]`` holds the auxiliary loss (an :class:`AuxLoss` variable,
not a parameter: optimizers over ``nnx.Param`` ignore it); :func:`aux_loss` sums
``aux_weight * aux_loss`` over a model. Inside ``nnx.grad``/``nnx.value_and_grad``, call the model and
then :func:`aux_loss` in the same function so the loss is differentiated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ..errors import ShapeError
from .mup import init_std, lr_multiplier
from .structures import BTT

__all__ = ["BTTMoE", "AuxLoss", "aux_loss", "top_k_routing", "router_aux_loss"]


class AuxLoss(nnx.Variable):
    """The auxiliary loss of an MoE layer's last call (a scalar)."""


def top_k_routing(logits, k: int):
    """``(logits, probs (T, E), experts (T, k), gates (T, k))``: the ``k`` largest logits (ties to
    the lower index), gates the softmax over them; half-precision logits are promoted to float32."""
    if logits.dtype not in (jnp.float32, jnp.float64):
        logits = logits.astype(jnp.float32)
    top, experts = jax.lax.top_k(logits, k)
    return logits, jax.nn.softmax(logits, axis=-1), experts, jax.nn.softmax(top, axis=-1)


def router_aux_loss(logits, probs, experts):
    """``E Σ_e P_e f_e + 0.1 mean_t logsumexp(logits_t)^2`` with ``f_e`` the share of the ``T k``
    assignments sent to ``e`` (as :func:`linops.nn.moe.router_aux_loss`)."""
    T, E = logits.shape
    k = experts.shape[-1]
    if T == 0:
        return jnp.zeros((), logits.dtype)
    counts = jnp.zeros((E,), probs.dtype).at[experts.reshape(-1)].add(1.0)
    balance = E * jnp.sum(jnp.mean(probs, axis=0) * counts / (T * k))
    return balance + 0.1 * jnp.mean(jnp.square(jax.nn.logsumexp(logits, axis=-1)))


class BTTMoE(nnx.Module):
    """BTT mixture of experts, ``(..., d_in) -> (..., d_out)`` (module docstring; the torch
    :class:`linops.nn.moe.BTTMoE` for the math). ``rngs``: its ``params`` stream draws the cores.
    Flops per token: ``2 k n1 m2 (n2 + m1) + k n1 m2 + 2 d_in E + E (+ d_out)``."""

    def __init__(self, d_in: int, d_out: int, experts: int = 8, top_k: int = 2, *, bias: bool = True,
                 aux_weight: float = 0.01, rngs: nnx.Rngs, param_dtype=jnp.float32):
        for what, v in (("d_in", d_in), ("d_out", d_out), ("experts", experts), ("top_k", top_k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"BTTMoE: {what} must be an integer >= 1, got {v!r}")
        if top_k > experts:
            raise ValueError(f"BTTMoE: top_k = {top_k} exceeds the number of experts ({experts}); use top_k <= {experts}")
        if isinstance(aux_weight, bool) or not isinstance(aux_weight, (int, float)) or not aux_weight >= 0:
            raise ValueError(f"BTTMoE: aux_weight must be a number >= 0, got {aux_weight!r}")
        self.d_in, self.d_out, self.num_experts, self.top_k = d_in, d_out, experts, top_k
        self.aux_weight = float(aux_weight)
        structure = BTT(rank=experts)
        self.core_specs = structure.cores(d_in, d_out)
        (self.n1, self.n2), (self.m1, self.m2) = structure.grid(d_in, d_out)
        for c in self.core_specs:
            std = init_std(c)
            value = std * jax.random.normal(rngs.params(), c.shape, param_dtype)
            setattr(self, c.name, nnx.Param(value, mup_std=std, mup_d_in=d_in, mup_scale=False,
                                            mup_lr=lr_multiplier(c, self.core_specs, d_in)))
        self.bias = nnx.Param(jnp.zeros((d_out,), param_dtype)) if bias else None
        zeros = nnx.initializers.zeros_init()
        self.router = nnx.Linear(d_in, experts, kernel_init=zeros, bias_init=zeros, param_dtype=param_dtype, rngs=rngs)
        self.aux_loss = AuxLoss(jnp.zeros((), param_dtype))

    def route(self, x2d):
        """``(logits, probs, experts, gates)`` for the rows of ``x2d`` (T, d_in)."""
        return top_k_routing(self.router(x2d), self.top_k)

    def __call__(self, x):
        if x.shape[-1] != self.d_in:
            raise ShapeError(f"BTTMoE: input has {x.shape[-1]} features, expected {self.d_in} (shape {x.shape}); "
                             "the last axis must be d_in")
        n1, n2, m1, m2 = self.n1, self.n2, self.m1, self.m2
        X = x.reshape(-1, self.d_in)
        T = X.shape[0]
        logits, probs, experts, gates = self.route(X)
        self.aux_loss[...] = router_aux_loss(logits, probs, experts).astype(self.aux_loss[...].dtype)
        if self.d_in < n1 * n2:
            X = jnp.pad(X, ((0, 0), (0, n1 * n2 - self.d_in)))
        Xg = X.reshape(T, n1, n2)
        Rs = jnp.moveaxis(self.R[...], 2, 0)[experts]  # (T, k, n1, m2, n2)
        Ls = jnp.moveaxis(self.L[...], 3, 0)[experts]  # (T, k, m2, m1, n1)
        Z = jnp.einsum("tkiuj,tij->tkiu", Rs, Xg) * gates.astype(Xg.dtype)[:, :, None, None]
        Y = jnp.einsum("tkuoi,tkiu->tou", Ls, Z).reshape(T, m1 * m2)[:, : self.d_out]
        y = Y.reshape(*x.shape[:-1], self.d_out)
        return y if self.bias is None else y + self.bias[...]

    def flops_per_token(self) -> int:
        n1, n2, m1, m2, k, E = self.n1, self.n2, self.m1, self.m2, self.top_k, self.num_experts
        return 2 * k * n1 * m2 * (n2 + m1) + k * n1 * m2 + 2 * self.d_in * E + E + (self.d_out if self.bias is not None else 0)


def aux_loss(model: nnx.Module):
    """``Σ aux_weight * layer.aux_loss`` over the :class:`BTTMoE` layers of ``model`` (their last
    call; a layer not yet called contributes its initial 0)."""
    total = jnp.zeros(())
    for _, node in nnx.iter_graph(model):
        if isinstance(node, BTTMoE):
            total = total + node.aux_weight * node.aux_loss[...]
    return total
