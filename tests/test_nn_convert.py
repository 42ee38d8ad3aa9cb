"""linops.nn.structurize: dense nn.Linear layers swapped for structured ones, in place, with a report.

Checks: a model whose weights already are Monarch (BTT) matrices is reproduced to float64 rounding;
with random dense weights the reported error is ``||W - W_s|| / ||W||`` recomputed from the new
layer; low-rank errors are the SVD tails; the head, filters, shared layers and the layers of
``torch.nn.MultiheadAttention`` are treated as documented; errors leave the model unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

import linops.nn as lnn
from linops.errors import ShapeError

torch = pytest.importorskip("torch")
nn = torch.nn


class Net(nn.Module):
    def __init__(self, d=32, h=48, out=10):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Linear(h, h, bias=False)])
        self.head = nn.Linear(h, out)

    def forward(self, x):
        x = self.body(x)
        for b in self.blocks:
            x = torch.relu(b(x))
        return self.head(x)


def _set_structured_weights(model, structure, seed=0):
    """Overwrite every non-head Linear weight with a random matrix of ``structure`` (float64)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear) and name != "head":
                params = {c.name: torch.randn(c.shape, generator=g, dtype=torch.float64) / c.fan_in**0.5
                          for c in structure.cores(m.in_features, m.out_features)}
                m.weight.copy_(structure.operator(params, m.in_features, m.out_features).to_dense())


@pytest.mark.parametrize("structure", [lnn.Monarch(blocks=4), lnn.BTT(rank=2)])
def test_structured_weights_are_reproduced(structure):
    torch.manual_seed(0)
    model = Net().double()
    _set_structured_weights(model, structure)
    x = torch.randn(5, 32, dtype=torch.float64)
    before = model(x)
    report = lnn.structurize(model, structure)
    assert [r.name for r in report] == ["body.0", "body.2", "blocks.0"]
    assert all(r.rel_err < 1e-12 for r in report), report
    assert type(model.head) is nn.Linear  # the output head stays dense
    assert all(isinstance(m, lnn.StructuredLinear) for m in (model.body[0], model.body[2], model.blocks[0]))
    assert model.blocks[0].bias is None
    after = model(x)
    assert float(((after - before).norm() / before.norm()).detach()) < 1e-12
    # parameter counts: weight + bias before, the structured layer's count after
    assert report[0].params_before == 32 * 48 + 48
    assert report[0].params_after == structure.num_params(32, 48) + 48
    assert report[2].params_after == structure.num_params(48, 48)


@pytest.mark.parametrize("structure", ["monarch", lnn.BTT(1), lnn.TT(2, 3), lnn.MLR(levels=3)])
def test_reported_error_is_the_relative_frobenius_error(structure):
    torch.manual_seed(1)
    model = Net(d=48).double()
    dense = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    if isinstance(structure, lnn.MLR):  # square layers only
        report = lnn.structurize(model, structure, filter=lambda name, m: m.in_features == m.out_features)
        assert [r.name for r in report] == ["body.0", "body.2", "blocks.0"]
    else:
        report = lnn.structurize(model, structure)
    assert report
    for r in report:
        W = dense[r.name]
        Ws = model.get_submodule(r.name).to_dense().detach()
        assert r.rel_err == pytest.approx(float((W - Ws).norm() / W.norm()), rel=1e-10)
        assert 0.05 < r.rel_err < 1.0  # random dense weights are not structured
        # the bias is copied unchanged
        assert r.params_after < r.params_before
    assert "total" in lnn.format_report(report)


@pytest.mark.parametrize("rank", [1, 5, 12])
def test_low_rank_errors_equal_the_svd_tail(rank):
    torch.manual_seed(2)
    model = Net().double()
    W = {n: m.weight.detach().numpy().copy() for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    report = lnn.structurize(model, lnn.LowRank(rank))
    for r in report:
        s = np.linalg.svd(W[r.name], compute_uv=False)
        assert r.rel_err == pytest.approx(np.sqrt((s[rank:] ** 2).sum() / (s**2).sum()), rel=1e-10)
        assert r.params_after == rank * (r.d_in + r.d_out) + (r.d_out if model.get_submodule(r.name).bias is not None else 0)


def test_filter_skip_last_and_per_layer_structures():
    model = Net()
    report = lnn.structurize(model, "monarch", filter=lambda name, m: name.startswith("body"))
    assert [r.name for r in report] == ["body.0", "body.2"]
    assert type(model.blocks[0]) is nn.Linear and type(model.head) is nn.Linear
    # skip_last=False converts the head too; a per-layer structure function may keep a layer dense (None)
    model = Net()
    report = lnn.structurize(model, lambda name, m: None if name == "body.2" else lnn.LowRank(4), skip_last=False)
    assert [r.name for r in report] == ["body.0", "blocks.0", "head"]
    assert type(model.body[2]) is nn.Linear and isinstance(model.head, lnn.StructuredLinear)
    assert all(r.structure.startswith("LowRank") for r in report)
    # float32 models stay float32 and keep working
    x = torch.randn(3, 32)
    assert model(x).dtype == torch.float32 and model(x).shape == (3, 10)


def test_shared_layers_attention_and_training_flags():
    shared = nn.Linear(16, 16)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = shared, shared  # one layer, two parents
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
            self.frozen = nn.Linear(16, 16).requires_grad_(False)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            x = self.b(self.a(x))
            x = self.frozen(self.mha(x, x, x, need_weights=False)[0])
            return self.head(x)

    m = M().eval()
    x = torch.randn(2, 4, 16)
    report = lnn.structurize(m, "dense")  # dense "structure": an exact copy, to check the plumbing
    assert [r.name for r in report] == ["a", "frozen"]
    assert m.a is m.b and isinstance(m.a, lnn.StructuredLinear)
    assert type(m.mha.out_proj) is not lnn.StructuredLinear  # MultiheadAttention reads its weights directly
    assert not m.a.training and not any(p.requires_grad for p in m.frozen.parameters())
    assert all(r.rel_err == 0.0 for r in report)
    assert m(x).shape == (2, 4, 3)


def test_errors_leave_the_model_unchanged():
    model = Net()
    with pytest.raises(ShapeError, match="square") as info:
        lnn.structurize(model, lnn.MLR())  # body.0 is 32 -> 48
    assert any("body.0" in n for n in getattr(info.value, "__notes__", []))
    assert all(type(m) is nn.Linear for m in (model.body[0], model.body[2], model.blocks[0]))
    with pytest.raises(ValueError, match="from_dense"):
        lnn.structurize(nn.Linear(8, 8), "monarch", skip_last=False)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        lnn.structurize("model", "monarch")
    with pytest.raises(ValueError, match="unknown structure"):
        lnn.structurize(model, "fancy")
    assert lnn.structurize(nn.Sequential(nn.ReLU()), "monarch") == []
