"""Kernel matrices ``K[i, j] = k(x_i, y_j)`` applied in row blocks, never stored.

``RBF``, ``Matern`` (nu = 1/2, 3/2, 5/2), ``Periodic`` and ``LinearKernel`` take ``X`` (n, d),
optionally ``Y`` (m, d) (default: ``Y = X``, and the operator is annotated PSD and SelfAdjoint),
a ``lengthscale`` (a scalar, or one per dimension: ARD) and an ``outputscale``. Both are kept as
arrays of ``X``'s backend (leaves), so ``torch`` autograd and ``jax.grad`` reach them, and ``X``.

Products: ``K @ V`` for V (m, k) is computed ``block_size`` rows at a time, each block
``K(X[rows], Y)`` formed, multiplied and dropped: memory O(block_size * m + n k), FLOPs
O(n m (d + k)). The default block holds about ``BLOCK_ENTRIES`` = 2^19 entries (4 MB in
float64). numpy and torch loop in Python; JAX runs ``lax.map`` over the padded blocks (one
compiled loop, fine under ``jax.jit``). Gradients recompute each block in the backward pass
(``torch.utils.checkpoint`` per block, ``jax.checkpoint`` around the block function), so the
backward pass also needs only O(block_size * m) memory. (Resident memory can still exceed
that under glibc's malloc: after the first large free it raises its mmap threshold and serves the
per-block temporaries from a heap that fragments, so a torch backward at n = 4,000 held ~900 MB of
freed blocks. ``MALLOC_MMAP_THRESHOLD_=1048576`` in the environment, or jemalloc/tcmalloc, returns
them; the forward products write into one preallocated output and stay bounded either way.) ``LinearKernel`` is exactly low rank,
``os * Xs Ys^T``, and is applied as two thin products, O((n + m) d k), without blocks.

Entries: ``K[rows, cols]`` is the kernel of ``X[rows]`` and ``Y[cols]`` (another kernel operator,
no product needed), so ``K[:, j:j+1].to_dense()`` reads column j in O(n d). ``diag`` and
``trace`` are exact in O(n d) (O(1) work per entry: the outputscale for a stationary kernel
with Y = X).

Scaled distances: with ``xs = x / lengthscale``, ``r^2 = |xs - ys|^2`` is summed over the
coordinates (exact zeros for equal points) when d <= 4, and by the expansion
``|xs|^2 + |ys|^2 - 2 xs.ys`` (one matrix product, centred) for larger d, where values
below its rounding level (8 eps (|xs|^2 + |ys|^2)) are set to 0, so equal points stay exact.
Stationary profiles (``os`` the outputscale): RBF ``os exp(-r^2/2)``; Matern 1/2 ``os e^{-r}``,
3/2 ``os (1 + √3 r) e^{-√3 r}``, 5/2 ``os (1 + √5 r + 5 r^2/3) e^{-√5 r}``; Periodic
``os exp(-2 Σ_d sin^2(π (x_d - y_d) / p) / l_d^2)``; LinearKernel ``os Σ_d x_d y_d / l_d^2``.

A complex ``dtype=`` gives the same real kernel matrix, applied to complex arrays.
"""

from __future__ import annotations

import math
from ..backends import backend_of
from ..errors import ShapeError
from .base import LinearOperator, tree_flatten, tree_unflatten

__all__ = ["KernelMatrix", "RBF", "Matern", "Periodic", "LinearKernel", "BLOCK_ENTRIES", "MIN_BLOCK_ROWS"]

#: entries of one row block in the default block size (2^19: 4 MB in float64, 2 MB in float32)
BLOCK_ENTRIES = 1 << 19
#: fewest rows in a default block: with one or two rows a block, n = 200,000 took 100,000 Python
#: iterations (the loop's overhead then dominates); 32 rows of 200,000 columns are 25 MB in float32
MIN_BLOCK_ROWS = 32
#: up to this many dimensions, squared distances are summed coordinate by coordinate (exact)
_DIFF_DIMS = 4


def _lib(xp):
    """The array library's own namespace, for sin and loops the backend interface does not have."""
    if xp.name == "torch":
        import torch

        return torch
    if xp.name == "jax":
        import jax.numpy as jnp

        return jnp
    import numpy as np

    return np


def _param(xp, value, dtype, device, name: str, d: int, per_dim: bool):
    """A positive parameter as an array of the kernel's backend: shape () or (d,) if ``per_dim``."""
    be = backend_of(value)
    if be is not None and be.is_array(value):
        if be is not xp:
            from ..errors import BackendMismatchError

            raise BackendMismatchError(f"the kernel's {name} is a {be.name} array but X is a {xp.name} array")
        arr = value if value.dtype == dtype else xp.astype(value, dtype)
    else:
        arr = xp.asarray(value, dtype=dtype, device=device)
    shapes = ((), (d,)) if per_dim else ((),)
    if tuple(arr.shape) not in shapes:
        want = "a scalar or an array of shape (d,) = " + f"({d},)" if per_dim else "a scalar"
        raise ShapeError(f"kernel {name} must be {want}, got shape {tuple(arr.shape)}")
    if xp.is_concrete(arr):
        import numpy as np

        if not (np.asarray(xp.to_numpy(arr)) > 0).all():
            raise ValueError(f"kernel {name} must be positive, got {xp.to_numpy(arr)}")
    return arr


def _safe_sqrt(xp, r2):
    """sqrt with a zero (not NaN) derivative at 0: distances between equal points."""
    pos = r2 > 0
    return xp.where(pos, xp.sqrt(xp.where(pos, r2, 1 + 0 * r2)), 0 * r2)


class KernelMatrix(LinearOperator):
    """Base of the blocked kernel matrices ``K(X, Y)`` (n x m); see the module docstring.

    Subclasses give ``_stat(A, B)`` (the statistic between rows of A (b, d) and B (m, d), a
    (b, m) array), ``_stat_pairs(A, B)`` (the same for paired rows, (b,)) and ``_profile(s)``
    (the kernel as a function of the statistic). Parameter count: n d + m d + d + 1 (ARD).
    """

    _leaves = ("X", "Y", "lengthscale", "outputscale")
    _extra_kwargs: tuple[str, ...] = ()

    def __init__(self, X, Y=None, lengthscale=1.0, outputscale=1.0, *, block_size: int | None = None, dtype=None, **extra):
        xp = backend_of(X)
        if xp is None or not xp.is_array(X) or X.ndim != 2:
            raise ShapeError(f"{type(self).__name__} needs X of shape (n, d), got {type(X).__name__} of shape {getattr(X, 'shape', None)}")
        if xp.is_complex(X.dtype) or "int" in str(X.dtype):
            raise TypeError(f"{type(self).__name__} needs real floating-point points X, got dtype {X.dtype}")
        rdt, device = X.dtype, xp.device_of(X)
        n, d = X.shape
        if Y is not None:
            if backend_of(Y) is not xp:
                from ..errors import BackendMismatchError

                raise BackendMismatchError(f"{type(self).__name__}: X is a {xp.name} array but Y is {type(Y).__name__}")
            if Y.ndim != 2 or Y.shape[1] != d:
                raise ShapeError(f"{type(self).__name__}: Y must have shape (m, {d}) like X (n, {d}), got {tuple(Y.shape)}")
            if Y.dtype != rdt:
                Y = xp.astype(Y, rdt)
        m = n if Y is None else Y.shape[0]
        if block_size is None:
            block_size = max(min(n, MIN_BLOCK_ROWS), BLOCK_ENTRIES // max(m, 1))
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int (rows per block), got {block_size!r}")
        if dtype is None:
            dtype = rdt
        else:
            dtype = xp.as_dtype(dtype)
            if dtype != rdt and dtype != xp.complex_dtype(rdt):
                raise TypeError(f"{type(self).__name__}: dtype must be X's dtype {rdt} or its complex counterpart, got {dtype}")
        self.X, self.Y = X, Y
        self.lengthscale = _param(xp, lengthscale, rdt, device, "lengthscale", d, per_dim=True)
        self.outputscale = _param(xp, outputscale, rdt, device, "outputscale", d, per_dim=False)
        for key in self._extra_kwargs:
            setattr(self, key, _param(xp, extra.pop(key), rdt, device, key, d, per_dim=False))
        if extra:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(extra)}")
        self.block_size = block_size
        tags = ("PSD", "SelfAdjoint") if Y is None else ()
        super().__init__((n, m), dtype, xp, device, tags)

    # ------------------------------------------------------------ kernel formulas
    @property
    def _Yfull(self):
        return self.X if self.Y is None else self.Y

    def _params(self):
        return (self.lengthscale, self.outputscale) + tuple(getattr(self, k) for k in self._extra_kwargs)

    def _sqdist(self, A, B, ls):
        """Scaled squared distances between the rows of A (b, d) and B (m, d): (b, m)."""
        xp = self.xp
        As, Bs = A / ls, B / ls
        d = A.shape[1]
        if d <= _DIFF_DIMS:
            out = None
            for j in range(d):
                diff = As[:, j : j + 1] - Bs[:, j][None, :]
                out = diff * diff if out is None else out + diff * diff
            return out
        c = xp.sum(Bs, axis=0) / Bs.shape[0]  # centring: shift-invariant, smaller cancellation
        As, Bs = As - c, Bs - c
        na, nb = xp.sum(As * As, axis=1)[:, None], xp.sum(Bs * Bs, axis=1)[None, :]
        r2 = na + nb - 2 * (As @ Bs.T)
        # below the rounding level of the expansion, r^2 is noise: snap it to 0 (equal points exact)
        return xp.where(r2 > (8 * xp.eps(A.dtype)) * (na + nb), r2, 0 * r2)

    def _stat(self, A, B, params):
        return self._sqdist(A, B, params[0])

    def _stat_pairs(self, A, B, params):
        D = (A - B) / params[0]
        return self.xp.sum(D * D, axis=1)

    def _profile(self, s, params):
        raise NotImplementedError

    def _block(self, A, B, params):
        """The kernel matrix between rows A (b, d) and B (m, d), in the real dtype."""
        return self._profile(self._stat(A, B, params), params)

    # ------------------------------------------------------------------ products
    def _matmat(self, V):
        return self._blocked(self.X, self._Yfull, V, self._params())

    def _blocked(self, X, Y, V, params):
        """``K(X, Y) @ V`` in row blocks of ``self.block_size``."""
        xp, b, n = self.xp, self.block_size, X.shape[0]
        cplx = xp.is_complex(V.dtype)

        def block(A, Y, V, *params):
            Kb = self._block(A, Y, params)
            return (xp.astype(Kb, V.dtype) if cplx else Kb) @ V

        if xp.name == "jax":  # one compiled loop, cached per kernel formula and block size
            return _jax_runner()(self._spec(), X, Y, V, tuple(params))
        if n <= b:
            return block(X, Y, V, *params)
        if xp.name == "torch":
            import torch
            from torch.utils.checkpoint import checkpoint

            grad = torch.is_grad_enabled() and any(t.requires_grad for t in (X, Y, V, *params))
            if grad:
                outs = [checkpoint(block, X[i : i + b], Y, V, *params, use_reentrant=False) for i in range(0, n, b)]
                return torch.cat(outs, 0)
            # no graph: write into one output. A list of small block results kept alive between the
            # large per-block temporaries fragmented glibc's heap until RSS held every block
            # (n = 12,000: +576 MB, one n x n matrix; n = 200,000 ran out of 24 GB)
            first = block(X[:b], Y, V, *params)
            out = first.new_empty((n, V.shape[1]))
            out[:b] = first
            for i in range(b, n, b):
                out[i : i + b] = block(X[i : i + b], Y, V, *params)
            return out
        out = xp.zeros((n, V.shape[1]), xp.result_type(self.dtype, V.dtype), self.device)
        for i in range(0, n, b):
            out[i : i + b] = block(X[i : i + b], Y, V, *params)
        return out

    def _spec(self):
        """The static part (class, block size, nu, ...): the cache key of the compiled JAX loop."""
        return tree_flatten(self)[1]

    def _blocked_jax(self, X, Y, V, params):
        """``lax.map`` over the row blocks of X, padded with zero rows to a multiple of the block."""
        import jax
        import jax.numpy as jnp

        b, (n, d) = self.block_size, X.shape
        cplx = jnp.iscomplexobj(V)

        def block(A):
            Kb = self._block(A, Y, params)
            return (Kb.astype(V.dtype) if cplx else Kb) @ V

        if n <= b:
            return block(X)
        nb = -(-n // b)
        Xp = jnp.concatenate([X, jnp.zeros((nb * b - n, d), X.dtype)], 0).reshape(nb, b, d)
        return jax.lax.map(jax.checkpoint(block), Xp).reshape(nb * b, V.shape[1])[:n]

    def _rmatmat(self, V):  # V (k, n) @ K = (K^T V^T)^T and K^T = K(Y, X)
        return self._blocked(self._Yfull, self.X, V.T, self._params()).T

    def to_dense(self):
        K = self._block(self.X, self._Yfull, self._params())
        return self.xp.astype(K, self.dtype) if K.dtype != self.dtype else K

    # ------------------------------------------------------------------ algebra
    def _rebuild(self, X, Y, **changes):
        kw = dict(lengthscale=self.lengthscale, outputscale=self.outputscale, dtype=self.dtype)
        kw.update({k: getattr(self, k) for k in self._extra_kwargs})
        kw.update(changes)
        m = X.shape[0] if Y is None else Y.shape[0]
        block = self.block_size if m == self.shape[1] else None
        return type(self)(X, Y, block_size=block, **kw)

    def _transpose(self):
        if self.Y is None:
            return self
        return self._rebuild(self.Y, self.X)

    def _adjoint(self):  # the kernel matrix is real
        return self._transpose()

    def _scale(self, c):
        if isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0:  # c K is the same kernel, os -> c os
            return self._rebuild(self.X, self.Y, outputscale=self.outputscale * c)
        return super()._scale(c)

    def _slice(self, rows, cols):
        if self.Y is None and isinstance(rows, slice) and isinstance(cols, slice) and rows == cols:
            return self._rebuild(self.X[rows], None)
        return self._rebuild(self.X[rows], self._Yfull[cols])

    def diagonal_values(self):
        """The diagonal ``k(x_i, y_i)``, i < min(n, m), exactly: O(min(n, m) d)."""
        params = self._params()
        k = min(self.shape)
        if self.Y is None and self._stationary:
            s = self.xp.zeros((k,), self.X.dtype, self.device)
        else:
            s = self._stat_pairs(self.X[:k], self._Yfull[:k], params)
        out = self._profile(s, params)
        return self.xp.astype(out, self.dtype) if out.dtype != self.dtype else out

    _stationary = True


class RBF(KernelMatrix):
    """Squared exponential ``os exp(-|x - y|^2 / (2 l^2))``; a block costs O(b m d)."""

    def _profile(self, s, params):
        return params[1] * self.xp.exp(-0.5 * s)


class Matern(KernelMatrix):
    """Matérn kernel with ``nu`` in (0.5, 1.5, 2.5) (static); see the module docstring."""

    def __init__(self, X, Y=None, lengthscale=1.0, outputscale=1.0, *, nu: float = 1.5, block_size=None, dtype=None):
        if nu not in (0.5, 1.5, 2.5):
            raise ValueError(f"Matern supports nu = 0.5, 1.5 or 2.5 (closed forms), got nu={nu!r}")
        self.nu = float(nu)
        super().__init__(X, Y, lengthscale, outputscale, block_size=block_size, dtype=dtype)

    def _rebuild(self, X, Y, **changes):
        changes.setdefault("nu", self.nu)
        return super()._rebuild(X, Y, **changes)

    def _profile(self, s, params):
        xp, os = self.xp, params[1]
        r = _safe_sqrt(xp, s)
        if self.nu == 0.5:
            return os * xp.exp(-r)
        if self.nu == 1.5:
            a = math.sqrt(3.0) * r
            return os * (1 + a) * xp.exp(-a)
        a = math.sqrt(5.0) * r
        return os * (1 + a + a * a / 3) * xp.exp(-a)


class Periodic(KernelMatrix):
    """Exp-sine-squared ``os exp(-2 Σ_d sin^2(π (x_d - y_d) / period) / l_d^2)``; leaves add ``period``."""

    _leaves = KernelMatrix._leaves + ("period",)
    _extra_kwargs = ("period",)

    def __init__(self, X, Y=None, lengthscale=1.0, outputscale=1.0, *, period=1.0, block_size=None, dtype=None):
        super().__init__(X, Y, lengthscale, outputscale, block_size=block_size, dtype=dtype, period=period)

    def _stat(self, A, B, params):
        ls, p = params[0], params[2]
        sin = _lib(self.xp).sin
        out = None
        for j in range(A.shape[1]):
            lj = ls if ls.ndim == 0 else ls[j]
            t = sin((math.pi / p) * (A[:, j : j + 1] - B[:, j][None, :])) / lj
            t = t * t
            out = t if out is None else out + t
        return out

    def _stat_pairs(self, A, B, params):
        ls, p = params[0], params[2]
        t = _lib(self.xp).sin((math.pi / p) * (A - B)) / ls
        return self.xp.sum(t * t, axis=1)

    def _profile(self, s, params):
        return params[1] * self.xp.exp(-2.0 * s)


class LinearKernel(KernelMatrix):
    """``os Σ_d x_d y_d / l_d^2``: rank <= d, applied as ``os Xs (Ys^T V)`` in O((n + m) d k)."""

    _stationary = False

    def _block(self, A, B, params):
        ls, os = params[0], params[1]
        return os * ((A / ls) @ (B / ls).T)

    def _stat_pairs(self, A, B, params):
        ls = params[0]
        return self.xp.sum((A / ls) * (B / ls), axis=1)

    def _profile(self, s, params):
        return params[1] * s

    def _blocked(self, X, Y, V, params):
        xp = self.xp
        ls, os = params[0], params[1]
        Xs, Ys = X / ls, Y / ls
        if xp.is_complex(V.dtype):
            Xs, Ys = xp.astype(Xs, V.dtype), xp.astype(Ys, V.dtype)
        return os * (Xs @ (Ys.T @ V))


_JAX_RUNNER = None


def _jax_runner():
    """``jax.jit`` of the blocked product, static in the kernel's formula (its pytree aux data)."""
    global _JAX_RUNNER
    if _JAX_RUNNER is None:
        import jax

        def run(spec, X, Y, V, params):
            op = tree_unflatten(spec, (None,) * len(spec[0]._leaves))  # formulas only: no arrays
            return op._blocked_jax(X, Y, V, params)

        _JAX_RUNNER = jax.jit(run, static_argnums=0)
    return _JAX_RUNNER
