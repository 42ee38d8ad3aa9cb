"""GPU kernels for structured products (issue 8): Monarch and BTT on row-major activations.

* :func:`monarch_rows`, :func:`btt_rows` (in :mod:`linops.kernels.ops`): ``x @ W^T`` through the torch
  custom op ``linops::monarch_rows`` (Triton kernels for CUDA tensors, a pure-torch reference
  elsewhere; autograd and ``torch.compile`` see through it).
* The operators :class:`linops.Monarch` and :class:`linops.BTT` route their row product
  (``_matmat_rows``, used by ``x @ W.T`` in the layers) here for CUDA tensors.

The switch: ``enabled()`` tells whether the kernels are used; ``use_kernels(False)`` turns them off
(as a call, or as a context manager that restores the previous state on exit); the environment
variable ``LINOPS_KERNELS=0`` turns them off from the start. Off means the einsum path everywhere.

Importing this package loads neither torch nor triton (the operators import it lazily).
"""

from __future__ import annotations

import os

__all__ = ["enabled", "use_kernels", "monarch_rows", "btt_rows", "cuda_monarch_rows", "cuda_btt_rows"]

_STATE = {"on": os.environ.get("LINOPS_KERNELS", "1").strip().lower() not in ("0", "false", "off", "no")}


def enabled() -> bool:
    """Whether CUDA tensors go through the kernels (default on; ``LINOPS_KERNELS=0`` starts it off)."""
    return _STATE["on"]


class use_kernels:
    """Turn the kernels on or off: ``use_kernels(False)`` (from now on), or ``with use_kernels(False): ...``
    (restored on exit)."""

    def __init__(self, flag: bool = True):
        if not isinstance(flag, bool):
            raise TypeError(f"use_kernels: flag must be True or False, got {flag!r}")
        self._previous = _STATE["on"]
        _STATE["on"] = flag

    def __enter__(self) -> "use_kernels":
        return self

    def __exit__(self, *exc) -> None:
        _STATE["on"] = self._previous


def cuda_monarch_rows(X, R, L, d_out: int):
    """The operators' hook: ``X @ M^T`` by the kernels when they apply to ``X`` (a CUDA tensor), else None."""
    if not _STATE["on"]:
        return None
    from . import ops

    return ops.monarch_rows(X, R, L, d_out) if ops.kernel_applies(X, R, L) else None


def cuda_btt_rows(X, R, L, d_out: int):
    """The BTT operator's hook (cores reshaped to Monarch blocks), or None when the kernels do not apply."""
    if not _STATE["on"]:
        return None
    from . import ops

    return ops.btt_rows(X, R, L, d_out) if ops.kernel_applies(X, R, L) else None


def __getattr__(name):
    if name in ("monarch_rows", "btt_rows"):
        from . import ops

        return getattr(ops, name)
    raise AttributeError(f"module 'linops.kernels' has no attribute {name!r}")
