"""Structured neural-network layers over linops operators (PyTorch, and Flax NNX in ``linops.nn.nnx``).

* :mod:`.structures`: how a weight is parameterised (``Dense``, ``LowRank``, ``Kronecker``,
  ``Monarch``, ``BTT``, ``TT``, ``Einsum``), backend-neutral.
* :mod:`.mup`: structure-aware initialisation and learning-rate multipliers.
* :mod:`.layers_torch`: ``StructuredLinear``, ``param_groups``, ``normalize_cores_`` (torch).
* :mod:`.nnx`: the same for Flax NNX, with an optax transform.

``import linops.nn`` loads neither torch nor flax; the torch names load torch on first use.
"""

from __future__ import annotations

from .._lazy import lazy_attributes
from .einsum_search import Candidate, named_points, theta_for_budget
from .mup import init_gain, init_std, lr_multiplier
from .structures import BTT, TT, Core, Dense, Einsum, Kronecker, LowRank, Monarch, Structure, as_structure

LAZY = {
    **dict.fromkeys(("StructuredLinear", "param_groups", "normalize_cores_", "dense_equivalent"), "layers_torch"),
    **dict.fromkeys(("BTTMoE", "MoE", "aux_loss", "top_k_routing", "router_aux_loss"), "moe"),
    "MLR": "structures_mlr",
    "MultiheadAttention": "attention",
    **dict.fromkeys(("structurize", "LayerReport", "format_report"), "convert"),
}

__getattr__, __dir__ = lazy_attributes(__name__, globals(), LAZY)

__all__ = [
    "Structure", "Core", "Dense", "LowRank", "Kronecker", "Monarch", "BTT", "TT", "Einsum", "as_structure",
    "init_std", "lr_multiplier", "init_gain", "named_points", "theta_for_budget", "Candidate", *LAZY,
]
