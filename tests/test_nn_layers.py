"""linops.nn: structured layers against dense references (torch and Flax NNX), muP rules, conversion.

Each structure's layer must equal ``x @ W.to_dense().T + b`` with gradients to match, keep
activations O(1) at init across widths, round-trip through state_dict, compile, and hand the
optimizer the documented per-core learning rates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import linops as lo
import linops.nn as lnn

torch = pytest.importorskip("torch")

STRUCTURES = {
    "dense": lnn.Dense(),
    "low_rank": lnn.LowRank(0.25),
    "kronecker": lnn.Kronecker(),
    "monarch": lnn.Monarch(),
    "monarch4": lnn.Monarch(blocks=4),
    "btt1": lnn.BTT(1),
    "btt3": lnn.BTT(3),
    "tt": lnn.TT(3, 2),
    "einsum_btt": lnn.Einsum(lo.einsum_points()["btt"]),
    "einsum_mid": lnn.Einsum((0.3, 0.3, 0.4, 0.2, 0.5, 0.3, 0.5)),
}
SIZES = [(36, 36), (24, 40), (50, 30)]


def _dense_np(S, params, d_in, d_out):
    """The weight from the cores, by the column product of the numpy operator (not the layer's row path)."""
    return S.operator({k: np.asarray(v, dtype=np.float64) for k, v in params.items()}, d_in, d_out).to_dense()


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("d_in,d_out", SIZES)
def test_torch_forward_and_gradients_match_dense(name, d_in, d_out):
    S = STRUCTURES[name]
    torch.manual_seed(0)
    layer = lnn.StructuredLinear(d_in, d_out, S, dtype=torch.float64)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, d_in, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    params = {k: v.detach().numpy() for k, v in layer.params().items()}
    W = _dense_np(S, params, d_in, d_out)
    ref = x.detach().numpy() @ W.T + layer.bias.detach().numpy()
    assert y.shape == (2, 3, d_out)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    # gradients: through the layer (row products) vs through the dense weight built by to_dense (column products)
    cot = torch.randn_like(y)
    g_layer = torch.autograd.grad(y, [x, *layer.parameters()], cot)
    layer.zero_grad()
    x2 = x.detach().clone().requires_grad_(True)
    y2 = x2 @ layer.to_dense().T + layer.bias
    g_ref = torch.autograd.grad(y2, [x2, *layer.parameters()], cot)
    for a, b in zip(g_layer, g_ref, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("name", ["monarch", "btt3", "einsum_mid"])
def test_torch_gradcheck(name):
    S = STRUCTURES[name]
    layer = lnn.StructuredLinear(12, 10, S, dtype=torch.float64)
    x = torch.randn(3, 12, dtype=torch.float64, requires_grad=True)
    ps = list(layer.parameters())

    def f(x, *ps_):
        out = {n: p for n, p in zip(layer.params(), ps_, strict=False)}
        W = S.operator(out, 12, 10)
        return x @ W.T

    assert torch.autograd.gradcheck(f, (x, *ps[: len(layer.cores)]), eps=1e-6, atol=1e-8)


WIDTH_PROPORTIONAL = ["dense", "low_rank", "kronecker", "monarch", "monarch4", "btt1", "btt3", "tt", "einsum_btt"]
EINSUM_POINTS = {f"einsum:{k}": lnn.Einsum(v) for k, v in lo.einsum_points().items()}


def _init_rms(S, d, seed=0):
    torch.manual_seed(seed)
    layer = lnn.StructuredLinear(d, d, S, bias=False)
    x = torch.randn(256, d)
    with torch.no_grad():
        return float(layer(x).pow(2).mean().sqrt()), lnn.init_gain(layer.cores)


@pytest.mark.parametrize("name", WIDTH_PROPORTIONAL + ["einsum:dense", "einsum:kronecker", "einsum:monarch"])
def test_init_keeps_activations_order_one_across_widths(name):
    """muP init: the output RMS of a unit-RMS input stays within a constant band from width 64 to 1024
    (every structure whose rank, if any, is a fixed number or fraction of the width)."""
    S = STRUCTURES.get(name) or EINSUM_POINTS[name]
    rms = [_init_rms(S, d)[0] for d in (64, 256, 1024)]
    assert all(0.4 < r < 2.5 for r in rms), rms
    assert max(rms) / min(rms) < 1.5, rms


@pytest.mark.parametrize("name", list(STRUCTURES) + list(EINSUM_POINTS))
def test_init_rms_matches_the_predicted_gain(name):
    """Where the rank grows more slowly than the width (Einsum low-rank/TT points, general theta), the
    activations shrink at init exactly as init_gain predicts (sqrt of the product of min(1, fan_out/fan_in))."""
    S = STRUCTURES.get(name) or EINSUM_POINTS[name]
    for d in (64, 1024):
        rms, gain = _init_rms(S, d)
        assert rms == pytest.approx(gain, rel=0.25), (d, rms, gain)


def test_init_std_and_lr_multiplier_formulas():
    cores = lnn.Monarch().cores(64, 64)  # R: 8 blocks 8x8 (fan 8 -> 8)
    R = cores[0]
    assert (R.fan_in, R.fan_out) == (8, 64)
    assert lnn.init_std(R) == pytest.approx(1 / math.sqrt(8))
    assert lnn.lr_multiplier(R, cores, 64) == pytest.approx((64 / 8) / 2)
    assert lnn.lr_multiplier(R, cores, 64, base_width=16) == pytest.approx((64 / 8) / 2 * 16 / 64)
    wide = lnn.Core("W", (4, 16), 16, 4)  # fan-in 16, fan-out 4: std shrinks by sqrt(4/16)
    assert lnn.init_std(wide) == pytest.approx(1 / math.sqrt(16) * math.sqrt(4 / 16))


def test_param_groups_cover_every_parameter_once_with_the_documented_rates():
    model = torch.nn.Sequential(lnn.StructuredLinear(64, 64, "monarch"), torch.nn.ReLU(),
                                lnn.StructuredLinear(64, 32, lnn.BTT(2)), torch.nn.Linear(32, 10))
    groups = lnn.param_groups(model, 1e-3, base_width=16)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    by_name = {g["name"]: g["lr"] for g in groups}
    layer = model[2]
    for c in layer.cores:
        assert by_name[f"2.{c.name}"] == pytest.approx(1e-3 * lnn.lr_multiplier(c, layer.cores, 64, 16))
    assert by_name["other"] == 1e-3
    torch.optim.AdamW(groups)  # accepted by an optimizer as is


def test_normalize_cores_caps_rms_at_init_scale():
    layer = lnn.StructuredLinear(64, 64, "monarch")
    with torch.no_grad():
        layer.R.mul_(5.0)
    before_L = layer.L.detach().clone()
    lnn.normalize_cores_(layer)
    std = lnn.init_std(layer.cores[0])
    assert float(layer.R.pow(2).mean().sqrt()) == pytest.approx(std, rel=1e-5)
    assert torch.equal(layer.L, before_L) or float(before_L.pow(2).mean().sqrt()) > std


@pytest.mark.parametrize("name", ["dense", "monarch", "btt3", "tt", "low_rank", "kronecker", "einsum_btt"])
def test_from_dense_recovers_structured_weights_and_state_dict_round_trips(name):
    S = STRUCTURES[name]
    src = lnn.StructuredLinear(48, 48, S, dtype=torch.float64)
    W = src.to_dense().detach()
    layer, err = lnn.StructuredLinear.from_dense(W, src.bias.detach(), S)
    assert err < 1e-10
    np.testing.assert_allclose(layer.to_dense().detach().numpy(), W.numpy(), atol=1e-10)
    fresh = lnn.StructuredLinear(48, 48, S, dtype=torch.float64)
    fresh.load_state_dict(layer.state_dict())
    x = torch.randn(5, 48, dtype=torch.float64)
    torch.testing.assert_close(fresh(x), layer(x))


def test_bf16_autocast_is_close_to_float32():
    torch.manual_seed(0)
    layer = lnn.StructuredLinear(64, 64, "monarch")
    x = torch.randn(32, 64)
    ref = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    rel = float((y.float() - ref).norm() / ref.norm())
    assert rel < 2e-2, rel


def test_torch_func_and_compile_training_step():
    torch.manual_seed(0)
    model = torch.nn.Sequential(lnn.StructuredLinear(16, 16, "monarch"), torch.nn.GELU(),
                                lnn.StructuredLinear(16, 4, lnn.BTT(2)))
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
    params = dict(model.named_parameters())

    def loss_fn(p):
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, p, (x,)), y)

    grads = torch.func.grad(loss_fn)(params)
    assert set(grads) == set(params)
    opt = torch.optim.AdamW(lnn.param_groups(model, 1e-2))

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    eager = model(x).detach()
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(x), eager, rtol=1e-5, atol=1e-6)
    losses = [float(step()) for _ in range(5)]
    assert losses[-1] < losses[0]


def test_bad_input_raises_clear_errors():
    layer = lnn.StructuredLinear(16, 8, "monarch")
    with pytest.raises(ValueError, match="expected 16"):
        layer(torch.randn(3, 15))
    with pytest.raises(ValueError, match="unknown structure"):
        lnn.StructuredLinear(16, 8, "monrach")
    with pytest.raises(ValueError, match="rank"):
        lnn.StructuredLinear(16, 8, lnn.LowRank(1.5))
    with pytest.raises(ValueError):
        lnn.Einsum((0.5, 0.5, 0.5, 1.0, 0.0, 0.0, 0.0))  # input exponents sum to 1.5


def _einsum_twin(point: str, layer):
    """The Einsum-point parameters holding the same entries as a dedicated layer's cores, and the output
    permutation ``perm`` with ``W_einsum = W_dedicated[perm]`` (the maps of Einsum.as_monarch / btt_cores /
    tt_cores / as_lowrank / as_kronecker, inverted)."""
    p = {k: v.detach() for k, v in layer.params().items()}
    d_out = layer.d_out
    if point in ("monarch", "btt"):
        R, L = p["R"], p["L"]
        if point == "monarch":  # R (g, f, a), L (f, e, g)
            A = R.permute(1, 0, 2)[:, None, None]  # (f, 1, 1, g, a)
            B = L[:, :, None, :, None]  # (f, e, 1, g, 1)
        else:  # R (g, f, r, a), L (f, e, g, r)
            A = R.permute(1, 2, 0, 3)[:, None]  # (f, 1, r, g, a)
            B = L.permute(0, 1, 3, 2)[..., None]  # (f, e, r, g, 1)
        e, f = B.shape[1], B.shape[0]
        perm = torch.arange(e * f).reshape(e, f).T.reshape(-1)
        return {"A": A, "B": B}, perm
    ident = torch.arange(d_out)
    if point == "dense":
        return {"A": p["weight"][None, :, None, None, :], "B": torch.ones(1, 1, 1, 1, 1, dtype=p["weight"].dtype)}, ident
    if point == "low_rank":
        return {"A": p["V"].T[None, None, :, None, :], "B": p["U"][None, :, :, None, None]}, ident
    if point == "kronecker":  # W = A_s kron B_s = kron(B_e[e, b], A_e[d, a])
        return {"A": p["B"][None, :, None, None, :], "B": p["A"][None, :, None, None, :]}, ident
    if point == "tt":  # G0 (1, e, b, r), G1 (r, d, a, 1)
        return {"A": p["G1"][..., 0].permute(1, 0, 2)[None, :, :, None, :],
                "B": p["G0"][0].permute(0, 2, 1)[None, :, :, None, :]}, ident
    raise KeyError(point)


PAIRS = {"monarch": (lnn.Monarch(8), None), "btt": (lnn.BTT(2), 2), "dense": (lnn.Dense(), None),
         "kronecker": (lnn.Kronecker(), None), "low_rank": (lnn.LowRank(16), 16), "tt": (lnn.TT(2, 4), 4)}


@pytest.mark.parametrize("point", list(PAIRS))
def test_einsum_points_train_like_their_dedicated_layers(point):
    """Same data, same starting function, same optimizer: an MLP whose hidden layer is the Einsum point
    follows the dedicated layer's loss curve. The Einsum layer holds the dedicated cores' entries (its
    output permuted at the Monarch/BTT points, compensated in the head), so Adam sees the same
    coordinates; the dense point adds one trainable scale, so its curve is only close."""
    from sklearn.datasets import load_digits  # bundled data, no download

    X, t = load_digits(return_X_y=True)
    X = torch.tensor((X - X.mean(0)) / (X.std(0) + 1e-6), dtype=torch.float64)[:256]
    t = torch.tensor(t)[:256]
    dedicated, rank = PAIRS[point]
    theta = lo.einsum_points()[point]
    if rank is not None:
        theta = (*theta[:6], math.log(rank) / math.log(64))
    torch.manual_seed(0)
    ded = lnn.StructuredLinear(64, 64, dedicated, dtype=torch.float64)
    ein = lnn.StructuredLinear(64, 64, lnn.Einsum(theta), dtype=torch.float64, init="none")
    params, perm = _einsum_twin(point, ded)
    with torch.no_grad():
        for k, v in params.items():
            getattr(ein, k).copy_(v)
        ein.bias.copy_(ded.bias[perm])
    np.testing.assert_allclose(ein.to_dense().detach().numpy(), ded.to_dense().detach().numpy()[perm.numpy()], atol=1e-13)
    head = torch.nn.Linear(64, 10, dtype=torch.float64)
    curves = []
    for hidden, cols in ((ded, torch.arange(64)), (ein, perm)):
        h = torch.nn.Linear(64, 10, dtype=torch.float64)
        with torch.no_grad():
            h.weight.copy_(head.weight[:, cols])
            h.bias.copy_(head.bias)
        model = torch.nn.Sequential(hidden, torch.nn.ReLU(), h)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        curve = []
        for _ in range(25):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), t)
            loss.backward()
            opt.step()
            curve.append(float(loss))
        curves.append(np.array(curve))
    if point == "dense":  # the extra scale core speeds Adam up a little: same first steps, final loss within 15%
        np.testing.assert_allclose(curves[1][:3], curves[0][:3], rtol=1e-3)
        np.testing.assert_allclose(curves[1][-1], curves[0][-1], rtol=0.15)
    else:
        np.testing.assert_allclose(curves[1], curves[0], rtol=1e-6)
    assert curves[0][-1] < 0.7 * curves[0][0]


# ----------------------------------------------------------------------------------- Flax NNX
nnx = pytest.importorskip("flax.nnx")


@pytest.mark.parametrize("name", ["low_rank", "btt3", "tt", "einsum_mid"])
def test_nnx_forward_gradients_and_jit(name):
    import jax
    import jax.numpy as jnp

    from linops.nn.nnx import StructuredLinear, mup_adamw

    S = STRUCTURES[name]
    layer = StructuredLinear(24, 40, S, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 24)))
    params = {k: np.asarray(v) for k, v in layer.params().items()}
    W = _dense_np(S, params, 24, 40)
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(x) @ W.T, rtol=1e-12, atol=1e-12)

    def loss_layer(m):
        return jnp.sum(jnp.sin(m(x)))

    def loss_dense(m):
        return jnp.sum(jnp.sin(x @ m.to_dense().T + m.bias[...]))

    g1 = nnx.grad(loss_layer)(layer)
    g2 = nnx.grad(loss_dense)(layer)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-11)
    opt = nnx.Optimizer(layer, mup_adamw(1e-2, layer, base_width=16), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt):
        loss, g = nnx.value_and_grad(loss_layer)(m)
        opt.update(m, g)
        return loss

    l0 = float(step(layer, opt))
    for _ in range(3):
        l1 = float(step(layer, opt))
    assert l1 < l0


def test_nnx_multipliers_follow_the_torch_rule():
    from linops.nn.nnx import StructuredLinear, mup_multipliers

    layer = StructuredLinear(64, 64, "monarch", rngs=nnx.Rngs(0))
    m = mup_multipliers(layer, base_width=16)
    for c in layer.core_specs:
        assert m[c.name] == pytest.approx(lnn.lr_multiplier(c, layer.core_specs, 64, 16))
    assert m["bias"] == 1.0


# ----------------------------------------------------------------------------------- CUDA
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


@cuda
@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_forward_and_gradients_match_the_cpu_float64_reference(name, dtype):
    S = STRUCTURES[name]
    torch.manual_seed(0)
    cpu = lnn.StructuredLinear(64, 48, S, dtype=torch.float64)
    with torch.no_grad():
        cpu.bias.normal_()
    gpu = lnn.StructuredLinear(64, 48, S, device="cuda", dtype=getattr(torch, dtype))
    gpu.load_state_dict({k: v.to(getattr(torch, dtype)) for k, v in cpu.state_dict().items()})
    x = torch.randn(32, 64, dtype=torch.float64)
    xg = x.to("cuda", getattr(torch, dtype)).requires_grad_(True)
    xc = x.clone().requires_grad_(True)
    yc, yg = cpu(xc), gpu(xg)
    tol = 1e-5 if dtype == "float32" else 2e-2
    rel = float((yg.double().cpu() - yc).norm() / yc.norm())
    assert rel < tol, rel
    yc.sum().backward()
    yg.float().sum().backward()
    for a, b in zip([xc, *cpu.parameters()], [xg, *gpu.parameters()], strict=True):
        rel = float((b.grad.double().cpu() - a.grad).norm() / a.grad.norm())
        assert rel < tol, rel


def test_named_points_and_theta_for_budget():
    pts = lnn.named_points()
    assert set(pts) == {"dense", "low_rank", "kronecker", "tt", "monarch", "btt"}
    budget = 2 * 256 * 16 * 2  # a Monarch layer's cost at d = 256
    found = lnn.theta_for_budget(256, 256, budget, top=None)
    from linops.operators import einsum_counts, einsum_sizes

    for c in found:  # every candidate really fits, with the counts it claims
        params, flops = einsum_counts(einsum_sizes(c.theta, 256, 256))
        assert (params, flops) == (c.params, c.flops) and flops <= budget
    assert found[0].omega == pytest.approx(0) and found[0].psi == pytest.approx(1)
    assert pts["monarch"].theta in [c.theta for c in found[:5]]  # Monarch is among the best at its own cost
    assert lo.einsum_points()["dense"] not in [c.theta for c in found]  # too expensive
    with pytest.raises(ValueError, match="no grid point"):
        lnn.theta_for_budget(256, 256, 10)
