"""Flax NNX layers: ``StructuredLinear``, the muP optax transform and core normalisation.

The same structures and rules as the torch layers (:mod:`linops.nn.layers_torch`): each core is
an ``nnx.Param`` named after the structure's core, carrying its muP data as metadata
(``mup_std``, ``mup_lr``: the structure part of the learning-rate multiplier, ``mup_d_in``), from
which :func:`scale_by_mup` builds its per-parameter multipliers. Works under ``jax.jit``,
``nnx.jit`` and ``jax.grad``.

    model = ...                                   # NNX modules using StructuredLinear
    tx = mup_adamw(1e-3, model, base_width=64)    # Adam with the structure-aware learning rates
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from .mup import init_std, is_scale_core, lr_multiplier
from .structures import Structure, as_structure

__all__ = ["StructuredLinear", "scale_by_mup", "mup_adamw", "mup_multipliers", "normalize_cores"]


class StructuredLinear(nnx.Module):
    """``y = x @ W.T + bias`` with a structured ``W`` (d_out, d_in); a drop-in for ``nnx.Linear``.

    ``structure`` as in the torch layer; ``rngs``: an ``nnx.Rngs`` (its ``params`` stream draws the
    cores); ``param_dtype`` the cores' dtype. Cost per input row: ``structure.flops(d_in, d_out)``.
    """

    def __init__(self, d_in: int, d_out: int, structure: Structure | str = "dense", *, bias: bool = True,
                 rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.structure = as_structure(structure)
        self.d_in, self.d_out = int(d_in), int(d_out)
        self.core_specs = self.structure.cores(self.d_in, self.d_out)
        for c in self.core_specs:
            std = init_std(c)
            if is_scale_core(c):
                value = jnp.ones(c.shape, param_dtype)
            else:
                value = std * jax.random.normal(rngs.params(), c.shape, param_dtype)
            setattr(self, c.name, nnx.Param(value, mup_std=std, mup_d_in=self.d_in, mup_scale=is_scale_core(c),
                                            mup_lr=lr_multiplier(c, self.core_specs, self.d_in)))
        self.bias = nnx.Param(jnp.zeros((self.d_out,), param_dtype)) if bias else None

    def params(self) -> dict:
        return {c.name: getattr(self, c.name)[...] for c in self.core_specs}

    def operator(self):
        """The weight as a linops operator of shape (d_out, d_in)."""
        return self.structure.operator(self.params(), self.d_in, self.d_out)

    def to_dense(self):
        return self.operator().to_dense()

    def __call__(self, x):
        if x.shape[-1] != self.d_in:
            raise ValueError(f"StructuredLinear: input has {x.shape[-1]} features, expected {self.d_in} (shape {x.shape})")
        lead = x.shape[:-1]
        y = (x.reshape(-1, self.d_in) @ self.operator().T).reshape(*lead, self.d_out)
        return y if self.bias is None else y + self.bias[...]

    def num_params(self) -> int:
        return self.structure.num_params(self.d_in, self.d_out) + (self.d_out if self.bias is not None else 0)


def _is_var(x) -> bool:
    return isinstance(x, nnx.Variable)


def mup_multipliers(model: nnx.Module, base_width: int | None = None):
    """The learning-rate multiplier of every ``nnx.Param`` of ``model`` as a tree shaped like
    ``nnx.state(model, nnx.Param)``: ``mup_lr * base_width / mup_d_in`` for cores of structured
    layers (``mup_lr`` alone without ``base_width``), 1 elsewhere."""

    def mult(v):
        lr = getattr(v, "mup_lr", None)
        if lr is None:
            return 1.0
        return lr * (1.0 if base_width is None else base_width / v.mup_d_in)

    return jax.tree.map(mult, nnx.state(model, nnx.Param), is_leaf=_is_var)


def scale_by_mup(model: nnx.Module, base_width: int | None = None) -> optax.GradientTransformation:
    """An optax transform multiplying each parameter's update by its :func:`mup_multipliers` entry."""
    mults = mup_multipliers(model, base_width)

    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None):
        return jax.tree.map(lambda u, m: u * m, updates, mults), state

    return optax.GradientTransformation(init, update)


def mup_adamw(learning_rate, model: nnx.Module, base_width: int | None = None, weight_decay: float = 0.0,
              **adam_kwargs) -> optax.GradientTransformation:
    """AdamW with the structure-aware learning rates (the torch :func:`~linops.nn.param_groups` rule):
    ``scale_by_adam``, decoupled weight decay, :func:`scale_by_mup`, then ``-learning_rate``."""
    parts = [optax.scale_by_adam(**adam_kwargs)]
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts += [scale_by_mup(model, base_width), optax.scale_by_learning_rate(learning_rate)]
    return optax.chain(*parts)


def normalize_cores(model: nnx.Module) -> None:
    """In place on the NNX module: ``W <- W / max(1, RMS(W) / σ_init)`` for every structured core."""
    for _, node in nnx.iter_graph(model):
        if isinstance(node, StructuredLinear):
            for c in node.core_specs:
                if is_scale_core(c):
                    continue
                p = getattr(node, c.name)
                rms = jnp.sqrt(jnp.mean(jnp.square(p[...].astype(jnp.float32))))
                p[...] = p[...] / jnp.maximum(1.0, rms / init_std(c)).astype(p[...].dtype)
