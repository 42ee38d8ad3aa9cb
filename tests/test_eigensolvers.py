"""Arnoldi, LOBPCG, subspace iteration, Golub-Kahan-Lanczos and randomized SVD on every backend:
against numpy dense references, residuals and orthonormality, a structured operator never formed,
``which`` variants, ``jax.jit``, non-convergence, and implicit gradients against dense autodiff.

Tolerances: the algorithms stop at ``tol`` relative to the spectrum's scale (``tol * max|λ|``);
eigenvalues are then checked to ``100 tol`` of that scale and residuals to ``10 tol`` (single
precision: tol = 1e-4, double: 1e-9).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import linops as lo
from linops.algorithms import arnoldi
from linops.backends import backend_named

from .zoo import CONFIGS, to_np

REAL_IDS = ("numpy-float64", "torch-float32", "torch-float64", "jax-float32", "jax-float64")
REAL = [c for c in CONFIGS if c.id in REAL_IDS]
N = 60


def hermitian(n, ev, seed=0, complex_=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    Q, _ = np.linalg.qr(X)
    return (Q * ev) @ Q.conj().T


def spectrum(n=N):
    """Indefinite, with gaps at both ends: -4 .. 10 plus outliers."""
    ev = np.linspace(-3.0, 6.0, n)
    ev[:3] = [-6.0, -5.0, -4.5]
    ev[-3:] = [8.0, 9.0, 10.0]
    return ev


def tol_of(cfg):
    return 1e-4 if cfg.single else 1e-9


def check_pairs(M, w, V, expect, tol, scale):
    w, V = to_np(w), to_np(V.to_dense())
    np.testing.assert_allclose(np.sort(np.real(w)), np.sort(np.real(expect)), atol=100 * tol * scale)
    assert np.linalg.norm(M @ V - V * w, axis=0).max() <= 10 * tol * scale
    assert np.abs(V.conj().T @ V - np.eye(V.shape[1])).max() <= 100 * tol


# ----------------------------------------------------------------------- Arnoldi process
@pytest.mark.parametrize("cfg", REAL + [c for c in CONFIGS if c.id == "numpy-complex128"], ids=lambda c: c.id)
def test_arnoldi_process_is_orthonormal_and_satisfies_the_arnoldi_relation(cfg):
    rng = np.random.default_rng(0)
    G = rng.standard_normal((30, 30)) + (1j * rng.standard_normal((30, 30)) if cfg.complex else 0)
    V0 = rng.standard_normal((30, 2)).astype(cfg.dtype)
    Ga = cfg.arr(G)
    H, Q = arnoldi(lambda P: Ga @ P, cfg.arr(V0), backend_named(cfg.backend), 12)
    H, Q = to_np(H), to_np(Q)
    assert H.shape == (2, 13, 12) and Q.shape == (2, 13, 30)
    t = 10 * tol_of(cfg) ** 0.5 if cfg.single else 1e-12
    for i in range(2):
        assert np.abs(Q[i] @ Q[i].conj().T - np.eye(13)).max() <= t
        assert np.abs(G @ Q[i, :12].T - Q[i].T @ H[i]).max() <= t * np.linalg.norm(G, 2)
        assert np.all(np.tril(H[i], -2) == 0)


def test_arnoldi_breakdown_gives_zero_vectors_and_exact_eigenvalues():
    D = np.diag(np.arange(1.0, 21.0))
    v = np.zeros((20, 1))
    v[:3] = 1.0  # lies in a 3-dimensional invariant subspace
    H, Q = arnoldi(lambda P: D @ P, v, backend_named("numpy"), 6)
    assert H[0, 3, 2] == 0 and np.all(Q[0, 3:] == 0) and np.all(H[0, :, 3:] == 0)
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(H[0, :3, :3]).real), [1.0, 2.0, 3.0], atol=1e-12)


def test_arnoldi_process_under_jit_matches_eager():
    jax = pytest.importorskip("jax")
    xp = backend_named("jax")
    rng = np.random.default_rng(1)
    G, V0 = jax.numpy.asarray(rng.standard_normal((20, 20))), jax.numpy.asarray(rng.standard_normal((20, 3)))
    eager = arnoldi(lambda P: G @ P, V0, xp, 8)
    jitted = jax.jit(lambda G, V0: arnoldi(lambda P: G @ P, V0, xp, 8))(G, V0)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-12)


# ----------------------------------------------------------------------------- eigh
@pytest.mark.parametrize("cfg", REAL, ids=lambda c: c.id)
def test_eigh_by_lobpcg_subspace_and_lanczos(cfg):
    ev = spectrum()
    M = hermitian(N, ev)
    A = lo.SelfAdjoint(lo.Dense(cfg.arr(M)))
    tol, scale = tol_of(cfg), 10.0
    k = 3
    cases = [
        (lo.LOBPCG(tol=tol), "LA", ev[-k:]),
        (lo.LOBPCG(tol=tol, block=5), "SA", ev[:k]),
        (lo.SubspaceIteration(tol=tol, block=6), "LM", ev[np.argsort(-np.abs(ev))[:k]]),
        (lo.Lanczos(tol=tol), "SM", ev[np.argsort(np.abs(ev))[:k]]),
    ]
    if cfg.backend == "jax":  # each case compiles (seconds): split them between the two precisions
        cases = cases[0::2] if cfg.single else cases[1::2]  # (Lanczos on jax float32: test_estimators.py)
    for alg, which, expect in cases:
        w, V = lo.eigh(A, k, which=which, alg=alg)
        assert np.all(np.diff(to_np(w)) >= 0)  # ascending, as eigh returns them
        check_pairs(M, w, V, expect, tol, scale)


def test_power_method_is_subspace_iteration_with_one_vector():
    ev = spectrum()
    M = hermitian(N, ev, seed=3)
    w, V = lo.eigh(lo.SelfAdjoint(lo.Dense(M)), 1, which="LM", alg=lo.SubspaceIteration(tol=1e-10, max_iters=2000))
    check_pairs(M, w, V, [10.0], 1e-10, 10.0)


def test_lobpcg_complex_and_preconditioned():
    ev = np.linspace(0.01, 50.0, 120)
    M = hermitian(120, ev, seed=4, complex_=True)
    A = lo.PSD(lo.Dense(M))
    plain = lo.LOBPCG(tol=1e-9, max_iters=400)
    w, V = lo.eigh(A, 3, which="SA", alg=plain)
    check_pairs(M, w, V, ev[:3], 1e-9, 50.0)
    # an exact-ish preconditioner (the inverse of a nearby operator) cuts the iterations
    counts = {}
    for name, pc in (("none", None), ("inv", lo.Dense(np.linalg.inv(M + 0.05 * np.eye(120))))):
        calls = []
        Acount = lo.PSD(CountingDense(M, calls))
        lo.eigh(Acount, 3, which="SA", alg=lo.LOBPCG(tol=1e-9, max_iters=400, precond=pc))
        counts[name] = sum(calls)
    assert counts["inv"] < counts["none"] / 3


class CountingDense(lo.Dense):
    """A Dense operator that records how many vectors each product takes."""

    def __init__(self, M, calls):
        self.calls = calls
        super().__init__(M)

    def _matmat(self, X):
        self.calls.append(X.shape[1])
        return self.M @ X


@pytest.mark.parametrize("cfg", REAL[:3] + REAL[4:], ids=lambda c: c.id)  # jax float32 compiles the same code again
def test_structured_operator_is_never_formed(cfg, monkeypatch):
    rng = np.random.default_rng(5)
    a, b = np.linspace(1.0, 2.0, 6), np.linspace(1.0, 3.0, 8)
    F1, F2 = hermitian(6, a, seed=6), hermitian(8, b, seed=7)
    d = rng.uniform(0.0, 0.5, 48)
    K = lo.PSD(lo.Kronecker(lo.PSD(lo.Dense(cfg.arr(F1))), lo.PSD(lo.Dense(cfg.arr(F2)))) + lo.Diagonal(cfg.arr(d)))
    M = np.kron(F1, F2) + np.diag(d)
    ref = np.linalg.eigvalsh(M)
    for cls in (lo.Sum, lo.Kronecker, lo.Diagonal):
        monkeypatch.setattr(cls, "to_dense", lambda self: pytest.fail("the operator was formed densely"))
    tol, scale = tol_of(cfg), ref[-1]
    cases = ((lo.LOBPCG(tol=tol), "SA", ref[:2]), (lo.Lanczos(tol=tol), "LA", ref[-2:]),
             (lo.SubspaceIteration(tol=tol, block=4), "LM", ref[-2:]))
    for alg, which, expect in cases[:1] if cfg.backend == "jax" else cases:  # jax: each case compiles
        w, V = lo.eigh(K, 2, which=which, alg=alg)
        check_pairs(M, w, V, expect, tol, scale)


def test_eigh_algorithms_under_jit():
    jax = pytest.importorskip("jax")
    ev = spectrum()
    M = hermitian(N, ev, seed=8)

    @jax.jit
    def run(Mj):
        A = lo.SelfAdjoint(lo.Dense(Mj))
        return (lo.eigh(A, 2, which="SA", alg=lo.LOBPCG(tol=1e-9)),
                lo.eigh(A, 2, which="LM", alg=lo.SubspaceIteration(tol=1e-9, block=4)))

    for (w, V), expect in zip(run(jax.numpy.asarray(M)), (ev[:2], ev[-2:]), strict=True):
        check_pairs(M, w, V, expect, 1e-9, 10.0)


def test_which_k_and_options_are_validated():
    A = lo.SelfAdjoint(lo.Dense(hermitian(10, np.arange(1.0, 11.0))))
    for alg in (lo.LOBPCG(), lo.SubspaceIteration()):
        with pytest.raises(ValueError, match="pass k"):
            lo.eigh(A, alg=alg)
    with pytest.raises(ValueError, match="largest magnitude only"):
        lo.eigh(A, 2, which="SA", alg=lo.SubspaceIteration())
    with pytest.raises(ValueError, match="which in"):
        lo.eigh(A, 2, which="LM", alg=lo.LOBPCG())
    with pytest.raises(ValueError, match="block must be"):
        lo.eigh(A, 3, which="LA", alg=lo.LOBPCG(block=2))
    with pytest.raises(ValueError, match="k must be"):
        lo.eigh(A, 0, alg=lo.LOBPCG())
    with pytest.raises(ValueError, match="pass k"):
        lo.eig(lo.Dense(np.eye(3)), alg=lo.Arnoldi())
    with pytest.raises(ValueError, match="pass k"):
        lo.svd(lo.Dense(np.eye(3)), alg=lo.RandomizedSVD())
    with pytest.raises(ValueError, match="which must be one of"):
        lo.eig(lo.Dense(np.eye(3)), 1, which="XX", alg=lo.Arnoldi())
    for bad in (dict(tol=0), dict(max_iters=0), dict(on_failure="ignore"), dict(block=0)):
        for cls in (lo.LOBPCG, lo.SubspaceIteration):
            with pytest.raises(ValueError):
                cls(**bad)
    with pytest.raises(ValueError):
        lo.Arnoldi(tol=-1.0)
    with pytest.raises(ValueError):
        lo.RandomizedSVD(oversample=-1)


@pytest.mark.parametrize("case", ["LOBPCG", "SubspaceIteration", "Arnoldi", "GolubKahan"])
def test_non_convergence_raises_or_warns(case):
    ev = 1.0 + 1e-3 * np.linspace(0.0, 1.0, 80)  # clustered: slow for every method
    M = hermitian(80, ev, seed=9)

    def call(on_failure):
        if case == "LOBPCG":
            return lo.eigh(lo.SelfAdjoint(lo.Dense(M)), 3, "LA", lo.LOBPCG(tol=1e-14, max_iters=3, on_failure=on_failure))
        if case == "SubspaceIteration":
            alg = lo.SubspaceIteration(tol=1e-14, max_iters=3, on_failure=on_failure)
            return lo.eigh(lo.SelfAdjoint(lo.Dense(M)), 3, "LM", alg)
        if case == "Arnoldi":
            return lo.eig(lo.Dense(M), 3, alg=lo.Arnoldi(tol=1e-14, max_iters=5, on_failure=on_failure))
        return lo.svd(lo.Dense(M), 3, alg=lo.Lanczos(tol=1e-14, max_iters=5, on_failure=on_failure))

    with pytest.raises(lo.ConvergenceError, match="did not converge"):
        call("raise")
    with pytest.warns(lo.ConvergenceWarning):
        call("warn")


# ------------------------------------------------------------------------------ eig
@pytest.mark.parametrize("cfg", REAL + [c for c in CONFIGS if c.id == "numpy-complex128"], ids=lambda c: c.id)
def test_eig_by_arnoldi(cfg):
    rng = np.random.default_rng(10)
    n = N
    G = rng.standard_normal((n, n)) / np.sqrt(n) + np.diag(np.linspace(0.0, 3.0, n))
    if cfg.complex:
        G = G + 1j * rng.standard_normal((n, n)) / np.sqrt(n)
    ref = np.linalg.eigvals(G)
    tol = tol_of(cfg)
    scale = np.abs(ref).max()
    whiches = ("LM", "LR", "SR", "LI") if cfg.id == "numpy-float64" else ("LM",)
    for which in whiches:
        w, V = lo.eig(lo.Dense(cfg.arr(G)), 3, which=which, alg=lo.Arnoldi(tol=tol))
        key = {"LM": -np.abs(ref), "LR": -ref.real, "SR": ref.real, "LI": -ref.imag}[which]
        expect = ref[np.argsort(key, kind="stable")[:3]]
        w_np, Vd = to_np(w), to_np(V.to_dense())
        # eigenvalues of the spectrum, with the expected keys best first (of a conjugate pair tied
        # for the last place either one may come)
        assert np.abs(w_np[:, None] - ref[None, :]).min(axis=1).max() <= 100 * tol * scale
        wkey = {"LM": -np.abs(w_np), "LR": -w_np.real, "SR": w_np.real, "LI": -w_np.imag}[which]
        np.testing.assert_allclose(wkey, np.sort(key)[:3], atol=100 * tol * scale)
        assert np.linalg.norm(G @ Vd - Vd * w_np, axis=0).max() <= 10 * tol * scale
        dense_w, _ = lo.eig(lo.Dense(G), 3, which=which)  # the dense path takes the same which
        np.testing.assert_allclose(np.sort_complex(to_np(dense_w)), np.sort_complex(expect), atol=1e-10)


def test_eig_arnoldi_under_jit():
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(11)
    G = rng.standard_normal((40, 40)) / 6 + np.diag(np.linspace(0.0, 3.0, 40))
    w, V = jax.jit(lambda Gj: lo.eig(lo.Dense(Gj), 2, alg=lo.Arnoldi(tol=1e-10)))(jax.numpy.asarray(G))
    w, V = np.asarray(w), np.asarray(V.to_dense())
    ref = np.linalg.eigvals(G)
    np.testing.assert_allclose(np.sort_complex(w), np.sort_complex(ref[np.argsort(-np.abs(ref))[:2]]), atol=1e-8)


# ------------------------------------------------------------------------------ svd
@pytest.mark.parametrize("cfg", REAL + [c for c in CONFIGS if c.id == "numpy-complex128"], ids=lambda c: c.id)
def test_svd_by_golub_kahan_and_randomized(cfg):
    rng = np.random.default_rng(12)
    m, n, r = 70, 50, 40
    X = rng.standard_normal((m, r)) + (1j * rng.standard_normal((m, r)) if cfg.complex else 0)
    Y = rng.standard_normal((r, n)) + (1j * rng.standard_normal((r, n)) if cfg.complex else 0)
    R = np.linalg.qr(X)[0] @ np.diag(0.7 ** np.arange(r)) @ np.linalg.qr(Y.conj().T)[0].conj().T
    ref = np.linalg.svd(R, compute_uv=False)
    tol = tol_of(cfg)
    for alg, k, t in ((lo.Lanczos(tol=tol), 4, 100 * tol), (lo.RandomizedSVD(oversample=10, power_iters=3), 4, None)):
        U, s, V = lo.svd(lo.Dense(cfg.arr(R)), k, alg=alg)
        U, s, V = to_np(U.to_dense()), to_np(s), to_np(V.to_dense())
        assert np.all(np.diff(s) <= 0)
        # randomized: (σ_{l+1}/σ_k)^(2q+1) = 0.7^(10*7) ~ 1e-11, to rounding in single precision
        t = t if t is not None else (1e-3 if cfg.single else 1e-9)
        np.testing.assert_allclose(s, ref[:k], atol=t * ref[0])
        for B in (U, V):
            assert np.abs(B.conj().T @ B - np.eye(k)).max() <= (1e-4 if cfg.single else 1e-10)
        assert np.linalg.norm(R @ V - U * s) <= 10 * t * ref[0]


def test_auto_svd_with_k_uses_golub_kahan_above_dense_n():
    rng = np.random.default_rng(13)
    R = rng.standard_normal((80, 60))
    A = lo.Dense(R)
    auto = lo.Auto(dense_n=40)
    alg, why = auto.select("svd", A)
    assert isinstance(alg, lo.Lanczos) and "Golub-Kahan" in why
    U, s, V = lo.svd(A, 3, alg=auto)
    np.testing.assert_allclose(s, np.linalg.svd(R, compute_uv=False)[:3], rtol=1e-7)
    _, s_all, _ = lo.svd(A, alg=auto)  # all triplets: dense
    assert s_all.shape == (60,)


def test_svd_under_jit():
    jax = pytest.importorskip("jax")
    R = np.random.default_rng(14).standard_normal((40, 30)) @ np.diag(0.8 ** np.arange(30))
    run = jax.jit(lambda Rj: (lo.svd(lo.Dense(Rj), 3, alg=lo.Lanczos(tol=1e-10))[1],
                              lo.svd(lo.Dense(Rj), 3, alg=lo.RandomizedSVD(power_iters=4))[1]))
    for s in run(jax.numpy.asarray(R)):
        np.testing.assert_allclose(np.asarray(s), np.linalg.svd(R, compute_uv=False)[:3], rtol=1e-7)


# -------------------------------------------------------------------------- gradients
GRAD_CASES = [(lo.Lanczos(tol=1e-11), "LA"), (lo.LOBPCG(tol=1e-11), "SA"),
              (lo.SubspaceIteration(tol=1e-11, block=6), "LM")]


def _loss(w, V, xp, c, C):
    """Gauge-invariant: eigenvalues, weighted squared moduli of the vectors, and the projector."""
    return (w ** 2).sum() + ((V * V) * xp.asarray(c)[:, None]).sum() + ((V @ V.T) * xp.asarray(C)).sum()


def _grad_data(n=24):
    rng = np.random.default_rng(15)
    ev = np.concatenate([[-7.0, -6.0, -5.0], np.linspace(-2.0, 2.0, n - 6), [5.0, 6.0, 7.0]])
    return hermitian(n, ev, seed=16) + 0.1 * rng.standard_normal((n, n)), rng.standard_normal(n), rng.standard_normal((n, n))


def _pick(ev, which):
    order = {"LA": np.argsort(-ev), "SA": np.argsort(ev), "LM": np.argsort(-np.abs(ev))}[which][:3]
    return np.sort(order[np.argsort(ev[order])])


@pytest.mark.parametrize("alg,which", GRAD_CASES, ids=[type(a).__name__ for a, _ in GRAD_CASES])
def test_gradients_torch_match_dense_autodiff(alg, which):
    torch = pytest.importorskip("torch")
    B, c, C = _grad_data()
    idx = _pick(np.linalg.eigvalsh((B + B.T) / 2), which)
    Mt = torch.tensor(B, requires_grad=True)
    w, V = lo.eigh(lo.SelfAdjoint(lo.Dense((Mt + Mt.T) / 2)), 3, which, alg)
    g, = torch.autograd.grad(_loss(w, V.to_dense(), torch, c, C), Mt)
    Md = torch.tensor(B, requires_grad=True)
    W, Q = torch.linalg.eigh((Md + Md.T) / 2)
    gd, = torch.autograd.grad(_loss(W[idx], Q[:, idx], torch, c, C), Md)
    np.testing.assert_allclose(g.numpy(), gd.numpy(), atol=1e-7 * gd.abs().max().item())
    # eigenvalues only (no eigenvector cotangent: no MINRES), float32
    M32 = torch.tensor(B, dtype=torch.float32, requires_grad=True)
    alg32 = type(alg)(**{**alg.__dict__, "tol": 1e-5})
    w32, _ = lo.eigh(lo.SelfAdjoint(lo.Dense((M32 + M32.T) / 2)), 3, which, alg32)
    g32, = torch.autograd.grad((w32 ** 2).sum(), M32)
    gd32, = torch.autograd.grad((torch.linalg.eigvalsh((Md + Md.T) / 2)[idx] ** 2).sum(), Md)
    np.testing.assert_allclose(g32.numpy(), gd32.numpy(), atol=1e-3 * gd32.abs().max().item())


@pytest.mark.parametrize("alg,which", GRAD_CASES, ids=[type(a).__name__ for a, _ in GRAD_CASES])
def test_gradients_jax_match_dense_autodiff(alg, which):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    B, c, C = _grad_data()
    idx = jnp.asarray(_pick(np.linalg.eigvalsh((B + B.T) / 2), which))

    def krylov(M):
        w, V = lo.eigh(lo.SelfAdjoint(lo.Dense((M + M.T) / 2)), 3, which, alg)
        return _loss(w, V.to_dense(), jnp, c, C)

    def dense(M):
        W, Q = jnp.linalg.eigh((M + M.T) / 2)
        return _loss(W[idx], Q[:, idx], jnp, c, C)

    gd = np.asarray(jax.grad(dense)(jnp.asarray(B)))
    g = np.asarray(jax.grad(krylov)(jnp.asarray(B)))
    np.testing.assert_allclose(g, gd, atol=1e-7 * np.abs(gd).max())
    if isinstance(alg, lo.LOBPCG):  # and under jit (fixed shapes, the MINRES solve traced too)
        gj = np.asarray(jax.jit(jax.grad(krylov))(jnp.asarray(B)))
        np.testing.assert_allclose(gj, gd, atol=1e-7 * np.abs(gd).max())


def test_gradient_reaches_a_structured_operators_arrays():
    torch = pytest.importorskip("torch")
    a = torch.tensor(np.linspace(1.0, 2.0, 5), requires_grad=True)
    F = torch.tensor(hermitian(6, np.linspace(1.0, 3.0, 6), seed=17))
    K = lo.PSD(lo.Kronecker(lo.PSD(lo.Diagonal(a)), lo.PSD(lo.Dense(F))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w, _ = lo.eigh(K + lo.Identity(30), 2, "LA", alg=lo.LOBPCG(tol=1e-11))  # Sum: no structure rule
    g, = torch.autograd.grad(w.sum(), a)
    # λ = a_i μ_j + 1, the top two a_5 μ_6 = 6 and a_4 μ_6 = 5.25 (μ_5 a_5 = 5.2): dλ/da = μ_6 = 3 each
    np.testing.assert_allclose(g.numpy(), [0, 0, 0, 3.0, 3.0], atol=1e-8)
