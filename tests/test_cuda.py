"""CUDA: the zoo on GPU arrays (torch and jax). Skipped where no GPU is present.

Run on a GPU machine with ``JAX_PLATFORMS=cuda,cpu python -m pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import linops as lo

from .zoo import CASES, Config, to_np

pytestmark = pytest.mark.cuda

GPU_CASES = [c for c in CASES if c.square and c.invertible]


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _jax_gpu():
    try:
        import jax

        return jax.devices("gpu")[0]
    except Exception:
        return None


def _on_device(backend, dtype, case):
    if backend == "torch":
        torch = _torch_cuda()
        if torch is None:
            pytest.skip("no CUDA device for torch")
        op, M = case.make(Config("torch", dtype, "cuda"))
        return op, M, lambda a: torch.as_tensor(a).cuda()
    dev = _jax_gpu()
    if dev is None:
        pytest.skip("no GPU device for jax")
    import jax

    if jax.devices()[0].platform != "gpu":
        pytest.skip("jax's default device is not the GPU (set JAX_PLATFORMS=cuda,cpu)")
    op, M = case.make(Config("jax", dtype))
    return op, M, lambda a: jax.device_put(a.astype(dtype), dev)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", GPU_CASES, ids=[c.name for c in GPU_CASES])
def test_zoo_on_gpu(backend, dtype, case):
    op, M, put = _on_device(backend, dtype, case)
    tol = 2e-3 if dtype == "float32" else 1e-8
    scale = max(1.0, np.abs(M).max())
    b = np.random.default_rng(0).standard_normal(M.shape[0]).astype(dtype)
    bd = put(b)
    y = op @ bd
    assert "cuda" in str(getattr(y, "device", "")) or "gpu" in str(getattr(y, "device", "")).lower()
    np.testing.assert_allclose(to_np(y), M @ b, atol=tol * scale * 10)
    x = lo.solve(op, bd)
    np.testing.assert_allclose(to_np(x), np.linalg.solve(M, b), atol=tol * 10 * max(1, np.abs(np.linalg.solve(M, b)).max()))
    np.testing.assert_allclose(to_np(lo.slogdet(op)[1]), np.linalg.slogdet(M)[1], atol=tol * 10 * scale)
    np.testing.assert_allclose(to_np(lo.trace(op)), np.trace(M), atol=tol * 10 * scale)
    if case.self_adjoint:
        w, V = lo.eigh(op)
        np.testing.assert_allclose(to_np(w), np.linalg.eigvalsh(M), atol=tol * 10 * scale)


def test_torch_cuda_gradient_and_device_mismatch():
    torch = _torch_cuda()
    if torch is None:
        pytest.skip("no CUDA device for torch")
    A = torch.randn(4, 4, dtype=torch.float64, device="cuda")
    A = (A @ A.T + 4 * torch.eye(4, device="cuda", dtype=torch.float64)).requires_grad_(True)
    K = lo.Kronecker(lo.PSD(lo.Dense(A)), lo.PSD(lo.Dense(torch.eye(3, dtype=torch.float64, device="cuda") * 2)))
    lo.logdet(K).backward()
    ref = torch.linalg.inv(A).T * 3  # d/dA [3 logdet A + 4 log 8] = 3 A^{-T}
    assert torch.allclose(A.grad, ref, atol=1e-8)
    with pytest.raises(lo.DeviceMismatchError):
        lo.Dense(A.detach()) + lo.Dense(torch.eye(4, dtype=torch.float64))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_iterative_methods_on_gpu(backend):
    """CG, GMRES, Lanczos and SLQ with GPU arrays (and an implicit gradient through CG on torch)."""
    rng = np.random.default_rng(0)
    n = 300
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    S = (Q * np.linspace(1, 10, n)) @ Q.T
    N = 3 * np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n)
    b = rng.standard_normal(n)
    if backend == "torch":
        torch = _torch_cuda()
        if torch is None:
            pytest.skip("no CUDA device for torch")
        put = lambda a: torch.as_tensor(a).cuda()  # noqa: E731
    else:
        if _jax_gpu() is None:
            pytest.skip("no GPU device for jax")
        import jax

        if jax.devices()[0].platform != "gpu":
            pytest.skip("jax's default device is not the GPU (set JAX_PLATFORMS=cuda,cpu)")
        put = jax.numpy.asarray
    A, G, bd = lo.PSD(lo.Dense(put(S))), lo.Dense(put(N)), put(b)
    np.testing.assert_allclose(to_np(lo.solve(A, bd, alg=lo.CG(tol=1e-10))), np.linalg.solve(S, b), atol=1e-8)
    np.testing.assert_allclose(to_np(lo.solve(G, bd, alg=lo.GMRES(tol=1e-10))), np.linalg.solve(N, b), atol=1e-8)
    w, _ = lo.eigh(A, k=3, alg=lo.Lanczos())
    np.testing.assert_allclose(to_np(w), np.linspace(1, 10, n)[-3:], atol=1e-7)
    ld, info = lo.logdet(A, alg=lo.SLQ(num_probes=20), return_info=True)
    assert abs(float(to_np(ld)) - np.linalg.slogdet(S)[1]) <= 5 * float(to_np(info.stderr)) + 1e-6
    if backend == "torch":
        M = put(S).requires_grad_(True)
        (lo.solve(lo.PSD(lo.Dense(M)), bd, alg=lo.CG(tol=1e-12)) ** 2).sum().backward()
        ref = -2 * np.outer(np.linalg.solve(S, np.linalg.solve(S, b)), np.linalg.solve(S, b))
        np.testing.assert_allclose(to_np(M.grad), ref, atol=1e-8)
