"""PyTorch layers: ``StructuredLinear``, muP parameter groups and core normalisation.

``StructuredLinear(d_in, d_out, structure)`` is a drop-in for ``torch.nn.Linear``: it takes
``(..., d_in)`` input, returns ``(..., d_out)``, and its cores are ordinary ``nn.Parameter``s
(named after the structure's cores: ``weight`` for dense, ``U``/``V`` for low rank, ``R``/``L``
for Monarch and BTT, ``G0``, ``G1``, ... for TT, ``A``/``B`` for Einsum points), so optimizers,
``state_dict`` and ``torch.func`` see nothing unusual. The forward pass builds the linops
operator ``W`` (d_out, d_in) from the parameters (cheap: no arrays are copied) and computes
``x @ W.T`` on the rows, the operators' row-major product, without a transposed copy of the
activations.
"""

from __future__ import annotations

import torch

from .mup import init_std, is_scale_core, lr_multiplier
from .structures import Structure, as_structure

__all__ = ["StructuredLinear", "param_groups", "normalize_cores_", "dense_equivalent"]


class StructuredLinear(torch.nn.Module):
    """``y = x @ W.T + bias`` with a structured ``W`` of shape (d_out, d_in).

    * ``structure``: a :mod:`linops.nn.structures` object or name (``"dense"``, ``"monarch"``, ...).
    * ``init``: ``"mup"`` (default; :func:`linops.nn.mup.init_std` per core) or ``"none"``
      (parameters left as ``torch.empty``, e.g. before :meth:`from_dense`).
    * ``bias``: a zero-initialised bias of size ``d_out``.

    Cost per input row: ``structure.flops(d_in, d_out)`` flops and
    ``structure.num_params(d_in, d_out)`` parameters (plus the bias).
    """

    def __init__(self, d_in: int, d_out: int, structure: Structure | str = "dense", bias: bool = True,
                 device=None, dtype=None, init: str = "mup"):
        super().__init__()
        self.structure = as_structure(structure)
        self.d_in, self.d_out = int(d_in), int(d_out)
        self.cores = self.structure.cores(self.d_in, self.d_out)
        kw = {"device": device, "dtype": dtype}
        for c in self.cores:
            self.register_parameter(c.name, torch.nn.Parameter(torch.empty(c.shape, **kw)))
        self.bias = torch.nn.Parameter(torch.zeros(self.d_out, **kw)) if bias else None
        if init == "mup":
            self.reset_parameters()
        elif init != "none":
            raise ValueError(f"StructuredLinear: init must be 'mup' or 'none', got {init!r}")

    def reset_parameters(self) -> None:
        """Draw every core from ``N(0, init_std(core)^2)`` (a single-entry core starts at 1); zero the bias."""
        with torch.no_grad():
            for c in self.cores:
                p = getattr(self, c.name)
                p.fill_(1.0) if is_scale_core(c) else p.normal_(0.0, init_std(c))
            if self.bias is not None:
                self.bias.zero_()

    def params(self) -> dict:
        """``{core name: parameter}``."""
        return {c.name: getattr(self, c.name) for c in self.cores}

    def operator(self):
        """The weight as a linops operator of shape (d_out, d_in)."""
        return self.structure.operator(self.params(), self.d_in, self.d_out)

    def to_dense(self) -> torch.Tensor:
        """The dense (d_out, d_in) weight (for checks; O(d_in d_out) memory)."""
        return self.operator().to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_in:
            raise ValueError(f"StructuredLinear: input has {x.shape[-1]} features, expected {self.d_in} (shape {tuple(x.shape)})")
        lead = x.shape[:-1]
        y = x.reshape(-1, self.d_in) @ self.operator().T
        y = y.reshape(*lead, self.d_out)
        return y if self.bias is None else y + self.bias.to(y.dtype)  # under autocast y may be bf16, as nn.Linear's

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None, structure: Structure | str):
        """The layer whose weight is the structure's projection of ``weight`` (d_out, d_in);
        returns ``(layer, relative Frobenius error)``."""
        structure = as_structure(structure)
        d_out, d_in = (int(v) for v in weight.shape)
        layer = cls(d_in, d_out, structure, bias=bias is not None, device=weight.device, dtype=weight.dtype, init="none")
        with torch.no_grad():
            params, err = structure.project(weight.detach())
            for name, value in params.items():
                getattr(layer, name).copy_(value)
            if bias is not None:
                layer.bias.copy_(bias.detach())
        return layer, err

    def num_params(self) -> int:
        return self.structure.num_params(self.d_in, self.d_out) + (self.d_out if self.bias is not None else 0)

    def flops(self) -> int:
        """Flops per input row (bias adds included)."""
        return self.structure.flops(self.d_in, self.d_out) + (self.d_out if self.bias is not None else 0)

    def extra_repr(self) -> str:
        return f"{self.d_in} -> {self.d_out}, {self.structure.label()}, bias={self.bias is not None}"


def _structured_layers(model: torch.nn.Module):
    """Modules with structured cores: StructuredLinear, and any module exposing the same ``cores`` /
    ``d_in`` protocol with its cores as parameters by name (BTTMoE)."""
    for name, m in model.named_modules():
        if isinstance(m, StructuredLinear) or (hasattr(m, "cores") and hasattr(m, "d_in")
                                               and all(isinstance(getattr(m, c.name, None), torch.nn.Parameter)
                                                       for c in m.cores)):
            yield name, m


def param_groups(model: torch.nn.Module, base_lr: float, base_width: int | None = None,
                 weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups with the structure-aware (muP) learning rates, for Adam/AdamW.

    Each core of each :class:`StructuredLinear` gets ``base_lr * lr_multiplier(...)`` (see
    :mod:`linops.nn.mup`; ``base_width``: the width at which ``base_lr`` was tuned). Every other
    parameter (biases, norms, embeddings, output heads, plain ``nn.Linear``) keeps ``base_lr``.
    Each group carries a ``"name"`` for inspection. Use as ``torch.optim.AdamW(param_groups(model, 1e-3, 64))``.
    """
    groups, seen = [], set()
    for lname, layer in _structured_layers(model):
        for c in layer.cores:
            p = getattr(layer, c.name)
            if id(p) in seen:
                continue
            seen.add(id(p))
            mult = lr_multiplier(c, layer.cores, layer.d_in, base_width)
            groups.append({"params": [p], "lr": base_lr * mult, "weight_decay": weight_decay,
                           "name": f"{lname}.{c.name}" if lname else c.name})
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        groups.append({"params": rest, "lr": base_lr, "weight_decay": weight_decay, "name": "other"})
    return groups


@torch.no_grad()
def normalize_cores_(model: torch.nn.Module) -> None:
    """In place, for every core of every :class:`StructuredLinear`: ``W <- W / max(1, RMS(W) / σ_init)``
    (single-entry scale cores are left alone). Call after ``optimizer.step()``."""
    for _, layer in _structured_layers(model):
        for c in layer.cores:
            if is_scale_core(c):
                continue
            p = getattr(layer, c.name)
            rms = p.detach().float().pow(2).mean().sqrt()
            p.div_(torch.clamp(rms / init_std(c), min=1.0).to(p.dtype))


def dense_equivalent(layer: StructuredLinear) -> torch.nn.Linear:
    """A ``torch.nn.Linear`` holding the layer's dense weight (for comparisons)."""
    lin = torch.nn.Linear(layer.d_in, layer.d_out, bias=layer.bias is not None,
                          device=layer.bias.device if layer.bias is not None else None)
    with torch.no_grad():
        lin.weight.copy_(layer.to_dense())
        if layer.bias is not None:
            lin.bias.copy_(layer.bias)
    return lin

