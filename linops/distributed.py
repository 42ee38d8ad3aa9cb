"""Row-sharded operators over ``torch.distributed`` (gloo on CPU, NCCL on GPUs).

Each rank (process) holds a block of rows of an n x m operator, as a local operator
(n_r, m): a ``Dense`` of its rows, or a kernel matrix ``K(X_r, Y)`` of its points against
all points. :class:`RowSharded` is the whole operator, seen alike by every rank:

* ``A @ V`` (V (m, k), the same on every rank): each rank computes its rows
  ``local @ V`` (n_r, k), then one ``all_gather`` assembles the (n, k) result on every rank.
  Per rank: O(n_r m) memory for a dense block (O(n_r d + m d + b m) for a kernel, b rows per
  block), O(n_r m k) FLOPs, and n k numbers received.
* ``V @ A`` (V (k, n)): each rank multiplies its columns of V by its rows, then ``all_reduce``.

Solvers run unchanged on top: ``lo.solve(A, b, alg=lo.CG())`` calls the shared CG kernel
(:func:`linops.algorithms.cg.cg`) with this product, so the vectors are *replicated*: every
rank runs the same iteration on the same numbers (the gathered products are bitwise equal on
all ranks). We chose replicated vectors over sharded ones because the product needs the whole
vector on every rank anyway (one all-gather per product either way), while replication keeps
CG, Lanczos and SLQ untouched and needs no all-reduce per inner product; the cost is O(n k)
memory per rank for the vectors, small next to the operator's O(n m / p).

Gradients (torch autograd, and the implicit gradients of CG and SLQ, which differentiate
``A @ X`` with autograd) follow the usual tensor-parallel rules: the result is treated as
replicated, so the backward of the gather keeps the rank's own rows (no communication), and
the gradient of every replicated input (``V``, hyperparameters such as a lengthscale, the
points Y) is summed over the ranks with ``all_reduce``. Leaves holding the rank's own rows
(the local ``Dense`` block, the kernel's local points X_r) get the gradient of those rows.
"""

from __future__ import annotations

from .errors import ShapeError
from .operators.base import LinearOperator, array_leaves

__all__ = ["RowSharded", "row_range", "shard_rows", "sharded_kernel"]


def _dist(group=None):
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("linops.distributed needs torch.distributed.init_process_group(...) first "
                           "(start the ranks with torchrun, or torch.multiprocessing.spawn and MASTER_ADDR/MASTER_PORT)")
    return dist, dist.get_rank(group), dist.get_world_size(group)


def row_range(n: int, group=None) -> tuple[int, int]:
    """``(start, stop)`` of this rank's rows in the balanced split of ``n`` rows (the first
    ``n % p`` ranks get one more)."""
    _, rank, p = _dist(group)
    q, r = divmod(int(n), p)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


# ---------------------------------------------------------------- autograd pieces
_FUNCS = None


def _functions():
    """The three collective autograd Functions (built on first use: torch loads lazily)."""
    global _FUNCS
    if _FUNCS is not None:
        return _FUNCS
    import torch
    import torch.distributed as dist

    class Replicated(torch.autograd.Function):
        """Identity on a replicated input used by a rank-local computation; backward sums over ranks."""

        @staticmethod
        def forward(ctx, x, group):
            ctx.group = group
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            g = g.contiguous().clone()
            dist.all_reduce(g, group=ctx.group)
            return g, None

    class GatherRows(torch.autograd.Function):
        """All ranks' row blocks (n_r, k) stacked to (n, k) on every rank; backward keeps own rows."""

        @staticmethod
        def forward(ctx, y, counts, rank, group):
            ctx.start, ctx.stop = sum(counts[:rank]), sum(counts[: rank + 1])
            big = max(counts)
            pad = y if y.shape[0] == big else torch.cat([y, y.new_zeros((big - y.shape[0],) + tuple(y.shape[1:]))], 0)
            parts = [torch.empty_like(pad) for _ in counts]
            dist.all_gather(parts, pad.contiguous(), group=group)
            return torch.cat([t[:c] for t, c in zip(parts, counts, strict=True)], 0)

        @staticmethod
        def backward(ctx, g):
            return g[ctx.start : ctx.stop], None, None, None

    class SumOverRanks(torch.autograd.Function):
        """all_reduce(sum) of rank-local partial results into a replicated one; backward is identity."""

        @staticmethod
        def forward(ctx, y, group):
            y = y.contiguous().clone()
            dist.all_reduce(y, group=group)
            return y

        @staticmethod
        def backward(ctx, g):
            return g, None

    _FUNCS = (Replicated, GatherRows, SumOverRanks)
    return _FUNCS


def _needs_grad(t) -> bool:
    import torch

    return torch.is_grad_enabled() and getattr(t, "requires_grad", False)


# ------------------------------------------------------------------------ operator
class RowSharded(LinearOperator):
    """The n x m operator whose rows ``[start, stop)`` this rank holds as ``local`` (n_r, m).

    ``local`` is a torch ``Dense`` (its matrix is the rank's own rows) or a kernel matrix
    ``K(X_r, Y)`` (``X_r`` the rank's own points; Y and the hyperparameters replicated). Ranks
    may hold different numbers of rows; n is their sum, found with one ``all_gather`` when the
    operator is built (so every rank must build it, in the same order). ``annotations``
    (e.g. ``("PSD", "SelfAdjoint")``) describe the whole operator: the local block cannot.
    """

    _leaves = ("local",)

    def __init__(self, local: LinearOperator, *, group=None, annotations=()):
        import torch

        from .operators import Dense
        from .operators.kernels import KernelMatrix

        if isinstance(local, torch.Tensor):
            local = Dense(local)
        if not isinstance(local, (Dense, KernelMatrix)) or local.xp.name != "torch":
            raise TypeError(f"RowSharded needs a torch Dense block of rows or a torch kernel matrix K(X_r, Y), got {local!r}")
        dist, rank, p = _dist(group)
        mine = torch.tensor([local.shape[0], local.shape[1]], dtype=torch.int64)
        sizes = [torch.zeros_like(mine) for _ in range(p)]
        dist.all_gather(sizes, mine, group=group)
        cols = {int(s[1]) for s in sizes}
        if len(cols) != 1:
            raise ShapeError(f"RowSharded: the ranks' row blocks have different column counts {sorted(cols)}: "
                             "every rank must hold rows of the same n x m operator")
        self.local = local
        self.group, self.rank, self.world = group, rank, p
        self.counts = tuple(int(s[0]) for s in sizes)
        self.start = sum(self.counts[:rank])
        self.stop = self.start + self.counts[rank]
        super().__init__((sum(self.counts), local.shape[1]), local.dtype, local.xp, local.device, annotations)

    def _local_for_grad(self):
        """``local`` with its replicated tensors routed through ``Replicated`` (when autograd needs them)."""
        arrays, rebuild = array_leaves(self.local)
        if not any(_needs_grad(a) for a in arrays):
            return self.local
        Replicated = _functions()[0]
        own = self.local.M if hasattr(self.local, "M") else self.local.X
        return rebuild([a if (a is own or not _needs_grad(a)) else Replicated.apply(a, self.group) for a in arrays])

    def _matmat(self, V):
        Replicated, GatherRows, _ = _functions()
        if _needs_grad(V):
            V = Replicated.apply(V, self.group)
        out = self._local_for_grad() @ V
        return GatherRows.apply(out, self.counts, self.rank, self.group)

    def _rmatmat(self, V):  # V (k, n) @ A: own columns of V times own rows, summed over ranks
        Replicated, _, SumOverRanks = _functions()
        if _needs_grad(V):
            V = Replicated.apply(V, self.group)
        part = V[:, self.start : self.stop] @ self._local_for_grad()
        return SumOverRanks.apply(part, self.group)

    def to_dense(self):
        GatherRows = _functions()[1]
        return GatherRows.apply(self.local.to_dense(), self.counts, self.rank, self.group)

    def _transpose(self):  # a row-sharded transpose would be column-sharded: only the symmetric case is free
        if "SelfAdjoint" in self.annotations and not self.xp.is_complex(self.dtype):
            return self
        return super()._transpose()


def _own_rows(T, start, stop, group):
    """Rows ``[start, stop)`` of a replicated tensor; its gradient is then summed over the ranks,
    so ``T`` gets the whole gradient on every rank (each rank contributes its own rows)."""
    if _needs_grad(T):
        T = _functions()[0].apply(T, group)
    return T[start:stop]


def shard_rows(M, *, group=None, annotations=()):
    """``RowSharded`` of this rank's rows of the (replicated) matrix ``M`` (n, m), balanced split;
    a gradient reaching ``M`` is complete on every rank (all-reduced)."""
    from .operators import Dense

    start, stop = row_range(M.shape[0], group)
    return RowSharded(Dense(_own_rows(M, start, stop, group)), group=group, annotations=annotations)


def sharded_kernel(kind, X, *, group=None, **kwargs):
    """The kernel matrix ``kind(X, X, **kwargs)`` (n x n, PSD), row-sharded: this rank holds
    ``kind(X[start:stop], X)``, O(n d) memory for the points, never an n x n block.

    ``kind`` is a kernel class (``lo.RBF``, ``lo.Matern``, ...); ``X`` (n, d) is replicated.
    Gradients reach the hyperparameters and X (all-reduced: complete on every rank).
    """
    start, stop = row_range(X.shape[0], group)
    return RowSharded(kind(_own_rows(X, start, stop, group), X, **kwargs), group=group, annotations=("PSD", "SelfAdjoint"))
