"""Mixture-of-experts layers (PyTorch): ``BTTMoE`` (experts are the rank index of a BTT) and ``MoE``.

**BTT-MoE** (Potapczynski, Qiu et al., "Searching for Efficient Linear Layers over a Continuous
Space of Structured Matrices", NeurIPS 2024; the BTT layer itself is from Qiu et al., ICML 2024).
A rank-``E`` BTT (:class:`linops.BTT`, cores ``R`` (n1, m2, E, n2) and ``L`` (m2, m1, n1, E)) is a
sum of ``E`` rank-1 BTTs, one per value of the rank index ``α``. BTT-MoE reads ``α`` as an expert
index and lets a router keep, per token, only its top-``k`` experts, each scaled by a gate::

    Z[i1, o2, j] = g_j Σ_i2 R[i1, o2, α_j, i2] x[i1, i2]          j = 1..k, α_j the j-th chosen expert
    y[o1, o2]    = Σ_{i1, j} L[o2, o1, i1, α_j] Z[i1, o2, j]       (+ bias)

so ``y = Σ_j g_j W_{α_j} x`` with ``W_α`` the rank-1 BTT of slice ``α``, and only the chosen
slices are read and multiplied: ``2 k n1 m2 (n2 + m1)`` flops per token instead of ``2 E n1 m2 (n2 + m1)``.

**Routing** (both layers). ``logits = router(x)`` with ``router = nn.Linear(d_in, E)`` initialised
to zero, so every token starts with uniform probabilities ``1/E``. The experts are the top-``k``
logits and the gates are the softmax over those ``k`` logits only (renormalised among the chosen
experts, as the BTT-MoE reference code does; at init every gate is ``1/k``). Ties (e.g. at init)
go to the lower expert index (``torch.topk``'s order).

**Auxiliary loss**, stored on ``layer.aux_loss`` after each forward (a differentiable scalar) and
summed over a model, times each layer's ``aux_weight`` (default 0.01), by :func:`aux_loss`::

    aux = E Σ_e P_e f_e + 0.1 mean_t logsumexp(logits_t)^2
    P_e = mean over tokens of softmax(logits)_e
    f_e = (number of top-k assignments to e) / (tokens k)      (so Σ_e f_e = 1)

the load-balancing term of Switch/GShard (1 at uniform probabilities, whatever the routing) and the
router z-loss of ST-MoE. ``f`` is a count, so only ``P`` and the z-loss carry gradients.

**Standard MoE** :class:`MoE`: ``E`` experts, each a :class:`~linops.nn.StructuredLinear` of any
structure (``"dense"``, ``"btt"``, ...), the same router and loss; each expert computes only its
routed tokens (tokens grouped by expert, a loop over the experts with ``index_add``).

The muP rules: :class:`BTTMoE` exposes ``cores`` (those of ``linops.nn.BTT(rank=E)``), ``d_in``
and its cores ``R``, ``L`` as parameters under those names, like a ``StructuredLinear``; the
experts of :class:`MoE` are ``StructuredLinear`` modules. The router keeps the base learning rate.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import ShapeError
from .layers_torch import StructuredLinear
from .mup import init_std
from .structures import BTT, Structure, as_structure

__all__ = ["BTTMoE", "MoE", "Routing", "top_k_routing", "router_aux_loss", "aux_loss"]

_IMPLS = ("grouped", "gather")


class Routing(NamedTuple):
    """A router's decision for ``T`` tokens: ``logits`` and ``probs`` (T, E), the chosen
    ``experts`` (T, k) (int64, best first) and their ``gates`` (T, k) (each row sums to 1)."""

    logits: torch.Tensor
    probs: torch.Tensor
    experts: torch.Tensor
    gates: torch.Tensor


def top_k_routing(logits: torch.Tensor, k: int) -> Routing:
    """Top-``k`` routing of ``logits`` (T, E): the ``k`` largest logits per token, gates the softmax
    over those ``k`` logits. Half-precision logits are promoted to float32 first."""
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    top, experts = torch.topk(logits, k, dim=-1)
    return Routing(logits, torch.softmax(logits, dim=-1), experts, torch.softmax(top, dim=-1))


def router_aux_loss(routing: Routing) -> torch.Tensor:
    """``E Σ_e P_e f_e + 0.1 mean_t logsumexp(logits_t)^2`` (module docstring), with ``f_e`` the
    share of the ``T k`` top-k assignments that went to expert ``e``. Zero for zero tokens."""
    T, E = routing.logits.shape
    k = routing.experts.shape[-1]
    if T == 0:
        return routing.logits.sum() * 0.0
    counts = _expert_counts(routing.experts, E, routing.probs.dtype)
    balance = E * torch.sum(routing.probs.mean(0) * counts / (T * k))
    z = torch.logsumexp(routing.logits, dim=-1).square().mean()
    return balance + 0.1 * z


def _expert_counts(experts: torch.Tensor, E: int, dtype) -> torch.Tensor:
    """How many of the top-k assignments went to each expert, (E,) (fixed shape: traceable)."""
    flat = experts.reshape(-1)
    return torch.zeros(E, dtype=dtype, device=flat.device).index_add(0, flat, torch.ones(flat.shape, dtype=dtype, device=flat.device))


def _check_int(owner: str, what: str, v, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{owner}: {what} must be an integer >= {lo}, got {v!r}")
    return v


class _Routed(torch.nn.Module):
    """What both MoE layers share: the zero-initialised router, top-k routing, the stored aux loss."""

    def _init_router(self, owner: str, d_in: int, d_out: int, experts: int, top_k: int, aux_weight: float,
                     kw: dict) -> None:
        self.d_in, self.d_out = _check_int(owner, "d_in", d_in), _check_int(owner, "d_out", d_out)
        self.num_experts = _check_int(owner, "experts", experts)
        self.top_k = _check_int(owner, "top_k", top_k)
        if self.top_k > self.num_experts:
            raise ValueError(f"{owner}: top_k = {top_k} exceeds the number of experts ({experts}); "
                             f"use top_k <= {experts}")
        if isinstance(aux_weight, bool) or not isinstance(aux_weight, (int, float)) or not aux_weight >= 0:
            raise ValueError(f"{owner}: aux_weight must be a number >= 0, got {aux_weight!r}")
        self.aux_weight = float(aux_weight)
        self.router = torch.nn.Linear(self.d_in, self.num_experts, **kw)
        self.aux_loss: torch.Tensor | None = None

    def _reset_router(self) -> None:
        with torch.no_grad():
            self.router.weight.zero_()
            self.router.bias.zero_()

    def route(self, x2d: torch.Tensor) -> Routing:
        """The routing of the rows of ``x2d`` (T, d_in)."""
        return top_k_routing(self.router(x2d), self.top_k)

    def _rows(self, x: torch.Tensor, owner: str) -> torch.Tensor:
        if x.shape[-1] != self.d_in:
            raise ShapeError(f"{owner}: input has {x.shape[-1]} features, expected {self.d_in} "
                             f"(shape {tuple(x.shape)}); the last axis must be d_in")
        return x.reshape(-1, self.d_in)

    def _router_flops(self) -> int:
        return 2 * self.d_in * self.num_experts + self.num_experts


def _sorted_assignments(experts: torch.Tensor, gates: torch.Tensor, E: int):
    """The ``T k`` (token, expert) assignments grouped by expert: token indices, gates, and the
    count of each expert (a Python list: one host sync)."""
    k = experts.shape[-1]
    flat = experts.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = _expert_counts(experts, E, torch.int64).tolist()
    return order // k, gates.reshape(-1)[order], counts


# ------------------------------------------------------------------------------ BTT-MoE
class BTTMoE(_Routed):
    """BTT mixture of experts (module docstring): a rank-``experts`` BTT whose rank index is the
    expert index, with top-``k`` routing applied between the two core products.

    * input ``(..., d_in)``, output ``(..., d_out)``; cores ``R`` (n1, m2, E, n2), ``L``
      (m2, m1, n1, E) with the grid of :func:`linops.btt_shapes`, muP-initialised as the cores of
      ``linops.nn.BTT(rank=E)``; ``bias`` (d_out) and the ``router`` (d_in -> E) start at zero.
    * ``impl``: ``"grouped"`` (default; tokens grouped by expert, one pair of core products per
      used expert, O(T k d) extra memory, one host sync for the group sizes, so ``torch.compile``
      splits the graph there) or ``"gather"`` (each token's ``k`` core slices gathered: fixed
      shapes, no host sync, one graph under ``torch.compile``, but O(T k n1 m2 (n2 + m1)) memory,
      memory-bound: for small batches). Measured at d = 1024, E = 8, k = 2 (forward): on an H100,
      gather 0.7-0.8 ms against grouped 1.5-2.3 ms for 8-512 tokens; on 16 CPU cores, gather
      0.8 ms against 1.9 ms at 8 tokens but 93 ms against 14 ms at 1024 tokens.
    * after each call, ``self.aux_loss`` holds the auxiliary loss; add ``aux_loss(model)`` to the loss.
    * init scale: the rank-``E`` init keeps a full BTT's output at the input's RMS, but a token
      sees only ``k`` slices with gates ``1/k``, so a square layer starts at ``RMS(y) / RMS(x) =
      1/sqrt(E k)`` (0.25 for E = 8, k = 2), the same at every width.

    Cost per token: :meth:`flops_per_token` = ``2 k n1 m2 (n2 + m1)`` (experts) ``+ k n1 m2``
    (gates) ``+ 2 d_in E + E`` (router) ``+ d_out`` (bias).
    """

    def __init__(self, d_in: int, d_out: int, experts: int = 8, top_k: int = 2, bias: bool = True,
                 aux_weight: float = 0.01, impl: str = "grouped", device=None, dtype=None):
        super().__init__()
        if impl not in _IMPLS:
            raise ValueError(f"BTTMoE: impl must be one of {_IMPLS}, got {impl!r}")
        self.impl = impl
        kw = {"device": device, "dtype": dtype}
        self._init_router("BTTMoE", d_in, d_out, experts, top_k, aux_weight, kw)
        self.structure = BTT(rank=self.num_experts)
        self.cores = self.structure.cores(self.d_in, self.d_out)
        (self.n1, self.n2), (self.m1, self.m2) = self.structure.grid(self.d_in, self.d_out)
        for c in self.cores:
            self.register_parameter(c.name, torch.nn.Parameter(torch.empty(c.shape, **kw)))
        self.bias = torch.nn.Parameter(torch.zeros(self.d_out, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Cores from ``N(0, init_std(core)^2)``; bias and router to zero (uniform routing)."""
        with torch.no_grad():
            for c in self.cores:
                getattr(self, c.name).normal_(0.0, init_std(c))
            if self.bias is not None:
                self.bias.zero_()
        self._reset_router()

    def params(self) -> dict:
        """``{core name: parameter}`` (``R``, ``L``)."""
        return {c.name: getattr(self, c.name) for c in self.cores}

    def expert_operator(self, e: int):
        """Expert ``e``'s weight, the rank-1 BTT of slice ``e``, as a linops operator (d_out, d_in)."""
        if not 0 <= e < self.num_experts:
            raise IndexError(f"BTTMoE: expert {e} out of range [0, {self.num_experts})")
        from ..operators import BTT as BTTOp

        return BTTOp(self.R[:, :, e:e + 1, :], self.L[..., e:e + 1], self.d_in, self.d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        X = self._rows(x, "BTTMoE")
        T = X.shape[0]
        r = self.route(X)
        aux = router_aux_loss(r)
        n1, n2, m1, m2 = self.n1, self.n2, self.m1, self.m2
        if self.d_in < n1 * n2:
            X = F.pad(X, (0, n1 * n2 - self.d_in))
        Xg = X.reshape(T, n1, n2)
        gates = r.gates.to(X.dtype)
        if self.impl == "gather":
            Y = _btt_gather(self.R, self.L, Xg, r.experts, gates)
        else:
            Y = _btt_grouped(self.R, self.L, Xg, r.experts, gates, self.num_experts)
        y = Y.reshape(T, m1 * m2)[:, : self.d_out].reshape(*x.shape[:-1], self.d_out)
        self.aux_loss = aux
        return y if self.bias is None else y + self.bias

    def flops_breakdown(self) -> dict:
        """Flops per token by part (a multiply-add counts 2): ``experts`` (the ``k`` chosen slices'
        two core products), ``gates`` (scaling Z), ``router`` (its matmul and bias), ``bias``."""
        n1, n2, m1, m2, k = self.n1, self.n2, self.m1, self.m2, self.top_k
        return {"experts": 2 * k * n1 * m2 * (n2 + m1), "gates": k * n1 * m2, "router": self._router_flops(),
                "bias": self.d_out if self.bias is not None else 0}

    def flops_per_token(self) -> int:
        """Total of :meth:`flops_breakdown` (the routing's softmax and top-k, O(E), not counted)."""
        return sum(self.flops_breakdown().values())

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return (f"{self.d_in} -> {self.d_out}, experts={self.num_experts}, top_k={self.top_k}, "
                f"grid=({self.n1}x{self.n2} -> {self.m1}x{self.m2}), bias={self.bias is not None}")


def _btt_gather(R, L, Xg, experts, gates):
    """Each token's ``k`` slices gathered, ``Rs`` (T, k, n1, m2, n2) and ``Ls`` (T, k, m2, m1, n1),
    then batched matrix-vector products (fixed shapes; memory-bound: each slice is used once)."""
    Rs = R.permute(2, 0, 1, 3)[experts]
    Z = (Rs @ Xg[:, None, :, :, None]).squeeze(-1) * gates[:, :, None, None]  # (T, k, n1, m2)
    Ls = L.permute(3, 0, 1, 2)[experts]
    Y = (Ls @ Z.transpose(2, 3)[..., None]).squeeze(-1).sum(1)  # (T, m2, m1)
    return Y.transpose(1, 2)


def _btt_grouped(R, L, Xg, experts, gates, E):
    """Tokens grouped by expert; for expert ``e`` with ``c`` assignments, two batched matmuls of
    ``c`` columns with slice ``e``, then one ``index_add`` of all ``T k`` results into the output."""
    T, n1, n2 = Xg.shape
    m2, m1 = L.shape[0], L.shape[1]
    tok, g, counts = _sorted_assignments(experts, gates, E)
    Rs, Ls = R.unbind(2), L.unbind(3)  # one backward (a stack) instead of a full-size zero core per slice
    outs = []
    for e, (Xe, ge) in enumerate(zip(torch.split(Xg[tok], counts), torch.split(g, counts), strict=True)):
        if Xe.shape[0] == 0:
            continue
        # contiguous operands: CPU bmm (and its backward) copies strided batches one by one
        Z = torch.bmm(Rs[e].contiguous(), Xe.permute(1, 2, 0).contiguous()) * ge  # (n1, m2, c)
        Ye = torch.bmm(Ls[e].contiguous(), Z.permute(1, 0, 2).contiguous())       # (m2, m1, c)
        outs.append(Ye.permute(2, 1, 0))                                      # (c, m1, m2)
    Y = Xg.new_zeros((T, m1, m2))
    return Y.index_add(0, tok, torch.cat(outs)) if outs else Y


# ------------------------------------------------------------------------------ standard MoE
class MoE(_Routed):
    """A token-choice mixture of ``experts`` :class:`~linops.nn.StructuredLinear` experts (any
    ``structure``), ``y = Σ_j g_j expert_{α_j}(x)`` over each token's top-``k`` experts.

    Same router, gates and ``aux_loss`` as :class:`BTTMoE`. Each expert runs on its routed tokens
    only. Cost per token: :meth:`flops_per_token` = ``k`` expert products (bias included)
    ``+ k d_out`` (gates) ``+ 2 d_in E + E`` (router).
    """

    def __init__(self, d_in: int, d_out: int, experts: int = 8, top_k: int = 2,
                 structure: Structure | str = "dense", bias: bool = True, aux_weight: float = 0.01,
                 device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self._init_router("MoE", d_in, d_out, experts, top_k, aux_weight, kw)
        self.structure = as_structure(structure)
        self.experts = torch.nn.ModuleList(
            StructuredLinear(self.d_in, self.d_out, self.structure, bias=bias, **kw) for _ in range(self.num_experts))
        self._reset_router()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        X = self._rows(x, "MoE")
        T = X.shape[0]
        r = self.route(X)
        aux = router_aux_loss(r)
        tok, g, counts = _sorted_assignments(r.experts, r.gates.to(X.dtype), self.num_experts)
        outs = [expert(Xe) * ge[:, None]
                for expert, Xe, ge in zip(self.experts, torch.split(X[tok], counts), torch.split(g, counts), strict=True)
                if Xe.shape[0] > 0]
        Y = X.new_zeros((T, self.d_out))
        if outs:
            Y = Y.index_add(0, tok, torch.cat(outs))
        self.aux_loss = aux
        return Y.reshape(*x.shape[:-1], self.d_out)

    def flops_breakdown(self) -> dict:
        """Flops per token by part: ``experts`` (``k`` expert products with their bias), ``gates``, ``router``."""
        return {"experts": self.top_k * self.experts[0].flops(), "gates": self.top_k * self.d_out,
                "router": self._router_flops()}

    def flops_per_token(self) -> int:
        return sum(self.flops_breakdown().values())

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"{self.d_in} -> {self.d_out}, experts={self.num_experts}, top_k={self.top_k}, {self.structure.label()}"


def aux_loss(model: torch.nn.Module) -> torch.Tensor:
    """``Σ aux_weight * layer.aux_loss`` over the :class:`BTTMoE`/:class:`MoE` layers of ``model``
    (from their last forward); add it to the training loss. Zero for a model without MoE layers."""
    terms = []
    for name, m in model.named_modules():
        if isinstance(m, _Routed):
            if m.aux_loss is None:
                raise RuntimeError(f"aux_loss: MoE layer {name or type(m).__name__!r} has not run a forward pass "
                                   "yet; call the model on a batch first, then add aux_loss(model) to the loss")
            terms.append(m.aux_weight * m.aux_loss)
    if terms:
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total
    p = next(model.parameters(), None)
    return torch.zeros((), device=p.device if p is not None else None)
