"""The multi-level low-rank weight structure ``MLR(levels, ranks)`` (Kuang et al., ICML 2025).

A square ``d x d`` weight, padded to ``N = 2^L ceil(d / 2^L)`` with ``L = levels - 1``::

    W = Σ_{l=0}^{L} BlockDiag_{k < 2^l}(U_{l,k} V_{l,k}^H)        (cut to d x d; V^T for real weights)

level ``l`` cuts the padded size into ``2^l`` diagonal blocks of ``m_l = N / 2^l`` rows and holds
one rank-``r_l`` block per position (:class:`linops.MLR`). Cores ``U{l}`` and ``V{l}``, both
(2^l, m_l, r_l): ``V{l}`` contracts ``m_l`` inputs into ``r_l`` values per block (fan-in ``m_l``,
fan-out ``r_l``), ``U{l}`` maps them back (fan-in ``r_l``, fan-out ``m_l``), as a low-rank layer's
``V`` and ``U`` do. Parameters ``2 N Σ_l r_l``; flops per input vector ``N (4 Σ_l r_l + L)``
(two multiply-adds per core entry, ``L`` additions per row to sum the levels).

Ranks: ``ranks=(r_0, ..., r_L)`` explicitly, or a total ``total_rank`` split evenly over the
levels (coarse levels take the remainder). With neither, the total is ``round(sqrt(d))`` for a
layer weight (a parameter count ``~ 2 d^1.5``, as Monarch's default) and the head dimension when
the structure describes attention scores (:class:`linops.nn.attention.MultiheadAttention`).

Padding: when ``d`` is not a multiple of ``2^L`` the last ``N - d`` rows of every core meet only
padded zeros (input) or cut rows (output); they are counted in ``num_params`` but never used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

from ..errors import ShapeError
from .structures import Core, Structure, _check_sizes, _rel_err

__all__ = ["MLR"]


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@dataclass(frozen=True)
class MLR(Structure):
    """The multi-level low-rank weight (module docstring).

    * ``levels``: number of levels ``L + 1`` (level ``l`` has ``2^l`` blocks); default 2.
    * ``ranks``: per-level ranks ``(r_0, ..., r_L)``; or ``total_rank`` split evenly.
    * ``sweeps``: block-coordinate sweeps of :meth:`project` after its greedy pass.
    """

    levels: int = 2
    ranks: tuple | None = None
    total_rank: int | None = None
    sweeps: int = 4
    name: ClassVar[str] = "mlr"

    def __post_init__(self):
        if not _positive_int(self.levels):
            raise ValueError(f"MLR: levels must be a positive integer (level l has 2^l blocks), got {self.levels!r}")
        if self.ranks is not None:
            ranks = tuple(self.ranks) if isinstance(self.ranks, (list, tuple)) else None
            if ranks is None or not all(_positive_int(r) for r in ranks):
                raise ValueError(f"MLR: ranks must be a sequence of positive integers, one per level, got {self.ranks!r}")
            if len(ranks) != self.levels:
                raise ValueError(f"MLR: {len(ranks)} ranks given for {self.levels} levels; give one rank per level "
                                 f"or leave levels to match (MLR(levels={len(ranks)}, ranks={list(ranks)}))")
            if self.total_rank is not None and sum(ranks) != self.total_rank:
                raise ValueError(f"MLR: ranks {list(ranks)} sum to {sum(ranks)}, not total_rank = {self.total_rank}; "
                                 "give only one of them")
            object.__setattr__(self, "ranks", ranks)
        if self.total_rank is not None and not (_positive_int(self.total_rank) and self.total_rank >= self.levels):
            raise ValueError(f"MLR: total_rank must be an integer >= levels = {self.levels} (every level needs rank >= 1), "
                             f"got {self.total_rank!r}")
        if not (isinstance(self.sweeps, int) and not isinstance(self.sweeps, bool) and self.sweeps >= 0):
            raise ValueError(f"MLR: sweeps must be a non-negative integer, got {self.sweeps!r}")

    # ------------------------------------------------------------------ sizes
    def with_total_rank(self, total: int) -> MLR:
        """This structure with ``total_rank = total`` unless its ranks are already set."""
        if self.ranks is not None or self.total_rank is not None:
            return self
        return replace(self, total_rank=max(int(total), self.levels))

    def level_ranks(self, d: int) -> tuple[int, ...]:
        """``(r_0, ..., r_L)`` for a ``d x d`` weight."""
        if self.ranks is not None:
            return self.ranks
        total = self.total_rank if self.total_rank is not None else max(self.levels, round(math.sqrt(d)))
        base, extra = divmod(total, self.levels)
        return tuple(base + (1 if l < extra else 0) for l in range(self.levels))

    def grid(self, d_in: int, d_out: int) -> tuple[int, tuple[int, ...]]:
        """``(N, ranks)``: the padded size and the per-level ranks, checked against the block sizes."""
        _check_sizes("MLR", d_in, d_out)
        if d_in != d_out:
            raise ShapeError(f"MLR: the multi-level low-rank structure is square, got d_in = {d_in}, d_out = {d_out}; "
                             "use it for square weights (attention q/k/v/o projections) or pick another structure")
        L = self.levels - 1
        N = 2**L * -(-d_in // 2**L)
        ranks = self.level_ranks(d_in)
        for l, r in enumerate(ranks):
            if r > N // 2**l:
                raise ValueError(f"MLR: level {l} has rank {r} but its blocks are only {N // 2**l} x {N // 2**l} "
                                 f"(d = {d_in}, {self.levels} levels); lower the rank or the number of levels")
        return N, ranks

    def cores(self, d_in, d_out):
        N, ranks = self.grid(d_in, d_out)
        out = []
        for l, r in enumerate(ranks):
            nb, m = 2**l, N // 2**l
            out += [Core(f"U{l}", (nb, m, r), r, m), Core(f"V{l}", (nb, m, r), m, r)]
        return tuple(out)

    def flops(self, d_in, d_out):
        N, ranks = self.grid(d_in, d_out)
        return N * (4 * sum(ranks) + self.levels - 1)

    def label(self) -> str:
        if self.ranks is not None:
            return f"MLR(levels={self.levels}, ranks={list(self.ranks)})"
        total = self.total_rank if self.total_rank is not None else "round(sqrt(d))"
        return f"MLR(levels={self.levels}, total_rank={total})"

    # ------------------------------------------------------------------ operator, projection
    def operator(self, params, d_in, d_out):
        from ..operators import MLR as MLROp

        self.grid(d_in, d_out)
        return MLROp([(params[f"U{l}"], params[f"V{l}"]) for l in range(self.levels)], d_in)

    def project(self, W):
        """Nearest MLR matrix to ``W`` (d, d) in the Frobenius norm, approximately; ``(params, rel_err)``.

        No closed form is known to us. A greedy pass fits level 0, 1, ..., L in turn, each to the
        residual of the levels before it, by a truncated SVD of every diagonal block; then each of
        ``sweeps`` passes refits every level to ``W`` minus all the other levels. Each fit is the
        exact minimiser over that level (its blocks are disjoint, so Eckart–Young applies block by
        block), so the (padded) error never increases from pass to pass; it is a local method and
        is not guaranteed to reach the optimum. Cost ``(4/3) N^3`` per pass (the SVDs).
        """
        from ..backends import backend_of

        xp = backend_of(W)
        d_out, d_in = (int(v) for v in W.shape)
        N, ranks = self.grid(d_in, d_out)
        dev = xp.device_of(W)
        Wp = W
        if N > d_in:  # zero-pad to N x N
            Wp = xp.concat([Wp, xp.zeros((d_out, N - d_in), W.dtype, dev)], 1)
            Wp = xp.concat([Wp, xp.zeros((N - d_out, N), W.dtype, dev)], 0)

        def diag_blocks(M, nb):  # (N, N) -> its (nb, m, m) diagonal blocks
            m = N // nb
            return xp.einsum("kiKj,kK->kij", M.reshape(nb, m, nb, m), xp.eye(nb, M.dtype, dev))

        def block_diag(B):  # (nb, m, m) -> (N, N)
            nb = int(B.shape[0])
            return xp.einsum("kij,kl->kilj", B, xp.eye(nb, B.dtype, dev)).reshape(N, N)

        def fit(l, R):
            U, s, Vh = xp.svd(diag_blocks(R, 2**l))
            r = ranks[l]
            root = xp.astype(xp.sqrt(s[:, :r]), W.dtype)[:, None, :]
            Ul = U[:, :, :r] * root
            Vl = xp.moveaxis(xp.conj(Vh[:, :r, :]), 1, 2) * root
            return Ul, Vl, block_diag(xp.einsum("kir,kjr->kij", Ul, xp.conj(Vl)))

        fits = []
        R = Wp
        for l in range(self.levels):  # greedy, coarse to fine
            fits.append(fit(l, R))
            R = R - fits[l][2]
        for _ in range(self.sweeps):  # block-coordinate refinement; R stays W - Σ levels
            for l in range(self.levels):
                new = fit(l, R + fits[l][2])
                R = R + fits[l][2] - new[2]
                fits[l] = new
        params = {}
        for l, (Ul, Vl, _) in enumerate(fits):
            params[f"U{l}"], params[f"V{l}"] = Ul, Vl
        approx = Wp - R
        return params, _rel_err(xp, W, approx[:d_out, :d_in])
