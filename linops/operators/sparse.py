"""Sparse matrices of scipy, torch and JAX as operators: ``Sparse(M)``.

Accepted: ``scipy.sparse`` arrays/matrices (CSR and CSC kept, every other format converted to
CSR), torch sparse COO (coalesced) and CSR tensors (CSC converted to CSR), and 2-D
``jax.experimental.sparse.BCOO`` (``BCSR`` converted to BCOO). The operator stores the
format's arrays as leaves: ``values`` (nnz,) and the integer ``indices`` (and ``indptr`` for
compressed formats), so ``jax.jit``/``jax.grad`` and torch autograd see the values as
ordinary arrays; the library's sparse object is rebuilt around them for each product (a
constant cost, no copy). The stored orientation is static: ``A.T`` and ``A.H`` flip a flag
(and conjugate the values) and stay sparse.

Costs: products O(nnz k); ``diag``/``trace`` O(nnz) from the stored entries; parameter
count ``nnz``. Slicing keeps the matrix sparse for scipy and torch COO (other formats fall
back to a lazy ``Sliced``). What each library can do:

* scipy: everything; ``lo.solve``/``lo.inv``/``lo.logdet`` of a square one use a sparse LU
  (``scipy.sparse.linalg.splu``) under ``Auto`` and ``LU`` (rules in
  :mod:`linops.functions.sparse_rules`); ``CG`` etc. through the Krylov rules.
* torch: products, ``X @ A``, gradients w.r.t. ``values`` (autograd of ``torch.sparse.mm``, COO
  and CSR), CPU and CUDA. No sparse factorisation: square solves go through Krylov methods, or
  through the dense matrix when small (``Auto``).
* JAX: products under ``jax.jit``/``jax.grad``/``jax.vmap`` over right-hand sides; gradients
  w.r.t. ``values``; no sparse factorisation (as torch). The sparsity pattern (``nnz``) is
  static, as BCOO requires.
"""

from __future__ import annotations

from ..backends import backend_named
from ..errors import ShapeError
from .base import LinearOperator, tree_flatten, tree_unflatten

__all__ = ["Sparse"]


def _library(M) -> str | None:
    mod = type(M).__module__
    if mod.startswith("scipy.sparse"):
        return "scipy"
    if mod.startswith("torch"):
        return "torch" if getattr(M, "is_sparse", False) or "sparse" in str(getattr(M, "layout", "")) else None
    if mod.startswith("jax.experimental.sparse"):
        return "jax"
    return None


class Sparse(LinearOperator):
    """A sparse matrix of scipy, torch or JAX; see the module docstring.

    ``Sparse(M)``: M of shape (m, n) with ``nnz`` stored entries. Products cost O(nnz k),
    memory O(nnz). Integer or boolean matrices are converted to the backend's float.
    """

    _leaves = ("values", "indices", "indptr")

    def __init__(self, M):
        lib = _library(M)
        if lib is None:
            raise TypeError(
                f"Sparse takes a scipy.sparse matrix, a torch sparse COO/CSR tensor or a jax BCOO array, "
                f"got {type(M).__name__}; wrap a dense array with lo.Dense(M)"
            )
        if len(M.shape) != 2:
            raise ShapeError(f"Sparse needs a 2-D matrix, got shape {tuple(M.shape)}")
        if lib == "scipy":
            xp = backend_named("numpy")
            fmt = M.format if M.format in ("csr", "csc") else "csr"
            M = M.asformat(fmt)
            if M.dtype.kind not in "fc":
                M = M.astype("float64")
            if not M.has_sorted_indices:  # sort a copy: the caller's matrix is left as it was
                M = M.copy()
                M.sort_indices()
            values, indices, indptr, device = M.data, M.indices, M.indptr, None
        elif lib == "torch":
            import torch

            xp = backend_named("torch")
            if M.layout == torch.sparse_csc:
                M = M.to_sparse_csr()
            if not (M.dtype.is_floating_point or M.dtype.is_complex):
                M = M.to(torch.get_default_dtype())
            if M.layout == torch.sparse_coo:
                M = M.coalesce()
                fmt, values, indices, indptr = "coo", M.values(), M.indices(), None
            elif M.layout == torch.sparse_csr:
                fmt, values, indices, indptr = "csr", M.values(), M.col_indices(), M.crow_indices()
                if values.is_complex():  # torch cannot conjugate a complex view into a CSR tensor: copy it
                    values = values.clone()
            else:
                raise TypeError(f"Sparse supports torch sparse COO, CSR and CSC tensors, got layout {M.layout}")
            if values.ndim != 1:
                raise ShapeError("Sparse needs a torch sparse tensor without dense or batch dimensions")
            device = values.device
        else:
            from jax.experimental import sparse as jsparse

            xp = backend_named("jax")
            if isinstance(M, jsparse.BCSR):
                M = M.to_bcoo()
            if not isinstance(M, jsparse.BCOO) or M.n_batch or M.n_dense:
                raise TypeError("Sparse supports 2-D jax BCOO (or BCSR) arrays without batch or dense dimensions")
            values, indices, indptr = M.data, M.indices, None
            if values.dtype.kind not in "fc":
                values = values.astype(xp.default_float())
            fmt, device = "bcoo", xp.device_of(values)
        self.values, self.indices, self.indptr = values, indices, indptr
        self.fmt = fmt
        self.stored_shape = (int(M.shape[0]), int(M.shape[1]))
        self.transposed = False
        super().__init__(self.stored_shape, values.dtype, xp, device)

    # ------------------------------------------------------------------ storage
    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.values.shape[0])

    @property
    def num_params(self) -> int:
        return self.nnz

    def stored(self):
        """The library's sparse object for the *stored* matrix (``A.T`` flips only a flag)."""
        v, i, p, shape = self.values, self.indices, self.indptr, self.stored_shape
        if self.fmt in ("csr", "csc") and self.xp.name == "numpy":
            import scipy.sparse as sp

            cls = sp.csr_array if self.fmt == "csr" else sp.csc_array
            return cls((v, i, p), shape=shape, copy=False)
        if self.fmt == "coo":
            import torch

            return torch.sparse_coo_tensor(i, v, shape, is_coalesced=True, check_invariants=False)
        if self.fmt == "csr":
            import torch

            return torch.sparse_csr_tensor(p, i, v, shape, check_invariants=False)
        from jax.experimental import sparse as jsparse

        return jsparse.BCOO((v, i), shape=shape)

    def sparse(self):
        """The library's sparse object for this operator (stored matrix, or its transpose)."""
        M = self.stored()
        if not self.transposed:
            return M
        return M.t() if self.xp.name == "torch" else M.T

    def _with(self, **changes) -> Sparse:
        children, (cls, static) = tree_flatten(self)
        kids = dict(zip(self._leaves, children, strict=True))
        stat = dict(static)
        for k, v in changes.items():
            (kids if k in kids else stat)[k] = v
        if "transposed" in changes:
            stat["shape"] = self.shape[::-1]
        return tree_unflatten((cls, tuple(stat.items())), tuple(kids[k] for k in self._leaves))

    # ------------------------------------------------------------------ products
    def _apply(self, transposed: bool, X):
        """``S @ X`` with S the stored matrix or (``transposed``) its transpose."""
        xp = self.xp
        if xp.name == "torch" and xp.is_complex(X.dtype) and not xp.is_complex(self.dtype):
            return self._with(values=xp.astype(self.values, X.dtype))._apply(transposed, X)
        if xp.name == "torch" and self.fmt == "coo" and transposed:
            import torch

            M = torch.sparse_coo_tensor(self.indices.flip(0), self.values, self.stored_shape[::-1], check_invariants=False)
            return M @ X
        M = self.stored()
        if transposed:
            M = M.t() if self.xp.name == "torch" else M.T
        return M @ X

    def _matmat(self, X):
        return self._apply(self.transposed, X)

    def _rmatmat(self, X):  # X (k, m) @ A = (A^T X^T)^T
        return self._apply(not self.transposed, X.T).T

    def to_dense(self):
        M = self.stored()
        D = M.toarray() if self.xp.name == "numpy" else (M.to_dense() if self.xp.name == "torch" else M.todense())
        return D.T if self.transposed else D

    # ------------------------------------------------------------------ algebra
    def _transpose(self):
        return self._with(transposed=not self.transposed)

    def _adjoint(self):
        return self._with(transposed=not self.transposed, values=self.xp.conj(self.values))

    def _scale(self, c):
        return self._with(values=c * self.values)

    def _slice(self, rows, cols):
        if self.transposed:
            out = self._with(transposed=False)._slice(cols, rows)
            return None if out is None else out._with(transposed=True)
        if self.xp.name == "numpy":
            return Sparse(self.stored()[rows][:, cols])
        if self.fmt == "coo":
            import torch

            M = self.stored()
            for axis, ix in ((0, rows), (1, cols)):
                if isinstance(ix, slice):
                    ix = torch.arange(M.shape[axis], device=self.device)[ix]
                M = torch.index_select(M, axis, ix.to(torch.long))
            return Sparse(M)
        return None

    # ---------------------------------------------------------------- entries
    def coo(self):
        """``(rows, cols, values)`` of the stored entries of this operator (transpose applied)."""
        if self.xp.name == "numpy":
            C = self.stored().tocoo()
            r, c, v = C.row, C.col, C.data
        elif self.fmt == "coo":
            r, c, v = self.indices[0], self.indices[1], self.values
        elif self.fmt == "csr":
            import torch

            counts = self.indptr[1:] - self.indptr[:-1]
            r = torch.repeat_interleave(torch.arange(self.stored_shape[0], device=self.device), counts)
            c, v = self.indices, self.values
        else:
            r, c, v = self.indices[:, 0], self.indices[:, 1], self.values
        return (c, r, v) if self.transposed else (r, c, v)

    def diagonal_values(self):
        """The main diagonal (min(m, n),), summed from the stored entries in O(nnz)."""
        xp, k = self.xp, min(self.shape)
        if xp.name == "numpy":
            return self.stored().diagonal()
        r, c, v = self.coo()
        on = r == c
        w = xp.where(on, v, 0 * v)
        idx = xp.where(on, r, 0 * r)
        if xp.name == "torch":
            return xp.zeros((k,), self.dtype, self.device).index_add(0, idx, w)
        return xp.zeros((k,), self.dtype, self.device).at[idx].add(w)

    def trace_value(self):
        """The sum of the diagonal entries, O(nnz)."""
        xp = self.xp
        if xp.name == "numpy":
            return self.stored().diagonal().sum()
        r, c, v = self.coo()
        return xp.sum(xp.where(r == c, v, 0 * v))
