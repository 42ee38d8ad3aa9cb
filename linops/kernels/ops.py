"""The Monarch/BTT row products as torch custom ops (``torch.library``), with autograd and fake kernels.

* ``torch.ops.linops.monarch_rows(x, R, L, d_out, cols) -> (y, Y1)``: the forward; ``Y1`` (the
  intermediate, saved for the backward) is returned in its physical layout: (N, k q), or (k q, N)
  when ``cols``.
* ``torch.ops.linops.monarch_rows_backward(dy, x, R, L, Y1, cols) -> (dx, dR, dL)``.

Each runs the Triton kernels (:mod:`linops.kernels.monarch_triton`) for CUDA tensors of dtype
float16/bfloat16/float32 when the switch is on (or on the CPU under ``TRITON_INTERPRET=1``), and the
pure-torch reference (:mod:`linops.kernels.reference`) otherwise. Both are opaque to ``torch.compile``
(fake implementations give the output shapes) and differentiable once (the backward op has no
gradient of its own). Public entry points: :func:`monarch_rows`, :func:`btt_rows`.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from ..errors import ShapeError
from . import enabled
from .reference import monarch_rows_bwd_ref, monarch_rows_ref

__all__ = ["monarch_rows", "btt_rows", "kernel_applies", "Y1_COLS", "KERNEL_DTYPES"]

KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# layout of the intermediate: column-major (every column's N values contiguous) measured 2.5x faster than
# row-major on the H100 (kernel 1: 0.100 vs 0.262 ms at d = 4096; benchmarks/gpu_notes.md); both are exact.
Y1_COLS = True
_HAS_TRITON = importlib.util.find_spec("triton") is not None


def _triton_path(x: Tensor) -> bool:
    if not (_HAS_TRITON and enabled() and x.dtype in KERNEL_DTYPES):
        return False
    if x.is_cuda:
        return True
    from . import monarch_triton

    return monarch_triton.INTERPRET and x.device.type == "cpu"


@torch.library.custom_op("linops::monarch_rows", mutates_args=())
def _monarch_rows(x: Tensor, R: Tensor, L: Tensor, d_out: int, cols: bool) -> tuple[Tensor, Tensor]:
    if _triton_path(x):
        from .monarch_triton import monarch_fwd

        y, y1 = monarch_fwd(x, R, L, d_out, cols)
    else:
        y, y1 = monarch_rows_ref(x, R, L, d_out)
        y = y.contiguous()
    return y, (y1.t().contiguous() if cols else y1.contiguous())


@_monarch_rows.register_fake
def _(x, R, L, d_out, cols):
    N, width = x.shape[0], R.shape[0] * R.shape[1]
    return x.new_empty((N, d_out)), x.new_empty((width, N) if cols else (N, width))


@torch.library.custom_op("linops::monarch_rows_backward", mutates_args=())
def _monarch_rows_backward(dy: Tensor, x: Tensor, R: Tensor, L: Tensor, y1: Tensor, cols: bool
                           ) -> tuple[Tensor, Tensor, Tensor]:
    y1 = y1.t() if cols else y1  # logical (N, k q)
    if _triton_path(x):
        from .monarch_triton import monarch_bwd

        return monarch_bwd(dy, x, R, L, y1, cols)
    dx, dR, dL = monarch_rows_bwd_ref(dy, x, R, L, y1)
    return dx.contiguous(), dR.contiguous(), dL.contiguous()


@_monarch_rows_backward.register_fake
def _(dy, x, R, L, y1, cols):
    return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(R), torch.empty_like(L)


def _setup_context(ctx, inputs, output):
    x, R, L, _d_out, cols = inputs
    ctx.save_for_backward(x, R, L, output[1])
    ctx.cols = cols
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, dy, _dy1):
    x, R, L, y1 = ctx.saved_tensors
    dx, dR, dL = torch.ops.linops.monarch_rows_backward(dy, x, R, L, y1, ctx.cols)
    return dx, dR, dL, None, None


_monarch_rows.register_autograd(_backward, setup_context=_setup_context)


def _check(x: Tensor, R: Tensor, L: Tensor, d_out: int | None) -> int:
    if R.ndim != 3 or L.ndim != 3:
        raise ShapeError(f"monarch_rows: R and L must be 3-D block arrays, got shapes {tuple(R.shape)} and "
                         f"{tuple(L.shape)}")
    (k, q, p), (l_, s, r) = R.shape, L.shape
    if l_ * r != k * q:
        raise ShapeError(f"monarch_rows: R gives k q = {k * q} intermediate values but L reads l r = {l_ * r}")
    d_in = x.shape[-1]
    if not (k - 1) * p < d_in <= k * p:
        raise ShapeError(f"monarch_rows: x has {d_in} features; R's {k} blocks of {p} need ({(k - 1) * p}, {k * p}]")
    d_out = l_ * s if d_out is None else int(d_out)
    if not 1 <= d_out <= l_ * s:
        raise ShapeError(f"monarch_rows: d_out = {d_out} must lie in [1, {l_ * s}] for L's {l_} blocks of {s} rows")
    return d_out


def monarch_rows(x: Tensor, R: Tensor, L: Tensor, d_out: int | None = None) -> Tensor:
    """``x @ M^T`` for the Monarch ``M`` of blocks ``R`` (k, q, p), ``L`` (l, s, r): ``x`` (..., d_in) ->
    (..., d_out), through the custom op (kernels on CUDA, reference elsewhere); differentiable in all three.

    ``R`` and ``L`` are cast to ``x.dtype`` (as ``F.linear`` under autocast). Cost ``2 N (kqp + lsr)`` flops.
    """
    d_out = _check(x, R, L, d_out)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    y, _ = torch.ops.linops.monarch_rows(x2, R.to(x.dtype), L.to(x.dtype), d_out, Y1_COLS)
    return y.reshape(*lead, d_out)


def btt_cores_as_monarch(R: Tensor, L: Tensor) -> tuple[Tensor, Tensor]:
    """BTT cores ``R`` (n1, m2, r, n2), ``L`` (m2, m1, n1, r) as Monarch blocks (``BTT.as_monarch``):
    ``R`` -> (n1, r m2, n2) (a view for r = 1, a small copy of the core otherwise), ``L`` -> (m2, m1, n1 r)."""
    n1, m2, r, n2 = R.shape
    return R.movedim(2, 1).reshape(n1, r * m2, n2), L.reshape(L.shape[0], L.shape[1], n1 * r)


def btt_rows(x: Tensor, R: Tensor, L: Tensor, d_out: int | None = None) -> Tensor:
    """``x @ W^T`` for the two-core BTT ``W`` (cores as :class:`linops.operators.btt.BTT`), via :func:`monarch_rows`."""
    if R.ndim != 4 or L.ndim != 4:
        raise ShapeError(f"btt_rows: cores must be 4-D, got shapes {tuple(R.shape)} and {tuple(L.shape)}")
    Rm, Lm = btt_cores_as_monarch(R, L)
    return monarch_rows(x, Rm, Lm, d_out)


def kernel_applies(x, R, L) -> bool:
    """Whether the operators should route ``x`` through the kernels: switch on, triton present, a 2-D
    CUDA tensor of a kernel dtype, cores on the same device."""
    return (
        enabled() and _HAS_TRITON and isinstance(x, Tensor) and x.is_cuda and x.ndim == 2
        and x.dtype in KERNEL_DTYPES and R.device == x.device and L.device == x.device
    )
