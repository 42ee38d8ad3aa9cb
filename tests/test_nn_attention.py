"""linops.nn: the MLR weight structure (every backend) and structured multi-head attention (torch).

References are built independently of the code under test: MLR weights block by block in numpy
or with ``torch.block_diag``; attention as an explicit softmax of ``scale * q k^T`` in float64;
and ``torch.nn.MultiheadAttention`` for the dense module. Tolerances: 1e-12 relative in float64
(a handful of products and one softmax), 1e-5 in float32, the configuration's ``tol`` elsewhere.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import linops as lo
import linops.nn as lnn
from linops.errors import ShapeError

from .helpers import assert_close
from .zoo import CONFIGS, to_np

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _mlr_np(params: dict, levels: int, d: int) -> np.ndarray:
    """Σ_l BlockDiag_k(U_{l,k} V_{l,k}^H), built block by block, cut to d x d."""
    N = params["U0"].shape[1]
    W = np.zeros((N, N), dtype=np.result_type(*params.values()))
    for l in range(levels):
        U, V = params[f"U{l}"], params[f"V{l}"]
        nb, m, _ = U.shape
        for k in range(nb):
            W[k * m:(k + 1) * m, k * m:(k + 1) * m] += U[k] @ V[k].conj().T
    return W[:d, :d]


def _mlr_torch(Us, Vs, d):
    """The same with torch.block_diag (differentiable, independent of linops.MLR)."""
    W = sum(torch.block_diag(*[U[k] @ V[k].T for k in range(U.shape[0])]) for U, V in zip(Us, Vs, strict=True))
    return W[:d, :d]


def _random_params(S, d, rng, complex_=False):
    out = {}
    for c in S.cores(d, d):
        z = rng.standard_normal(c.shape)
        out[c.name] = z + 1j * rng.standard_normal(c.shape) if complex_ else z
    return out


# ----------------------------------------------------------------------------- the MLR structure
@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
@pytest.mark.parametrize("d,levels,ranks", [(30, 3, (3, 2, 1))])  # padded to 32; one case (jax compiles per shape)
def test_mlr_structure_operator_and_projection_on_every_backend(cfg, d, levels, ranks):
    S = lnn.MLR(levels=levels, ranks=ranks, sweeps=1)
    rng = np.random.default_rng(0)
    params = _random_params(S, d, rng, cfg.complex)
    ref = _mlr_np(params, levels, d)
    op = S.operator({k: cfg.arr(v) for k, v in params.items()}, d, d)
    assert op.shape == (d, d)
    assert_close(op.to_dense(), ref, cfg)
    x = rng.standard_normal((d, 3))
    assert_close(op @ cfg.arr(x), ref @ x, cfg, scale=float(np.abs(ref).sum(1).max()))
    # projection: the reported error is the true relative error of the returned parameters
    W = rng.standard_normal((d, d)) + (1j * rng.standard_normal((d, d)) if cfg.complex else 0)
    p, err = S.project(cfg.arr(W))
    assert tuple(p) == tuple(c.name for c in S.cores(d, d))
    Ws = _mlr_np({k: to_np(v).astype(np.complex128 if cfg.complex else np.float64) for k, v in p.items()}, levels, d)
    true = np.linalg.norm(W - Ws) / np.linalg.norm(W)
    assert abs(err - true) <= 10 * cfg.tol * true
    p64, err64 = S.project(W)  # numpy float64/complex128: the backends agree up to their precision
    assert abs(err - err64) <= 10 * cfg.tol


def test_mlr_projection_bounds_and_monotone_sweeps():
    rng = np.random.default_rng(1)
    d = 32
    W = rng.standard_normal((d, d))
    s = np.linalg.svd(W, compute_uv=False)
    # one level is plain low rank: the error is the SVD tail (Eckart-Young)
    _, e1 = lnn.MLR(levels=1, ranks=(5,)).project(W)
    assert e1 == pytest.approx(np.sqrt((s[5:] ** 2).sum() / (s**2).sum()), rel=1e-12)
    # level 0 alone already reaches the rank-r0 tail; finer levels and sweeps only lower the error
    errs = [lnn.MLR(levels=3, ranks=(4, 2, 2), sweeps=k).project(W)[1] for k in (0, 1, 3, 8)]
    assert errs[0] < np.sqrt((s[4:] ** 2).sum() / (s**2).sum())
    assert all(b <= a * (1 + 1e-12) for a, b in zip(errs, errs[1:], strict=False)), errs
    assert errs[-1] < errs[0]
    # a weight that is block diagonal at the finest level is fitted exactly by that level when ranks suffice
    blocks = [rng.standard_normal((8, 2)) @ rng.standard_normal((2, 8)) for _ in range(4)]
    B = np.zeros((d, d))
    for k, b in enumerate(blocks):
        B[8 * k:8 * (k + 1), 8 * k:8 * (k + 1)] = b
    _, eb = lnn.MLR(levels=3, ranks=(1, 1, 2), sweeps=0).project(B)
    assert eb < 1.0
    _, eb_exact = lnn.MLR(levels=1, ranks=(8,)).project(B)  # rank 8 holds all four rank-2 blocks
    assert eb_exact < 1e-13


@pytest.mark.parametrize("d,levels,ranks", [(32, 3, (3, 2, 2)), (30, 2, (4, 3)), (64, 4, (2, 2, 2, 2))])
def test_mlr_counts_match_the_formula_and_the_measured_flops(d, levels, ranks):
    from torch.utils.flop_counter import FlopCounterMode

    S = lnn.MLR(levels=levels, ranks=ranks)
    N = 2 ** (levels - 1) * math.ceil(d / 2 ** (levels - 1))
    assert S.num_params(d, d) == 2 * N * sum(ranks)
    assert S.flops(d, d) == N * (4 * sum(ranks) + levels - 1)
    layer = lnn.StructuredLinear(d, d, S, bias=False, dtype=torch.float64)
    op = layer.operator()
    assert op.num_params == S.num_params(d, d) and op.flops(1) == S.flops(d, d)
    x = torch.randn(7, d, dtype=torch.float64)
    with FlopCounterMode(display=False) as fc:  # counts the multiply-adds of the einsums (not the level sums)
        layer(x)
    assert fc.get_total_flops() == 7 * 4 * N * sum(ranks)


def test_mlr_default_ranks_split_evenly():
    assert lnn.MLR(levels=3, total_rank=16).level_ranks(64) == (6, 5, 5)
    assert lnn.MLR(levels=2).level_ranks(64) == (4, 4)  # round(sqrt(64)) = 8
    assert lnn.MLR(levels=4, ranks=[1, 2, 3, 4]).ranks == (1, 2, 3, 4)
    att = lnn.MultiheadAttention(64, 4, qk_structure=lnn.MLR(levels=3))  # head dim 16
    assert att.q_proj.structure.level_ranks(64) == (6, 5, 5)
    att = lnn.MultiheadAttention(64, 2, scores="mlr")  # head dim 32, 2 levels
    assert att.score_structure.level_ranks(64) == (16, 16)
    assert att.Q0.shape == (2, 1, 64, 16) and att.K1.shape == (2, 2, 32, 16)


@pytest.mark.parametrize("d", [32, 30])
def test_mlr_layer_gradients_match_dense_autodiff(d):
    S = lnn.MLR(levels=3, ranks=(3, 2, 2))
    torch.manual_seed(0)
    layer = lnn.StructuredLinear(d, d, S, dtype=torch.float64)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, d, dtype=torch.float64, requires_grad=True)
    Us = [getattr(layer, f"U{l}") for l in range(3)]
    Vs = [getattr(layer, f"V{l}") for l in range(3)]
    y = layer(x)
    y_ref = x @ _mlr_torch(Us, Vs, d).T + layer.bias
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    cot = torch.randn_like(y)
    g = torch.autograd.grad(y, [x, *Us, *Vs], cot)
    g_ref = torch.autograd.grad(y_ref, [x, *Us, *Vs], cot)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    small = lnn.MLR(levels=2, ranks=(2, 1))
    ps = [torch.randn(c.shape, dtype=torch.float64, requires_grad=True) for c in small.cores(8, 8)]
    xs = torch.randn(2, 8, dtype=torch.float64, requires_grad=True)

    def f(x, *ps_):
        return x @ small.operator({c.name: p for c, p in zip(small.cores(8, 8), ps_, strict=True)}, 8, 8).T

    assert torch.autograd.gradcheck(f, (xs, *ps))


def test_mlr_bad_options_raise_clear_errors():
    with pytest.raises(ShapeError, match="square"):
        lnn.MLR().cores(16, 32)
    with pytest.raises(ValueError, match="blocks are only 4 x 4"):
        lnn.MLR(levels=3, ranks=(2, 2, 5)).cores(16, 16)
    with pytest.raises(ValueError, match="3 ranks given for 2 levels"):
        lnn.MLR(levels=2, ranks=(1, 2, 3))
    with pytest.raises(ValueError, match="positive integer"):
        lnn.MLR(levels=0)
    with pytest.raises(ValueError, match="sum to 3, not total_rank"):
        lnn.MLR(levels=2, ranks=(1, 2), total_rank=4)


# ----------------------------------------------------------------------------- attention
def _copy_from_torch_mha(ours, mha):
    d = ours.d_model
    W, b = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
    with torch.no_grad():
        for i, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):
            proj.weight.copy_(W[i * d:(i + 1) * d])
            proj.bias.copy_(b[i * d:(i + 1) * d])
        ours.out_proj.weight.copy_(mha.out_proj.weight)
        ours.out_proj.bias.copy_(mha.out_proj.bias)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_dense_attention_equals_torch_multihead_attention(dtype, tol):
    torch.manual_seed(0)
    d, H, B, T, S = 24, 3, 2, 7, 5
    mha = torch.nn.MultiheadAttention(d, H, batch_first=True, dtype=dtype)
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    ours = lnn.MultiheadAttention(d, H, dtype=dtype)
    _copy_from_torch_mha(ours, mha)
    x, kv = torch.randn(B, T, d, dtype=dtype), torch.randn(B, S, d, dtype=dtype)
    kw = {"rtol": tol, "atol": tol}
    torch.testing.assert_close(ours(x), mha(x, x, x, need_weights=False)[0], **kw)
    torch.testing.assert_close(ours(x, kv), mha(x, kv, kv, need_weights=False)[0], **kw)
    allowed = torch.rand(T, S) > 0.3
    allowed[:, 0] = True  # every query keeps a key
    torch.testing.assert_close(ours(x, kv, attn_mask=allowed), mha(x, kv, kv, attn_mask=~allowed, need_weights=False)[0], **kw)
    additive = torch.randn(B, 1, T, S, dtype=dtype)
    ref = mha(x, kv, kv, attn_mask=additive.expand(B, H, T, S).reshape(B * H, T, S), need_weights=False)[0]
    torch.testing.assert_close(ours(x, kv, attn_mask=additive), ref, **kw)
    causal = lnn.MultiheadAttention(d, H, causal=True, dtype=dtype)
    _copy_from_torch_mha(causal, mha)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    torch.testing.assert_close(causal(x), mha(x, x, x, attn_mask=future, need_weights=False)[0], **kw)
    # a causal module combines with a boolean mask: both restrictions apply
    keep = torch.ones(T, T, dtype=torch.bool)
    keep[3:, 1] = False
    torch.testing.assert_close(causal(x, attn_mask=keep), mha(x, x, x, attn_mask=future | ~keep, need_weights=False)[0], **kw)


def _reference_attention(att, x, kv, logits_fn, allowed=None):
    """softmax(scale * logits + mask) v, out-projected, with explicit dense weights (float64)."""
    B, T, d = x.shape
    H, dh = att.num_heads, att.head_dim
    v = (kv @ att.v_proj.to_dense().T + att.v_proj.bias).reshape(B, -1, H, dh).transpose(1, 2)
    logits = att.scale * logits_fn(x, kv)  # (B, H, T, S)
    if att.causal:
        logits = logits.masked_fill(~torch.ones(T, kv.shape[1], dtype=torch.bool).tril(), float("-inf"))
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    y = (torch.softmax(logits, -1) @ v).transpose(1, 2).reshape(B, T, d)
    return y @ att.out_proj.to_dense().T + att.out_proj.bias


@pytest.mark.parametrize("qk", [lnn.BTT(rank=2), lnn.MLR(levels=2), lnn.Monarch(blocks=4), lnn.LowRank(6)])
def test_structured_qk_projections_match_the_dense_reference(qk):
    torch.manual_seed(1)
    d, H, B, T = 32, 4, 2, 6
    att = lnn.MultiheadAttention(d, H, structure=lnn.LowRank(8), qk_structure=qk, causal=True, dtype=torch.float64)
    assert att.q_proj.structure.name == qk.name and att.v_proj.structure == lnn.LowRank(8)
    with torch.no_grad():
        for p in (att.q_proj.bias, att.k_proj.bias, att.v_proj.bias, att.out_proj.bias):
            p.normal_()
    x = torch.randn(B, T, d, dtype=torch.float64, requires_grad=True)

    def logits(xq, xk):
        q = (xq @ att.q_proj.to_dense().T + att.q_proj.bias).reshape(B, -1, H, d // H).transpose(1, 2)
        k = (xk @ att.k_proj.to_dense().T + att.k_proj.bias).reshape(B, -1, H, d // H).transpose(1, 2)
        return q @ k.transpose(-1, -2)

    y, y_ref = att(x), _reference_attention(att, x, x, logits)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    cot = torch.randn_like(y)
    params = [x, *att.parameters()]
    for a, b in zip(torch.autograd.grad(y, params, cot), torch.autograd.grad(y_ref, params, cot), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)
    # the per-head score matrix of dot scores is W_Q,h^T W_K,h
    h = 2
    Wq, Wk = att.q_proj.to_dense()[h * 8:(h + 1) * 8], att.k_proj.to_dense()[h * 8:(h + 1) * 8]
    torch.testing.assert_close(att.score_operator(h).to_dense(), Wq.T @ Wk, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d,H,levels,ranks", [(32, 2, 3, None), (24, 3, 2, (5, 3)), (30, 2, 2, None)])
def test_mlr_scores_match_the_bilinear_reference(d, H, levels, ranks):
    torch.manual_seed(2)
    B, T, S = 2, 6, 4
    att = lnn.MultiheadAttention(d, H, scores=lnn.MLR(levels=levels, ranks=ranks), causal=False, dtype=torch.float64)
    rs = att.score_structure.level_ranks(d)
    assert sum(rs) == d // H  # ranks sum to the head dimension
    N = 2 ** (levels - 1) * math.ceil(d / 2 ** (levels - 1))
    assert att.score_features == sum(2**l * r for l, r in enumerate(rs))
    assert att.num_params() == 2 * H * N * sum(rs) + 2 * (d * d + d)  # = 2 d^2 + v, o when N = d
    x = torch.randn(B, T, d, dtype=torch.float64, requires_grad=True)
    kv = torch.randn(B, S, d, dtype=torch.float64, requires_grad=True)
    Qs = [getattr(att, f"Q{l}") for l in range(levels)]
    Ks = [getattr(att, f"K{l}") for l in range(levels)]

    def logits(xq, xk):  # x_i^T S_h x_j with S_h built block by block
        Sh = torch.stack([_mlr_torch([q[h] for q in Qs], [k[h] for k in Ks], d) for h in range(H)])
        return torch.einsum("bti,hij,bsj->bhts", xq, Sh, xk)

    allowed = torch.rand(B, 1, T, S) > 0.4
    allowed[..., 0] = True
    for mask in (None, allowed):
        y = att(x, kv, attn_mask=mask)
        y_ref = _reference_attention(att, x, kv, logits, mask)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    cot = torch.randn_like(y)
    params = [x, kv, *att.parameters()]
    for a, b in zip(torch.autograd.grad(y, params, cot), torch.autograd.grad(y_ref, params, cot), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)
    # score_operator(h) is that S_h, as a linops.MLR
    Sop = att.score_operator(1)
    assert isinstance(Sop, lo.MLR) and Sop.ranks == rs
    torch.testing.assert_close(Sop.to_dense(), _mlr_torch([q[1] for q in Qs], [k[1] for k in Ks], d), rtol=1e-12, atol=1e-12)


def test_mlr_score_attention_trains_in_float32():
    """A causal MLR-score layer fits a fixed random target (a smoke test of the training path)."""
    torch.manual_seed(3)
    att = lnn.MultiheadAttention(16, 2, scores=lnn.MLR(levels=2), causal=True)
    x, target = torch.randn(4, 6, 16), torch.randn(4, 6, 16)
    opt = torch.optim.Adam(att.parameters(), lr=2e-2)
    first = None
    for _ in range(30):
        loss = F.mse_loss(att(x), target)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.8 * first
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in att.parameters())


def test_attention_flops_formula():
    d, H, T = 32, 4, 10
    att = lnn.MultiheadAttention(d, H, structure=lnn.Monarch(blocks=4), qk_structure=lnn.BTT(2))
    proj = T * sum(p.flops() for p in (att.q_proj, att.k_proj, att.v_proj, att.out_proj))
    assert att.flops(T) == proj + 2 * T * T * H * 2 * (d // H)
    mlr = lnn.MultiheadAttention(d, H, scores=lnn.MLR(levels=2, ranks=(4, 4)))
    E = 4 + 2 * 4
    feats = 2 * T * 2 * H * d * 8
    assert mlr.flops(T) == T * (mlr.v_proj.flops() + mlr.out_proj.flops()) + feats + 2 * T * T * H * (E + d // H)


def test_attention_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        lnn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="qk_structure has nothing to act on"):
        lnn.MultiheadAttention(16, 2, scores="mlr", qk_structure="btt")
    with pytest.raises(ValueError, match="scores must be"):
        lnn.MultiheadAttention(16, 2, scores=lnn.BTT())
    with pytest.raises(ValueError, match="unknown structure"):
        lnn.MultiheadAttention(16, 2, structure="fancy")
    att = lnn.MultiheadAttention(16, 2)
    x = torch.randn(2, 5, 16)
    with pytest.raises(ShapeError, match=r"\(batch, length, 16\)"):
        att(torch.randn(2, 5, 12))
    with pytest.raises(ShapeError, match="3-D masks are ambiguous"):
        att(x, attn_mask=torch.ones(4, 5, 5, dtype=torch.bool))
    with pytest.raises(ShapeError, match="does not fit 5 queries"):
        att(x, attn_mask=torch.ones(5, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        att(x, attn_mask=torch.ones(5, 5, dtype=torch.int64))
    with pytest.raises(ShapeError, match="share the batch size"):
        att(x, torch.randn(3, 5, 16))
