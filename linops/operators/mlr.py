"""Multi-level low-rank matrices (Kuang et al., ICML 2025) and their banded variant.

``MLR``: levels ``l = 0..L``; level ``l`` cuts the (padded) size ``N = 2^L m`` into ``2^l``
blocks of ``m_l = N / 2^l`` and holds one low-rank block per diagonal position::

    W = Σ_{l=0}^{L} BlockDiag(U_{l,0} V_{l,0}^H, ..., U_{l,2^l-1} V_{l,2^l-1}^H)

with ``U_l, V_l`` arrays (2^l, m_l, r_l). Entry formula: for ``i, j`` in the same level-``l`` block
``k = i // m_l = j // m_l``, level ``l`` adds ``Σ_t U_l[k, i % m_l, t] conj(V_l[k, j % m_l, t])``.
``n <= N`` with ``N = 2^L ceil(n / 2^L)`` (the input is zero-padded, the output cut).

``BandedMLR`` (distance-dependent levels): level ``l`` is a block-banded matrix of the same
``2^l x 2^l`` block grid, coupling output block ``k`` to input blocks ``k + o`` for offsets
``|o| <= w`` (``w`` = bandwidth; ``w = 1`` is block tridiagonal), each coupling a rank-``r_l``
block ``U_l[o + w, k] V_l[o + w, k]^H`` (arrays (2w+1, 2^l, m_l, r_l)). Couplings that leave the
grid (``k + o`` outside ``0..2^l-1``) are absent: their stored entries are never used and not
counted in ``num_params``. ``w = 0`` is ``MLR``.

Products go level by level, one batched pair of contractions per level: ``O(N Σ_l r_l)`` per
column for MLR, ``O((2w+1) N Σ_l r_l)`` for the banded variant.
"""

from __future__ import annotations

import math

import numpy as np

from ..backends import backend_named
from ..errors import ShapeError
from .base import LinearOperator, combine
from .dense import Dense

__all__ = ["MLR", "BandedMLR"]


def _levels(cls_name, levels, lead: int):
    """Validate ``levels`` (sequence of (U, V) or U) -> (Us, Vs, symmetric, N)."""
    if isinstance(levels, (list, tuple)) and len(levels) == 0 or not isinstance(levels, (list, tuple)):
        raise ValueError(f"{cls_name} needs a non-empty list of levels, each (U_l, V_l) or U_l; got {levels!r}")
    Us, Vs, sym = [], [], True
    N = None
    for l, lev in enumerate(levels):
        U, V = (lev if isinstance(lev, (list, tuple)) else (lev, lev))
        sym = sym and U is V
        want = 3 + lead
        for name, t in (("U", U), ("V", V)):
            if getattr(t, "ndim", None) != want:
                shape = "(2^l, m_l, r_l)" if lead == 0 else "(2w+1, 2^l, m_l, r_l)"
                raise ShapeError(f"{cls_name}: level {l}'s {name} must be a {want}-D array {shape}, got shape "
                                 f"{tuple(getattr(t, 'shape', ()))}")
        if tuple(U.shape) != tuple(V.shape):
            raise ShapeError(f"{cls_name}: level {l} has U of shape {tuple(U.shape)} but V of shape {tuple(V.shape)}")
        nb, m, r = (int(v) for v in U.shape[lead:])
        if nb != 2**l:
            raise ShapeError(f"{cls_name}: level {l} must have 2^{l} = {2**l} blocks, got {nb} (shape {tuple(U.shape)})")
        if N is None:
            N = nb * m
        if nb * m != N:
            raise ShapeError(f"{cls_name}: level {l} covers {nb} x {m} = {nb * m} rows, level 0 covers {N}")
        if r < 1:
            raise ShapeError(f"{cls_name}: level {l} has rank {r}; every level needs rank >= 1 (drop empty levels)")
        Us.append(U)
        Vs.append(V)
    return Us, Vs, sym, N


def _random_levels(n, ranks, lead_len, seed, dtype, backend, device, scale):
    xp = backend_named(backend)
    dt = xp.as_dtype(dtype)
    rng = np.random.default_rng(seed)
    L = len(ranks) - 1
    m_L = -(-n // 2**L)
    N = 2**L * m_L
    out = []
    for l, r in enumerate(ranks):
        shape = ((lead_len,) if lead_len else ()) + (2**l, N // 2**l, int(r))
        pair = []
        for _ in range(2):
            z = rng.standard_normal(shape)
            if xp.is_complex(dt):
                z = (z + 1j * rng.standard_normal(shape)) / math.sqrt(2)
            pair.append(xp.asarray(z * scale(l, r, N), dtype=dt, device=device))
        out.append(tuple(pair))
    return out


class _MLRBase(LinearOperator):
    _leaves = ("U", "V")
    _lead = 0

    def __init__(self, levels, n: int | None = None, annotations=()):
        name = type(self).__name__
        Us, Vs, sym, N = _levels(name, levels, self._lead)
        n = N if n is None else int(n)
        step = 2 ** (len(Us) - 1)  # N is the smallest multiple of 2^L that holds n
        if not N - step < n <= N:
            raise ShapeError(f"{name}: n = {n} must lie in ({N - step}, {N}] for {len(Us)} levels of {N} rows "
                             f"(N is n rounded up to a multiple of 2^L = {step})")
        flat = [Dense(t.reshape(-1, t.shape[-1])) for t in Us + Vs]
        _, xp, dtype, device = combine(flat, f"{name} factors")
        self.U = tuple(xp.astype(t, dtype) for t in Us)
        self.V = self.U if sym else tuple(xp.astype(t, dtype) for t in Vs)
        self.n = n
        tags = set(annotations) | ({"PSD", "SelfAdjoint"} if sym and self._lead == 0 else set())
        super().__init__((n, n), dtype, xp, device, tags)

    @property
    def levels(self) -> int:
        """Number of levels ``L + 1``."""
        return len(self.U)

    @property
    def padded_size(self) -> int:
        return int(self.U[0].shape[-2])

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(int(u.shape[-1]) for u in self.U)

    def _pad_rows(self, X):
        N = self.padded_size
        if self.n == N:
            return X
        xp = self.xp
        return xp.concat([X, xp.zeros((N - self.n, X.shape[1]), X.dtype, xp.device_of(X))], 0)

    def _pad_cols(self, X):
        N = self.padded_size
        if self.n == N:
            return X
        xp = self.xp
        return xp.concat([X, xp.zeros((X.shape[0], N - self.n), X.dtype, xp.device_of(X))], 1)

    def to_dense(self):
        return self._matmat(self.xp.eye(self.n, self.dtype, self.device))


class MLR(_MLRBase):
    """``Σ_l BlockDiag_l(U_{l,k} V_{l,k}^H)`` (module docstring), ``n x n``.

    ``levels``: a list, level ``l`` first at index ``l``, of pairs ``(U_l, V_l)`` of arrays
    (2^l, m_l, r_l), or of single arrays ``U_l`` meaning ``U_l U_l^H`` (all single: annotated PSD).
    Parameters ``2 N Σ r_l``; a product with ``c`` columns costs ``4 c N Σ r_l`` flops (two
    multiply-adds per level entry) plus ``c N L`` additions to sum the levels.
    """

    @classmethod
    def random(cls, n: int, ranks, *, seed: int = 0, dtype="float64", backend: str = "numpy", device=None) -> MLR:
        """Gaussian factors with ``U, V ~ N(0, 1/sqrt(m_l r_l (L + 1)))`` entrywise, so each level's
        block ``U V^H`` has entries of variance ``1/(m_l (L+1))`` and ``W`` has about unit-norm columns."""
        L1 = len(ranks)
        levels = _random_levels(n, ranks, 0, seed, dtype, backend, device,
                                lambda l, r, N: (N / 2**l * r * L1) ** -0.25)
        return cls(levels, n)

    @property
    def num_params(self) -> int:
        return 2 * self.padded_size * sum(self.ranks)

    def flops(self, columns: int = 1) -> int:
        return columns * self.padded_size * (4 * sum(self.ranks) + self.levels - 1)

    def _matmat(self, X):
        xp = self.xp
        X = self._pad_rows(X)
        N, c = X.shape
        Y = None
        for U, V in zip(self.U, self.V, strict=True):
            nb, m, _ = U.shape
            Xl = X.reshape(nb, m, c)
            T = xp.einsum("bmr,bmc->brc", xp.conj(V), Xl)
            Yl = xp.einsum("bmr,brc->bmc", U, T).reshape(N, c)
            Y = Yl if Y is None else Y + Yl
        return Y[: self.n]

    def _rmatmat(self, X):  # X @ W for X (c, n)
        xp = self.xp
        X = self._pad_cols(X)
        c, N = X.shape
        Y = None
        for U, V in zip(self.U, self.V, strict=True):
            nb, m, _ = U.shape
            T = xp.einsum("cbm,bmr->cbr", X.reshape(c, nb, m), U)
            Yl = xp.einsum("cbr,bmr->cbm", T, xp.conj(V)).reshape(c, N)
            Y = Yl if Y is None else Y + Yl
        return Y[:, : self.n]

    def _rebuilt(self, Us, Vs, same: bool):
        return MLR([u if same else (u, v) for u, v in zip(Us, Vs, strict=True)], self.n)

    def _transpose(self):
        conj = self.xp.conj
        Us = [conj(v) for v in self.V]
        return self._rebuilt(Us, Us if self.U is self.V else [conj(u) for u in self.U], self.U is self.V)

    def _adjoint(self):
        return self if self.U is self.V else self._rebuilt(self.V, self.U, False)

    def _scale(self, c):
        return self._rebuilt([c * u for u in self.U], self.V, False)

    def _add_same(self, other):
        """Same block structure: the levels' factors are concatenated along the rank axis."""
        if other.n != self.n or other.levels != self.levels or other.padded_size != self.padded_size:
            return None
        (a, b), xp, *_ = combine((self, other), "terms of a sum")
        if a.U is a.V and b.U is b.V:  # U U^H + U' U'^H = [U U'] [U U']^H stays PSD
            return MLR([xp.concat([ua, ub], 2) for ua, ub in zip(a.U, b.U, strict=True)], self.n)
        return MLR([(xp.concat([ua, ub], 2), xp.concat([va, vb], 2))
                    for ua, va, ub, vb in zip(a.U, a.V, b.U, b.V, strict=True)], self.n)

    def as_lowrank(self):
        """The same matrix as one :class:`~linops.LowRank` ``U V^H`` of rank ``Σ_l 2^l r_l``, with
        block-sparse dense factors (n x Σ 2^l r_l, memory n Σ 2^l r_l): ``lo.solve(D + M.as_lowrank(), b)``
        then goes through Woodbury's identity."""
        from .lowrank import LowRank

        xp = self.xp
        N = self.padded_size

        def spread(F):  # (nb, m, r) -> (N, nb r), block k in columns k r .. (k+1) r
            nb, m, r = F.shape
            eye = xp.eye(nb, self.dtype, self.device)
            return xp.einsum("bmr,bk->bmkr", F, eye).reshape(N, nb * r)

        U = xp.concat([spread(u) for u in self.U], 1)[: self.n]
        V = U if self.U is self.V else xp.concat([spread(v) for v in self.V], 1)[: self.n]
        return LowRank(U) if self.U is self.V else LowRank(U, V)

    def __repr__(self) -> str:
        return (f"{self._label()[:-1]}; {self.levels} levels, ranks {list(self.ranks)}, padded size {self.padded_size}, "
                f"{self.num_params} parameters)")


class BandedMLR(_MLRBase):
    """Distance-dependent multi-level low rank (module docstring): at level ``l`` the blocks within
    ``bandwidth`` of the diagonal of the ``2^l x 2^l`` block grid, each of rank ``r_l``.

    ``levels``: pairs ``(U_l, V_l)`` of arrays (2w+1, 2^l, m_l, r_l); index ``[o + w, k]`` is the
    coupling of output block ``k`` to input block ``k + o``. Parameters ``2 Σ_l m_l r_l n_l`` with
    ``n_l`` the number of couplings inside the grid; a product with ``c`` columns costs
    ``4 c (2w+1) N Σ r_l`` flops (absent couplings multiply zeros) plus the level sums.
    """

    _lead = 1

    def __init__(self, levels, n: int | None = None, annotations=()):
        if isinstance(levels, (list, tuple)):
            widths = {int(getattr(lev[0] if isinstance(lev, (list, tuple)) else lev, "shape", (0,))[0]) for lev in levels}
            if len(widths) != 1 or next(iter(widths)) % 2 == 0:
                raise ShapeError(f"BandedMLR: every level needs the same odd leading size 2w+1 (w = bandwidth), "
                                 f"got {sorted(widths)}")
        super().__init__(levels, n, annotations)

    @property
    def bandwidth(self) -> int:
        return int(self.U[0].shape[0]) // 2

    @property
    def padded_size(self) -> int:
        return int(self.U[0].shape[1] * self.U[0].shape[2])

    @classmethod
    def random(cls, n: int, ranks, bandwidth: int = 1, *, seed: int = 0, dtype="float64", backend: str = "numpy",
               device=None) -> BandedMLR:
        """Gaussian factors as :meth:`MLR.random`, further divided by ``(2w+1)^(1/4)``."""
        if not (isinstance(bandwidth, int) and bandwidth >= 0):
            raise ValueError(f"BandedMLR.random: bandwidth must be a non-negative integer, got {bandwidth!r}")
        L1, O = len(ranks), 2 * bandwidth + 1
        levels = _random_levels(n, ranks, O, seed, dtype, backend, device,
                                lambda l, r, N: (N / 2**l * r * L1 * O) ** -0.25)
        return cls(levels, n)

    def couplings(self, level: int) -> int:
        """Number of blocks of ``level`` inside the grid: ``Σ_{|o| <= w} (2^l - |o|)^+``."""
        nb, w = 2**level, self.bandwidth
        return sum(max(nb - abs(o), 0) for o in range(-w, w + 1))

    @property
    def num_params(self) -> int:
        N = self.padded_size
        return sum(2 * (N // 2**l) * r * self.couplings(l) for l, r in enumerate(self.ranks))

    def flops(self, columns: int = 1) -> int:
        return columns * self.padded_size * (4 * (2 * self.bandwidth + 1) * sum(self.ranks) + self.levels - 1)

    def _shift(self, Xb, s: int):
        """Block ``k`` of the result is block ``k + s`` of ``Xb`` (block axis first; zeros outside the grid)."""
        if s == 0:
            return Xb
        xp = self.xp
        nb = Xb.shape[0]
        z = xp.zeros((min(abs(s), nb), *Xb.shape[1:]), Xb.dtype, xp.device_of(Xb))
        if s > 0:
            return xp.concat([Xb[s:], z], 0) if s < nb else z[:nb]
        return xp.concat([z, Xb[: nb + s]], 0) if -s < nb else z[:nb]

    def _matmat(self, X):
        xp, w = self.xp, self.bandwidth
        X = self._pad_rows(X)
        N, c = X.shape
        Y = None
        for U, V in zip(self.U, self.V, strict=True):
            _, nb, m, _ = U.shape
            Xb = X.reshape(nb, m, c)
            Xs = xp.stack([self._shift(Xb, o) for o in range(-w, w + 1)], 0)  # [o + w, k] = input block k + o
            T = xp.einsum("obmr,obmc->obrc", xp.conj(V), Xs)
            Yl = xp.einsum("obmr,obrc->bmc", U, T).reshape(N, c)
            Y = Yl if Y is None else Y + Yl
        return Y[: self.n]

    def _rmatmat(self, X):  # X @ W for X (c, n)
        xp, w = self.xp, self.bandwidth
        X = self._pad_cols(X)
        c, N = X.shape
        Y = None
        for U, V in zip(self.U, self.V, strict=True):
            _, nb, m, _ = U.shape
            T = xp.einsum("cbm,obmr->obcr", X.reshape(c, nb, m), U)
            Z = xp.einsum("obcr,obmr->obcm", T, xp.conj(V))  # Z[o + w, k]: output block k's row to input block k + o
            parts = [self._shift(Z[o + w], -o) for o in range(-w, w + 1)]  # input block j collects Z[o + w, j - o]
            Yl = parts[0]
            for p_ in parts[1:]:
                Yl = Yl + p_
            Yl = xp.moveaxis(Yl, 1, 0).reshape(c, N)
            Y = Yl if Y is None else Y + Yl
        return Y[:, : self.n]

    def __repr__(self) -> str:
        return (f"{self._label()[:-1]}; {self.levels} levels, bandwidth {self.bandwidth}, ranks {list(self.ranks)}, "
                f"padded size {self.padded_size}, {self.num_params} parameters)")
