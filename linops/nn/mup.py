"""Structure-aware initialisation and learning rates (muP for structured layers).

The rules follow the spectral view of muP (Yang, Simon and Bernstein 2023) applied to each
core as a batch of dense maps, as the BTT and Einsum-family papers do (Qiu et al. 2024;
Potapczynski et al. 2024):

* **init**: a core with fan-in ``n`` and fan-out ``m`` (see :mod:`.structures`) is drawn from
  ``N(0, σ²)`` with ``σ = (1/sqrt(n)) min(1, sqrt(m/n))``. A core with a single entry (a
  pure scale, e.g. the ``B`` core at the dense Einsum point) starts at 1.
* **Adam learning rate**: core ``c`` of a layer with input size ``d_in`` and ``K`` cores gets
  the multiplier ``(d_in / n_c) / K`` times the dense muP multiplier ``base_width / d_in``
  (``1`` when no ``base_width`` is given). With ``base_width`` set to the width at which the
  base learning rate was tuned, the same base learning rate transfers to wider models.
* **normalisation** (optional, as in the BTT papers): after a step, ``W <- W / max(1, RMS(W)/σ)``
  for each core, which keeps a core's scale from drifting above its initial one.

These functions are backend-neutral; :mod:`linops.nn.layers_torch` and :mod:`linops.nn.nnx`
apply them to parameters.
"""

from __future__ import annotations

import math
from typing import Sequence

from .structures import Core

__all__ = ["init_std", "lr_multiplier", "is_scale_core", "init_gain"]


def is_scale_core(core: Core) -> bool:
    """A core with a single entry: a scale, initialised to 1 (a random scale would only add noise)."""
    return math.prod(core.shape) == 1


def init_std(core: Core) -> float:
    """``(1/sqrt(fan_in)) * min(1, sqrt(fan_out / fan_in))``."""
    n, m = core.fan_in, core.fan_out
    return (1.0 / math.sqrt(n)) * min(1.0, math.sqrt(m / n))


def lr_multiplier(core: Core, cores: Sequence[Core], d_in: int, base_width: int | None = None) -> float:
    """Adam learning-rate multiplier of ``core`` in a layer of input size ``d_in`` made of ``cores``:
    ``(d_in / fan_in) / len(cores) * (base_width / d_in if base_width else 1)``."""
    dense = 1.0 if base_width is None else base_width / d_in
    return (d_in / core.fan_in) / len(cores) * dense


def init_gain(cores: Sequence[Core]) -> float:
    """Expected ``RMS(W x) / RMS(x)`` at init for a random input: ``sqrt(prod_c min(1, fan_out_c / fan_in_c))``.

    Each contraction sums ``fan_in`` independent products, so it multiplies the mean square by
    ``σ² fan_in = min(1, fan_out / fan_in)``. It is 1 for square dense, Monarch, BTT and
    Kronecker layers at every width; a low-rank factor ``d -> r`` contributes ``r / d``, so
    structures whose rank grows more slowly than the width (a fixed rank, Einsum points with
    ``ρ < α - δ`` ...) start with activations shrinking like ``sqrt(r / d)``: the spectral
    rule's choice (their spectral norm is still the dense one), see docs/nn.md.
    """
    g = 1.0
    for c in cores:
        if not is_scale_core(c):
            g *= min(1.0, c.fan_out / c.fan_in)
    return math.sqrt(g)
