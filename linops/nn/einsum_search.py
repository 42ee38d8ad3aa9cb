"""Einsum-family layers: the paper's named points, and picking ``theta`` for a FLOP budget.

Potapczynski et al. (NeurIPS 2024) compare the structures of the Einsum family by their exponents
``(ν, ω, ψ)`` (:func:`linops.einsum_exponents`): FLOPs per input vector ``~ d^(1+ν)``, parameters
``~ d^(1+ν-ω)`` (``ω > 0``: parameters shared across the input) and rank ``~ d^ψ``. Their finding:
at a fixed compute budget the structures with no parameter sharing (``ω = 0``) and full rank
(``ψ = 1``) train best, BTT among them. :func:`theta_for_budget` lists every point of a grid whose
product fits the budget, ranked by that criterion: ``ω = 0`` first, then ``ψ = 1``, then the most
parameters, then the most FLOPs used.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

from .structures import Einsum

__all__ = ["named_points", "Candidate", "theta_for_budget"]


def named_points(rho: float = 0.25) -> dict[str, Einsum]:
    """The paper's named points as layer structures (dense, low rank, Kronecker, TT, Monarch, BTT);
    ``rho`` is the rank exponent of the low-rank, TT and BTT points."""
    from ..operators import einsum_points

    return {name: Einsum(theta) for name, theta in einsum_points(rho).items()}


class Candidate(NamedTuple):
    """A grid point that fits the budget: ``theta``, its exact counts at ``(d_in, d_out)`` and exponents."""

    theta: tuple
    flops: int
    params: int
    nu: float
    omega: float
    psi: float


def _simplex(step: float):
    n = round(1 / step)
    for i in range(n + 1):
        for j in range(n + 1 - i):
            yield (i * step, j * step, (n - i - j) * step)


def theta_for_budget(d_in: int, d_out: int, flops: int, step: float = 0.25,
                     rhos: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0), top: int | None = 10) -> list[Candidate]:
    """Grid points ``theta`` (input and output splits in steps of ``step``, rank exponents ``rhos``)
    whose layer costs at most ``flops`` FLOPs per input vector at ``(d_in, d_out)``, best first
    (module docstring); ``top`` limits the list (None: all). Use ``Einsum(result[0].theta)``.

    Cost: ``(1/step + 1)^2 (1/step + 2)^2 / 4 * len(rhos)`` size computations (1125 at the default).
    """
    from ..operators import einsum_counts, einsum_exponents, einsum_sizes

    if not flops > 0:
        raise ValueError(f"theta_for_budget: the budget must be positive, got {flops!r}")
    if not (0 < step <= 1 and abs(round(1 / step) * step - 1) < 1e-9):
        raise ValueError(f"theta_for_budget: step must divide 1 (0.5, 0.25, 0.1, ...), got {step!r}")
    seen, out = set(), []
    for ins, outs, rho in itertools.product(_simplex(step), _simplex(step), rhos):
        theta = (*ins, *outs, rho)
        sizes = einsum_sizes(theta, d_in, d_out)
        if sizes in seen:  # different exponents that round to the same axis sizes
            continue
        seen.add(sizes)
        params, f = einsum_counts(sizes)
        if f > flops:
            continue
        nu, omega, psi = einsum_exponents(theta)
        out.append(Candidate(theta, f, params, nu, omega, psi))
    if not out:
        raise ValueError(f"theta_for_budget: no grid point costs <= {flops} FLOPs at {d_in} -> {d_out}; "
                         "the cheapest structures cost about 2 (d_in + d_out) FLOPs")
    out.sort(key=lambda c: (abs(c.omega) > 1e-9, abs(c.psi - 1) > 1e-9, -c.params, -c.flops))
    return out if top is None else out[:top]
