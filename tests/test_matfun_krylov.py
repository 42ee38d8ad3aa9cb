"""Krylov matrix functions f(A) b (Lanczos, Arnoldi): values against dense references on every backend,
jit/vmap, the Auto switch, implicit gradients against dense autodiff, domain errors, tr f(A) by SLQ."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg as sl

import linops as lo
from linops.functions.krylov_matfun import KrylovFunction, slq_trace

from .zoo import CONFIGS, to_np

@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These products are tiny: torch's thread pool costs more than it gives (8x on a busy 2-core machine)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


IDS = ("numpy-float64", "torch-float32", "torch-float64", "jax-float32", "jax-float64")
CFGS = [c for c in CONFIGS if c.id in IDS]
P1, P2 = 6, 8  # Kronecker factor sizes: n = 48


def spd(n, seed, lo_=0.5, hi=1.5):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.linspace(lo_, hi, n)) @ Q.T


def parts(seed=0):
    """Two symmetric PSD Kronecker factors and a positive diagonal: A = K1 ⊗ K2 + diag(d), eigenvalues in ~[0.6, 4]."""
    rng = np.random.default_rng(seed)
    return spd(P1, seed + 1), spd(P2, seed + 2), rng.uniform(0.3, 1.2, P1 * P2)


def sum_op(cfg_arr, K1, K2, d):
    return lo.PSD(lo.Kronecker(lo.Dense(cfg_arr(K1)), lo.Dense(cfg_arr(K2))) + lo.Diagonal(cfg_arr(d)))


def nonsymmetric(n, seed=0):
    rng = np.random.default_rng(seed)
    return 0.5 * np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n)


def eigfun(M, f):
    w, V = np.linalg.eigh(M)
    return (V * f(w)) @ V.conj().T


FUNCTIONS = {  # name: (linops call, numpy scalar function)
    "exp": (lambda A, alg: lo.exp(A, alg=alg), np.exp),
    "log": (lambda A, alg: lo.log(A, alg=alg), np.log),
    "sqrt": (lambda A, alg: lo.sqrt(A, alg=alg), np.sqrt),
    "isqrt": (lambda A, alg: lo.isqrt(A, alg=alg), lambda w: 1 / np.sqrt(w)),
    "pow": (lambda A, alg: lo.pow(A, 0.3, alg=alg), lambda w: w**0.3),
    "apply": (lambda A, alg: lo.apply(lambda x: 1 / (1 + x), A, alg=alg), lambda w: 1 / (1 + w)),
}


def rel_err(got, ref):
    return float(np.abs(to_np(got) - ref).max() / np.abs(ref).max())


# ------------------------------------------------------------------------------- values
@pytest.mark.parametrize("cfg", CFGS, ids=[c.id for c in CFGS])
def test_self_adjoint_functions_match_dense(cfg):
    K1, K2, d = (np.asarray(a).astype(cfg.dtype).astype(np.float64) for a in parts())
    M = np.kron(K1, K2) + np.diag(d)
    dense = lo.PSD(lo.Dense(cfg.arr(spd(40, 5, 0.2, 3.0))))
    Md = to_np(dense.to_dense()).astype(np.float64)
    rng = np.random.default_rng(3)
    b, B = rng.standard_normal(48), rng.standard_normal((48, 3))
    B[:, 1] = 0  # a zero column gives a zero column
    b40 = rng.standard_normal(40)
    tol = 1e-5 if cfg.single else 1e-10
    alg = lo.Lanczos(tol=tol)
    A = sum_op(cfg.arr, K1, K2, d)
    quick = cfg.backend == "jax"  # eager jax compiles each new shape: fewer combinations there
    for name, (call, f) in FUNCTIONS.items():
        if quick and name not in ("exp", "log", "apply"):
            continue
        F = call(A, alg)
        assert isinstance(F, KrylovFunction) and F.shape == (48, 48)
        ref = eigfun(M, f)
        Y = F @ cfg.arr(B)
        assert rel_err(Y, ref @ B) <= 50 * tol, name
        assert np.all(to_np(Y)[:, 1] == 0)
        if quick:
            continue
        assert rel_err(F @ cfg.arr(b), ref @ b) <= 50 * tol, name
        assert rel_err(call(dense, alg) @ cfg.arr(b40), eigfun(Md, f) @ b40) <= 50 * tol, name
    # the annotations follow matfun's rules; the adjoint of f(A) is f(A) itself
    assert lo.exp(A, alg=alg).annotations == {"PSD", "SelfAdjoint"}
    assert lo.log(A, alg=alg).annotations == {"SelfAdjoint"}
    F = lo.exp(A, alg=alg)
    assert F.H is F and F.T is F
    assert rel_err(cfg.arr(b) @ F, b @ sl.expm(M)) <= 50 * tol


@pytest.mark.parametrize("cfg", CFGS, ids=[c.id for c in CFGS])
def test_exp_of_a_nonsymmetric_operator_by_arnoldi(cfg):
    n = 50
    M = nonsymmetric(n).astype(cfg.dtype).astype(np.float64)
    A = lo.Dense(cfg.arr(M))
    rng = np.random.default_rng(4)
    b, B = rng.standard_normal(n), rng.standard_normal((n, 2))
    tol = 1e-5 if cfg.single else 1e-10
    F = lo.exp(A, alg=lo.Arnoldi(tol=tol))
    assert isinstance(F, KrylovFunction) and F.annotations == frozenset()
    E = sl.expm(M)
    assert rel_err(F @ cfg.arr(B), E @ B) <= 50 * tol
    if cfg.backend != "jax":  # eager jax compiles each new shape: fewer combinations there
        assert rel_err(cfg.arr(B.T) @ F, B.T @ E) <= 50 * tol  # f(A)^T = f(A^T)
        assert rel_err(F @ cfg.arr(b), E @ b) <= 50 * tol
        assert rel_err(F.T @ cfg.arr(b), E.T @ b) <= 50 * tol
    if cfg.id == "numpy-float64":  # log by the small eigendecomposition; a complex operator
        L = lo.log(lo.Dense(M + 2 * np.eye(n)), alg=lo.Arnoldi(tol=1e-10))
        assert rel_err(L @ b, sl.logm(M + 2 * np.eye(n)).real @ b) <= 1e-8
        Mc = M + 1j * nonsymmetric(n, seed=1)
        Fc = lo.exp(lo.Dense(Mc), alg=lo.Arnoldi(tol=1e-10))
        assert rel_err(Fc @ b, sl.expm(Mc) @ b) <= 1e-8
        assert rel_err(Fc.H @ b, sl.expm(Mc).conj().T @ b) <= 1e-8


def test_complex_hermitian_by_lanczos():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 40)) + 1j * rng.standard_normal((40, 40))
    M = X @ X.conj().T / 40 + 0.5 * np.eye(40)
    b = rng.standard_normal(40) + 1j * rng.standard_normal(40)
    for call, f in (FUNCTIONS["exp"], FUNCTIONS["log"]):
        F = call(lo.PSD(lo.Dense(M)), lo.Lanczos(tol=1e-10))
        assert rel_err(F @ b, eigfun(M, f) @ b) <= 1e-8
        assert rel_err(F.T @ b, eigfun(M, f).T @ b) <= 1e-8


def test_dimension_adapts_to_tol_and_breakdown_is_exact():
    K1, K2, d = parts()
    A = sum_op(np.asarray, K1, K2, d)
    E = sl.expm(np.kron(K1, K2) + np.diag(d))
    b = np.random.default_rng(6).standard_normal(48)
    dims = []
    for tol in (1e-3, 1e-12):
        y, info = lo.exp(3 * A, alg=lo.Lanczos(tol=tol)).matmat_with_info(b)
        dims.append(int(info.iterations))
        assert info.all_converged and float(to_np(info.relative_residuals)[0]) <= tol
        assert rel_err(y, sl.expm(3 * (np.kron(K1, K2) + np.diag(d))) @ b) <= 100 * tol
    assert dims[0] < dims[1]
    # b in a 3-dimensional invariant subspace: the process stops there, and the result is exact
    D = lo.SelfAdjoint(lo.Dense(np.diag(np.arange(1.0, 49.0))))
    e = np.zeros(48)
    e[[2, 10, 30]] = 1.0
    y, info = lo.log(D, alg=lo.Lanczos(tol=1e-14)).matmat_with_info(e)
    assert info.all_converged and np.allclose(y, np.log(np.arange(1.0, 49.0)) * e, atol=1e-14)
    # a cap below what tol needs: ConvergenceError, or a warning
    F = lo.exp(3 * A, alg=lo.Lanczos(tol=1e-12, max_iters=6))
    with pytest.raises(lo.ConvergenceError):
        F @ b
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        lo.exp(3 * A, alg=lo.Lanczos(tol=1e-12, max_iters=6, on_failure="warn")) @ b
    assert any(issubclass(x.category, lo.ConvergenceWarning) for x in w)
    assert rel_err(lo.exp(A, alg=lo.Lanczos(tol=1e-12)) @ b, E @ b) <= 1e-10


def test_domain_errors_and_bad_input():
    M = spd(30, 7, 0.5, 2.0) - np.eye(30)  # indefinite: eigenvalues in [-0.5, 1]
    b = np.ones(30)
    for fun in (lo.log, lo.sqrt, lo.isqrt):
        with pytest.raises(lo.DomainError, match="eigenvalue"):
            fun(lo.SelfAdjoint(lo.Dense(M)), alg=lo.Lanczos()) @ b
    import torch

    with pytest.raises(lo.DomainError):
        lo.log(lo.SelfAdjoint(lo.Dense(torch.tensor(M))), alg=lo.Lanczos()) @ torch.ones(30, dtype=torch.float64)
    with pytest.raises(lo.DomainError):  # a real operator with negative real eigenvalues has no real log
        lo.log(lo.Dense(np.diag(np.linspace(-1.0, 1.0, 30)) + np.triu(np.ones((30, 30)), 1) * 0.01),
               alg=lo.Arnoldi()) @ b
    assert np.isfinite(lo.exp(lo.SelfAdjoint(lo.Dense(M)), alg=lo.Lanczos()) @ b).all()
    with pytest.raises(lo.NotSelfAdjointError, match="Arnoldi"):
        lo.exp(lo.Dense(nonsymmetric(30)), alg=lo.Lanczos())
    with pytest.raises(lo.NonFiniteError):
        lo.exp(lo.SelfAdjoint(lo.Dense(np.full((30, 30), np.nan))), alg=lo.Lanczos()) @ b


# ------------------------------------------------------------------------- Auto and explain
def test_auto_switches_to_krylov_above_dense_n():
    K1, K2, d = parts()
    A = sum_op(np.asarray, K1, K2, d)  # n = 48
    small, big = lo.Auto(dense_n=100), lo.Auto(dense_n=40)
    assert not isinstance(lo.exp(A, alg=small), KrylovFunction)
    F = lo.exp(A, alg=big)
    assert isinstance(F, KrylovFunction) and F.method == "Lanczos" and F.alg.tol == big.lanczos_tol
    text = lo.explain(lo.exp, A, alg=big)
    assert "Lanczos" in text and "n = 48 > dense_n = 40" in text and "never formed" in text
    assert "exp by Lanczos" in repr(F) and "Sum(48x48" in repr(F)
    N = lo.Dense(nonsymmetric(48))
    G = lo.exp(N, alg=big)
    assert isinstance(G, KrylovFunction) and G.method == "Arnoldi"
    assert "Arnoldi" in lo.explain(lo.exp, N, alg=big)
    b = np.random.default_rng(8).standard_normal(48)
    assert rel_err(G @ b, sl.expm(nonsymmetric(48)) @ b) <= 1e-7
    assert rel_err(lo.sqrt(A, alg=big) @ b, eigfun(np.kron(K1, K2) + np.diag(d), np.sqrt) @ b) <= 1e-7
    # structure rules keep precedence, whatever the size or the algorithm
    Dg = lo.Diagonal(d)
    assert isinstance(lo.exp(Dg, alg=big), lo.Diagonal) and isinstance(lo.exp(Dg, alg=lo.Lanczos()), lo.Diagonal)
    Kp = lo.Kronecker(lo.PSD(lo.Dense(K1)), lo.PSD(lo.Dense(K2)))
    assert isinstance(lo.sqrt(Kp, alg=big), lo.Kronecker)


# ---------------------------------------------------------------------------- jit and vmap
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jit_and_vmap(dtype):
    import jax
    import jax.numpy as jnp

    K1, K2, d = (np.asarray(a).astype(dtype).astype(np.float64) for a in parts())
    M = np.kron(K1, K2) + np.diag(d)
    tol = 1e-5 if dtype == "float32" else 1e-10
    arr = lambda a: jnp.asarray(np.asarray(a).astype(dtype))  # noqa: E731
    B = np.random.default_rng(9).standard_normal((48, 3))

    @jax.jit
    def run(K1, K2, d, B):
        F = lo.log(sum_op(lambda a: a, K1, K2, d), alg=lo.Lanczos(tol=tol, max_iters=40))
        return F.matmat_with_info(B)

    Y, info = run(arr(K1), arr(K2), arr(d), arr(B))
    assert info.iterations == 40 and bool(info.converged.all())
    assert rel_err(Y, eigfun(M, np.log) @ B) <= 50 * tol
    if dtype == "float32":
        return
    vm = jax.vmap(lambda b: lo.exp(sum_op(lambda a: a, arr(K1), arr(K2), arr(d)), alg=lo.Lanczos(max_iters=40)) @ b)
    assert rel_err(vm(arr(B.T)), (sl.expm(M) @ B).T) <= 50 * tol
    scales = jnp.asarray(np.array([0.5, 1.0], dtype))
    vs = jax.vmap(lambda s: lo.exp(lo.PSD(lo.Dense(s * arr(M))), alg=lo.Lanczos(max_iters=40)) @ arr(B[:, 0]))
    assert rel_err(vs(scales), np.stack([sl.expm(s * M) @ B[:, 0] for s in (0.5, 1.0)])) <= 50 * tol
    N = nonsymmetric(40).astype(dtype).astype(np.float64)
    ja = jax.jit(lambda N, b: lo.exp(lo.Dense(N), alg=lo.Arnoldi(max_iters=30)) @ b)
    assert rel_err(ja(arr(N), arr(B[:40, 0])), sl.expm(N) @ B[:40, 0]) <= 50 * tol


# ------------------------------------------------------------------------------- gradients
def _sym(X):
    return (X + X.T) / 2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["exp", "log", "apply"])
def test_torch_gradients_match_dense_autodiff(dtype, name):
    import torch

    call, _ = FUNCTIONS[name]
    tdt = getattr(torch, dtype)
    tol = 1e-6 if dtype == "float32" else 1e-12
    K1, K2, d = parts()
    rng = np.random.default_rng(10)
    B, G = rng.standard_normal((48, 2)), rng.standard_normal((48, 2))

    def leaves():
        return [torch.tensor(a, dtype=tdt, requires_grad=True) for a in (K1, K2, d, B)]

    def dense_f(Md):
        if name == "exp":
            return torch.linalg.matrix_exp(Md)
        w, V = torch.linalg.eigh(Md)
        fw = torch.log(w) if name == "log" else 1 / (1 + w)
        return (V * fw) @ V.T

    ours = leaves()
    A = lo.PSD(lo.Kronecker(lo.Dense(_sym(ours[0])), lo.Dense(_sym(ours[1]))) + lo.Diagonal(ours[2]))
    Y = call(A, lo.Lanczos(tol=tol)) @ ours[3]
    assert len(Y.grad_fn.saved_tensors) == 4  # B and A's three arrays: nothing from the iterations
    (Y * torch.tensor(G, dtype=tdt)).sum().backward()
    ref = leaves()
    Md = torch.kron(_sym(ref[0]), _sym(ref[1])) + torch.diag(ref[2])
    ((dense_f(Md) @ ref[3]) * torch.tensor(G, dtype=tdt)).sum().backward()
    for a, r in zip(ours, ref, strict=True):
        assert rel_err(a.grad, to_np(r.grad).astype(np.float64)) <= (2e-3 if dtype == "float32" else 1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_gradient_of_arnoldi_exp(dtype):
    import torch

    tdt = getattr(torch, dtype)
    N, b, g = nonsymmetric(40, 2), np.ones(40), np.linspace(-1, 1, 40)
    Mt, bt = torch.tensor(N, dtype=tdt, requires_grad=True), torch.tensor(b, dtype=tdt, requires_grad=True)
    (lo.exp(lo.Dense(Mt), alg=lo.Arnoldi(tol=1e-6 if dtype == "float32" else 1e-12)) @ bt @ torch.tensor(g, dtype=tdt)).backward()
    Mr, br = torch.tensor(N, requires_grad=True), torch.tensor(b, requires_grad=True)
    (torch.linalg.matrix_exp(Mr) @ br @ torch.tensor(g)).backward()
    tol = 2e-3 if dtype == "float32" else 1e-9
    assert rel_err(Mt.grad, to_np(Mr.grad)) <= tol and rel_err(bt.grad, to_np(br.grad)) <= tol


def _torch_dense_grads(name, K1, K2, d, B, G, scale=1.0):
    """Gradients of sum(f(scale (kron(sym K1, sym K2) + diag d)) B * G) by torch float64 autodiff of the dense f."""
    import torch

    ts = [torch.tensor(a, requires_grad=True) for a in (K1, K2, d, B)]
    Md = scale * (torch.kron(_sym(ts[0]), _sym(ts[1])) + torch.diag(ts[2]))
    if name == "exp":
        F = torch.linalg.matrix_exp(Md)
    else:
        w, V = torch.linalg.eigh(Md)
        F = (V * torch.log(w)) @ V.T
    ((F @ ts[3]) * torch.tensor(G)).sum().backward()
    return [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_gradients_match_dense_autodiff(dtype):
    import jax
    import jax.numpy as jnp
    import torch

    K1, K2, d = parts()
    rng = np.random.default_rng(11)
    B, G = rng.standard_normal((48, 2)), rng.standard_normal((48, 2))
    args = [jnp.asarray(a.astype(dtype)) for a in (K1, K2, d, B)]
    tol = 1e-6 if dtype == "float32" else 1e-12
    bound = 2e-3 if dtype == "float32" else 1e-9

    def grads(name, jit, scale):
        def loss(K1, K2, d, B):
            A = lo.PSD(lo.Kronecker(lo.Dense(_sym(K1)), lo.Dense(_sym(K2))) + lo.Diagonal(d))
            return jnp.sum(FUNCTIONS[name][0](scale * A, lo.Lanczos(tol=tol, max_iters=48 if jit else None)) @ B * G)

        g = jax.grad(loss, argnums=(0, 1, 2, 3))
        return (jax.jit(g) if jit else g)(*args)

    # eagerly each Krylov dimension tried compiles anew; exp(A / 2) meets tol at the first (m = 20)
    cases = (("log", True, 1.0),) if dtype == "float32" else (("exp", False, 0.5), ("log", True, 1.0))
    for name, jit, scale in cases:
        for a, r in zip(grads(name, jit, scale), _torch_dense_grads(name, K1, K2, d, B, G, scale), strict=True):
            assert rel_err(a, r) <= bound, (name, jit)
    if dtype == "float64":  # Arnoldi, a general operator (under jit: one compilation)
        N = nonsymmetric(40, 3)
        w = np.arange(40.0)
        ga = jax.jit(jax.grad(lambda N, b: jnp.sum(lo.exp(lo.Dense(N), alg=lo.Arnoldi(max_iters=30)) @ b * w), (0, 1)))(
            jnp.asarray(N), jnp.ones(40))
        Nt, bt = torch.tensor(N, requires_grad=True), torch.ones(40, dtype=torch.float64, requires_grad=True)
        (torch.linalg.matrix_exp(Nt) @ bt @ torch.tensor(w)).backward()
        assert rel_err(ga[0], Nt.grad.numpy()) <= bound and rel_err(ga[1], bt.grad.numpy()) <= bound


# --------------------------------------------------------------------------- tr f(A) by SLQ
def test_trace_of_a_matrix_function_by_slq():
    M = spd(120, 12, 0.5, 4.0)
    A = lo.PSD(lo.Dense(M))
    exact = float(np.sum(np.log(np.linalg.eigvalsh(M))))
    F = lo.log(A, alg=lo.Lanczos())
    alg = lo.SLQ(num_probes=40, steps=25, seed=1)
    info = slq_trace(F, alg)
    assert info.method == "SLQ" and info.num_probes == 40 and float(info.stderr) > 0
    assert abs(float(info.value) - exact) <= 4 * float(info.stderr)
    assert float(lo.trace(F, alg=alg)) == pytest.approx(float(info.value), rel=1e-12)
    tr_exp = float(lo.trace(lo.exp(A, alg=lo.Lanczos()), alg=alg))
    assert abs(tr_exp - np.trace(sl.expm(M))) <= 4 * float(slq_trace(lo.exp(A, alg=lo.Lanczos()), alg).stderr)
