"""Tensor-Train matrices (TT-matrix / MPO, Oseledets 2011) with ``d`` cores, and the TT-SVD projection.

Layout: core ``G_k`` is an array ``(r_{k-1}, m_k, n_k, r_k)`` with ``r_0 = r_d = 1``. The input,
zero-padded from ``d_in`` to ``N = n_1 ... n_d``, is read as an ``(n_1, ..., n_d)`` grid and the
output as an ``(m_1, ..., m_d)`` grid (both row-major: the last index varies fastest); the first
``d_out <= M = m_1 ... m_d`` outputs are kept::

    W[(i_1, ..., i_d), (j_1, ..., j_d)] = G_1[:, i_1, j_1, :] G_2[:, i_2, j_2, :] ... G_d[:, i_d, j_d, :]

(a product of ``1 x r_1``, ``r_1 x r_2``, ..., ``r_{d-1} x 1`` matrices). Equivalently
``W = Σ_α G_1[0, :, :, α_1] ⊗ G_2[α_1, :, :, α_2] ⊗ ... ⊗ G_d[α_{d-1}, :, :, 0]`` (numpy's ``kron``).

Product: the cores are contracted one at a time, first core first, each in ONE matrix product:
before core ``k`` the data is the matrix ``(r_{k-1} n_k) x ((n_{k+1} ... n_d) c (m_1 ... m_{k-1}))``,
core ``k`` is the ``(m_k r_k) x (r_{k-1} n_k)`` matrix, and the new ``m_k`` axis is rotated to
the back with one transposed copy (the ``Kronecker`` product's scheme: a few large matrix
products instead of many small batched ones). The exact count for ``c`` columns is::

    flops = 2 c Σ_k r_{k-1} r_k m_k n_k (m_1 ... m_{k-1}) (n_{k+1} ... n_d)

(a multiply-add counted as 2 flops). ``_rmatmat`` (``X @ W``) is the same sweep for ``W^T``
(the cores with ``m_k`` and ``n_k`` exchanged), so it costs ``W.T.flops(c)``: the same when
``m_k = n_k``. Parameters ``Σ_k r_{k-1} m_k n_k r_k``.

Relation to BTT (:mod:`linops.operators.btt`): a two-core TT with ranks ``(1, r, 1)`` is
``Σ_α A_α ⊗ B_α`` (Kronecker rank r). Its ``(o2, i1)`` blocks ``W[(:, o2), (i1, :)] =
Σ_α A_α[:, i1] B_α[o2, :]`` are rank ``r`` like a BTT's, but with left factors depending on
``i1`` only and right factors on ``o2`` only, where a BTT's depend on both. So it is the BTT
of rank ``r`` on the same grid whose cores do not depend on their extra index,
``L[o2, o1, i1, α] = G_1[0, o1, i1, α]`` and ``R[i1, o2, α, i2] = G_2[α, o2, i2, 0]``
(:meth:`TensorTrain.as_btt`, tested); a BTT in general is not a two-core TT of the same rank.

With all ranks 1 (and no padding) a TT is the Kronecker product of its cores' matrices
(:meth:`TensorTrain.as_kronecker`), which supplies the exact rules in
:mod:`linops.functions.tensor_rules`.
"""

from __future__ import annotations

from math import prod

import numpy as np

from ..errors import ShapeError
from .base import LinearOperator, combine
from .dense import Dense

__all__ = ["TensorTrain", "tt_shapes", "tt_project"]


# ------------------------------------------------------------------------------ grid sizes
def _exact_factors(D: int, d: int, cap: int) -> list[tuple[int, ...]]:
    """All factorisations ``D = f_1 ... f_d`` with ``cap >= f_1 >= ... >= f_d >= 1``."""
    if d == 1:
        return [(D,)] if D <= cap else []
    out = []
    for f in range(min(D, cap), 0, -1):
        if D % f == 0 and f ** d >= D:  # f is the largest factor, so f^d >= D
            out.extend((f,) + rest for rest in _exact_factors(D // f, d - 1, f))
    return out


def _grid(D: int, d: int) -> tuple[int, ...]:
    b = max(1, int(round(D ** (1.0 / d))))
    while b ** d > D:
        b -= 1
    while (b + 1) ** d <= D:
        b += 1
    exact = [f for f in _exact_factors(D, d, 2 * (b + 1)) if f[0] <= 2 * f[-1]]
    if exact:  # the most balanced exact factorisation (smallest largest factor)
        return min(exact, key=lambda f: (f[0], -f[-1]))
    sizes = [b] * d
    i = 0
    while prod(sizes) < D:  # grow the leading sizes one by one: near-equal, with padding
        sizes[i] += 1
        i = (i + 1) % d
    return tuple(sizes)


def tt_shapes(d_in: int, d_out: int, d: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Grid sizes ``((n_1, ..., n_d), (m_1, ..., m_d))`` for a ``d_out x d_in`` TT with ``d`` cores.

    Near-equal factors, largest first: an exact factorisation of the size when one exists with
    largest factor at most twice the smallest (``1024, d=3 -> (16, 8, 8)``), else ``d`` sizes
    ``b`` or ``b + 1`` (``b = floor(size^(1/d))``) whose product is the first one ``>= size``
    (the input is zero-padded and the output cut: ``10, d=3 -> (3, 2, 2)``).
    """
    for name, v in (("d_in", d_in), ("d_out", d_out), ("d", d)):
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"tt_shapes: {name} must be a positive integer, got {v!r}")
    return _grid(int(d_in), int(d)), _grid(int(d_out), int(d))


# -------------------------------------------------------------------------------- operator
class TensorTrain(LinearOperator):
    """The TT-matrix ``W`` of the module docstring, ``d_out x d_in``.

    * ``cores``: a sequence of ``d >= 1`` arrays ``(r_{k-1}, m_k, n_k, r_k)``, ``r_0 = r_d = 1``.
    * ``d_in <= n_1 ... n_d`` (zero-padded input), ``d_out <= m_1 ... m_d`` (cut output);
      both default to the full sizes.

    Parameters ``Σ r_{k-1} m_k n_k r_k``; ``flops(c)`` is the exact count of the contraction
    (module docstring). Memory O(c max_k r_k (m_1..m_k)(n_{k+1}..n_d)) for the intermediates.
    """

    _leaves = ("cores",)

    def __init__(self, cores, d_in: int | None = None, d_out: int | None = None, annotations=()):
        cores = tuple(cores) if isinstance(cores, (list, tuple)) else None
        if not cores:
            raise ShapeError("TensorTrain needs a non-empty list of cores, arrays of shape (r_{k-1}, m_k, n_k, r_k)")
        for k, G in enumerate(cores):
            if getattr(G, "ndim", None) != 4:
                raise ShapeError(
                    f"TensorTrain: core {k} must be a 4-D array (r_{{k-1}}, m_k, n_k, r_k), got "
                    f"{type(G).__name__} of shape {tuple(getattr(G, 'shape', ()))}"
                )
        if int(cores[0].shape[0]) != 1 or int(cores[-1].shape[3]) != 1:
            raise ShapeError(
                f"TensorTrain: the first core must start with rank 1 and the last end with rank 1, got shapes "
                f"{tuple(cores[0].shape)} and {tuple(cores[-1].shape)}"
            )
        for k in range(1, len(cores)):
            if int(cores[k - 1].shape[3]) != int(cores[k].shape[0]):
                raise ShapeError(
                    f"TensorTrain: core {k - 1} ends with rank {int(cores[k - 1].shape[3])} but core {k} starts with "
                    f"rank {int(cores[k].shape[0])}; they must match"
                )
        N = prod(int(G.shape[2]) for G in cores)
        M = prod(int(G.shape[1]) for G in cores)
        d_in = N if d_in is None else int(d_in)
        d_out = M if d_out is None else int(d_out)
        if not 1 <= d_in <= N:
            raise ShapeError(f"TensorTrain: d_in = {d_in} must lie in [1, {N}] for an input grid of {N} entries")
        if not 1 <= d_out <= M:
            raise ShapeError(f"TensorTrain: d_out = {d_out} must lie in [1, {M}] for an output grid of {M} entries")
        views = tuple(Dense(G.reshape(G.shape[0] * G.shape[1], -1)) for G in cores)
        _, xp, dtype, device = combine(views, "TensorTrain cores")
        self.cores = tuple(xp.astype(G, dtype) for G in cores)
        self.d_in, self.d_out = d_in, d_out
        super().__init__((d_out, d_in), dtype, xp, device, annotations)

    # ------------------------------------------------------------------ sizes
    @property
    def grid(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``((n_1, ..., n_d), (m_1, ..., m_d))``: input and output grids."""
        return tuple(int(G.shape[2]) for G in self.cores), tuple(int(G.shape[1]) for G in self.cores)

    @property
    def ranks(self) -> tuple[int, ...]:
        """``(r_0, r_1, ..., r_d)`` with ``r_0 = r_d = 1``."""
        return (1,) + tuple(int(G.shape[3]) for G in self.cores)

    @property
    def num_params(self) -> int:
        return sum(prod(int(s) for s in G.shape) for G in self.cores)

    def flops(self, columns: int = 1) -> int:
        """Exact flops of ``W @ X`` for ``columns`` columns (module docstring; multiply-add = 2).
        ``X @ W`` costs ``W.T.flops(columns)`` (the same for square grids, m_k = n_k)."""
        ns, ms = self.grid
        r = self.ranks
        total = 0
        for k in range(len(ns)):
            total += r[k] * r[k + 1] * ms[k] * ns[k] * prod(ms[:k]) * prod(ns[k + 1 :])
        return 2 * columns * total

    @property
    def padded(self) -> bool:
        ns, ms = self.grid
        return self.d_in != prod(ns) or self.d_out != prod(ms)

    # --------------------------------------------------------------- products
    def _sweep(self, X, mats, n_in, n_out):
        """``X`` (Π n_in, c) through the cores, first to last, one matrix product each.

        Before core k the data is the matrix ``(r_{k-1} n_in_k, (n_in_{k+1}..) c (n_out_1..n_out_{k-1}))``;
        ``mats[k]`` is core k as an ``(n_out_k r_k) x (r_{k-1} n_in_k)`` matrix, and the new
        output axis is rotated to the back (one transposed copy), as in ``Kronecker``.
        """
        c = X.shape[1]
        d = len(mats)
        r = self.ranks
        T = X.reshape(n_in[0], -1)
        for k, G in enumerate(mats):
            Y = (G @ T).reshape(n_out[k], -1).T  # (r_k n_in_{k+1} .. c .. n_out_{k-1}, n_out_k)
            T = Y.reshape(r[k + 1] * n_in[k + 1], -1) if k + 1 < d else Y.reshape(c, -1).T
        return T

    def _matmat(self, X):
        xp = self.xp
        ns, ms = self.grid
        N, c = prod(ns), X.shape[1]
        if self.d_in < N:
            X = xp.concat([X, xp.zeros((N - self.d_in, c), X.dtype, xp.device_of(X))], 0)
        mats = [xp.moveaxis(xp.moveaxis(G, 1, 0), 3, 1).reshape(G.shape[1] * G.shape[3], -1) for G in self.cores]
        return self._sweep(X, mats, ns, ms)[: self.d_out]

    def _rmatmat(self, X):  # X @ W = (W^T X^T)^T: the same sweep with the transposed cores
        xp = self.xp
        ns, ms = self.grid
        M, c = prod(ms), X.shape[0]
        if self.d_out < M:
            X = xp.concat([X, xp.zeros((c, M - self.d_out), X.dtype, xp.device_of(X))], 1)
        mats = [xp.moveaxis(xp.moveaxis(G, 2, 0), 3, 1).reshape(G.shape[2] * G.shape[3], -1) for G in self.cores]
        return self._sweep(X.T, mats, ms, ns).T[:, : self.d_in]

    def to_dense(self):
        """``Σ_α ⊗_k G_k[α_{k-1}, :, :, α_k]`` accumulated core by core (never by products with I)."""
        xp = self.xp
        W = self.cores[0][0]  # (m_1, n_1, r_1): rows/columns of the partial Kronecker product, open rank
        for G in self.cores[1:]:
            a, b, ra = W.shape
            _, m, n, rb = G.shape
            W = xp.einsum("ija,aklb->ikjlb", W, G).reshape(a * m, b * n, rb)
        return W[: self.d_out, : self.d_in, 0]

    # ------------------------------------------------------------ structure
    def _transpose(self):
        return TensorTrain(tuple(self.xp.moveaxis(G, 2, 1) for G in self.cores), self.d_out, self.d_in)

    def _adjoint(self):
        xp = self.xp
        return TensorTrain(tuple(xp.conj(xp.moveaxis(G, 2, 1)) for G in self.cores), self.d_out, self.d_in)

    def _scale(self, c):
        return TensorTrain((c * self.cores[0],) + self.cores[1:], self.d_in, self.d_out)

    def as_kronecker(self):
        """The Kronecker product ``⊗_k Dense(G_k[0, :, :, 0])`` (all ranks 1, no padding)."""
        from .kronecker import Kronecker

        if any(v != 1 for v in self.ranks):
            raise ShapeError(f"{self._label()} has ranks {self.ranks}: only a rank-1 TT is a Kronecker product")
        if self.padded:
            raise ShapeError(f"{self._label()} is padded (d_in or d_out smaller than its grid): no exact Kronecker form")
        return Kronecker(*(Dense(G[0, :, :, 0]) for G in self.cores))

    def as_btt(self):
        """The same matrix as a rank-``r_1`` :class:`~linops.operators.btt.BTT` (two cores only):
        ``L[o2, o1, i1, α] = G_1[0, o1, i1, α]``, ``R[i1, o2, α, i2] = G_2[α, o2, i2, 0]``."""
        from .btt import BTT

        if len(self.cores) != 2:
            raise ShapeError(f"as_btt needs a two-core TensorTrain, this one has {len(self.cores)} cores")
        xp = self.xp
        (n1, n2), (m1, m2) = self.grid
        G1, G2 = self.cores[0][0], self.cores[1][..., 0]  # (m1, n1, r), (r, m2, n2)
        L = xp.stack([G1] * m2, 0)  # (m2, m1, n1, r)
        R = xp.stack([xp.moveaxis(G2, 1, 0)] * n1, 0)  # (n1, m2, r, n2)
        return BTT(R, L, self.d_in, self.d_out)

    def __repr__(self) -> str:
        ns, ms = self.grid
        grid = lambda s: "x".join(map(str, s))  # noqa: E731
        return (f"{self._label()[:-1]}; {len(ns)} cores, ranks {self.ranks}, input grid {grid(ns)}, "
                f"output grid {grid(ms)}, {self.num_params} parameters)")


# -------------------------------------------------------------------------------- TT-SVD
def _interior_ranks(rank, d: int) -> list[int | None]:
    if rank is None:
        return [None] * (d - 1)
    if isinstance(rank, (int, np.integer)) and not isinstance(rank, bool):
        if rank < 1:
            raise ValueError(f"tt_project: the maximal rank must be a positive integer, got {rank!r}")
        return [int(rank)] * (d - 1)
    ranks = [int(v) for v in rank]
    if len(ranks) == d + 1:
        if ranks[0] != 1 or ranks[-1] != 1:
            raise ValueError(f"tt_project: ranks {tuple(ranks)} must start and end with 1")
        ranks = ranks[1:-1]
    if len(ranks) != d - 1 or any(v < 1 for v in ranks):
        raise ValueError(
            f"tt_project: ranks must be an int (the maximal rank) or d - 1 = {d - 1} positive interior ranks "
            f"(or d + 1 = {d + 1} with the boundary 1s), got {tuple(rank)}"
        )
    return ranks


def tt_project(M, rank=None, grid=None, d: int = 2, return_bound: bool = False):
    """TT-SVD (Oseledets 2011, Alg. 1): a TensorTrain approximation of ``M`` and its relative error.

    ``M`` is a (d_out, d_in) array (numpy, torch or jax). ``grid = ((n_1..n_d), (m_1..m_d))``
    defaults to ``tt_shapes(d_in, d_out, d)``; ``M`` is zero-padded to the grid, reshaped to the
    tensor ``(m_1 n_1, ..., m_d n_d)`` (``(i_k, j_k)`` interleaved) and split by ``d - 1``
    sequential truncated SVDs of its unfoldings. ``rank``: an int (the same maximal rank
    everywhere), ``d - 1`` interior ranks, or None (no truncation: exact). A TT matrix is
    recovered exactly at its own ranks.

    Returns ``(TensorTrain, ||M - W|| / ||M||)``, the error computed exactly from the dense
    difference (Frobenius norm); with ``return_bound=True`` also the TT-SVD bound
    ``sqrt(Σ discarded σ²) / ||M||`` (Oseledets' Theorem 2.2: error <= bound). Without padding
    the two are equal up to rounding (each step's residual is orthogonal to the range kept,
    so the squared errors add); with padding the error of the cut matrix is below the bound. Without padding a TT matrix is recovered exactly at its
    own ranks; with padding the fit is that of the zero-padded matrix (the padded entries of a
    padded TT are not zero, so recovery is not exact there). Cost: the k-th SVD is of an
    ``(r_{k-1} m_k n_k) x (m_{k+1} n_{k+1} ... m_d n_d)`` unfolding; the first one dominates,
    O(M N min(m_1 n_1, M N / (m_1 n_1))) with M, N the grid sizes; plus one dense ``to_dense``
    for the exact error.
    """
    from ..backends import backend_of

    xp = backend_of(M)
    if xp is None or getattr(M, "ndim", None) != 2:
        raise ShapeError(f"tt_project needs a 2-D array, got {type(M).__name__} of shape {getattr(M, 'shape', None)}")
    d_out, d_in = (int(v) for v in M.shape)
    if grid is None:
        ns, ms = tt_shapes(d_in, d_out, d)
    else:
        ns, ms = (tuple(int(v) for v in g) for g in grid)
        if len(ns) != len(ms) or not ns:
            raise ValueError(f"tt_project: grid {grid} needs input and output sizes of the same length d >= 1")
        if prod(ns) < d_in or prod(ms) < d_out:
            raise ShapeError(
                f"tt_project: grid {grid} holds {prod(ms)} x {prod(ns)} entries, fewer than M's {d_out} x {d_in}"
            )
    d = len(ns)
    targets = _interior_ranks(rank, d)
    N, Mo = prod(ns), prod(ms)
    dev = xp.device_of(M)
    T = M
    if d_in < N:
        T = xp.concat([T, xp.zeros((d_out, N - d_in), M.dtype, dev)], 1)
    if d_out < Mo:
        T = xp.concat([T, xp.zeros((Mo - d_out, N), M.dtype, dev)], 0)
    T = T.reshape(*ms, *ns)
    for k in range(d):  # (m_1..m_d, n_1..n_d) -> (m_1, n_1, ..., m_d, n_d)
        T = xp.moveaxis(T, d + k, 2 * k + 1)
    cores, r_prev, discarded = [], 1, 0.0
    C = T.reshape(ms[0] * ns[0], -1)
    for k in range(d - 1):
        U, s, Vh = xp.svd(C)
        rk = int(s.shape[0]) if targets[k] is None else min(targets[k], int(s.shape[0]))
        tail = s[rk:]
        discarded = discarded + xp.sum(tail * tail)
        cores.append(U[:, :rk].reshape(r_prev, ms[k], ns[k], rk))
        C = (xp.astype(s[:rk], M.dtype)[:, None] * Vh[:rk]).reshape(rk * ms[k + 1] * ns[k + 1], -1)
        r_prev = rk
    cores.append(C.reshape(r_prev, ms[-1], ns[-1], 1))
    W = TensorTrain(cores, d_in, d_out)
    norm = xp.sqrt(xp.sum(xp.real(xp.conj(M) * M)))
    safe = xp.where(norm > 0, norm, 1 + 0 * norm)
    diff = W.to_dense() - M
    err = xp.sqrt(xp.sum(xp.real(xp.conj(diff) * diff))) / safe
    if return_bound:
        return W, err, xp.sqrt(discarded + 0 * norm) / safe
    return W, err

