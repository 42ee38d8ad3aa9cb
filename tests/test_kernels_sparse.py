"""Kernel matrices, sparse matrices, Jacobians and Hessians: family tests beyond the zoo grid.

Kernels against numpy formulas written here; blocked products for block sizes that do not
divide n; memory bounds (numpy: tracemalloc; torch backward: peak RSS in a subprocess);
gradients through the blocked product against dense autodiff; sparse against scipy on every
backend; Jacobian/Hessian against torch.autograd.functional and jax.jacfwd/jax.hessian.
Tolerances: ``cfg.tol`` (1e-8 double, 2e-3 single) relative to the data's scale.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

import linops as lo

from .helpers import assert_close
from .zoo import Config, to_np


# ------------------------------------------------------------------ references
def _r2(A, B, ls):
    D = (A[:, None, :] - B[None, :, :]) / ls
    return (D**2).sum(-1)


def _ref(kind, A, B, ls, os, period=1.3):
    if kind == "rbf":
        return os * np.exp(-0.5 * _r2(A, B, ls))
    if kind == "periodic":
        return os * np.exp(-2 * ((np.sin(np.pi * (A[:, None] - B[None]) / period) / ls) ** 2).sum(-1))
    if kind == "linear":
        return os * (A / ls) @ (B / ls).T
    r = np.sqrt(_r2(A, B, ls))
    if kind == "m12":
        return os * np.exp(-r)
    if kind == "m32":
        return os * (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)
    return os * (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)


def _build(kind, X, Y, ls, os, **kw):
    if kind == "rbf":
        return lo.RBF(X, Y, ls, os, **kw)
    if kind == "periodic":
        return lo.Periodic(X, Y, ls, os, period=1.3, **kw)
    if kind == "linear":
        return lo.LinearKernel(X, Y, ls, os, **kw)
    return lo.Matern(X, Y, ls, os, nu={"m12": 0.5, "m32": 1.5, "m52": 2.5}[kind], **kw)


def _real(cfg):
    return Config(cfg.backend, {"complex128": "float64", "complex64": "float32"}.get(cfg.dtype, cfg.dtype))


KINDS = ["rbf", "m12", "m32", "m52", "periodic", "linear"]


# --------------------------------------------------------------------- kernels
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", [2, 6])  # 6 > 4: the matrix-product distance path
def test_kernel_products_match_formula(kind, d, cfg):
    rng = np.random.default_rng(0)
    rc = _real(cfg)
    Xn = rng.standard_normal((13, d)).astype(rc.dtype).astype(np.float64)
    Yn = rng.standard_normal((11, d)).astype(rc.dtype).astype(np.float64)
    lsn = np.linspace(0.7, 1.6, d).astype(rc.dtype).astype(np.float64)
    X, Y, ls = rc.arr(Xn), rc.arr(Yn), rc.arr(lsn)
    kw = {"dtype": cfg.native_dtype()} if cfg.complex else {}
    V = rng.standard_normal((11, 3)) + (1j * rng.standard_normal((11, 3)) if cfg.complex else 0)
    U = rng.standard_normal((2, 13)) + (1j * rng.standard_normal((2, 13)) if cfg.complex else 0)
    V, U = V.astype(cfg.dtype), U.astype(cfg.dtype)
    M = _ref(kind, Xn, Yn, lsn, 1.7)
    for bs in (1, 4, 5, 13, None) if cfg.backend == "numpy" else (5, None):  # 4 and 5 do not divide 13
        K = _build(kind, X, Y, ls, 1.7, block_size=bs, **kw)
        assert K.shape == (13, 11) and "PSD" not in K.annotations
        assert_close(K @ cfg.arr(V), M @ V, cfg)
        assert_close(cfg.arr(U) @ K, U @ M, cfg)
        assert_close(K.T @ cfg.arr(U.T), M.T @ U.T, cfg)
        assert_close(K.H @ cfg.arr(U.T), M.T @ U.T, cfg)
    assert_close(K.to_dense(), M, cfg)
    assert_close(lo.diag(K), np.diag(M), cfg)
    S = _build(kind, X, None, lsn[0].item(), 0.9, block_size=4, **kw)
    Ms = _ref(kind, Xn, Xn, lsn[0], 0.9)
    assert {"PSD", "SelfAdjoint"} <= S.annotations and S.T is S
    assert_close(S @ cfg.arr(V[:2].T.repeat(7, 0)[:13]), Ms @ V[:2].T.repeat(7, 0)[:13], cfg)
    assert_close(lo.diag(S), np.diag(Ms), cfg)
    assert_close(lo.trace(S), np.trace(Ms), cfg)
    assert_close((2.0 * S).to_dense(), 2 * Ms, cfg)
    assert type(2.0 * S) is type(S)  # c K with c > 0 stays a kernel (outputscale c os)


def test_kernel_column_read_is_a_sub_kernel():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 3))
    K = lo.Matern(X, lengthscale=0.8, nu=2.5)
    col = K[:, 7:8]
    assert isinstance(col, lo.Matern) and col.shape == (40, 1)
    np.testing.assert_allclose(col.to_dense()[:, 0], _ref("m52", X, X, 0.8, 1.0)[:, 7], rtol=1e-12, atol=1e-14)
    sub = K[np.array([3, 1, 5])]
    np.testing.assert_allclose(sub.to_dense(), _ref("m52", X, X, 0.8, 1.0)[[3, 1, 5]], rtol=1e-12, atol=1e-14)
    assert "PSD" in K[2:9, 2:9].annotations


def test_kernel_bad_input():
    X = np.zeros((5, 2))
    with pytest.raises(lo.ShapeError, match="shape"):
        lo.RBF(np.zeros(5))
    with pytest.raises(lo.ShapeError, match="lengthscale"):
        lo.RBF(X, lengthscale=np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        lo.RBF(X, lengthscale=-1.0)
    with pytest.raises(ValueError, match="nu"):
        lo.Matern(X, nu=2.0)
    with pytest.raises(lo.ShapeError, match="Y must"):
        lo.RBF(X, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="block_size"):
        lo.RBF(X, block_size=0)


def test_kernel_jit_blocked_product_and_grad():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(2)
    Xn, Vn = rng.standard_normal((17, 2)), rng.standard_normal((17, 2))

    def loss(X, ls, os, dense):
        K = lo.Matern(X, lengthscale=ls, outputscale=os, nu=1.5, block_size=5)
        KV = K.to_dense() @ Vn if dense else K @ jnp.asarray(Vn)
        return jnp.sum(KV * jnp.asarray(Vn) ** 2)

    args = (jnp.asarray(Xn), jnp.asarray([0.8, 1.3]), jnp.asarray(1.4))
    g = jax.jit(jax.grad(lambda *a: loss(*a, False), argnums=(0, 1, 2)))(*args)
    r = jax.grad(lambda *a: loss(*a, True), argnums=(0, 1, 2))(*args)
    for a, b in zip(g, r, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    K = lo.RBF(args[0], block_size=4)
    out = jax.jit(lambda K, V: K @ V)(K, jnp.asarray(Vn))
    np.testing.assert_allclose(out, _ref("rbf", Xn, Xn, 1.0, 1.0) @ Vn, rtol=1e-12)


@pytest.mark.parametrize("kind", ["rbf", "m12", "periodic"])
def test_kernel_torch_gradients_through_blocks(kind):
    import torch

    rng = np.random.default_rng(3)
    Xn, Yn, Vn = rng.standard_normal((14, 2)), rng.standard_normal((9, 2)), rng.standard_normal((9, 2))

    def grads(dense):
        X = torch.tensor(Xn, requires_grad=True)
        Y = torch.tensor(Yn, requires_grad=True)
        ls = torch.tensor([0.9, 1.2], requires_grad=True)
        os = torch.tensor(1.3, requires_grad=True)
        K = _build(kind, X, Y, ls, os, block_size=4)
        V = torch.tensor(Vn)
        out = (K.to_dense() @ V) if dense else (K @ V)
        (out**2).sum().backward()
        return [t.grad for t in (X, Y, ls, os)]

    for a, b in zip(grads(False), grads(True), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_kernel_numpy_memory_is_blocked():
    """n = 10,000: the dense matrix would be 800 MB; the blocked product stays under 30 MB."""
    import tracemalloc

    n = 10_000
    rng = np.random.default_rng(4)
    X = rng.uniform(0, 10, (n, 3))
    v = rng.standard_normal(n)
    K = lo.RBF(X, lengthscale=0.5)
    tracemalloc.start()
    y = K @ v
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 30e6 and peak < 0.04 * n * n * 8, peak
    rows = np.array([0, 123, n - 1])
    np.testing.assert_allclose(y[rows], _ref("rbf", X[rows], X, 0.5, 1.0) @ v, rtol=1e-10)


def test_kernel_torch_backward_memory_is_blocked():
    """Backward through K @ V (n = m = 4,000): autograd without recomputation would keep
    several n x m arrays (> 600 MB); with per-block checkpointing the peak grows < 150 MB."""
    code = textwrap.dedent(
        """
        import resource, torch, linops as lo
        torch.manual_seed(0)
        X = torch.rand(4000, 2, dtype=torch.float64, requires_grad=True)
        ls = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        V = torch.randn(4000, 1, dtype=torch.float64)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        (lo.Matern(X, lengthscale=ls, nu=1.5) @ V).square().sum().backward()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert torch.isfinite(X.grad).all() and ls.grad.abs() > 0
        print((after - before) * 1024)
        """
    )
    # glibc raises its mmap threshold after the first large free, and then serves the per-block
    # temporaries from a heap that fragments: RSS kept ~900 MB of freed blocks here. A fixed threshold
    # (what jemalloc/tcmalloc users get anyway) makes RSS measure linops' own allocations.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    grew = float(out.stdout.strip().splitlines()[-1])
    assert grew < 150e6, f"peak RSS grew by {grew / 1e6:.0f} MB"


def test_kernel_torch_forward_memory_is_blocked():
    """K @ v in torch without a graph (n = 12,000, float32; K would be 576 MB): the peak grows < 100 MB.
    A list of per-block results once fragmented the heap until RSS held all of K (+576 MB here;
    n = 200,000 ran out of 24 GB)."""
    code = textwrap.dedent(
        """
        import resource, torch, linops as lo
        torch.manual_seed(0)
        torch.set_num_threads(1)
        X = torch.rand(12000, 3) * 10
        v = torch.randn(12000)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with torch.no_grad():
            y = lo.RBF(X, lengthscale=0.5) @ v
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert torch.isfinite(y).all()
        print((after - before) * 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    grew = float(out.stdout.strip().splitlines()[-1])
    assert grew < 100e6, f"peak RSS grew by {grew / 1e6:.0f} MB"


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_kernel_plus_noise_cg_and_slq(backend):
    cfg = Config(backend, "float64")
    rng = np.random.default_rng(5)
    Xn = rng.uniform(0, 4, (60, 2))
    b = rng.standard_normal(60)
    A = lo.RBF(cfg.arr(Xn), lengthscale=0.7, block_size=16) + lo.ScalarMul(0.05, 60)
    assert "PSD" in A.annotations and isinstance(A, lo.Sum)
    M = _ref("rbf", Xn, Xn, 0.7, 1.0) + 0.05 * np.eye(60)
    x = lo.solve(A, cfg.arr(b), alg=lo.CG(tol=1e-10))
    np.testing.assert_allclose(to_np(x), np.linalg.solve(M, b), rtol=1e-6, atol=1e-8)
    if backend != "jax":  # SLQ itself is tested elsewhere; here: it accepts the Sum
        ld = float(to_np(lo.logdet(A, alg=lo.SLQ(num_probes=64, steps=40))))
        ref = np.linalg.slogdet(M)[1]
        assert abs(ld - ref) < 0.05 * abs(ref), (ld, ref)  # stochastic: 64 probes, a few % at most
    assert_close(lo.trace(A), np.trace(M), cfg)


# ---------------------------------------------------------------------- sparse
def _as(backend, D, layout):
    if backend == "numpy":
        return getattr(sp, f"{layout}_array")(D)
    if backend == "torch":
        import torch

        T = torch.as_tensor(D)
        return T.to_sparse_csr() if layout == "csr" else T.to_sparse()
    import jax.numpy as jnp
    from jax.experimental import sparse as jsparse

    return jsparse.BCOO.fromdense(jnp.asarray(D))


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_sparse_against_scipy(layout, cfg):
    if cfg.backend == "jax" and layout == "coo":
        pytest.skip("jax has one format (BCOO): covered by the csr parameter")
    rng = np.random.default_rng(6)
    S = sp.random(9, 7, density=0.3, random_state=7, format="csr", dtype=np.float64)
    if cfg.complex:
        S = S + 1j * sp.random(9, 7, density=0.2, random_state=8, format="csr")
    S = S.astype(cfg.dtype)
    D = S.toarray().astype(np.complex128 if cfg.complex else np.float64)
    A = lo.Sparse(_as(cfg.backend, S.toarray(), layout) if cfg.backend != "numpy" else getattr(sp, f"{layout}_array")(S))
    assert A.num_params == S.nnz and str(A.dtype).replace("torch.", "") == cfg.dtype
    V = rng.standard_normal((7, 3)).astype(cfg.dtype)
    U = rng.standard_normal((2, 9)).astype(cfg.dtype)
    assert_close(A @ cfg.arr(V), D @ V, cfg)
    assert_close(cfg.arr(U) @ A, U @ D, cfg)
    assert_close(A.T @ cfg.arr(U.T), D.T @ U.T, cfg)
    assert_close(A.H @ cfg.arr(U.T), D.conj().T @ U.T, cfg)
    assert isinstance(A.T, lo.Sparse) and isinstance(A.H, lo.Sparse) and isinstance(-2 * A, lo.Sparse)
    assert_close((-2 * A).to_dense(), -2 * D, cfg)
    assert_close(lo.diag(A), np.diag(D), cfg)
    assert_close(lo.diag(A.T), np.diag(D), cfg)
    sub = A[1:6, np.array([0, 3, 4])]
    assert_close(sub.to_dense(), D[1:6][:, [0, 3, 4]], cfg)
    Sq = lo.Sparse(_as(cfg.backend, (S[:7] + 3 * sp.eye(7)).toarray(), layout))
    assert_close(lo.trace(Sq), np.trace(D[:7]) + 21, cfg)


def test_sparse_torch_value_gradients():
    import torch

    D = sp.random(6, 6, density=0.4, random_state=9).toarray() + 4 * np.eye(6)
    b = torch.as_tensor(np.random.default_rng(0).standard_normal(6))
    for layout in ("coo", "csr"):
        A = lo.Sparse(_as("torch", D, layout))
        vals = A.values.detach().clone().requires_grad_(True)
        A = A._with(values=vals)
        (A @ b).square().sum().backward()
        Dt = torch.as_tensor(D, dtype=torch.float64).requires_grad_(True)
        (Dt @ b).square().sum().backward()
        r, c, _ = A.coo()
        torch.testing.assert_close(vals.grad, Dt.grad[r, c])


def test_sparse_jax_jit_and_value_gradients():
    import jax
    import jax.numpy as jnp

    D = sp.random(6, 6, density=0.4, random_state=10).toarray() + 4 * np.eye(6)
    A = lo.PSD(lo.Sparse(_as("jax", D @ D.T, "coo")))
    b = jnp.asarray(np.arange(6.0))
    x = jax.jit(lambda A, b: lo.solve(A, b, alg=lo.CG(tol=1e-12)))(A, b)
    np.testing.assert_allclose(x, np.linalg.solve(D @ D.T, np.arange(6.0)), rtol=1e-8)
    g = jax.grad(lambda A: jnp.sum((A @ b) ** 2), allow_int=True)(A)
    r, c, _ = A.coo()
    ref = 2 * np.outer(D @ D.T @ np.arange(6.0), np.arange(6.0))
    np.testing.assert_allclose(g.values, ref[np.asarray(r), np.asarray(c)], rtol=1e-12)


def _poisson(m):
    T = sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
    return (sp.kron(T, sp.eye(m)) + sp.kron(sp.eye(m), T)).tocsr()


def test_sparse_scipy_solve_by_splu():
    L = _poisson(64)  # n = 4096
    b = np.random.default_rng(11).standard_normal(L.shape[0])
    A = lo.PSD(lo.Sparse(L))
    assert "kernels_sparse" in lo.explain(lo.solve, A) and "splu" in lo.explain(lo.solve, A)
    from scipy.sparse.linalg import spsolve

    x = lo.solve(A, b)
    np.testing.assert_allclose(x, spsolve(L, b), rtol=1e-10, atol=1e-12)
    Ainv = lo.inv(A)
    np.testing.assert_allclose(b @ Ainv, spsolve(L.T.tocsr(), b), rtol=1e-10, atol=1e-12)
    xc = lo.solve(A, b + 1j * b)
    np.testing.assert_allclose(xc, spsolve(L, b) * (1 + 1j), rtol=1e-10, atol=1e-12)
    xcg = lo.solve(A, b, alg=lo.CG(tol=1e-10))  # the Krylov rule, not splu
    np.testing.assert_allclose(xcg, x, rtol=0, atol=1e-6 * np.abs(x).max())  # cond(L) ~ 1.7e3


def test_sparse_scipy_slogdet_and_singular():
    rng = np.random.default_rng(12)
    D = sp.random(40, 40, density=0.1, random_state=13).toarray() + np.diag(rng.uniform(1, 2, 40) * rng.choice([-1, 1], 40))
    s, la = lo.slogdet(lo.Sparse(sp.csr_array(D)))
    rs, rla = np.linalg.slogdet(D)
    assert s == rs and abs(la - rla) < 1e-10 * max(1, abs(rla))
    Sg = sp.csr_array(np.diag([1.0, 0.0, 2.0]))
    with pytest.raises(lo.SingularMatrixError, match="singular"):
        lo.solve(lo.Sparse(Sg), np.ones(3))
    assert lo.slogdet(lo.Sparse(Sg))[1] == -np.inf


def test_sparse_bad_input():
    with pytest.raises(TypeError, match="lo.Dense"):
        lo.Sparse(np.eye(3))


# -------------------------------------------------------- Jacobian and Hessian
def _fns(backend):
    rng = np.random.default_rng(14)
    Wn = rng.standard_normal((4, 6)) / 2
    if backend == "torch":
        import torch

        W, lib = torch.as_tensor(Wn), torch
    else:
        import jax.numpy as jnp

        W, lib = jnp.asarray(Wn), jnp

    def f(x):  # (2, 3) -> (4,)
        return lib.tanh(W @ x.reshape(-1)) * x.sum()

    def g(x):  # (2, 3) -> scalar, convex
        z = W @ x.reshape(-1)
        return lib.log(lib.cosh(z)).sum() + 0.5 * (x * x).sum()

    return f, g


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("vectorize", [True, False])
def test_jacobian_hessian_against_autodiff(backend, vectorize):
    f, g = _fns(backend)
    cfg = Config(backend, "float64")
    xn = np.random.default_rng(15).standard_normal((2, 3))
    x = cfg.arr(xn)
    if backend == "torch":
        import torch.autograd.functional as taf

        Jref = to_np(taf.jacobian(f, x)).reshape(4, 6)
        Href = to_np(taf.hessian(g, x)).reshape(6, 6)
    else:
        import jax

        Jref = np.asarray(jax.jacfwd(f)(x)).reshape(4, 6)
        Href = np.asarray(jax.hessian(g)(x)).reshape(6, 6)
    J = lo.Jacobian(f, x, vectorize=vectorize)
    H = lo.Hessian(g, x, psd=True, vectorize=vectorize)
    V = np.random.default_rng(16).standard_normal((6, 3))
    U = np.random.default_rng(17).standard_normal((2, 4))
    assert_close(J @ cfg.arr(V), Jref @ V, cfg)
    assert_close(cfg.arr(U) @ J, U @ Jref, cfg)
    assert_close(J.T @ cfg.arr(U.T), Jref.T @ U.T, cfg)
    assert_close(H @ cfg.arr(V), Href @ V, cfg)
    assert_close(H.to_dense(), Href, cfg)
    # a Newton step by CG and the curvature extremes by Lanczos
    gvec = cfg.arr(V[:, 0])
    step = lo.solve(H, gvec, alg=lo.CG(tol=1e-12))
    np.testing.assert_allclose(to_np(step), np.linalg.solve(Href, V[:, 0]), rtol=1e-8)
    w, _ = lo.eigh(H, k=3, alg=lo.Lanczos())
    np.testing.assert_allclose(np.sort(to_np(w)), np.linalg.eigvalsh(Href)[-3:], rtol=1e-8)


def test_jacobian_under_jax_jit():
    import jax

    f, g = _fns("jax")
    x = jax.numpy.asarray(np.random.default_rng(18).standard_normal((2, 3)))
    out = jax.jit(lambda J, v: J @ v)(lo.Jacobian(f, x), jax.numpy.ones(6))
    np.testing.assert_allclose(out, jax.jacfwd(f)(x).reshape(4, 6) @ np.ones(6), rtol=1e-12)
    leaves = jax.tree_util.tree_leaves(lo.Hessian(g, x))
    assert len(leaves) == 1 and leaves[0].shape == (2, 3)  # the point is the only leaf; f is static


def test_jacobian_errors():
    with pytest.raises(TypeError, match="torch or a jax|numpy lacks"):
        lo.Jacobian(lambda v: v, np.ones(3))
    with pytest.raises(TypeError, match="numpy lacks"):
        lo.Hessian(lambda v: v.sum(), np.ones(3))
    import torch

    with pytest.raises(lo.ShapeError, match="scalar"):
        lo.Hessian(lambda v: v, torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="real point"):
        lo.Hessian(lambda v: v.sum(), torch.ones(3, dtype=torch.complex128))
