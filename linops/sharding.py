"""Operators on a JAX device mesh: ``lo.shard(A, mesh, axis)`` places an operator's arrays.

``shard`` returns the same operator (same types, same static data) whose arrays have been
moved with ``jax.device_put(..., NamedSharding(mesh, spec))``; products, sums, ``lo.solve``
with ``lo.CG``, ``lo.eigh`` with ``lo.Lanczos`` and ``lo.logdet`` with ``lo.SLQ`` (and their
implicit gradients) then run under ``jax.jit`` on sharded vectors, XLA's SPMD partitioner
inserting the collectives (an all-gather of the (n, k) block of vectors per product, an
all-reduce per inner product). Placement, for ``p`` devices along ``axis``:

============================  ===============================================================
operator                      placement
============================  ===============================================================
``Dense`` (m, n)              rows sharded: each device holds (m/p, n)
``Diagonal``                  the diagonal sharded
``LowRank`` U (m, r), V (n, r) rows of U and V sharded (r replicated)
``Kronecker``, ``KroneckerSum``  every factor replicated (the factors are small)
``KernelMatrix`` (RBF, ...)   a :class:`ShardedKernel`: points X (and Y) sharded by rows,
                              hyperparameters replicated, products by a ring over the devices
other operators               their operator parts placed by these rules, their arrays
                              replicated (correct, not distributed)
arrays (vectors, (n, k))      the leading axis sharded
============================  ===============================================================

An array whose leading axis is not a multiple of ``p`` (a small part of a composite) is
replicated; an operator or array whose own leading size is not a multiple of ``p`` raises
``ShapeError`` (pad it, or use a mesh whose size divides it). Placed operators have
``op.device = None``: the placement is carried by the arrays (``x.sharding``), so placed parts
combine freely with one another and with weak operators (``lo.Identity``, ``lo.ScalarMul``).

Kernel matrices never exist as n x m arrays anywhere: :class:`ShardedKernel` computes
``K @ V`` with each device applying the row block ``K(X_i, Y_j)`` to ``V_j`` for the column
chunk ``j`` it holds, in row blocks of the kernel's blocked product, then passing
``(Y_j, V_j)`` to its neighbour (a collective-permute); after ``p`` steps every device has
its rows of the product. Memory per device is O((n + m)(d + k) / p + b m / p) for
b rows per block; FLOPs O(n m (d + k) / p); communication p - 1 shifts of (m/p)(d + k)
numbers. ``ring=False`` instead all-gathers Y and V once (O(m (d + k)) per device, one
collective). Gradients (``jax.grad``, the implicit ones of CG and SLQ) go through the ring
(the shift transposes to the reverse shift), each block recomputed in the backward pass.
"""

from __future__ import annotations

from typing import Any

from .errors import ShapeError
from .operators.base import LinearOperator, tree_flatten, tree_unflatten
from .operators.kernels import BLOCK_ENTRIES, KernelMatrix

__all__ = ["shard", "ShardedKernel"]


def _jax():
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    return jax, NamedSharding, PartitionSpec


def _mesh_size(mesh, axis: str) -> int:
    from jax.sharding import Mesh

    if not isinstance(mesh, Mesh):
        raise TypeError(f"shard needs a jax.sharding.Mesh, got {type(mesh).__name__}: build one with "
                        "jax.sharding.Mesh(np.array(jax.devices()), ('x',))")
    if axis not in mesh.axis_names:
        raise ValueError(f"mesh has axes {mesh.axis_names}, not {axis!r}: pass axis= one of them")
    return int(mesh.shape[axis])


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, LinearOperator)


class _Placer:
    """Puts arrays on ``mesh``: ``rows`` shards the leading axis (if divisible), ``repl`` replicates."""

    def __init__(self, mesh, axis: str):
        self.mesh, self.axis, self.p = mesh, axis, _mesh_size(mesh, axis)
        self.done: dict[int, Any] = {}  # id -> placed array: an array used twice (LowRank(U)) stays one

    def _put(self, x, spec):
        jax, NamedSharding, _ = _jax()
        key = (id(x), spec)
        if key not in self.done:
            if not isinstance(x, jax.Array):
                raise TypeError(f"shard places JAX operators; got a {type(x).__module__}.{type(x).__name__} array: "
                                "build the operator from jax.numpy arrays")
            self.done[key] = (x, jax.device_put(x, NamedSharding(self.mesh, spec)))
        return self.done[key][1]

    def rows(self, x):
        _, _, P = _jax()
        if x.ndim == 0 or x.shape[0] % self.p:
            return self.repl(x)
        return self._put(x, P(self.axis, *([None] * (x.ndim - 1))))

    def repl(self, x):
        _, _, P = _jax()
        return self._put(x, P())


def _rebuild(op: LinearOperator, children) -> LinearOperator:
    """``op`` with new leaves and ``device = None`` (placement lives in the arrays)."""
    _, (cls, static) = tree_flatten(op)
    static = tuple((k, None if k == "device" else v) for k, v in static)
    return tree_unflatten((cls, static), tuple(children))


def _map(obj, fn):
    if isinstance(obj, tuple):
        return tuple(_map(o, fn) for o in obj)
    if obj is None or not (_is_array(obj) or isinstance(obj, LinearOperator)):
        return obj
    return fn(obj)


def _replicate(op, put: _Placer):
    if _is_array(op):
        return put.repl(op)
    children, _ = tree_flatten(op)
    return _rebuild(op, [_map(c, lambda c: _replicate(c, put)) for c in children])


def _place(op, put: _Placer, ring: bool):
    from .operators import Dense, Diagonal, Kronecker, KroneckerSum, LowRank

    if _is_array(op):
        return put.rows(op)
    if isinstance(op, ShardedKernel):
        return op
    if isinstance(op, KernelMatrix):
        return ShardedKernel(op, put.mesh, put.axis, ring=ring and op.shape[1] % put.p == 0, _placer=put)
    if isinstance(op, (Kronecker, KroneckerSum)):
        return _replicate(op, put)
    children, _ = tree_flatten(op)
    if isinstance(op, (Dense, Diagonal, LowRank)):
        return _rebuild(op, [put.rows(c) for c in children])
    return _rebuild(op, [_map(c, lambda c: _place(c, put, ring) if isinstance(c, LinearOperator) else put.repl(c))
                         for c in children])


def shard(obj, mesh, axis: str = "x", *, ring: bool = True):
    """``obj`` (an operator or an array) with its arrays placed on ``mesh`` along ``axis``.

    See the module docstring for the placement of each operator type. ``ring`` selects the
    product of kernel matrices (ring of shifts, O(n d / p) memory per device; or one
    all-gather of the points). Costs one ``device_put`` per array; nothing is computed.
    Raises ``ShapeError`` when the leading size of ``obj`` is not a multiple of the number
    of devices along ``axis``.
    """
    put = _Placer(mesh, axis)
    lead = obj.shape[0] if (_is_array(obj) or isinstance(obj, LinearOperator)) and len(obj.shape) else None
    if lead is not None and lead % put.p:
        raise ShapeError(f"cannot shard {type(obj).__name__} of shape {tuple(obj.shape)} over {put.p} devices along "
                         f"{axis!r}: {lead} is not a multiple of {put.p}; pad it or use a mesh whose size divides it")
    if isinstance(obj, LinearOperator):
        if obj.xp.name != "jax":
            raise TypeError(f"shard places JAX operators; this {type(obj).__name__} holds {obj.xp.name} arrays: "
                            "use linops.distributed for torch")
        return _place(obj, put, ring)
    if _is_array(obj):
        return put.rows(obj)
    raise TypeError(f"shard needs a linops operator or a JAX array, got {type(obj).__name__}")


# ------------------------------------------------------------------ kernel matrices
def _with_block(kernel: KernelMatrix, block_size: int) -> KernelMatrix:
    children, (cls, static) = tree_flatten(kernel)
    static = tuple((k, block_size if k == "block_size" else v) for k, v in static)
    return tree_unflatten((cls, static), children)


class ShardedKernel(LinearOperator):
    """A kernel matrix ``K(X, Y)`` (n x m) whose products run row-sharded over ``mesh[axis]``.

    Build it with ``lo.shard(K, mesh, axis)`` (which places X, Y) or directly. ``ring=True``
    (needs n and m multiples of p): Y and V travel around the ring of devices, O((n + m)(d + k)/p)
    memory per device; ``ring=False``: Y and V are all-gathered (O(m (d + k)) per device).
    ``block_size`` is the number of rows per block of the local product (default: about
    ``BLOCK_ENTRIES`` entries per block, over the m/p columns a device sees at a time).
    ``diag``, ``trace`` and slices are those of the underlying kernel.
    """

    _leaves = ("kernel",)

    def __init__(self, kernel: KernelMatrix, mesh, axis: str = "x", *, ring: bool = True,
                 block_size: int | None = None, _placer: _Placer | None = None):
        if not isinstance(kernel, KernelMatrix) or kernel.xp.name != "jax":
            raise TypeError(f"ShardedKernel needs a JAX kernel matrix (lo.RBF, lo.Matern, ...), got {kernel!r}")
        p = _mesh_size(mesh, axis)
        n, m = kernel.shape
        if n % p or (ring and m % p):
            raise ShapeError(f"ShardedKernel over {p} devices needs n = {n}" + (f" and m = {m}" if ring else "")
                             + f" multiples of {p}: pad the points or use ring=False / another mesh")
        put = _placer if _placer is not None else _Placer(mesh, axis)
        children, _ = tree_flatten(kernel)
        placed = [_map(c, put.rows if name == "X" or (name == "Y" and ring) else put.repl)
                  for name, c in zip(kernel._leaves, children, strict=True)]
        cols = m // p if ring else m
        if block_size is None:
            block_size = max(1, min(n // p, BLOCK_ENTRIES // max(cols, 1)))
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int (rows per block), got {block_size!r}")
        self.kernel = _rebuild(_with_block(kernel, block_size), placed)
        self.mesh, self.axis, self.ring, self.p = mesh, axis, bool(ring), p
        super().__init__(kernel.shape, kernel.dtype, kernel.xp, None, kernel.annotations)

    # ----------------------------------------------------------------- products
    def _product(self, rows, cols, V):
        """``K(rows, cols) @ V`` for points rows (n, d), cols (m, d), V (m, k), sharded by rows.

        The arrays are viewed as (p, n/p, ...) stacks sharded on the first axis and the blocked
        product is vmapped over it, so each device computes its own rows; the ring shift is a
        roll of the stacks along the sharded axis (XLA: a collective-permute). Everything is
        left to XLA's SPMD partitioner (no ``shard_map``): on XLA:CPU, ``shard_map`` collectives
        in two independent loops of one program (a CG solve beside an SLQ estimate) deadlocked.
        """
        import jax
        import jax.numpy as jnp
        from jax import lax
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        kern, p = self.kernel, self.p
        params = kern._params()
        (n, d), (m, k) = rows.shape, V.shape
        stacked = NamedSharding(self.mesh, P(self.axis, None, None))

        def pin(a):
            return lax.with_sharding_constraint(a, stacked)

        def blk(Xi, Yj, Vj):
            return kern._blocked_jax(Xi, Yj, Vj, params)

        Xs = pin(rows.reshape(p, n // p, d))
        if self.ring:
            Ys, Vs = pin(cols.reshape(p, m // p, d)), pin(V.reshape(p, m // p, k))
            out = pin(jax.vmap(blk)(Xs, Ys, Vs))

            def step(_, carry):
                acc, Ys, Vs = carry
                Ys, Vs = pin(jnp.roll(Ys, 1, axis=0)), pin(jnp.roll(Vs, 1, axis=0))
                return acc + pin(jax.vmap(blk)(Xs, Ys, Vs)), Ys, Vs

            if p > 1:
                out = lax.fori_loop(1, p, step, (out, Ys, Vs))[0]
        else:
            out = pin(jax.vmap(blk, in_axes=(0, None, None))(Xs, cols, V))
        return lax.with_sharding_constraint(out.reshape(n, k), NamedSharding(self.mesh, P(self.axis, None)))

    def _matmat(self, V):
        return self._product(self.kernel.X, self.kernel._Yfull, V)

    def _rmatmat(self, V):  # V (k, n) @ K = (K(Y, X) V^T)^T
        return self._product(self.kernel._Yfull, self.kernel.X, V.T).T

    def to_dense(self):
        return self.kernel.to_dense()

    def diagonal_values(self):
        return self.kernel.diagonal_values()

    # ------------------------------------------------------------------ algebra
    def _wrap(self, kernel):
        if not isinstance(kernel, KernelMatrix):
            return kernel
        ok = kernel.shape[0] % self.p == 0 and (not self.ring or kernel.shape[1] % self.p == 0)
        return ShardedKernel(kernel, self.mesh, self.axis, ring=self.ring) if ok else kernel

    def _transpose(self):
        return self if self.kernel.Y is None else self._wrap(self.kernel._transpose())

    def _adjoint(self):
        return self._transpose()

    def _scale(self, c):
        return self._wrap(self.kernel._scale(c))

    def _slice(self, rows, cols):
        return self.kernel._slice(rows, cols)


def _register_rules():
    """``diag`` and ``trace`` of a ShardedKernel are its kernel's (O(n d), exact)."""
    from .functions import rules

    @rules.diag.dispatch(precedence=rules.STRUCTURE)
    def _(A: ShardedKernel, alg: rules.Algorithm):
        """diag of a sharded kernel matrix: the kernel's, k(x_i, y_i), O(n d)."""
        return rules.diag(A.kernel, alg)

    @rules.trace.dispatch(precedence=rules.STRUCTURE)
    def _(A: ShardedKernel, alg: rules.Algorithm):
        """trace of a sharded kernel matrix: the kernel's, O(n d)."""
        return rules.trace(A.kernel, alg)


_register_rules()
