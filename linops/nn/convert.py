"""Model conversion: ``structurize(model, structure)`` swaps dense ``nn.Linear`` layers for structured ones (torch).

Each chosen ``torch.nn.Linear`` becomes ``StructuredLinear.from_dense(weight, bias, structure)``:
the structure's projection of the dense weight (Monarch: the analytic blockwise rank-1 projection;
BTT and TT: TT-SVD; low rank: truncated SVD; MLR: per-level truncated SVDs with block-coordinate
refinement), so the converted model starts as close to the original as the structure allows. The
report lists, per layer, the sizes, the parameter counts before and after and the relative
Frobenius error ``||W - W_s|| / ||W||``.

Which layers: every ``nn.Linear`` (subclasses included) for which ``filter(name, module)`` is
true (default: all), except the output head when ``skip_last`` (the last ``nn.Linear`` in module
registration order, usually the classifier or language-model head). Linear layers owned by a
``torch.nn.MultiheadAttention`` are left alone: that module reads their weights directly, so a
replacement would be ignored (convert such a model to :class:`linops.nn.MultiheadAttention` instead).
A layer shared by several parents is converted once and replaced in every parent; a weight tied
to another module (an embedding, say) is untied by the conversion.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from .layers_torch import StructuredLinear
from .structures import Structure, as_structure

__all__ = ["structurize", "LayerReport", "format_report"]


class LayerReport(NamedTuple):
    """One converted layer: ``name`` (as in ``model.named_modules()``), sizes, parameter counts
    (weight plus bias) before and after, the relative Frobenius error of the weight, the structure."""

    name: str
    d_in: int
    d_out: int
    params_before: int
    params_after: int
    rel_err: float
    structure: str


def _as_structure(s) -> Structure:
    if isinstance(s, str) and s.lower() == "mlr":
        from .structures_mlr import MLR

        return MLR()
    return as_structure(s)


def _candidates(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """``(name, layer)`` of every ``nn.Linear`` not owned by a ``torch.nn.MultiheadAttention``, in registration order."""
    owned = set()
    for m in model.modules():
        if isinstance(m, torch.nn.MultiheadAttention):
            owned.update(id(c) for c in m.modules() if c is not m)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and id(m) not in owned]


def structurize(model: torch.nn.Module, structure: Structure | str | Callable, filter: Callable | None = None,
                skip_last: bool = True) -> list[LayerReport]:
    """Replace ``model``'s dense linear layers by structured ones, in place; returns the report (module docstring).

    * ``structure``: a structure or its name (``"monarch"``, ``"btt"``, ``"low_rank"``, ``"tt"``, ``"mlr"``,
      ...), or a function ``(name, layer) -> structure`` (``None`` keeps that layer dense).
    * ``filter(name, layer) -> bool``: which layers to convert (default: all).
    * ``skip_last``: keep the last ``nn.Linear`` (the output head) dense; applies together with ``filter``.

    All projections are computed before any layer is replaced, so an error leaves the model unchanged.
    Cost: one projection per layer (an SVD-sized computation on the weight's device).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"structurize: model must be a torch.nn.Module, got {type(model).__name__}")
    if filter is not None and not callable(filter):
        raise TypeError(f"structurize: filter must be a function (name, module) -> bool, got {type(filter).__name__}")
    per_layer = callable(structure) and not isinstance(structure, (str, Structure))
    fixed = None if per_layer else _as_structure(structure)
    layers = _candidates(model)
    head = layers[-1][1] if (skip_last and layers) else None
    plan, report = [], []
    for name, lin in layers:
        if lin is head or (filter is not None and not filter(name, lin)):
            continue
        s = structure(name, lin) if per_layer else fixed
        if s is None:
            continue
        s = _as_structure(s)
        if name == "":
            raise ValueError("structurize: the model is itself an nn.Linear and cannot be replaced in place; "
                             "use linops.nn.StructuredLinear.from_dense(model.weight, model.bias, structure)")
        try:
            new, err = StructuredLinear.from_dense(lin.weight, lin.bias, s)
        except Exception as e:
            e.add_note(f"structurize: while converting layer {name!r} ({lin.in_features} -> {lin.out_features}) "
                       f"to {s.label()}; exclude it with filter= or choose another structure for it")
            raise
        new.train(lin.training)
        new.requires_grad_(lin.weight.requires_grad)
        plan.append((lin, new))
        before = lin.weight.numel() + (lin.bias.numel() if lin.bias is not None else 0)
        report.append(LayerReport(name, lin.in_features, lin.out_features, before, new.num_params(), float(err), s.label()))
    swap = {id(lin): new for lin, new in plan}
    for parent in list(model.modules()):  # every parent holding a converted layer, shared layers included
        for key, child in list(parent._modules.items()):
            if child is not None and id(child) in swap:
                setattr(parent, key, swap[id(child)])
    return report


def format_report(report: list[LayerReport]) -> str:
    """The report as a text table, with the totals."""
    rows = [("layer", "d_in -> d_out", "params before", "after", "rel. error", "structure")]
    for r in report:
        rows.append((r.name, f"{r.d_in} -> {r.d_out}", str(r.params_before), str(r.params_after), f"{r.rel_err:.3e}",
                     r.structure))
    rows.append(("total", "", str(sum(r.params_before for r in report)), str(sum(r.params_after for r in report)), "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
