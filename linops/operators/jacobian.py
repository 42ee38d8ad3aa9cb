"""The Jacobian and the Hessian of a function at a point, applied by automatic differentiation.

``Jacobian(f, x)``: ``J = df/dx`` at ``x``, an m x n operator with n = x.size, m = f(x).size
(``x`` and ``f(x)`` may have any shape; products use them flattened, row-major).
``J @ V`` runs forward mode (one ``jvp`` per column, vectorised with ``vmap``) and ``X @ J``
reverse mode (one ``vjp`` pullback, vmapped over rows): each costs about k evaluations of f
and never forms J. ``Hessian(f, x)`` for a scalar ``f``: the n x n second derivative,
annotated SelfAdjoint (``psd=True`` adds PSD, for a convex f), applied by forward-over-reverse
Hessian-vector products, ``jvp(grad f, x; v)``. So ``lo.solve(lo.Hessian(f, x, psd=True), g,
alg=lo.CG())`` is a Newton step and ``lo.eigh(H, k=3, alg=lo.Lanczos())`` estimates curvature.

Backends: torch (``torch.func.jvp``/``vjp``/``grad``/``vmap``) and JAX (``jax.jvp``/``vjp``/
``grad``/``vmap``). numpy has no automatic differentiation: a TypeError says so. With
``vectorize=False`` the columns are done in a Python loop (for an ``f`` that ``vmap`` cannot
trace, e.g. one with data-dependent Python control flow). The Hessian needs a real ``x``.

Pytree: the point ``x`` is the only leaf; ``f`` (and ``vectorize``, the shapes) are static.
So ``jax.jit`` takes the operator as an argument (a new ``f`` object means a new trace, as for
any static argument), ``jax.grad`` w.r.t. the operator differentiates w.r.t. ``x``, and torch
autograd reaches ``x``. Parameters that ``f`` closes over are constants to linops: to
differentiate w.r.t. them, make them part of ``x`` or rebuild the operator inside the
differentiated function.
"""

from __future__ import annotations

import math

from ..backends import backend_of
from ..errors import ShapeError
from .base import LinearOperator

__all__ = ["Jacobian", "Hessian"]


def _backend(x, who: str):
    xp = backend_of(x)
    if xp is None or not xp.is_array(x):
        raise TypeError(f"{who} needs x as a torch tensor or a jax array, got {type(x).__name__}")
    if xp.name == "numpy":
        raise TypeError(
            f"{who} needs automatic differentiation, which numpy lacks: pass x as a torch tensor "
            "(torch.as_tensor(x)) or a jax array (jnp.asarray(x)) and write f with that library"
        )
    if not (xp.is_complex(x.dtype) or "float" in str(x.dtype)):
        raise TypeError(f"{who} needs a floating-point point x, got dtype {x.dtype}")
    return xp


def _ad(xp):
    """(jvp, vjp, grad, vmap) of the backend's library, all with JAX's call conventions."""
    if xp.name == "jax":
        import jax

        return jax.jvp, jax.vjp, jax.grad, jax.vmap
    import torch.func as tf

    return tf.jvp, tf.vjp, tf.grad, tf.vmap


class _AutodiffOperator(LinearOperator):
    _leaves = ("x",)

    def _flat(self, fn):
        shape = tuple(self.x.shape)
        return lambda v: fn(v.reshape(shape)).reshape(-1)

    def _columns(self, one, X):
        """Apply ``one`` (n,) -> (m,) to every column of X (n, k): vmapped, or a loop."""
        if self.vectorize:
            vmap = _ad(self.xp)[3]
            return vmap(one, 1, 1)(X)  # (in_dims, out_dims): jax calls them in_axes, out_axes
        return self.xp.stack([one(X[:, j]) for j in range(X.shape[1])], 1)


class Jacobian(_AutodiffOperator):
    """``df/dx`` at ``x`` (m x n); products by jvp (``J V``) and vjp (``X J``), each ~k evaluations of f."""

    def __init__(self, f, x, *, vectorize: bool = True):
        xp = _backend(x, "Jacobian")
        if not callable(f):
            raise TypeError(f"Jacobian(f, x) needs a callable f, got {type(f).__name__}")
        self.f, self.x, self.vectorize = f, x, bool(vectorize)
        if xp.name == "jax":
            import jax

            out = jax.eval_shape(f, x)
        else:
            import torch

            with torch.no_grad():
                out = f(x.detach())
        if not hasattr(out, "shape"):
            raise TypeError(f"Jacobian: f(x) must return an array, got {type(out).__name__}")
        if out.dtype != x.dtype:
            raise TypeError(f"Jacobian: f(x) has dtype {out.dtype} but x has {x.dtype}; make them agree")
        m, n = math.prod(out.shape), math.prod(x.shape)
        super().__init__((m, n), x.dtype, xp, xp.device_of(x))

    def _matmat(self, X):
        if self.xp.name == "jax":
            return _jax_call(type(self), "matmat", self.f, self.vectorize, self.x, X)
        return self._matmat_ad(X)

    def _rmatmat(self, X):
        if self.xp.name == "jax":
            return _jax_call(type(self), "rmatmat", self.f, self.vectorize, self.x, X)
        return self._rmatmat_ad(X)

    def _matmat_ad(self, X):
        jvp = _ad(self.xp)[0]
        f, x0 = self._flat(self.f), self.x.reshape(-1)
        return self._columns(lambda v: jvp(f, (x0,), (v,))[1], X)

    def _rmatmat_ad(self, X):  # rows of X J = (J^T x_i)^T: one pullback, vmapped over rows
        xp = self.xp
        _, vjp, _, vmap = _ad(xp)
        f, x0 = self._flat(self.f), self.x.reshape(-1)
        _, pull = vjp(f, x0)
        # JAX's pullback is linear: c -> c J. torch's is conjugate-linear: c -> conj(conj(c) J).
        conj = xp.name == "torch" and xp.is_complex(self.dtype)
        one = (lambda c: pull(c.conj())[0].conj()) if conj else (lambda c: pull(c)[0])
        out = vmap(one)(X) if self.vectorize else xp.stack([one(X[i]) for i in range(X.shape[0])], 0)
        return out.resolve_conj() if conj else out


class Hessian(_AutodiffOperator):
    """``d^2 f / dx^2`` at ``x`` for a scalar ``f`` (n x n, SelfAdjoint; ``psd=True`` adds PSD).

    Products: one Hessian-vector product per column (forward-over-reverse), about 4 to 5 times
    the cost of one evaluation of f each.
    """

    def __init__(self, f, x, *, psd: bool = False, vectorize: bool = True):
        xp = _backend(x, "Hessian")
        if xp.is_complex(x.dtype):
            raise TypeError("Hessian needs a real point x: a complex Hessian is not self-adjoint; use Jacobian of the gradient instead")
        if not callable(f):
            raise TypeError(f"Hessian(f, x) needs a callable f, got {type(f).__name__}")
        self.f, self.x, self.vectorize = f, x, bool(vectorize)
        if xp.name == "jax":
            import jax

            out = jax.eval_shape(f, x)
        else:
            import torch

            with torch.no_grad():
                out = f(x.detach())
        if tuple(getattr(out, "shape", (None,))) != ():
            raise ShapeError(f"Hessian: f(x) must return a scalar, got shape {getattr(out, 'shape', type(out).__name__)}")
        n = math.prod(x.shape)
        tags = ("SelfAdjoint", "PSD") if psd else ("SelfAdjoint",)
        super().__init__((n, n), x.dtype, xp, xp.device_of(x), tags)

    def _matmat(self, X):
        if self.xp.name == "jax":
            return _jax_call(type(self), "matmat", self.f, self.vectorize, self.x, X)
        return self._matmat_ad(X)

    def _matmat_ad(self, X):
        jvp, _, grad, _ = _ad(self.xp)
        shape = tuple(self.x.shape)
        g = grad(lambda v: self.f(v.reshape(shape)))
        x0 = self.x.reshape(-1)
        return self._columns(lambda v: jvp(g, (x0,), (v,))[1], X)

    def _rmatmat(self, X):
        return self._matmat(X.T).T

    def _transpose(self):
        return self


_JAX_CALL = None


def _jax_call(cls, which, f, vectorize, x, X):
    """The JAX products under ``jax.jit``, static in (class, product, f, vectorize): compiled once
    per operator function, reused by every product (a Krylov solve's iterations)."""
    global _JAX_CALL
    if _JAX_CALL is None:
        import jax

        def run(cls, which, f, vectorize, x, X):
            op = object.__new__(cls)
            op.__dict__.update(f=f, x=x, vectorize=vectorize, xp=backend_of(x))
            return op._matmat_ad(X) if which == "matmat" else op._rmatmat_ad(X)

        _JAX_CALL = jax.jit(run, static_argnums=(0, 1, 2, 3))
    return _JAX_CALL(cls, which, f, vectorize, x, X)
