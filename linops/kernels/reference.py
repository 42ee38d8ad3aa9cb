"""Pure-torch references of the kernels' products (any device, any float dtype; differentiable).

Same layout and results as :mod:`linops.kernels.monarch_triton` (``R`` (k, q, p), ``L`` (l, s, r),
``x`` (N, d_in) zero-padded to ``k p``, output cut to ``d_out``); the backward is written out
explicitly (not by autograd), so the custom op's gradient formulas are checked against autograd
through :func:`monarch_rows_ref` by ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

import torch

__all__ = ["monarch_rows_ref", "monarch_rows_bwd_ref", "two_bmm_rows"]


def _pad(x: torch.Tensor, width: int) -> torch.Tensor:
    d = x.shape[1]
    return x if d == width else torch.nn.functional.pad(x, (0, width - d))


def monarch_rows_ref(x: torch.Tensor, R: torch.Tensor, L: torch.Tensor, d_out: int):
    """``(y, Y1)``: ``y = x @ M^T`` (N, d_out) and the intermediate ``Y1`` (N, k q), by two einsums.

    Cost ``2 N (k q p + l s r)`` flops."""
    (k, q, p), (l_, s, r) = R.shape, L.shape
    N = x.shape[0]
    y1 = torch.einsum("kqp,nkp->nkq", R, _pad(x, k * p).reshape(N, k, p)).reshape(N, k * q)
    y = torch.einsum("lsr,nrl->nsl", L, y1.reshape(N, r, l_)).reshape(N, s * l_)
    return y[:, :d_out], y1


def monarch_rows_bwd_ref(dy: torch.Tensor, x: torch.Tensor, R: torch.Tensor, L: torch.Tensor, y1: torch.Tensor):
    """``(dx, dR, dL)`` for ``y = x @ M^T`` given ``dy`` (N, d_out) and ``Y1`` (N, k q)."""
    (k, q, p), (l_, s, r) = R.shape, L.shape
    N, d_in = x.shape
    dy2 = _pad(dy, l_ * s).reshape(N, s, l_)  # dY2[n, t, λ] = dy[n, t l + λ]
    dz = torch.einsum("nsl,lsr->nrl", dy2, L).reshape(N, k * q)  # back through L and P1
    dL = torch.einsum("nsl,nrl->lsr", dy2, y1.reshape(N, r, l_))
    dz3 = dz.reshape(N, k, q)
    dx = torch.einsum("nkq,kqp->nkp", dz3, R).reshape(N, k * p)[:, :d_in]
    dR = torch.einsum("nkq,nkp->kqp", dz3, _pad(x, k * p).reshape(N, k, p))
    return dx, dR, dL


def two_bmm_rows(x: torch.Tensor, R: torch.Tensor, L: torch.Tensor, d_out: int) -> torch.Tensor:
    """The seed code's layout: two ``torch.bmm`` with permute copies between them (benchmark baseline)."""
    (k, _, p), (l_, s, r) = R.shape, L.shape
    N = x.shape[0]
    xb = _pad(x, k * p).reshape(N, k, p).transpose(0, 1)  # (k, N, p) strided
    y1 = torch.bmm(xb, R.transpose(1, 2))  # (k, N, q)
    z = y1.transpose(0, 1).reshape(N, r, l_).permute(2, 0, 1).contiguous()  # P1: (l, N, r)
    y2 = torch.bmm(z, L.transpose(1, 2))  # (l, N, s)
    return y2.permute(1, 2, 0).reshape(N, s * l_)[:, :d_out]
