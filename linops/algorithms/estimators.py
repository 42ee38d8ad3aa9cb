"""Stochastic estimators of traces and log-determinants, each with a standard error.

* ``hutchinson``: ``tr A ≈ (1/p) Σ_j z_j^H A z_j`` with Rademacher probes ``z_j``; unbiased,
  variance ``2 ||A||_F^2 - 2 Σ a_ii^2`` per probe for real symmetric A.
* ``slq``: ``tr f(A) ≈ (n/p) Σ_j e1^T f(T_j) e1`` from ``p`` Lanczos runs (stochastic Lanczos
  quadrature); ``f = log`` gives ``log det A`` for PSD A.

Probes come from an explicit seed (``xp.make_key``); nothing reads global random state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Algorithm
from .info import EstimateInfo
from .lanczos import lanczos, rademacher, slq_quadrature

__all__ = ["Hutchinson", "hutchinson", "slq"]


@dataclass(frozen=True)
class Hutchinson(Algorithm):
    """Hutchinson's trace estimator: ``num_probes`` Rademacher probes, one product each."""

    num_probes: int = 100
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.num_probes, int) and self.num_probes >= 2):
            raise ValueError(f"Hutchinson: num_probes must be an integer >= 2, got {self.num_probes!r}")


def _summary(xp, method, samples, p):
    mean = xp.sum(samples) / p
    var = xp.sum((samples - mean) ** 2) / (p - 1)
    return EstimateInfo(method, mean, xp.sqrt(var / p), p, samples)


def hutchinson(matmat: Callable, n: int, dtype, device, xp, num_probes: int, seed: int) -> EstimateInfo:
    Z = rademacher(xp, xp.make_key(seed), (n, num_probes), dtype, device)
    samples = xp.real(xp.sum(xp.conj(Z) * matmat(Z), axis=0))
    return _summary(xp, "Hutchinson", samples, num_probes)


def slq(matmat: Callable, n: int, dtype, device, xp, f: Callable, num_probes: int, steps: int, seed: int) -> EstimateInfo:
    """``tr f(A)`` by stochastic Lanczos quadrature (A Hermitian; f applied to Ritz values)."""
    Z = rademacher(xp, xp.make_key(seed), (n, num_probes), dtype, device)
    alpha, beta, _ = lanczos(matmat, Z, xp, min(steps, n))
    samples = n * slq_quadrature(xp, alpha, beta, f)  # ||z||^2 = n for Rademacher probes
    return _summary(xp, "SLQ", samples, num_probes)


