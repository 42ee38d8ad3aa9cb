"""Multi-head attention with structured projections and multi-level low-rank scores (torch).

``MultiheadAttention(d_model, num_heads, structure=..., qk_structure=..., scores=...)``:

* the q, k, v and output projections are :class:`~linops.nn.StructuredLinear` layers
  ``d_model -> d_model`` of ``structure``; ``qk_structure`` overrides q and k only (e.g.
  ``BTT(rank=2)`` or ``MLR(levels=3)``), so the values keep their own structure;
* ``scores="dot"`` (default): the usual per-head ``q_h · k_h``, whose bilinear form
  ``x_i^T W_{Q,h} W_{K,h}^T x_j`` has rank at most the head dimension;
* ``scores=MLR(levels, ranks)``: the bilinear multi-level low-rank score of Kuang et al. (ICML
  2025): for each head ``h`` the score of a query row ``x_i`` and a key row ``x_j`` is
  ``x_i^T S_h x_j`` with ``S_h`` a ``d_model x d_model`` :class:`linops.MLR` matrix, levels
  ``l = 0..L`` of ``2^l`` diagonal blocks of rank ``r_l``, the ranks summing to the head
  dimension by default. It is computed as a dot product of features: level ``l`` maps block ``k``
  of ``x`` (``m_l`` values) to ``r_l`` query (key) features, ``E = Σ_l 2^l r_l`` per head, with
  parameters ``2 N H Σ_l r_l`` (``= 2 d_model^2`` when the ranks sum to the head dimension, as
  dense q/k projections); :meth:`MultiheadAttention.score_operator` returns ``S_h``.

The attention itself is ``torch.nn.functional.scaled_dot_product_attention`` with logits
``scale * score`` (``scale`` defaults to ``1/sqrt(E)``, ``E`` the q/k feature size per head:
the head dimension for dot scores, as ``torch.nn.MultiheadAttention``).

Masks follow ``scaled_dot_product_attention``: a boolean mask is True where a query MAY attend
(the opposite of ``torch.nn.MultiheadAttention``'s ``attn_mask``); a float mask is added to the
logits. ``causal=True`` lets query ``i`` see keys ``j <= i`` (top-left aligned when the key
sequence is longer) and combines with a given mask. A query row with every key masked gives NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ShapeError
from .layers_torch import StructuredLinear
from .structures import Structure, as_structure
from .structures_mlr import MLR

__all__ = ["MultiheadAttention"]


def _structure(s, head_dim: int, what: str) -> Structure:
    """A structure from an object or a name (``"mlr"`` included); an MLR without ranks gets the head dimension."""
    if isinstance(s, str) and s.lower() == "mlr":
        s = MLR()
    try:
        s = as_structure(s)
    except (TypeError, ValueError) as e:
        e.add_note(f"MultiheadAttention: while reading {what}")
        raise
    return s.with_total_rank(head_dim) if isinstance(s, MLR) else s


class MultiheadAttention(torch.nn.Module):
    """Multi-head attention ``(B, T, d_model) -> (B, T, d_model)`` with structured projections (module docstring).

    * ``structure``: the structure of the q, k, v and output projections (default dense).
    * ``qk_structure``: overrides the structure of q and k (default: ``structure``).
    * ``scores``: ``"dot"`` or ``"mlr"`` / an :class:`~linops.nn.MLR` structure for bilinear MLR scores
      (which then replace the q and k projections; ``qk_structure`` must be left out).
    * ``causal``: mask future keys; ``dropout``: attention dropout in training; ``scale``: logit scale.

    Cost per token (dot scores): the four projections' flops plus ``4 S d_model`` for the scores and
    the weighted sum over ``S`` keys; bilinear MLR scores cost ``2 S H E`` instead of ``2 S d_model``
    for the scores, ``E = Σ_l 2^l r_l``.
    """

    def __init__(self, d_model: int, num_heads: int, structure: Structure | str = "dense",
                 qk_structure: Structure | str | None = None, bias: bool = True, causal: bool = False,
                 scores: Structure | str = "dot", dropout: float = 0.0, scale: float | None = None,
                 device=None, dtype=None):
        super().__init__()
        for what, v in (("d_model", d_model), ("num_heads", num_heads)):
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"MultiheadAttention: {what} must be a positive integer, got {v!r}")
        if d_model % num_heads:
            raise ValueError(f"MultiheadAttention: d_model = {d_model} is not divisible by num_heads = {num_heads}; "
                             "each head takes d_model / num_heads features")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1), got {dropout!r}")
        if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"MultiheadAttention: scale must be a positive number or None, got {scale!r}")
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, d_model // num_heads
        self.causal, self.dropout = bool(causal), float(dropout)
        kw = {"bias": bias, "device": device, "dtype": dtype}
        structure = _structure(structure, self.head_dim, "structure")
        if isinstance(scores, str) and scores.lower() == "dot":
            self.score_structure = None
            qk = structure if qk_structure is None else _structure(qk_structure, self.head_dim, "qk_structure")
            self.q_proj = StructuredLinear(d_model, d_model, qk, **kw)
            self.k_proj = StructuredLinear(d_model, d_model, qk, **kw)
            features = self.head_dim
        else:
            s = _structure(scores, self.head_dim, "scores")
            if not isinstance(s, MLR):
                raise ValueError(f"MultiheadAttention: scores must be 'dot', 'mlr' or a linops.nn.MLR structure, got {scores!r}")
            if qk_structure is not None:
                raise ValueError("MultiheadAttention: scores=MLR(...) replaces the q and k projections, so qk_structure "
                                 "has nothing to act on; leave it out (or use scores='dot')")
            self.score_structure = s
            self.q_proj = self.k_proj = None
            features = self._init_mlr_scores(device, dtype)
        self.score_features = features
        self.scale = float(scale) if scale is not None else 1.0 / math.sqrt(features)
        self.v_proj = StructuredLinear(d_model, d_model, structure, **kw)
        self.out_proj = StructuredLinear(d_model, d_model, structure, **kw)

    # ------------------------------------------------------------------ bilinear MLR scores
    def _init_mlr_scores(self, device, dtype) -> int:
        """Parameters ``Q{l}``, ``K{l}`` of shape (H, 2^l, m_l, r_l), drawn like a dense projection's
        (std ``1/sqrt(m_l)``: unit-variance features for unit-variance inputs); returns ``E``."""
        S, H = self.score_structure, self.num_heads
        cores = S.cores(self.d_model, self.d_model)
        self._mlr_pad = S.grid(self.d_model, self.d_model)[0]
        features = 0
        for c in cores[1::2]:  # the V-type cores (2^l, m_l, r_l): fan-in m_l
            l = c.name[1:]
            std = 1.0 / math.sqrt(c.shape[1])
            for name in ("Q", "K"):
                p = torch.nn.Parameter(torch.empty((H, *c.shape), device=device, dtype=dtype))
                with torch.no_grad():
                    p.normal_(0.0, std)
                self.register_parameter(f"{name}{l}", p)
            features += c.shape[0] * c.shape[2]
        return features

    def _mlr_features(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """(B, T, d_model) -> (B, H, T, E): level ``l``'s features ``x[block k] @ P{l}[h, k]``, levels concatenated."""
        B, T, d = x.shape
        N = self._mlr_pad
        if N > d:
            x = F.pad(x, (0, N - d))
        out = []
        for l in range(self.score_structure.levels):
            P = getattr(self, f"{name}{l}")  # (H, nb, m, r)
            _, nb, m, r = P.shape
            f = torch.einsum("btkm,hkmr->bhtkr", x.reshape(B, T, nb, m), P)
            out.append(f.reshape(B, self.num_heads, T, nb * r))
        return torch.cat(out, -1)

    def score_operator(self, head: int):
        """The ``d_model x d_model`` matrix ``S_h`` of head ``head``: the score of query row ``x_i``
        and key row ``x_j`` is ``x_i^T S_h x_j`` before ``scale`` (a :class:`linops.MLR` for MLR scores,
        ``W_Q,h^T W_K,h`` as a composition of the projections' operators for dot scores; biases excluded)."""
        if not (isinstance(head, int) and 0 <= head < self.num_heads):
            raise ValueError(f"MultiheadAttention.score_operator: head must be an integer in [0, {self.num_heads}), got {head!r}")
        if self.score_structure is None:
            rows = slice(head * self.head_dim, (head + 1) * self.head_dim)
            Wq, Wk = self.q_proj.operator(), self.k_proj.operator()
            return Wq[rows, :].T @ Wk[rows, :]
        params = {}
        for l in range(self.score_structure.levels):
            params[f"U{l}"], params[f"V{l}"] = getattr(self, f"Q{l}")[head], getattr(self, f"K{l}")[head]
        return self.score_structure.operator(params, self.d_model, self.d_model)

    # ------------------------------------------------------------------ forward
    def _heads(self, y: torch.Tensor) -> torch.Tensor:
        B, T, _ = y.shape
        return y.reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2)

    def _mask(self, attn_mask, T: int, S: int, like: torch.Tensor):
        """The mask for ``scaled_dot_product_attention`` (causal part folded in), or None."""
        causal = torch.ones(T, S, dtype=torch.bool, device=like.device).tril() if self.causal else None
        if attn_mask is None:
            return causal
        if not isinstance(attn_mask, torch.Tensor):
            raise TypeError(f"MultiheadAttention: attn_mask must be a torch tensor, got {type(attn_mask).__name__}")
        if attn_mask.ndim not in (2, 4) or tuple(attn_mask.shape[-2:]) != (T, S):
            raise ShapeError(f"MultiheadAttention: attn_mask of shape {tuple(attn_mask.shape)} does not fit {T} queries "
                             f"and {S} keys; use ({T}, {S}) or (batch or 1, heads or 1, {T}, {S}) "
                             "(3-D masks are ambiguous: reshape a (batch*heads, T, S) mask to 4-D)")
        if attn_mask.dtype == torch.bool:
            return attn_mask if causal is None else attn_mask & causal
        if not attn_mask.is_floating_point():
            raise TypeError(f"MultiheadAttention: attn_mask must be boolean (True = may attend) or floating "
                            f"(added to the logits), got {attn_mask.dtype}")
        m = attn_mask.to(like.dtype)
        return m if causal is None else m.masked_fill(~causal, float("-inf"))

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``query`` (B, T, d_model); ``key`` and ``value`` (B, S, d_model) default to ``query`` (self-attention)
        and ``key``; ``attn_mask`` (T, S) or (B|1, H|1, T, S), boolean (True = may attend) or additive float."""
        key = query if key is None else key
        value = key if value is None else value
        for what, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, torch.Tensor) or t.ndim != 3 or t.shape[-1] != self.d_model:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ShapeError(f"MultiheadAttention: {what} must be a (batch, length, {self.d_model}) tensor, got {shape}")
        B, T, _ = query.shape
        if key.shape[0] != B or value.shape[:2] != key.shape[:2]:
            raise ShapeError(f"MultiheadAttention: query {tuple(query.shape)}, key {tuple(key.shape)} and value "
                             f"{tuple(value.shape)} must share the batch size, key and value the length")
        S = key.shape[1]
        if self.score_structure is None:
            q, k = self._heads(self.q_proj(query)), self._heads(self.k_proj(key))
        else:
            q, k = self._mlr_features(query, "Q"), self._mlr_features(key, "K")
        v = self._heads(self.v_proj(value))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=self._mask(attn_mask, T, S, q),
                                           dropout_p=self.dropout if self.training else 0.0, scale=self.scale)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, self.d_model))

    # ------------------------------------------------------------------ counts
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops(self, T: int, S: int | None = None) -> int:
        """Flops of one sequence of ``T`` queries over ``S`` keys (default ``T``), softmax excluded."""
        S = T if S is None else S
        proj = T * self.out_proj.flops() + S * self.v_proj.flops()
        if self.score_structure is None:
            proj += T * self.q_proj.flops() + S * self.k_proj.flops()
        else:
            proj += (T + S) * 2 * self.num_heads * self._mlr_pad * sum(self.score_structure.level_ranks(self.d_model))
        return proj + 2 * T * S * self.num_heads * (self.score_features + self.head_dim)

    def extra_repr(self) -> str:
        scores = "dot" if self.score_structure is None else self.score_structure.label()
        return f"d_model={self.d_model}, num_heads={self.num_heads}, scores={scores}, causal={self.causal}"
