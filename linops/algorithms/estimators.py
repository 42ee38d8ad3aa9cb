"""Stochastic estimators of traces, diagonals and log-determinants, each with a standard error.

Trace (``lo.trace(A, alg=...)``; base class :class:`StochasticTrace`):

* ``hutchinson``: ``tr A ≈ (1/p) Σ_j z_j^H A z_j`` with Rademacher probes ``z_j``; unbiased,
  variance ``2 ||A||_F^2 - 2 Σ a_ii^2`` per probe for real symmetric A.
* ``hutch_pp`` (Hutch++, Meyer, Musco, Musco & Woodruff 2021): ``Q = orth(A S)`` from k
  sketch probes, ``tr(Q^H A Q)`` exactly, and Hutchinson with g probes on the deflated rest
  ``(I - Q Q^H) A (I - Q Q^H)``; relative error O(1/m) instead of O(1/sqrt(m)) for a matrix
  whose spectrum decays.
* ``xtrace`` (XTrace, Epperly, Tropp & Webber 2024): in :mod:`.xtrace`.

Diagonal (``lo.diag(A, alg=...)``; base class :class:`StochasticDiag`):

* ``diag_bks`` (Bekas, Kokiopoulou & Saad 2007): ``diag A ≈ (Σ_j z_j ⊙ A z_j) / (Σ_j z_j ⊙ z_j)``
  with Rademacher probes, so the denominator is p and the estimate is the mean of the per-probe
  vectors ``z_j ⊙ A z_j``; entry i has variance ``Σ_{k≠i} |a_ik|^2`` per probe.
* ``diag_pp`` (Diag++, Baston & Nakatsukasa 2022): ``diag(Q Q^H A)`` exactly (k products with
  ``A^H``) plus the BKS estimate of ``diag((I - Q Q^H) A)``.

* ``slq``: ``tr f(A) ≈ (n/p) Σ_j e1^T f(T_j) e1`` from ``p`` Lanczos runs (stochastic Lanczos
  quadrature); ``f = log`` gives ``log det A`` for PSD A.

Each estimate is the mean of per-probe samples (``EstimateInfo.samples``, (p,) for a trace,
(p, n) for a diagonal) and its standard error is their sample standard deviation over sqrt(p).
All probes of a call come from one draw of ``xp.make_key(seed)`` (nothing reads global random
state) and are applied as one block product ``matmat(Z)`` (Z of shape (n, p)) per stage. The
shapes are fixed by the options and n, so the code runs under ``jax.jit``; it is made of array
operations (products, QR, triangular solves), so autodiff of the operator's product gives
gradients (for the sketched methods through the QR of ``A S``, which needs ``A S`` of full rank).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Algorithm
from .info import EstimateInfo
from .lanczos import lanczos, rademacher, slq_quadrature

__all__ = [
    "StochasticTrace", "StochasticDiag", "Hutchinson", "HutchPlusPlus", "DiagonalEstimator", "DiagPlusPlus",
    "hutchinson", "hutch_pp", "diag_bks", "diag_pp", "slq", "check_count", "check_seed",
]


def check_count(alg, name: str, least: int, why: str = "") -> None:
    """ValueError unless ``alg.<name>`` is an integer (not a bool) >= ``least``."""
    v = getattr(alg, name)
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= least):
        raise ValueError(f"{type(alg).__name__}: {name} must be an integer >= {least}{why}, got {v!r}")


def check_seed(alg) -> None:
    s = alg.seed
    if not (isinstance(s, int) and not isinstance(s, bool) and s >= 0):
        raise ValueError(f"{type(alg).__name__}: seed must be a non-negative integer, got {s!r}")


@dataclass(frozen=True)
class StochasticTrace(Algorithm):
    """Base of the randomised trace estimators: ``estimate`` returns an :class:`EstimateInfo`."""

    def estimate(self, matmat: Callable, n: int, dtype, device, xp, hermitian: bool) -> EstimateInfo:
        """``tr A`` from products ``matmat(Z)`` (Z: (n, p)); real samples if ``hermitian``."""
        raise NotImplementedError


@dataclass(frozen=True)
class StochasticDiag(Algorithm):
    """Base of the randomised diagonal estimators: ``estimate`` returns an :class:`EstimateInfo`."""

    def estimate(self, matmat: Callable, adjoint_matmat: Callable, shape, dtype, device, xp) -> EstimateInfo:
        """``diag A`` (min(m, n),) from ``matmat`` (A @ Z) and, if needed, ``adjoint_matmat`` (A^H @ Z)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Hutchinson(StochasticTrace):
    """Hutchinson's trace estimator: ``num_probes`` Rademacher probes, one product each.

    Unbiased; the standard error is the probes' sample standard deviation over sqrt(p).
    """

    num_probes: int = 100
    seed: int = 0

    def __post_init__(self):
        check_count(self, "num_probes", 2, " (the standard error needs two probes)")
        check_seed(self)

    def estimate(self, matmat, n, dtype, device, xp, hermitian):
        return hutchinson(matmat, n, dtype, device, xp, self.num_probes, self.seed, hermitian)


@dataclass(frozen=True)
class HutchPlusPlus(StochasticTrace):
    """Hutch++: a low-rank sketch taken exactly plus Hutchinson on the deflated remainder.

    The budget of ``num_matvecs`` products is split into ``k = num_matvecs // 3`` sketch
    probes (``Q = orth(A S)``, k products), k products for ``A Q`` and ``g = num_matvecs - 2k``
    Rademacher probes on ``(I - Q Q^H) A (I - Q Q^H)``; k is capped at n. Needs
    ``num_matvecs >= 4`` (k >= 1, g >= 2). Cost: ``num_matvecs`` products in two block
    calls, plus O(n k (k + g)) for the QR and the projections.

    Standard error: ``tr(Q^H A Q)`` has no error of its own, and given any sketch the
    estimate is unbiased (``tr(P A P) + tr((I-P) A (I-P)) = tr A`` for the projector P), so
    the whole error is the Hutchinson part's, whose sample standard deviation over sqrt(g) is
    reported (``EstimateInfo.num_probes`` is g). It is honest for the total error, but is
    itself estimated from g probes, so it is rough when g is small. Exact (to rounding) when
    ``rank A <= k`` (and, with the same argument, its gradient for Hermitian A when the change
    stays in A's range).
    """

    num_matvecs: int = 30
    seed: int = 0

    def __post_init__(self):
        check_count(self, "num_matvecs", 4, " (Hutch++ needs one sketch probe and two Hutchinson probes)")
        check_seed(self)

    def split(self, n: int) -> tuple[int, int]:
        """(k sketch probes, g Hutchinson probes) for an n x n operator."""
        k = min(self.num_matvecs // 3, n)
        return k, self.num_matvecs - 2 * k

    def estimate(self, matmat, n, dtype, device, xp, hermitian):
        k, g = self.split(n)
        R = rademacher(xp, xp.make_key(self.seed), (n, k + g), dtype, device)
        return hutch_pp(matmat, R[:, :k], R[:, k:], xp, hermitian)


@dataclass(frozen=True)
class DiagonalEstimator(StochasticDiag):
    """The Bekas-Kokiopoulou-Saad diagonal estimator with ``num_probes`` Rademacher probes.

    ``diag A ≈ mean_j z_j ⊙ A z_j`` (one block product of p probes); unbiased; per-entry
    standard errors from the probes (``EstimateInfo.stderr`` has the diagonal's shape).
    Accurate where A is diagonally dominant: entry i's variance per probe is
    ``Σ_{k≠i} |a_ik|^2``.
    """

    num_probes: int = 100
    seed: int = 0

    def __post_init__(self):
        check_count(self, "num_probes", 2, " (the standard errors need two probes)")
        check_seed(self)

    def estimate(self, matmat, adjoint_matmat, shape, dtype, device, xp):
        Z = rademacher(xp, xp.make_key(self.seed), (shape[1], self.num_probes), dtype, device)
        return diag_bks(matmat, Z, min(shape), xp)


@dataclass(frozen=True)
class DiagPlusPlus(StochasticDiag):
    """Diag++: ``diag(Q Q^H A)`` exactly from a sketch, plus BKS on ``(I - Q Q^H) A``.

    The budget of ``num_matvecs`` products is split into ``k = num_matvecs // 3`` sketch
    probes (``Q = orth(A S)``), k products with ``A^H`` (``Q^H A`` for the exact part; for an
    operator annotated SelfAdjoint these are ordinary products, otherwise they go through
    its adjoint) and ``g = num_matvecs - 2k`` Rademacher probes; k is capped at min(m, n).
    Needs ``num_matvecs >= 4``. Given the sketch the estimate is unbiased and its error is
    the BKS part's, whose per-entry sample standard error (g probes) is reported. Exact (to
    rounding) when ``rank A <= k``.
    """

    num_matvecs: int = 30
    seed: int = 0

    def __post_init__(self):
        check_count(self, "num_matvecs", 4, " (Diag++ needs one sketch probe and two BKS probes)")
        check_seed(self)

    def estimate(self, matmat, adjoint_matmat, shape, dtype, device, xp):
        k = min(self.num_matvecs // 3, *shape)
        g = self.num_matvecs - 2 * k
        R = rademacher(xp, xp.make_key(self.seed), (shape[1], k + g), dtype, device)
        return diag_pp(matmat, adjoint_matmat, R[:, :k], R[:, k:], xp)


# ------------------------------------------------------------------ kernels
def summary(xp, method: str, samples, p: int) -> EstimateInfo:
    """Mean and standard error of the per-probe ``samples`` (p,) or (p, n), over axis 0.

    The standard error is real: ``sqrt(Σ |s_j - mean|^2 / (p (p - 1)))``; 0 for p = 1 (used
    only where that one sample is exact).
    """
    mean = xp.sum(samples, axis=0) / p
    dev = samples - mean
    ss = xp.sum(xp.real(xp.conj(dev) * dev), axis=0)
    stderr = xp.sqrt(ss / (p * (p - 1))) if p > 1 else 0 * ss
    return EstimateInfo(method, mean, stderr, p, samples)


def hutchinson(matmat: Callable, n: int, dtype, device, xp, num_probes: int, seed: int,
               hermitian: bool = True) -> EstimateInfo:
    """Hutchinson's estimate of ``tr A`` (real part only if ``hermitian``, the old default)."""
    Z = rademacher(xp, xp.make_key(seed), (n, num_probes), dtype, device)
    samples = xp.sum(xp.conj(Z) * matmat(Z), axis=0)
    return summary(xp, "Hutchinson", xp.real(samples) if hermitian else samples, num_probes)


def hutch_pp(matmat: Callable, S, G, xp, hermitian: bool) -> EstimateInfo:
    """Hutch++ with sketch probes ``S`` (n, k) and Hutchinson probes ``G`` (n, g).

    ``samples_j = tr(Q^H A Q) + w_j^H A w_j`` with ``w_j = (I - Q Q^H) g_j``; two block
    products (``A S``, then ``A [Q, W]``).
    """
    k = S.shape[1]
    Q, _ = xp.qr(matmat(S))
    W = G - Q @ (xp.conj(Q).T @ G)
    AX = matmat(xp.concat([Q, W], 1))
    exact = xp.sum(xp.sum(xp.conj(Q) * AX[:, :k], axis=0))
    samples = exact + xp.sum(xp.conj(W) * AX[:, k:], axis=0)
    return summary(xp, "Hutch++", xp.real(samples) if hermitian else samples, G.shape[1])


def diag_bks(matmat: Callable, Z, d: int, xp) -> EstimateInfo:
    """BKS estimate of the first ``d`` diagonal entries from real probes ``Z`` (n, p)."""
    samples = (Z[:d] * matmat(Z)[:d]).T  # (p, d): z_j ⊙ A z_j (z real: no conjugate needed)
    return summary(xp, "DiagonalEstimator", samples, Z.shape[1])


def diag_pp(matmat: Callable, adjoint_matmat: Callable, S, G, xp) -> EstimateInfo:
    """Diag++ with sketch probes ``S`` (n, k) and real BKS probes ``G`` (n, g).

    ``diag(Q Q^H A)_i = Σ_r Q_ir conj((A^H Q)_ir)``; the BKS part uses ``(I - Q Q^H) A G``,
    so the products are ``A [S, G]`` (one block) and ``A^H Q``.
    """
    k = S.shape[1]
    AX = matmat(xp.concat([S, G], 1))
    Q, _ = xp.qr(AX[:, :k])
    B = adjoint_matmat(Q)
    d = min(Q.shape[0], S.shape[0])
    exact = xp.sum(Q[:d] * xp.conj(B[:d]), axis=1)
    AG = AX[:, k:]
    rest = AG - Q @ (xp.conj(Q).T @ AG)
    samples = exact + (G[:d] * rest[:d]).T  # (g, d)
    return summary(xp, "Diag++", samples, G.shape[1])


def slq(matmat: Callable, n: int, dtype, device, xp, f: Callable, num_probes: int, steps: int, seed: int) -> EstimateInfo:
    """``tr f(A)`` by stochastic Lanczos quadrature (A Hermitian; f applied to Ritz values)."""
    Z = rademacher(xp, xp.make_key(seed), (n, num_probes), dtype, device)
    alpha, beta, _ = lanczos(matmat, Z, xp, min(steps, n))
    samples = n * slq_quadrature(xp, alpha, beta, f)  # ||z||^2 = n for Rademacher probes
    return summary(xp, "SLQ", samples, num_probes)
