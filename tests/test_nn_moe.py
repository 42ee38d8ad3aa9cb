"""linops.nn.moe: BTT-MoE and the standard MoE against per-token dense references.

Every forward is checked against a float64 numpy reference that routes each token itself and sums
``gate * W_e x`` over its top-k experts, with ``W_e`` built from the expert's slice by
``linops.BTT(...).to_dense()`` (the operator's column product, not the layer's einsums); gradients
against torch autograd through that reference and by ``gradcheck``; the FLOPs by torch's
``FlopCounterMode`` (what actually ran), against ``k/E`` of the all-experts BTT layer.
Tolerances: float64 results to 1e-12 relative to the output's scale (sums of <= 64 products).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import linops as lo
import linops.nn as lnn

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from linops.errors import ShapeError  # noqa: E402
from linops.nn.moe import BTTMoE, MoE, aux_loss, router_aux_loss, top_k_routing  # noqa: E402



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread for these tiny products: on a shared, loaded 2-core machine two OpenMP
    threads made a 30-step training loop 100x slower (53 s against 0.56 s). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SIZES = [(36, 36), (30, 20), (24, 40)]  # square grid, padded input (30 = 5 x 6), padded output (40 = 7 x 6 - 2)


def _randomise(layer, seed=0):
    """Random router (no ties) and bias, so the routing and the bias are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.router.weight.copy_(torch.randn(layer.router.weight.shape, generator=g, dtype=torch.float64))
        layer.router.bias.copy_(torch.randn(layer.router.bias.shape, generator=g, dtype=torch.float64))
        if getattr(layer, "bias", None) is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
    return layer


def _np_routing(X, Wr, br, k):
    """Top-k routing in numpy: indices of the k largest logits, softmax over them, full softmax probs."""
    logits = X @ Wr.T + br
    idx = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(logits, idx, 1)
    gates = np.exp(top - top.max(1, keepdims=True))
    gates /= gates.sum(1, keepdims=True)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return logits, probs, idx, gates


def _np_btt_experts(layer):
    """The E expert weights (E, d_out, d_in) of a BTTMoE, each the rank-1 BTT of its slice (numpy)."""
    R, L = layer.R.detach().numpy(), layer.L.detach().numpy()
    return np.stack([lo.BTT(R[:, :, e:e + 1, :], L[..., e:e + 1], layer.d_in, layer.d_out).to_dense()
                     for e in range(layer.num_experts)])


def _np_moe_ref(X, Ws, bs, Wr, br, k):
    """``y_t = Σ_j g_tj (W_{e_tj} x_t + b_{e_tj})`` token by token."""
    _, _, idx, gates = _np_routing(X, Wr, br, k)
    Y = np.zeros((X.shape[0], Ws.shape[1]))
    for t in range(X.shape[0]):
        for j in range(k):
            e = idx[t, j]
            Y[t] += gates[t, j] * (Ws[e] @ X[t] + (bs[e] if bs is not None else 0.0))
    return Y


def _close(a, b, rtol=1e-12):
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    scale = max(1.0, float(np.abs(b).max()))
    err = float(np.abs(a - b).max())
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol * scale:.3g}"


# ------------------------------------------------------------------------------ BTT-MoE forward
@pytest.mark.parametrize("impl", ["grouped", "gather"])
@pytest.mark.parametrize("d_in,d_out", SIZES)
@pytest.mark.parametrize("E,k", [(4, 2), (5, 1), (3, 3)])
def test_btt_moe_forward_matches_per_token_dense_reference(impl, d_in, d_out, E, k):
    torch.manual_seed(1)
    layer = _randomise(BTTMoE(d_in, d_out, experts=E, top_k=k, impl=impl, dtype=torch.float64))
    x = torch.randn(2, 7, d_in, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (2, 7, d_out)
    X = x.reshape(-1, d_in).numpy()
    Ws = _np_btt_experts(layer)
    ref = _np_moe_ref(X, Ws, None, layer.router.weight.detach().numpy(), layer.router.bias.detach().numpy(), k)
    ref += layer.bias.detach().numpy()
    _close(y.reshape(-1, d_out), ref)


def test_btt_moe_impls_agree():
    torch.manual_seed(2)
    layer = _randomise(BTTMoE(36, 30, experts=6, top_k=2, dtype=torch.float64))
    assert layer.impl == "grouped"
    x = torch.randn(20, 36, dtype=torch.float64)
    y = layer(x)
    layer.impl = "gather"
    _close(layer(x), y.detach().numpy(), 1e-13)


def test_top_k_equal_to_experts_is_the_full_soft_mixture():
    torch.manual_seed(3)
    E = 4
    layer = _randomise(BTTMoE(30, 25, experts=E, top_k=E, dtype=torch.float64))
    x = torch.randn(9, 30, dtype=torch.float64)
    X = x.numpy()
    _, probs, _, _ = _np_routing(X, layer.router.weight.detach().numpy(), layer.router.bias.detach().numpy(), E)
    Ws = _np_btt_experts(layer)
    ref = np.einsum("te,eoi,ti->to", probs, Ws, X) + layer.bias.detach().numpy()
    _close(layer(x), ref)
    # with a uniform router (zero) the mixture is the rank-E BTT of the same cores divided by E
    layer._reset_router()
    W_all = lo.BTT(layer.R.detach().numpy(), layer.L.detach().numpy(), 30, 25).to_dense()
    _close(layer(x), X @ W_all.T / E + layer.bias.detach().numpy())


# ------------------------------------------------------------------------------ gradients
def _torch_reference(layer, x):
    """The layer's output and aux loss by plain torch ops on dense expert weights (differentiable)."""
    X = x.reshape(-1, layer.d_in)
    logits = X @ layer.router.weight.T + layer.router.bias
    idx = torch.argsort(-logits.detach(), dim=1, stable=True)[:, : layer.top_k]
    gates = torch.softmax(torch.gather(logits, 1, idx), dim=1)
    Ws = torch.stack([layer.expert_operator(e).to_dense() for e in range(layer.num_experts)])
    Y = torch.einsum("tk,tkoi,ti->to", gates, Ws[idx], X) + layer.bias
    probs = torch.softmax(logits, dim=1)
    f = torch.zeros(layer.num_experts, dtype=X.dtype)
    for e in idx.reshape(-1).tolist():
        f[e] += 1.0 / idx.numel()
    aux = layer.num_experts * (probs.mean(0) * f).sum() + 0.1 * torch.log(torch.exp(logits).sum(1)).pow(2).mean()
    return Y.reshape(*x.shape[:-1], layer.d_out), aux


@pytest.mark.parametrize("impl", ["grouped", "gather"])
def test_btt_moe_gradients_match_autograd_reference(impl):
    torch.manual_seed(4)
    layer = _randomise(BTTMoE(30, 20, experts=4, top_k=2, impl=impl, dtype=torch.float64))
    x = torch.randn(3, 5, 30, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    cot = torch.randn_like(y)
    wrt = [x, *layer.parameters()]
    g = torch.autograd.grad((y * cot).sum() + 0.7 * layer.aux_loss, wrt)
    y_ref, aux_ref = _torch_reference(layer, x)
    _close(layer.aux_loss, aux_ref.detach().numpy())
    g_ref = torch.autograd.grad((y_ref * cot).sum() + 0.7 * aux_ref, wrt)
    for a, b in zip(g, g_ref, strict=True):
        _close(a, b.numpy(), 1e-11)


@pytest.mark.parametrize("impl", ["grouped", "gather"])
def test_btt_moe_gradcheck(impl):
    torch.manual_seed(5)
    layer = _randomise(BTTMoE(6, 5, experts=3, top_k=2, impl=impl, dtype=torch.float64))
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    ps = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]

    def f(x, *ps_):
        y = torch.func.functional_call(layer, dict(zip(names, ps_, strict=True)), (x,))
        return y, layer.aux_loss

    assert torch.autograd.gradcheck(f, (x, *ps), eps=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------ router and aux loss
def test_router_starts_uniform():
    for E, k in [(8, 2), (5, 1), (3, 3)]:
        layer = BTTMoE(24, 24, experts=E, top_k=k, dtype=torch.float64)
        x = torch.randn(11, 24, dtype=torch.float64)
        r = layer.route(x)
        torch.testing.assert_close(r.probs, torch.full((11, E), 1.0 / E, dtype=torch.float64), rtol=0, atol=1e-15)
        torch.testing.assert_close(r.gates, torch.full((11, k), 1.0 / k, dtype=torch.float64), rtol=0, atol=1e-15)
        layer(x)
        # uniform probabilities: the balance term is E * Σ_e (1/E) f_e = 1 whatever the routing; logits 0: lse = log E
        assert abs(float(layer.aux_loss.detach()) - (1.0 + 0.1 * math.log(E) ** 2)) < 1e-14
        assert not layer.router.weight.detach().any() and not layer.router.bias.detach().any()
    m = MoE(16, 8, experts=4, top_k=2)
    assert not m.router.weight.detach().any()


def test_aux_loss_by_hand():
    # E = 2, k = 1, router bias (log 3, 0): probs (3/4, 1/4) for every token, every token goes to expert 0
    layer = BTTMoE(4, 4, experts=2, top_k=1, dtype=torch.float64)
    with torch.no_grad():
        layer.router.bias.copy_(torch.tensor([math.log(3.0), 0.0], dtype=torch.float64))
    layer(torch.randn(5, 4, dtype=torch.float64))
    # balance: 2 * (3/4 * 1 + 1/4 * 0) = 1.5; z-loss: logsumexp = log(3 + 1) = log 4
    assert abs(float(layer.aux_loss.detach()) - (1.5 + 0.1 * math.log(4.0) ** 2)) < 1e-14


def test_aux_loss_formula_against_numpy():
    torch.manual_seed(6)
    E, k, T = 6, 2, 40
    layer = _randomise(BTTMoE(20, 12, experts=E, top_k=k, dtype=torch.float64))
    x = torch.randn(T, 20, dtype=torch.float64)
    layer(x)
    logits, probs, idx, _ = _np_routing(x.numpy(), layer.router.weight.detach().numpy(),
                                        layer.router.bias.detach().numpy(), k)
    frac = np.bincount(idx.ravel(), minlength=E) / (T * k)  # share of the T k assignments
    lse = np.log(np.exp(logits).sum(1))
    expected = E * np.sum(probs.mean(0) * frac) + 0.1 * np.mean(lse ** 2)
    assert abs(float(layer.aux_loss.detach()) - expected) < 1e-12 * expected
    # the functional form gives the same value, and it has gradients through the probabilities only
    r = top_k_routing(layer.router(x), k)
    assert abs(float(router_aux_loss(r).detach()) - expected) < 1e-12 * expected
    assert layer.aux_loss.requires_grad


def test_aux_loss_helper_sums_weighted_layer_losses():
    torch.manual_seed(7)
    model = torch.nn.Sequential(BTTMoE(16, 16, experts=4, aux_weight=0.01), torch.nn.GELU(),
                                MoE(16, 8, experts=3, aux_weight=0.5), torch.nn.Linear(8, 2))
    with pytest.raises(RuntimeError, match="has not run a forward pass"):
        aux_loss(model)
    model(torch.randn(6, 16))
    total = aux_loss(model)
    assert torch.allclose(total, 0.01 * model[0].aux_loss + 0.5 * model[2].aux_loss)
    total.backward()  # reaches the routers
    assert model[0].router.weight.grad is not None and model[2].router.weight.grad is not None
    assert float(aux_loss(torch.nn.Linear(3, 3))) == 0.0


# ------------------------------------------------------------------------------ FLOPs
def _counted(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


@pytest.mark.parametrize("impl", ["grouped", "gather"])
def test_only_top_k_slices_are_computed(impl):
    torch.manual_seed(8)
    T, E, k, d_in, d_out = 32, 8, 2, 64, 48
    layer = _randomise(BTTMoE(d_in, d_out, experts=E, top_k=k, impl=impl, dtype=torch.float64))
    x = torch.randn(T, d_in, dtype=torch.float64)
    counted = _counted(lambda: layer(x))
    parts = layer.flops_breakdown()
    router_mm = 2 * d_in * E  # FlopCounterMode counts matmuls only (the router's addmm without its bias)
    assert counted == T * (parts["experts"] + router_mm)
    # the experts' part is k/E of the all-experts BTT layer of the same cores, counted the same way
    dense_all = lnn.StructuredLinear(d_in, d_out, lnn.BTT(E), dtype=torch.float64)
    all_counted = _counted(lambda: dense_all(x))
    assert all_counted == T * lnn.BTT(E).flops(d_in, d_out)
    assert counted - T * router_mm == all_counted * k // E
    assert layer.flops_per_token() == parts["experts"] + parts["gates"] + parts["router"] + parts["bias"]
    # and the gradient pass also touches only the chosen slices (backward = 2 x forward matmul flops)
    xg = x.clone().requires_grad_(True)
    y = layer(xg)
    back = _counted(lambda: y.sum().backward())
    assert back == 2 * T * parts["experts"] + 2 * T * router_mm


def test_moe_flops_and_routed_tokens_only():
    torch.manual_seed(9)
    T, E, k = 24, 6, 2
    for structure in ("dense", lnn.BTT(2)):
        m = _randomise(MoE(36, 20, experts=E, top_k=k, structure=structure, dtype=torch.float64))
        x = torch.randn(T, 36, dtype=torch.float64)
        counted = _counted(lambda m=m, x=x: m(x))
        S = lnn.as_structure(structure)
        assert counted == T * (k * S.flops(36, 20) + 2 * 36 * E)
        assert m.flops_breakdown()["experts"] == k * (S.flops(36, 20) + 20)


# ------------------------------------------------------------------------------ standard MoE
@pytest.mark.parametrize("structure", ["dense", "monarch", "btt"])
def test_moe_forward_and_gradients_match_reference(structure):
    torch.manual_seed(10)
    E, k = 5, 2
    m = _randomise(MoE(30, 20, experts=E, top_k=k, structure=structure, dtype=torch.float64))
    with torch.no_grad():
        for ex in m.experts:
            ex.bias.normal_()
    x = torch.randn(2, 6, 30, dtype=torch.float64, requires_grad=True)
    y = m(x)
    assert y.shape == (2, 6, 20)
    Ws = np.stack([ex.to_dense().detach().numpy() for ex in m.experts])
    bs = np.stack([ex.bias.detach().numpy() for ex in m.experts])
    X = x.detach().reshape(-1, 30).numpy()
    ref = _np_moe_ref(X, Ws, bs, m.router.weight.detach().numpy(), m.router.bias.detach().numpy(), k)
    _close(y.reshape(-1, 20), ref)
    # gradients against the same mixture written with dense expert weights
    cot = torch.randn_like(y)
    wrt = [x, *m.parameters()]
    g = torch.autograd.grad((y * cot).sum() + m.aux_loss, wrt)
    X2 = x.reshape(-1, 30)
    logits = m.router(X2)
    idx = torch.argsort(-logits.detach(), dim=1, stable=True)[:, :k]
    gates = torch.softmax(torch.gather(logits, 1, idx), dim=1)
    Wt = torch.stack([ex.to_dense() for ex in m.experts])
    bt = torch.stack([ex.bias for ex in m.experts])
    y_ref = torch.einsum("tk,tkoi,ti->to", gates, Wt[idx], X2) + torch.einsum("tk,tko->to", gates, bt[idx])
    g_ref = torch.autograd.grad((y_ref.reshape(y.shape) * cot).sum() + router_aux_loss(top_k_routing(logits, k)), wrt,
                                allow_unused=True)
    for a, b in zip(g, g_ref, strict=True):
        _close(a, b.numpy(), 1e-11)


# ------------------------------------------------------------------------------ muP, state, compile, training
def test_btt_moe_cores_are_those_of_btt_rank_E():
    layer = BTTMoE(64, 48, experts=8)
    assert layer.cores == lnn.BTT(8).cores(64, 48)
    assert {n for n, _ in layer.named_parameters()} == {"R", "L", "bias", "router.weight", "router.bias"}
    for c in layer.cores:
        p = getattr(layer, c.name)
        assert tuple(p.shape) == c.shape
        assert abs(float(p.detach().std()) / lnn.init_std(c) - 1) < 0.1  # drawn at the muP scale
    assert layer.num_params() == lnn.BTT(8).num_params(64, 48) + 48 + 64 * 8 + 8


def test_init_output_scale_is_width_independent():
    # documented: RMS(y)/RMS(x) = 1/sqrt(E k) for BTTMoE (k of E rank-1 slices, gates 1/k), 1/sqrt(k) for MoE
    torch.manual_seed(15)
    for d in (36, 144):
        x = torch.randn(512, d)
        with torch.no_grad():
            r_btt = float(BTTMoE(d, d, experts=8, top_k=2)(x).pow(2).mean().sqrt())
            r_moe = float(MoE(d, d, experts=4, top_k=2)(x).pow(2).mean().sqrt())
        rx = float(x.pow(2).mean().sqrt())
        assert abs(r_btt / rx * math.sqrt(16) - 1) < 0.15
        assert abs(r_moe / rx * math.sqrt(2) - 1) < 0.15


def test_state_dict_round_trip():
    torch.manual_seed(11)
    for make in (lambda: BTTMoE(30, 20, experts=4), lambda: MoE(30, 20, experts=3, structure="monarch")):
        a, b = _randomise(make().double()), make().double()
        x = torch.randn(7, 30, dtype=torch.float64)
        assert not torch.allclose(a(x), b(x))
        b.load_state_dict(a.state_dict())
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
        assert set(a.state_dict()) == set(b.state_dict())


# dynamo itself reads .grad of the non-leaf tensors it carries across the grouped path's graph breaks
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_torch_compile_forward_and_backward():
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is unavailable")
    torch.manual_seed(12)
    for impl in ("gather", "grouped"):
        layer = _randomise(BTTMoE(16, 12, experts=4, top_k=2, impl=impl).double())
        x = torch.randn(6, 16, dtype=torch.float64)
        y_eager = layer(x)
        g_eager = torch.autograd.grad(y_eager.sum() + layer.aux_loss, list(layer.parameters()))
        # aot_eager: dynamo and AOT autograd as inductor sees them, without a C++ build (~45 s here);
        # the gather path has fixed shapes and no host sync, so it must trace as one graph
        torch._dynamo.reset()
        compiled = torch.compile(layer, backend="aot_eager", fullgraph=impl == "gather")
        layer.aux_loss = None
        y = compiled(x)
        assert layer.aux_loss is not None  # the attribute write survives compilation
        g = torch.autograd.grad(y.sum() + layer.aux_loss, list(layer.parameters()))
        torch.testing.assert_close(y, y_eager)
        for a, b in zip(g, g_eager, strict=True):
            torch.testing.assert_close(a, b)


def test_training_reduces_loss_and_moves_the_router():
    torch.manual_seed(13)
    model = torch.nn.Sequential(BTTMoE(16, 32, experts=4), torch.nn.GELU(), BTTMoE(32, 4, experts=4))
    x = torch.randn(64, 16)
    target = torch.randn(64, 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        (loss + aux_loss(model)).backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    probs = model[0].route(x).probs
    assert float((probs.detach() - 0.25).abs().max()) > 1e-3  # no longer uniform
    counts = torch.bincount(model[0].route(x).experts.reshape(-1), minlength=4)
    assert int((counts > 0).sum()) >= 3  # the balance loss spread the tokens from the tied start


def test_bad_input_raises_clear_errors():
    layer = BTTMoE(16, 8, experts=4)
    with pytest.raises(ShapeError, match="expected 16"):
        layer(torch.randn(3, 15))
    with pytest.raises(ValueError, match="top_k = 5 exceeds"):
        BTTMoE(16, 8, experts=4, top_k=5)
    with pytest.raises(ValueError, match="experts must be an integer"):
        MoE(16, 8, experts=0)
    with pytest.raises(ValueError, match="impl must be one of"):
        BTTMoE(16, 8, impl="dense")
    with pytest.raises(ValueError, match="aux_weight"):
        BTTMoE(16, 8, aux_weight=-1.0)
    with pytest.raises(IndexError, match="out of range"):
        layer.expert_operator(4)


# ------------------------------------------------------------------------------ Flax NNX
def _nnx_from_torch(layer):
    """An NNX BTTMoE holding the torch layer's parameters (float64)."""
    jnp = pytest.importorskip("jax.numpy")
    nnx = pytest.importorskip("flax.nnx")
    from linops.nn.moe_nnx import BTTMoE as NNXBTTMoE

    m = NNXBTTMoE(layer.d_in, layer.d_out, layer.num_experts, layer.top_k, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    m.R[...] = jnp.asarray(layer.R.detach().numpy())
    m.L[...] = jnp.asarray(layer.L.detach().numpy())
    m.bias[...] = jnp.asarray(layer.bias.detach().numpy())
    m.router.kernel[...] = jnp.asarray(layer.router.weight.detach().numpy().T)
    m.router.bias[...] = jnp.asarray(layer.router.bias.detach().numpy())
    return m


def test_nnx_forward_aux_and_gradients_equal_torch():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    nnx = pytest.importorskip("flax.nnx")
    from linops.nn import moe_nnx

    torch.manual_seed(14)
    d_in, d_out = 30, 40  # both grids padded: input 5 x 6, output 7 x 6
    layer = _randomise(BTTMoE(d_in, d_out, experts=5, top_k=2, dtype=torch.float64))
    m = _nnx_from_torch(layer)
    x = torch.randn(3, 4, d_in, dtype=torch.float64)
    y = layer(x)
    cot = torch.randn_like(y)
    (y * cot).sum().add(layer.aux_loss).backward()
    xj, cj = jnp.asarray(x.numpy()), jnp.asarray(cot.numpy())
    # everything under nnx.jit / jax.jit: one compilation each instead of one per eager op
    yj = nnx.jit(lambda model, v: model(v))(m, xj)  # the aux-loss write comes back out of nnx.jit
    _close(np.asarray(yj), y.detach().numpy())
    _close(np.asarray(m.aux_loss[...]), layer.aux_loss.detach().numpy())
    assert m.flops_per_token() == layer.flops_per_token()

    def loss(model):
        return jnp.sum(model(xj) * cj) + moe_nnx.aux_loss(model) / model.aux_weight

    g = nnx.jit(nnx.grad(loss))(m)
    _close(np.asarray(g.R[...]), layer.R.grad.numpy(), 1e-11)
    _close(np.asarray(g.L[...]), layer.L.grad.numpy(), 1e-11)
    _close(np.asarray(g.bias[...]), layer.bias.grad.numpy(), 1e-11)
    _close(np.asarray(g.router.kernel[...]).T, layer.router.weight.grad.numpy(), 1e-11)
    _close(np.asarray(g.router.bias[...]), layer.router.bias.grad.numpy(), 1e-11)
    # vmapped over the leading axis through the functional API (fixed shapes: no host sync)
    graphdef, state = nnx.split(m)
    yv = jax.jit(jax.vmap(lambda st, v: nnx.merge(graphdef, st)(v), in_axes=(None, 0)))(state, xj)
    _close(np.asarray(yv), y.detach().numpy())


def test_nnx_router_uniform_and_bad_input():
    jnp = pytest.importorskip("jax.numpy")
    nnx = pytest.importorskip("flax.nnx")
    from linops.nn.moe_nnx import BTTMoE as NNXBTTMoE

    m = NNXBTTMoE(24, 16, experts=6, top_k=2, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((7, 24)))
    _, probs, _, gates = m.route(x)
    assert np.allclose(np.asarray(probs), 1 / 6, rtol=0, atol=1e-15)
    assert np.allclose(np.asarray(gates), 1 / 2, rtol=0, atol=1e-15)
    m(x)
    assert abs(float(m.aux_loss[...]) - (1.0 + 0.1 * math.log(6) ** 2)) < 1e-14
    assert tuple(m.R[...].shape) == lnn.BTT(6).cores(24, 16)[0].shape and m.R.mup_lr > 0
    with pytest.raises(ShapeError, match="expected 24"):
        m(x[:, :20])
    with pytest.raises(ValueError, match="top_k = 7 exceeds"):
        NNXBTTMoE(24, 16, experts=6, top_k=7, rngs=nnx.Rngs(0))
