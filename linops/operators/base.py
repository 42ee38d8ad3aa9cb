"""The LinearOperator base class: shape, dtype, backend, products, and nothing else.

A new operator type needs a constructor and ``_matmat``::

    class Shift(lo.LinearOperator):
        _leaves = ("v",)                      # attributes holding arrays or operators
        def __init__(self, v):
            self.v = v                        # set fields first ...
            super().__init__((v.shape[0], v.shape[0]), v.dtype, backend_of(v))  # ... then freeze
        def _matmat(self, X):                 # X: (n, k) -> (n, k)
            return X + self.v[:, None] * X.sum(0)

Optionally ``_rmatmat`` (``X @ A`` for row-major ``X`` of shape (k, m)), ``to_dense``,
``_transpose``/``_adjoint`` and ``_scale`` for structure-preserving algebra. Everything
else (solve, logdet, eigh, ...) is a dispatched function in :mod:`linops.functions`.

Operators are immutable. They are JAX pytrees (their ``_leaves`` are the children and
every other attribute is static), registered when JAX is first used; torch tensors in
them are tracked by autograd like any other.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import numpy as np

from ..backends import Backend, backend_named, backend_of, common_backend, on_backend_load
from ..errors import BackendMismatchError, DeviceMismatchError, ShapeError

__all__ = [
    "LinearOperator", "array_leaves", "combine", "is_scalar", "scaled_annotations", "tree_flatten", "tree_unflatten", "with_annotations",
]

_NUMPY = backend_named("numpy")


def is_scalar(c: Any) -> bool:
    """Python numbers and 0-d arrays of any backend."""
    if isinstance(c, (int, float, complex, np.number)):
        return not isinstance(c, bool)
    return getattr(c, "ndim", None) == 0 and backend_of(c) is not None


def scaled_annotations(tags: frozenset, c: Any) -> frozenset:
    """What survives of ``tags`` in ``c * A``: all for c > 0 (but Unitary needs c == 1), SelfAdjoint for real c."""
    if isinstance(c, (int, float, np.integer, np.floating)) and not isinstance(c, bool):
        if c == 1:
            return tags
        if c > 0:
            return tags - {"Unitary"}
        return tags & {"SelfAdjoint"}
    return frozenset()


class LinearOperator:
    """An ``m x n`` linear map applied through products, never formed unless asked.

    Attributes: ``shape`` (m, n), ``dtype`` (the backend's dtype), ``xp`` (the
    :class:`~linops.backends.Backend` of the arrays inside), ``device`` and
    ``annotations`` (a frozenset of "PSD", "SelfAdjoint", "Unitary").
    """

    __array_ufunc__ = None  # numpy defers `ndarray @ op` to op.__rmatmul__
    __array_priority__ = 1000
    _leaves: ClassVar[tuple[str, ...]] = ()
    _weak: bool = False  # weakly typed: adopts the backend of what it is combined with

    shape: tuple[int, int]
    dtype: Any
    xp: Backend
    device: Any
    annotations: frozenset

    def __init__(self, shape, dtype, xp: Backend | None, device: Any = None, annotations=frozenset()):
        m, n = shape
        d = self.__dict__
        d["shape"] = (int(m), int(n))
        d["xp"] = xp if xp is not None else _NUMPY
        d["dtype"] = dtype
        d["device"] = device
        d["annotations"] = frozenset(annotations)
        kids = self._children()
        if kids and all(k._weak for k in kids):  # a composite of weak operators is weak too
            d["_weak"] = True
        d["_frozen"] = True
        if _JAX_REGISTERED is None and "jax" in sys.modules:  # jax imported by the user first
            backend_named("jax")

    def __setattr__(self, name, value):
        if "_frozen" in self.__dict__:
            raise AttributeError(f"{type(self).__name__} is immutable: build a new operator instead of setting {name!r}")
        object.__setattr__(self, name, value)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if _JAX_REGISTERED is not None:
            _JAX_REGISTERED(cls)

    # ------------------------------------------------------------ the contract
    def _matmat(self, X):
        """``A @ X`` for a backend array ``X`` of shape (n, k); returns (m, k)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _matmat")

    def _matvec(self, x):
        """``A @ x`` for a vector (n,); override where a 1-D product is cheaper than (n, 1)."""
        return self._matmat(x[:, None])[:, 0]

    def _rmatmat(self, X):
        """``X @ A`` for ``X`` of shape (k, m); returns (k, n).

        The default transposes ``_matmat`` by automatic differentiation (torch, jax) or,
        for numpy, forms the matrix once per call: override it for speed.
        """
        like = self.xp.zeros((self.shape[1], X.shape[0]), self.dtype, self.device)
        return self.xp.linear_transpose(self._matmat, like, X.T).T

    def _matmat_rows(self, X):
        """``X @ A^T`` for ``X`` of shape (k, n): ``A`` applied to each row of ``X``; returns (k, m).

        The layout of activations ``(batch, features)``, used by ``x @ A.T`` and the layers
        of :mod:`linops.nn`. The default runs ``_matmat`` on the transposed view; structured
        classes whose product is a chain of reshapes and einsums override it to work on the
        rows directly (no transposed copy of the activations).
        """
        return self._matmat(X.T).T

    def to_dense(self):
        """The ``m x n`` array. Costs ``n`` products unless the subclass knows better."""
        return self._matmat(self.xp.eye(self.shape[1], self.dtype, self.device))

    # --------------------------------------------------------------- sugar
    @property
    def T(self) -> LinearOperator:
        return _keep(self._transpose(), self.annotations)

    @property
    def H(self) -> LinearOperator:
        if "SelfAdjoint" in self.annotations:
            return self
        if not self.xp.is_complex(self.dtype):
            return self.T
        return _keep(self._adjoint(), self.annotations)

    def _transpose(self) -> LinearOperator:
        from .algebra import Transpose

        return Transpose(self)

    def _adjoint(self) -> LinearOperator:
        from .algebra import Adjoint

        return Adjoint(self)

    def _scale(self, c) -> LinearOperator:
        """``c * self`` for a scalar ``c``; structured classes keep their structure."""
        from .algebra import Product
        from .diagonal import ScalarMul

        return Product(ScalarMul(c, self.shape[0], dtype=self.dtype, like=self), self)

    @property
    def ndim(self) -> int:
        return 2

    @property
    def is_square(self) -> bool:
        return self.shape[0] == self.shape[1]

    def __matmul__(self, x):
        if isinstance(x, LinearOperator):
            from .algebra import compose

            return compose(self, x)
        xp = self.xp
        if not isinstance(x, xp.array_types):
            self._check_array(x, "@")
        ndim = x.ndim
        if ndim == 2 and x.shape[0] == self.shape[1]:
            return self._matmat(x)
        if ndim == 1 and x.shape[0] == self.shape[1]:
            return self._matvec(x)
        raise ShapeError(
            f"cannot apply {self._label()} to an array of shape {tuple(x.shape)}: "
            f"expected ({self.shape[1]},) or ({self.shape[1]}, k)"
        )

    def __rmatmul__(self, x):
        if not isinstance(x, self.xp.array_types):
            self._check_array(x, "@")
        m = self.shape[0]
        if x.ndim == 0 or x.shape[-1] != m:
            raise ShapeError(
                f"cannot compute x @ {self._label()} for x of shape {tuple(x.shape)}: "
                f"expected (..., {m})"
            )
        if x.ndim == 2:
            return self._rmatmat(x)
        if x.ndim == 1:
            return self._rmatmat(x[None, :])[0]
        lead = x.shape[:-1]
        return self._rmatmat(x.reshape(-1, m)).reshape(*lead, self.shape[1])

    def _check_array(self, x, op: str) -> None:
        be = backend_of(x)
        if be is None or not be.is_array(x):
            raise TypeError(
                f"{self._label()} {op} {type(x).__name__}: expected a LinearOperator or a numpy, "
                "torch or jax array"
            )
        if not self._weak:
            raise BackendMismatchError(
                f"cannot apply {self._label()}, which holds {self.xp.name} arrays, to a {be.name} array"
            )

    def __add__(self, other):
        if not isinstance(other, LinearOperator):
            return NotImplemented if is_scalar(other) else self._no_array_arith(other, "+")
        from .algebra import add

        return add(self, other)

    def __radd__(self, other):
        return self._no_array_arith(other, "+")

    def __sub__(self, other):
        if not isinstance(other, LinearOperator):
            return self._no_array_arith(other, "-")
        from .algebra import add

        return add(self, other._scale(-1))

    def __rsub__(self, other):
        return self._no_array_arith(other, "-")

    def __mul__(self, c):
        if not is_scalar(c):
            if isinstance(c, LinearOperator):
                raise TypeError("`A * B` is not defined for operators: use `A @ B` for the product")
            return self._no_array_arith(c, "*")
        return _keep(self._scale(c), scaled_annotations(self.annotations, c))

    __rmul__ = __mul__

    def __truediv__(self, c):
        if not is_scalar(c):
            return self._no_array_arith(c, "/")
        return self * (1 / c)

    def __neg__(self):
        return self * -1

    def __pos__(self):
        return self

    def _no_array_arith(self, other, op):
        raise TypeError(
            f"`{op}` between {self._label()} and {type(other).__name__} is not defined: wrap arrays as "
            "operators (lo.Dense(M)) and use `@` for products with vectors"
        )

    def __getitem__(self, key):
        from .algebra import sliced

        return sliced(self, key)

    def __iter__(self):
        raise TypeError(f"{type(self).__name__} is not iterable; use A.to_dense() or A[i:i+1, :]")

    def __len__(self):
        return self.shape[0]

    # -------------------------------------------------------------------- repr
    def _label(self) -> str:
        m, n = self.shape
        dt = str(self.dtype).replace("torch.", "")
        parts = [f"{m}x{n}", dt]
        if self.xp.name != "numpy" and not self._weak:
            parts.append(self.xp.name)
        if self.device is not None and str(self.device) not in ("cpu", "TFRT_CPU_0", "cpu:0"):
            parts.append(str(self.device))
        tags = ", ".join(sorted(self.annotations))
        return f"{type(self).__name__}({', '.join(parts)}{', ' + tags if tags else ''})"

    def _children(self) -> list[LinearOperator]:
        out = []
        for name in self._leaves:
            v = self.__dict__[name]
            if isinstance(v, LinearOperator):
                out.append(v)
            elif isinstance(v, tuple):
                out.extend(c for c in v if isinstance(c, LinearOperator))
        return out

    def __repr__(self) -> str:
        lines = [self._label()]

        def walk(op, prefix):
            kids = op._children()
            for i, kid in enumerate(kids):
                last = i == len(kids) - 1
                lines.append(prefix + ("└─ " if last else "├─ ") + kid._label())
                walk(kid, prefix + ("   " if last else "│  "))

        walk(self, "")
        return "\n".join(lines)

    # ----------------------------------------------------- composition helpers
    def _bind(self, xp: Backend, dtype, device) -> LinearOperator:
        """A weakly typed operator re-made on ``xp``; strong operators return themselves.

        Weak leaves (Identity, ScalarMul, ...) override this; a weak composite binds its parts.
        """
        if not self._weak:
            return self
        children, (cls, static) = tree_flatten(self)
        children = tuple(_bind_tree(c, xp, dtype, device) for c in children)
        static = dict(static)
        static.update(xp=xp, dtype=dtype, device=device, _weak=False)
        return tree_unflatten((cls, tuple(static.items())), children)


def with_annotations(op: LinearOperator, tags) -> LinearOperator:
    """A copy of ``op`` whose annotations are ``tags`` (no checks: see linops.annotations)."""
    children, (cls, static) = tree_flatten(op)
    static = tuple((k, frozenset(tags) if k == "annotations" else v) for k, v in static)
    return tree_unflatten((cls, static), children)


def _keep(out: LinearOperator, tags: frozenset) -> LinearOperator:
    """``out`` with ``tags`` added: what a rebuilt operator (A.T, c * A) knows from its source."""
    return out if tags <= out.annotations else with_annotations(out, out.annotations | tags)


def combine(ops, what: str = "operators"):
    """Backend, dtype and device of a composite, binding weak members to the strong ones.

    Returns ``(ops, xp, dtype, device)``; raises BackendMismatchError / DeviceMismatchError.
    """
    strong = [op for op in ops if not op._weak]
    xp = common_backend(*(op.xp for op in strong), what=what) if strong else ops[0].xp
    source = strong if strong else ops
    dtype = xp.result_type(*(op.dtype for op in source))
    device = None
    for op in strong:
        if op.device is None:
            continue
        if device is None:
            device = op.device
        elif op.device != device:
            raise DeviceMismatchError(f"cannot combine {what} on {device} and {op.device}: move one with .to()")
    if strong and len(strong) != len(ops):
        ops = tuple(op._bind(xp, dtype, device) if op._weak else op for op in ops)
    return tuple(ops), xp, dtype, device


def _bind_tree(obj, xp, dtype, device):
    if isinstance(obj, LinearOperator):
        return obj._bind(xp, dtype, device)
    if isinstance(obj, tuple):
        return tuple(_bind_tree(o, xp, dtype, device) for o in obj)
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):  # an array held by a weak operator
        return xp.asarray(obj, device=device)
    return obj


# --------------------------------------------------------------- pytree protocol
def tree_flatten(op: LinearOperator):
    """``(children, aux)``: the ``_leaves`` values and the static rest, for JAX and torch alike."""
    d = op.__dict__
    children = tuple(d[name] for name in op._leaves)
    aux = (type(op), tuple((k, v) for k, v in d.items() if k not in op._leaves))
    return children, aux


def array_leaves(op: LinearOperator):
    """``(arrays, rebuild)``: every array inside ``op`` (depth first) and ``rebuild(new_arrays)``.

    The torch counterpart of a JAX pytree flatten: custom autograd Functions take an
    operator's tensors as explicit inputs and rebuild the operator from them.
    """
    arrays: list = []

    def collect(obj):
        if isinstance(obj, LinearOperator):
            children, aux = tree_flatten(obj)
            return ("op", aux, tuple(collect(c) for c in children))
        if isinstance(obj, tuple):
            return ("tuple", None, tuple(collect(c) for c in obj))
        if hasattr(obj, "shape") and hasattr(obj, "dtype"):
            arrays.append(obj)
            return ("array", len(arrays) - 1, ())
        return ("static", obj, ())

    spec = collect(op)

    def rebuild(new):
        def build(node):
            kind, data, kids = node
            if kind == "op":
                return tree_unflatten(data, tuple(build(k) for k in kids))
            if kind == "tuple":
                return tuple(build(k) for k in kids)
            if kind == "array":
                return new[data]
            return data

        return build(spec)

    return arrays, rebuild


def tree_unflatten(aux, children):
    cls, static = aux
    op = object.__new__(cls)
    d = op.__dict__
    d.update(static)
    d.update(zip(cls._leaves, children))
    return op


_JAX_REGISTERED = None


def _register_all_with_jax(_backend) -> None:
    import jax

    done: set[type] = set()

    def register(cls):
        if cls in done:
            return
        done.add(cls)
        jax.tree_util.register_pytree_node(
            cls,
            lambda op: tree_flatten(op),
            lambda aux, ch: tree_unflatten(aux, ch),
        )

    def walk(cls):
        register(cls)
        for sub in cls.__subclasses__():
            walk(sub)

    walk(LinearOperator)
    global _JAX_REGISTERED
    _JAX_REGISTERED = register


on_backend_load("jax", _register_all_with_jax)
