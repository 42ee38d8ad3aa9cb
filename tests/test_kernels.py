"""linops.kernels: the Triton Monarch/BTT kernels (CPU interpreter here, CUDA where present), the custom op's
autograd and fake implementations, the switch and the operator hooks.

Tolerances (relative Frobenius, against an fp64 reference on the same rounded inputs): fp32 1e-5 (IEEE fp32
dots), bf16/fp16 1e-2 (the intermediate and the output are rounded to the input dtype, as in the einsum path).
The interpreter needs ``TRITON_INTERPRET=1`` before the kernels are decorated, so it is set here (where no GPU is
present), before ``linops.kernels.monarch_triton`` is imported; sizes are tiny (the interpreter runs each program
in numpy). With a GPU the interpreter tests skip and the CUDA tests run the same checks for every dtype.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():  # CPU: the kernels run in triton's interpreter (a GPU runs the CUDA tests)
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from linops.errors import ShapeError  # noqa: E402
from linops.kernels import enabled, ops, use_kernels  # noqa: E402
from linops.kernels import monarch_triton as mt  # noqa: E402
from linops.kernels.reference import monarch_rows_bwd_ref, monarch_rows_ref, two_bmm_rows  # noqa: E402
from linops.operators.btt import BTT  # noqa: E402
from linops.operators.monarch import Monarch, monarch_shapes  # noqa: E402

CUDA = torch.cuda.is_available()
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}
# (d_in, d_out, blocks, N): square, padded rectangular (both sides), wide output, one block
SHAPES = [(16, 16, 4, 8), (30, 20, 3, 5), (40, 64, 4, 9), (12, 7, 1, 4)]
needs_interpreter = pytest.mark.skipif(not mt.INTERPRET, reason="triton was imported before TRITON_INTERPRET=1")


def rel(a, b) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm())


def monarch_case(d_in, d_out, nb, N, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    (k, q, p), (l_, s, r) = monarch_shapes(d_in, d_out, nb)
    R = torch.randn(k, q, p, generator=g) / p**0.5
    L = torch.randn(l_, s, r, generator=g) / r**0.5
    x = torch.randn(N, d_in, generator=g)
    return x.to(device), R.to(device), L.to(device)


def check_kernels(x, R, L, d_out, dtype, cols):
    """Kernel forward and the three gradients vs the reference (fp64, same rounded inputs) and vs the operator."""
    xs, Rs, Ls = (v.to(dtype) for v in (x, R, L))
    y, y1 = mt.monarch_fwd(xs, Rs, Ls, d_out, cols)
    y_ref, y1_ref = monarch_rows_ref(xs.double(), Rs.double(), Ls.double(), d_out)
    op = Monarch(Rs.double(), Ls.double(), x.shape[1], d_out)
    tol = TOL[dtype]
    assert y.dtype == dtype and y.shape == (x.shape[0], d_out)
    assert rel(y, y_ref) <= tol and rel(y1, y1_ref) <= tol
    assert rel(y, op._matmat_rows(xs.double())) <= tol
    dy = torch.randn(x.shape[0], d_out, device=x.device).to(dtype)
    dx, dR, dL = mt.monarch_bwd(dy, xs, Rs, Ls, y1, cols)
    # the fp64 autograd of the operator's einsum path is the ground truth for the gradients
    xa, Ra, La = (v.double().requires_grad_() for v in (xs, Rs, Ls))
    Monarch(Ra, La, x.shape[1], d_out)._matmat_rows(xa).backward(dy.double())
    for got, want in ((dx, xa.grad), (dR, Ra.grad), (dL, La.grad)):
        assert got.dtype == dtype and got.shape == want.shape
        assert rel(got, want) <= tol, (rel(got, want), tol)


@needs_interpreter
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{a}x{b}-b{c}-N{d}" for a, b, c, d in SHAPES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_kernels_match_reference_interpreter(shape, dtype):
    d_in, d_out, nb, N = shape
    x, R, L = monarch_case(d_in, d_out, nb, N)
    check_kernels(x, R, L, d_out, dtype, cols=(nb % 2 == 0))


@needs_interpreter
@pytest.mark.parametrize("grouped", [True, False])
def test_both_layouts_and_plain_kernels_interpreter(grouped, monkeypatch):
    monkeypatch.setattr(mt, "GROUPED", grouped)
    x, R, L = monarch_case(24, 18, 3, 6, seed=3)
    for cols in (False, True):
        check_kernels(x, R, L, 18, torch.float32, cols)


@needs_interpreter
@pytest.mark.parametrize("rank", [1, 2])
def test_btt_through_kernels_interpreter(rank):
    g = torch.Generator().manual_seed(rank)
    n1, n2, m1, m2 = 3, 5, 4, 2
    R = torch.randn(n1, m2, rank, n2, generator=g)
    L = torch.randn(m2, m1, n1, rank, generator=g)
    x = torch.randn(7, n1 * n2 - 2, generator=g)  # padded input
    d_out = m1 * m2 - 1  # cut output
    ref = BTT(R.double(), L.double(), n1 * n2 - 2, d_out)._matmat_rows(x.double())
    xa, Ra, La = (v.clone().requires_grad_() for v in (x, R, L))
    y = ops.btt_rows(xa, Ra, La, d_out)  # float32 on the CPU under the interpreter: the Triton path
    assert rel(y, ref) <= 1e-5
    dy = torch.randn_like(y)
    y.backward(dy)
    xb, Rb, Lb = (v.double().requires_grad_() for v in (x, R, L))
    BTT(Rb, Lb, n1 * n2 - 2, d_out)._matmat_rows(xb).backward(dy.double())
    for got, want in ((xa.grad, xb.grad), (Ra.grad, Rb.grad), (La.grad, Lb.grad)):
        assert rel(got, want) <= 1e-5


@needs_interpreter
def test_strided_input_is_read_without_copy_interpreter():
    x, R, L = monarch_case(16, 16, 4, 6, seed=5)
    wide = torch.randn(6, 40)
    wide[:, 5:21] = x
    xs = wide[:, 5:21]  # a column slice: row stride 40
    y, _ = mt.monarch_fwd(xs, R, L, 16, True)
    assert rel(y, monarch_rows_ref(x.double(), R.double(), L.double(), 16)[0]) <= 1e-5


@pytest.mark.parametrize("cols", [False, True])
def test_custom_op_gradcheck_reference_path(cols, monkeypatch):
    """float64 takes the reference path (the kernels have no fp64): checks the op's explicit backward formulas."""
    monkeypatch.setattr(ops, "Y1_COLS", cols)
    x, R, L = (v.double().requires_grad_() for v in monarch_case(10, 7, 3, 4, seed=7))
    assert torch.autograd.gradcheck(lambda x, R, L: ops.monarch_rows(x, R, L, 7), (x, R, L))


def test_custom_op_opcheck_and_compile():
    x, R, L = (v.double() for v in monarch_case(12, 9, 3, 5, seed=8))
    for cols in (False, True):
        torch.library.opcheck(torch.ops.linops.monarch_rows.default, (x, R, L, 9, cols))
    xa, Ra, La = (v.clone().requires_grad_() for v in (x, R, L))
    f = torch.compile(lambda x, R, L: ops.monarch_rows(x, R, L, 9), backend="aot_eager", fullgraph=True)
    y = f(xa, Ra, La)
    assert rel(y, monarch_rows_ref(x, R, L, 9)[0]) <= 1e-12
    y.sum().backward()
    dx, dR, dL = monarch_rows_bwd_ref(torch.ones_like(y), x, R, L, monarch_rows_ref(x, R, L, 9)[1])
    assert rel(xa.grad, dx) <= 1e-12 and rel(Ra.grad, dR) <= 1e-12 and rel(La.grad, dL) <= 1e-12


def test_two_bmm_baseline_matches():
    x, R, L = (v.double() for v in monarch_case(30, 20, 3, 5, seed=9))
    assert rel(two_bmm_rows(x, R, L, 20), monarch_rows_ref(x, R, L, 20)[0]) <= 1e-12


def test_leading_dims_and_weight_cast():
    x, R, L = monarch_case(16, 12, 4, 6, seed=10)
    x3 = x.double().reshape(2, 3, 16)
    y = ops.monarch_rows(x3, R, L, 12)  # float32 cores cast to the input's float64
    assert y.shape == (2, 3, 12) and y.dtype == torch.float64
    assert rel(y.reshape(6, 12), monarch_rows_ref(x.double(), R.double(), L.double(), 12)[0]) <= 1e-6


def test_bad_shapes_raise_shape_error():
    x, R, L = monarch_case(16, 16, 4, 3)
    with pytest.raises(ShapeError, match="features"):
        ops.monarch_rows(torch.randn(3, 17), R, L)
    with pytest.raises(ShapeError, match="intermediate"):
        ops.monarch_rows(x, R, L[:, :, :3])
    with pytest.raises(ShapeError, match="d_out"):
        ops.monarch_rows(x, R, L, 17)
    with pytest.raises(ShapeError, match="4-D"):
        ops.btt_rows(x, R, L)


def test_switch():
    assert enabled()
    with use_kernels(False):
        assert not enabled()
        with use_kernels(True):
            assert enabled()
        assert not enabled()
    assert enabled()
    with pytest.raises(TypeError, match="True or False"):
        use_kernels("no")
    code = "import linops.kernels as k, sys; print(k.enabled(), 'torch' in sys.modules)"
    env = dict(os.environ, LINOPS_KERNELS="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]  # off from the environment; the package loads no torch


def test_cpu_operators_never_reach_the_kernels(monkeypatch):
    import linops.kernels as k

    def boom(*a, **kw):
        raise AssertionError("the kernel hook was called for a CPU tensor")

    monkeypatch.setattr(k, "cuda_monarch_rows", boom)
    monkeypatch.setattr(k, "cuda_btt_rows", boom)
    x, R, L = monarch_case(16, 16, 4, 5)
    y = Monarch(R, L)._matmat_rows(x)
    assert rel(y, monarch_rows_ref(x, R, L, 16)[0]) <= 1e-6
    BTT(torch.randn(4, 4, 1, 4), torch.randn(4, 4, 4, 1))._matmat_rows(x)
    yn = Monarch(R.numpy(), L.numpy())._matmat_rows(x.numpy())
    assert np.allclose(yn, y.numpy(), rtol=1e-5, atol=0)


# ---------------------------------------------------------------------------------------------- CUDA only
cuda = pytest.mark.skipif(not CUDA or mt.INTERPRET, reason="needs a CUDA GPU (and TRITON_INTERPRET unset)")


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("shape", SHAPES + [(256, 192, 16, 300), (1024, 1024, 32, 512)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("cols", [False, True])
def test_kernels_match_reference_cuda(shape, dtype, cols):
    d_in, d_out, nb, N = shape
    x, R, L = monarch_case(d_in, d_out, nb, N, device="cuda")
    check_kernels(x, R, L, d_out, dtype, cols)


@cuda
@pytest.mark.cuda
def test_operator_hooks_cuda():
    x, R, L = monarch_case(64, 48, 8, 33, device="cuda")
    op = Monarch(R, L, 64, 48)
    with use_kernels(False):
        off = op._matmat_rows(x)
    assert rel(op._matmat_rows(x), off) <= 1e-5 and rel(x @ op.T, off) <= 1e-5
    bt = BTT(torch.randn(8, 8, 2, 8, device="cuda"), torch.randn(8, 6, 8, 2, device="cuda"))
    with use_kernels(False):
        off = bt._matmat_rows(x)
    assert rel(bt._matmat_rows(x), off) <= 1e-5
