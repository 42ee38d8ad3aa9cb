"""PyTorch backend (CPU and CUDA); imported only when a torch tensor reaches linops."""

from __future__ import annotations



import numpy as np
import torch

from ._base import Backend

_NP_TO_TORCH = {
    np.dtype(np.float16): torch.float16,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
    np.dtype(np.complex64): torch.complex64,
    np.dtype(np.complex128): torch.complex128,
    np.dtype(np.int64): torch.int64,
    np.dtype(np.int32): torch.int32,
    np.dtype(np.bool_): torch.bool,
}


class TorchBackend(Backend):
    name = "torch"
    array_types = (torch.Tensor,)

    def is_dtype(self, x):
        return isinstance(x, torch.dtype)

    def as_dtype(self, dtype):
        if isinstance(dtype, torch.dtype):
            return dtype
        return _NP_TO_TORCH[np.dtype(dtype)]

    def result_type(self, *dtypes):
        out = dtypes[0]
        for d in dtypes[1:]:
            out = torch.promote_types(out, d)
        return out

    def is_complex(self, dtype):
        return dtype.is_complex

    def real_dtype(self, dtype):
        return dtype.to_real() if dtype.is_complex else dtype

    def complex_dtype(self, dtype):
        return dtype.to_complex() if not dtype.is_complex else dtype

    def eps(self, dtype):
        return float(torch.finfo(dtype).eps)

    def default_float(self):
        return torch.get_default_dtype()

    def device_of(self, x):
        return x.device

    # creation
    def asarray(self, x, dtype=None, device=None):
        return torch.as_tensor(x, dtype=None if dtype is None else self.as_dtype(dtype), device=device)

    def zeros(self, shape, dtype, device=None):
        return torch.zeros(shape, dtype=dtype, device=device)

    def ones(self, shape, dtype, device=None):
        return torch.ones(shape, dtype=dtype, device=device)

    def eye(self, n, dtype, device=None):
        return torch.eye(n, dtype=dtype, device=device)

    def arange(self, n, device=None):
        return torch.arange(n, device=device)

    def astype(self, x, dtype):
        return x.to(dtype)

    # helpers
    def concat(self, xs, axis=0):
        return torch.cat(xs, dim=axis)

    def stack(self, xs, axis=0):
        return torch.stack(xs, dim=axis)

    def conj(self, x):
        return x.conj().resolve_conj() if x.is_complex() else x

    def real(self, x):
        return x.real if x.is_complex() else x

    def diagonal(self, x):
        return torch.diagonal(x)

    def diag(self, v):
        return torch.diag(v)

    def tril(self, x, k=0):
        return torch.tril(x, k)

    def triu(self, x, k=0):
        return torch.triu(x, k)

    def kron(self, a, b):
        return torch.kron(a.contiguous(), b.contiguous())  # kron fails on some strided views

    def einsum(self, spec, *xs):
        return torch.einsum(spec, *xs)

    def moveaxis(self, x, src, dst):
        return torch.movedim(x, src, dst)

    def argsort(self, x, descending=False):
        return torch.argsort(x, descending=descending, stable=True)

    def topk(self, x, k, largest=True):
        return torch.topk(x, k, largest=largest, sorted=True).indices

    def index_set(self, x, idx, values, axis=0):
        out = x.clone()
        out[(slice(None),) * axis + (idx,)] = values
        return out

    def all_finite(self, x):
        return bool(torch.isfinite(x).all())

    def hermitian_gap(self, M):
        with torch.no_grad():  # a check on values: no graph, no warning for tensors that need grad
            return super().hermitian_gap(M.detach())

    def to_numpy(self, x):
        return x.detach().cpu().resolve_conj().resolve_neg().numpy()


    # elementwise
    def exp(self, x):
        return torch.exp(x)

    def log(self, x):
        return torch.log(x)

    def sqrt(self, x):
        return torch.sqrt(x)

    def abs(self, x):
        return torch.abs(x)

    def where(self, c, a, b):
        return torch.where(c, a, b)

    def prod(self, x):
        return torch.prod(x)

    def sum(self, x, axis=None):
        return torch.sum(x) if axis is None else torch.sum(x, dim=axis)

    def coldot(self, x, y):
        return torch.linalg.vecdot(x, y, dim=0)

    # linear algebra
    def cholesky(self, a):
        L, info = torch.linalg.cholesky_ex(a)
        if int(info) != 0:
            raise self._not_psd(f"leading minor {int(info)} is not positive")
        return L

    def cho_solve(self, L, b):
        return torch.cholesky_solve(b, L) if b.ndim == 2 else torch.cholesky_solve(b[:, None], L)[:, 0]

    def solve_triangular(self, t, b, lower, adjoint=False):
        if adjoint:
            return torch.linalg.solve_triangular(t.mH, b, upper=lower)
        return torch.linalg.solve_triangular(t, b, upper=not lower)

    def lu_factor(self, a):
        lu, piv, info = torch.linalg.lu_factor_ex(a)
        if int(info) != 0:
            raise self._singular(int(info) - 1)
        return (lu, piv)

    def lu_solve(self, lu, b, adjoint=False):
        if b.ndim == 1:
            return torch.linalg.lu_solve(lu[0], lu[1], b[:, None], adjoint=adjoint)[:, 0]
        return torch.linalg.lu_solve(lu[0], lu[1], b, adjoint=adjoint)

    def lu_slogdet(self, lu):
        d = torch.diagonal(lu[0])
        piv = lu[1]
        flips = int((piv != torch.arange(1, len(piv) + 1, device=piv.device, dtype=piv.dtype)).sum())
        sign = (-1.0) ** flips * torch.prod(d / d.abs())
        return sign, torch.log(d.abs()).sum()

    def solve(self, a, b):
        return torch.linalg.solve(a, b)

    def eigh(self, a):
        return torch.linalg.eigh(a)

    def eig(self, a):
        return torch.linalg.eig(a)

    def svd(self, a):
        return torch.linalg.svd(a, full_matrices=False)

    def qr(self, a):
        return torch.linalg.qr(a)

    def slogdet(self, a):
        return torch.linalg.slogdet(a)

    def expm(self, a):
        return torch.linalg.matrix_exp(a)

    def tridiagonal_solve(self, lower, diag, upper, b):
        # Thomas algorithm without pivoting (stable for diagonally dominant or SPD bands);
        # a Python loop over n, each step vectorised over the right-hand sides.
        n = diag.shape[0]
        dtype = self.result_type(lower.dtype, diag.dtype, upper.dtype, b.dtype)
        c = [None] * n
        d = [None] * n
        denom = diag[0].to(dtype)
        c[0] = upper[0] / denom if n > 1 else None
        d[0] = b[0].to(dtype) / denom
        for i in range(1, n):
            denom = diag[i] - lower[i - 1] * c[i - 1]
            if i < n - 1:
                c[i] = upper[i] / denom
            d[i] = (b[i] - lower[i - 1] * d[i - 1]) / denom
        x = [None] * n
        x[-1] = d[-1]
        for i in range(n - 2, -1, -1):
            x[i] = d[i] - c[i] * x[i + 1]
        return torch.stack(x)

    # fft
    def fft(self, x, n=None, axis=-1, norm=None):
        return torch.fft.fft(x, n=n, dim=axis, norm=norm)

    def ifft(self, x, n=None, axis=-1, norm=None):
        return torch.fft.ifft(x, n=n, dim=axis, norm=norm)

    def rfft(self, x, n=None, axis=-1, norm=None):
        return torch.fft.rfft(x, n=n, dim=axis, norm=norm)

    def irfft(self, x, n=None, axis=-1, norm=None):
        return torch.fft.irfft(x, n=n, dim=axis, norm=norm)

    # AD and random
    def linear_transpose(self, f, like, ct):
        y0 = torch.zeros_like(like)
        _, vjp = torch.func.vjp(f, y0)
        if ct.is_complex():  # torch's vjp is conjugate-linear: J^T ct = conj(J^H conj(ct))
            return vjp(ct.conj())[0].conj().resolve_conj()
        return vjp(ct)[0]

    def make_key(self, seed):
        return torch.Generator().manual_seed(seed)

    def normal(self, key, shape, dtype, device=None):
        out = torch.randn(shape, generator=key, dtype=dtype)
        return out.to(device) if device is not None else out
