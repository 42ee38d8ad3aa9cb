"""JAX backend; imported only when a jax array reaches linops.

Importing it registers every LinearOperator class as a JAX pytree (see
``linops.operators.base``); nothing here flips global JAX settings such as x64.
"""

from __future__ import annotations



import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._base import Backend


def _traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


class JaxBackend(Backend):
    name = "jax"
    array_types = (jax.Array,)

    def is_array(self, x):
        return isinstance(x, jax.Array)

    def is_dtype(self, x):
        return isinstance(x, np.dtype) or (isinstance(x, type) and hasattr(x, "dtype"))

    def as_dtype(self, dtype):
        return jnp.dtype(dtype)

    def result_type(self, *dtypes):
        return jnp.result_type(*dtypes)

    def is_complex(self, dtype):
        return jnp.issubdtype(dtype, jnp.complexfloating)

    def real_dtype(self, dtype):
        return jnp.finfo(dtype).dtype

    def complex_dtype(self, dtype):
        return jnp.result_type(dtype, jnp.complex64)

    def eps(self, dtype):
        return float(jnp.finfo(dtype).eps)

    def default_float(self):
        return jnp.dtype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)

    def device_of(self, x):
        return None if _traced(x) else x.device

    def is_concrete(self, x):
        return not _traced(x)

    # creation
    def asarray(self, x, dtype=None, device=None):
        return jnp.asarray(x, dtype=dtype)

    def zeros(self, shape, dtype, device=None):
        return jnp.zeros(shape, dtype)

    def ones(self, shape, dtype, device=None):
        return jnp.ones(shape, dtype)

    def eye(self, n, dtype, device=None):
        return jnp.eye(n, dtype=dtype)

    def arange(self, n, device=None):
        return jnp.arange(n)

    def astype(self, x, dtype):
        return x.astype(dtype)

    # helpers
    def concat(self, xs, axis=0):
        return jnp.concatenate(xs, axis=axis)

    def stack(self, xs, axis=0):
        return jnp.stack(xs, axis=axis)

    def conj(self, x):
        return jnp.conj(x) if jnp.iscomplexobj(x) else x

    def real(self, x):
        return jnp.real(x)

    def diagonal(self, x):
        return jnp.diagonal(x)

    def diag(self, v):
        return jnp.diag(v)

    def tril(self, x, k=0):
        return jnp.tril(x, k)

    def triu(self, x, k=0):
        return jnp.triu(x, k)

    def kron(self, a, b):
        return jnp.kron(a, b)

    def einsum(self, spec, *xs):
        return jnp.einsum(spec, *xs)

    def moveaxis(self, x, src, dst):
        return jnp.moveaxis(x, src, dst)

    def argsort(self, x, descending=False):
        return jnp.argsort(x, descending=descending, stable=True)

    def topk(self, x, k, largest=True):
        return jax.lax.top_k(x if largest else -x, k)[1]

    def index_set(self, x, idx, values, axis=0):
        return x.at[(slice(None),) * axis + (idx,)].set(values)

    def all_finite(self, x):
        if _traced(x):
            return None
        return bool(np.isfinite(np.asarray(x)).all())  # numpy: inside a trace, jnp ops on constants trace too

    def to_numpy(self, x):
        return np.asarray(x)


    # elementwise
    def exp(self, x):
        return jnp.exp(x)

    def log(self, x):
        return jnp.log(x)

    def sqrt(self, x):
        return jnp.sqrt(x)

    def abs(self, x):
        return jnp.abs(x)

    def where(self, c, a, b):
        return jnp.where(c, a, b)

    def prod(self, x):
        return jnp.prod(x)

    def sum(self, x, axis=None):
        return jnp.sum(x) if axis is None else jnp.sum(x, axis=axis)

    def coldot(self, x, y):
        return jnp.vecdot(x, y, axis=0)

    # linear algebra
    def cholesky(self, a):
        L = jnp.linalg.cholesky(a)
        if self.all_finite(L) is False:  # jax reports failure as NaN; checked when not traced
            raise self._not_psd()
        return L

    def cho_solve(self, L, b):
        return jax.scipy.linalg.cho_solve((L, True), b)

    def solve_triangular(self, t, b, lower, adjoint=False):
        return jax.scipy.linalg.solve_triangular(t, b, lower=lower, trans=2 if adjoint else 0)

    def lu_factor(self, a):
        lu, piv = jax.scipy.linalg.lu_factor(a)
        if not _traced(lu):
            zero = np.flatnonzero(np.diagonal(np.asarray(lu)) == 0)
            if zero.size:
                raise self._singular(int(zero[0]))
        return (lu, piv)

    def lu_solve(self, lu, b, adjoint=False):
        return jax.scipy.linalg.lu_solve(lu, b, trans=2 if adjoint else 0)

    def lu_slogdet(self, lu):
        d = jnp.diagonal(lu[0])
        piv = lu[1]
        flips = jnp.sum(piv != jnp.arange(piv.shape[0]))
        sign = jnp.where(flips % 2 == 0, 1.0, -1.0) * jnp.prod(d / jnp.abs(d))
        return sign, jnp.sum(jnp.log(jnp.abs(d)))

    def solve(self, a, b):
        return jnp.linalg.solve(a, b)

    def eigh(self, a):
        return jnp.linalg.eigh(a)

    def eig(self, a):
        return jnp.linalg.eig(a)

    def svd(self, a):
        return jnp.linalg.svd(a, full_matrices=False)

    def qr(self, a):
        return jnp.linalg.qr(a)

    def slogdet(self, a):
        return jnp.linalg.slogdet(a)

    def expm(self, a):
        return jax.scipy.linalg.expm(a)

    def tridiagonal_solve(self, lower, diag, upper, b):
        dl = jnp.concatenate([jnp.zeros((1,), lower.dtype), lower])
        du = jnp.concatenate([upper, jnp.zeros((1,), upper.dtype)])
        dtype = jnp.result_type(dl, diag, du, b)
        return lax.linalg.tridiagonal_solve(dl.astype(dtype), diag.astype(dtype), du.astype(dtype), b.astype(dtype))

    # fft
    def fft(self, x, n=None, axis=-1, norm=None):
        return jnp.fft.fft(x, n, axis, norm)

    def ifft(self, x, n=None, axis=-1, norm=None):
        return jnp.fft.ifft(x, n, axis, norm)

    def rfft(self, x, n=None, axis=-1, norm=None):
        return jnp.fft.rfft(x, n, axis, norm)

    def irfft(self, x, n=None, axis=-1, norm=None):
        return jnp.fft.irfft(x, n, axis, norm)

    # control flow, AD, random
    def while_loop(self, cond, body, state):
        return lax.while_loop(cond, body, state)

    def linear_transpose(self, f, like, ct):
        return jax.linear_transpose(f, like)(ct)[0]

    def make_key(self, seed):
        return jax.random.PRNGKey(seed)

    def normal(self, key, shape, dtype, device=None):
        return jax.random.normal(key, shape, dtype)

