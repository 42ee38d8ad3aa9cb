"""Block operators: BlockDiag (blocks on the diagonal) and Block (a general grid of blocks)."""

from __future__ import annotations

from ..errors import ShapeError
from .base import LinearOperator, combine
from .diagonal import Zero

__all__ = ["BlockDiag", "Block"]


def _split(X, sizes, axis=0):
    out, start = [], 0
    for s in sizes:
        out.append(X[start : start + s] if axis == 0 else X[:, start : start + s])
        start += s
    return out


class BlockDiag(LinearOperator):
    """``diag(B_1, ..., B_p)`` for (possibly rectangular) blocks; every rule works blockwise."""

    _leaves = ("blocks",)

    def __init__(self, *blocks: LinearOperator):
        if len(blocks) == 1 and isinstance(blocks[0], (list, tuple)):
            blocks = tuple(blocks[0])
        if not blocks:
            raise ValueError("BlockDiag needs at least one block")
        for b in blocks:
            if not isinstance(b, LinearOperator):
                raise TypeError(f"BlockDiag takes LinearOperators, got {type(b).__name__} (wrap arrays in lo.Dense)")
        blocks, xp, dtype, device = combine(blocks, "blocks")
        self.blocks = blocks
        tags = set.intersection(*(set(b.annotations) for b in blocks)) & {"PSD", "SelfAdjoint", "Unitary"}
        shape = (sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks))
        super().__init__(shape, dtype, xp, device, tags)

    def _matmat(self, X):
        parts = _split(X, [b.shape[1] for b in self.blocks])
        return self.xp.concat([b._matmat(p) for b, p in zip(self.blocks, parts)], 0)

    def _rmatmat(self, X):
        parts = _split(X, [b.shape[0] for b in self.blocks], axis=1)
        return self.xp.concat([b._rmatmat(p) for b, p in zip(self.blocks, parts)], 1)

    def to_dense(self):
        xp = self.xp
        rows, col = [], 0
        for b in self.blocks:
            row = []
            if col:
                row.append(xp.zeros((b.shape[0], col), self.dtype, self.device))
            row.append(xp.astype(b.to_dense(), self.dtype))
            rest = self.shape[1] - col - b.shape[1]
            if rest:
                row.append(xp.zeros((b.shape[0], rest), self.dtype, self.device))
            rows.append(xp.concat(row, 1))
            col += b.shape[1]
        return xp.concat(rows, 0)

    def _transpose(self):
        return BlockDiag(*(b.T for b in self.blocks))

    def _adjoint(self):
        return BlockDiag(*(b.H for b in self.blocks))

    def _scale(self, c):
        return BlockDiag(*(b._scale(c) for b in self.blocks))

    def _compose_same(self, other):
        a, b = self.blocks, other.blocks
        if len(a) != len(b) or any(x.shape[1] != y.shape[0] for x, y in zip(a, b)):
            return None
        return BlockDiag(*(x @ y for x, y in zip(a, b)))

    def _add_same(self, other):
        a, b = self.blocks, other.blocks
        if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
            return None
        return BlockDiag(*(x + y for x, y in zip(a, b)))


class Block(LinearOperator):
    """A grid of blocks ``[[A, B], [C, D]]``; ``None`` marks a zero block.

    Block rows must share their height and block columns their width. Concatenation is
    the one-row (``Block([[A, B]])``) or one-column (``Block([[A], [B]])``) case.
    """

    _leaves = ("blocks",)

    def __init__(self, blocks):
        grid = [list(r) for r in blocks]
        if not grid or not grid[0] or any(len(r) != len(grid[0]) for r in grid):
            raise ShapeError("Block needs a non-empty rectangular grid of blocks (a list of equally long rows)")
        heights = [_agree([b.shape[0] for b in r if b is not None], f"block row {i}", "heights") for i, r in enumerate(grid)]
        widths = [
            _agree([r[j].shape[1] for r in grid if r[j] is not None], f"block column {j}", "widths")
            for j in range(len(grid[0]))
        ]
        flat = [b for r in grid for b in r if b is not None]
        for b in flat:
            if not isinstance(b, LinearOperator):
                raise TypeError(f"Block takes LinearOperators or None, got {type(b).__name__}")
        flat, xp, dtype, device = combine(flat, "blocks")
        it = iter(flat)
        self.blocks = tuple(
            tuple(next(it) if b is not None else Zero(h, w, dtype, device, backend=xp)
                  for b, w in zip(r, widths))
            for r, h in zip(grid, heights)
        )
        self.heights, self.widths = tuple(heights), tuple(widths)
        super().__init__((sum(heights), sum(widths)), dtype, xp, device, ())

    def _children(self):
        return [b for r in self.blocks for b in r if not isinstance(b, Zero)]

    def _matmat(self, X):
        parts = _split(X, self.widths)
        rows = []
        for r in self.blocks:
            terms = [b._matmat(p) for b, p in zip(r, parts) if not isinstance(b, Zero)]
            rows.append(_sum(terms) if terms else self.xp.zeros((r[0].shape[0], X.shape[1]), X.dtype, self.device))
        return self.xp.concat(rows, 0)

    def _rmatmat(self, X):
        parts = _split(X, self.heights, axis=1)
        cols = []
        for j, w in enumerate(self.widths):
            terms = [r[j]._rmatmat(p) for r, p in zip(self.blocks, parts) if not isinstance(r[j], Zero)]
            cols.append(_sum(terms) if terms else self.xp.zeros((X.shape[0], w), X.dtype, self.device))
        return self.xp.concat(cols, 1)

    def to_dense(self):
        xp = self.xp
        return xp.concat([xp.concat([xp.astype(b.to_dense(), self.dtype) for b in r], 1) for r in self.blocks], 0)

    def _transpose(self):
        return Block([[self.blocks[i][j].T for i in range(len(self.blocks))] for j in range(len(self.widths))])

    def _adjoint(self):
        return Block([[self.blocks[i][j].H for i in range(len(self.blocks))] for j in range(len(self.widths))])

    def _scale(self, c):
        return Block([[b._scale(c) for b in r] for r in self.blocks])


def _agree(sizes, where, what):
    if not sizes:
        raise ShapeError(f"{where} holds only None blocks: its size is unknown")
    if any(s != sizes[0] for s in sizes):
        raise ShapeError(f"the blocks of {where} have different {what}: {sizes}")
    return sizes[0]


def _sum(terms):
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out
