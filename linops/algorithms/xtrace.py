"""XTrace (Epperly, Tropp & Webber 2024): the exchangeable trace estimator.

With ``s`` test vectors ``Ω = [ω_1 .. ω_s]`` and, for each i, the projector ``P_i`` onto the
range of ``A Ω_{-i}`` (all test vectors but the i-th), each leave-one-out estimate is

    t_i = tr(P_i A P_i) + c_i u_i^H A u_i,   u_i = (I - P_i) ω_i,   c_i = (n - s + 1) / ||u_i||^2,

the exact trace of a rank-(s-1) sketch plus a one-probe Hutchinson estimate of the rest. The
rescaling ``c_i`` makes ``sqrt(c_i) u_i`` uniform on the sphere of radius sqrt(n - s + 1) of the
remainder's range (the paper's "improved" variant), so ``E[t_i | Ω_{-i}] = tr A``. XTrace is
the mean of the ``t_i``; its error estimate is the paper's, ``std(t_i) / sqrt(s)``.

All s leave-one-out projectors come from one QR ``A Ω = Q R``: ``range(A Ω_{-i})`` is
``range(Q)`` minus the direction ``Q x_i`` with ``x_i = R^{-H} e_i / ||R^{-H} e_i||``, so
``P_i = Q (I - x_i x_i^H) Q^H``, and ``A u_i`` follows from the products already made
(``A Ω`` and ``A Q``): 2s products in all, in two block calls, plus O(n s^2) work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import colnorm
from .estimators import StochasticTrace, check_count, check_seed, summary
from .info import EstimateInfo

__all__ = ["XTrace", "xtrace"]


@dataclass(frozen=True)
class XTrace(StochasticTrace):
    """XTrace: every probe serves both as a sketch and as a Hutchinson probe (leave-one-out).

    ``num_matvecs`` products: ``s = num_matvecs // 2`` Gaussian test vectors (complex for a
    complex operator; an odd budget leaves one product unused), s capped at n. Needs
    ``num_matvecs >= 4`` (s >= 2). The estimate is invariant to the test vectors' lengths,
    so Gaussian and sphere ("normalised Gaussian") test vectors give the same result.

    Exact (to rounding) when ``rank A <= s - 1``. The reported standard error is the
    paper's estimate ``std(t_i) / sqrt(s)`` over the s leave-one-out estimates; they are
    exchangeable but not independent, so it is a heuristic (calibrated in the paper's tests
    and in ours to within a factor of about 1.5), not a proven bound.
    """

    num_matvecs: int = 30
    seed: int = 0

    def __post_init__(self):
        check_count(self, "num_matvecs", 4, " (XTrace needs two test vectors, two products each)")
        check_seed(self)

    def estimate(self, matmat, n, dtype, device, xp, hermitian):
        s = min(self.num_matvecs // 2, n)
        Om = xp.normal(xp.make_key(self.seed), (n, s), dtype, device)
        return xtrace(matmat, Om, xp, hermitian)


def xtrace(matmat: Callable, Om, xp, hermitian: bool) -> EstimateInfo:
    """XTrace with test vectors ``Om`` (n, s); ``samples`` are the s leave-one-out estimates."""
    n, s = Om.shape
    Y = matmat(Om)
    Q, R = xp.qr(Y)
    rdt = xp.real_dtype(R.dtype)
    dev = xp.device_of(R)
    # A rank-deficient A Ω (rank A < s) gives R a diagonal entry at rounding level, and an
    # exactly zero one for an exactly zero column: raise |r_ii| to eps ||R||_F, a relative
    # floor that changes nothing when A Ω has full numerical rank
    d = xp.diagonal(R)
    floor = xp.eps(rdt) * xp.sqrt(xp.sum(xp.sum(xp.real(xp.conj(R) * R))))
    floor = xp.where(floor > 0, floor, 1 + 0 * floor)
    d_safe = xp.where(xp.abs(d) > floor, d, xp.astype(floor + 0 * xp.abs(d), R.dtype))
    R = R + xp.diag(d_safe - d)
    X = xp.solve_triangular(R, xp.eye(s, R.dtype, dev), lower=False, adjoint=True)  # R^{-H}
    X = X / colnorm(xp, X)
    AQ = matmat(Q)
    H = xp.conj(Q).T @ AQ  # Q^H A Q (s, s)
    W = xp.conj(Q).T @ Om  # Q^H Ω
    c = xp.sum(xp.conj(X) * W, axis=0)  # x_i^H w_i
    Xc = X * c
    first = xp.sum(xp.diagonal(H)) - xp.sum(xp.conj(X) * (H @ X), axis=0)  # tr(Q^H A Q) - x_i^H H x_i
    U = Om - Q @ (W - Xc)  # (I - P_i) ω_i
    V = Y - AQ @ (W - Xc)  # A (I - P_i) ω_i
    second = (n - s + 1) * xp.sum(xp.conj(U) * V, axis=0) / xp.sum(xp.real(xp.conj(U) * U), axis=0)
    samples = first + second
    return summary(xp, "XTrace", xp.real(samples) if hermitian else samples, s)
