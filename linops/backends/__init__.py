"""Array backends: one small namespace object per array library.

``backend_of(x)`` maps an array to its :class:`Backend` (numpy, torch or jax). The
answer is cached per array *type*, and a backend module is imported only when an
array of that library is first seen, so ``import linops`` loads neither torch nor
jax. Operators look their backend up once, when they are built, and keep it as
``op.xp``; the hot path never searches for it again.

Nothing in this package knows about operators.
"""

from __future__ import annotations

from typing import Any

from ..errors import BackendMismatchError
from ._base import Backend

__all__ = ["Backend", "backend_of", "backend_named", "common_backend", "is_array", "is_concrete", "on_backend_load"]

_BY_TYPE: dict[type, Backend | None] = {}
_BY_NAME: dict[str, Backend] = {}
_ON_LOAD: dict[str, list] = {}


def on_backend_load(name: str, hook) -> None:
    """Call ``hook(backend)`` when backend ``name`` is first loaded (at once if it already is).

    Upper layers use it to register with a library lazily, e.g. operators as JAX pytrees.
    """
    if name in _BY_NAME:
        hook(_BY_NAME[name])
    else:
        _ON_LOAD.setdefault(name, []).append(hook)


def backend_named(name: str) -> Backend:
    """The backend called ``name`` ("numpy", "torch" or "jax"), importing its library on first use."""
    be = _BY_NAME.get(name)
    if be is None:
        if name == "numpy":
            from ._numpy import NumpyBackend as cls
        elif name == "torch":
            from ._torch import TorchBackend as cls
        elif name == "jax":
            from ._jax import JaxBackend as cls
        else:
            raise ValueError(f"unknown backend {name!r}; expected 'numpy', 'torch' or 'jax'")
        be = _BY_NAME[name] = cls()
        for hook in _ON_LOAD.pop(name, []):
            hook(be)
    return be


def _library_of(tp: type) -> str | None:
    root = tp.__module__.partition(".")[0]
    if root == "numpy":
        return "numpy"
    if root == "torch":
        return "torch"
    if root in ("jax", "jaxlib"):
        return "jax"
    return None


def backend_of(x: Any) -> Backend | None:
    """The backend of array (or dtype) ``x``; None for Python scalars and other objects."""
    tp = type(x)
    try:
        return _BY_TYPE[tp]
    except KeyError:
        pass
    name = _library_of(tp)
    if name is None and isinstance(x, type):  # a scalar type such as np.float32 or jnp.float32
        name = _library_of(x)
    be = backend_named(name) if name is not None else None
    if be is not None and not isinstance(x, type) and not be.is_array(x) and not be.is_dtype(x):
        be = None  # e.g. numpy scalars are arrays, numpy modules are not
    _BY_TYPE[tp] = be
    return be


def is_concrete(x: Any) -> bool:
    """False for a value being traced (jax.jit/vmap/grad), whose contents cannot be read."""
    be = backend_of(x)
    if be is None:
        tp = type(x).__module__.partition(".")[0]
        return tp not in ("jax", "jaxlib")
    return be.is_concrete(x)


def is_array(x: Any) -> bool:
    """True for numpy, torch and jax arrays (tracers included)."""
    be = backend_of(x)
    return be is not None and be.is_array(x)


def common_backend(*backends: Backend | None, what: str = "operands") -> Backend | None:
    """The one backend among ``backends`` (Nones ignored); BackendMismatchError if there are two."""
    found = None
    for be in backends:
        if be is None or be is found:
            continue
        if found is None:
            found = be
        else:
            raise BackendMismatchError(
                f"cannot combine {found.name} and {be.name} {what}: convert one side first "
                f"(e.g. with numpy.asarray, torch.as_tensor or jax.numpy.asarray)"
            )
    return found
