"""Preconditioners: Jacobi, pivoted Cholesky, Nyström; specs built in the solve; Auto's choice; preconditioned
SLQ and its gradient; the layering (the algorithms layer holds specs and never imports linops.functions).

Every backend (numpy f64, torch f32/f64, jax f32/f64) against dense numpy references. Tolerances
are relative and stated where they are set; iteration counts, not times, show the effect.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import linops as lo

from .zoo import CONFIGS, to_np

REAL = [c for c in CONFIGS if not c.complex]
IDS = [c.id for c in REAL]
real_cfg = pytest.mark.parametrize("cfg", REAL, ids=IDS)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch thread in this module: on the shared 2-core machine, two OpenMP threads turned each
    small product (100 x 50 by 50 x 20) from 0.2 ms into 60 ms whenever the other core was busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def kernel(n, ls=0.5, seed=0):
    """An RBF kernel matrix of n points in [0, 1]^3 (ill-conditioned: fast eigenvalue decay)."""
    X = np.random.default_rng(seed).uniform(0, 1, (n, 3))
    return np.exp(-((X[:, None] - X[None]) ** 2).sum(-1) / (2 * ls**2))


def low_rank_psd(n, r, seed=1):
    G = np.random.default_rng(seed).standard_normal((n, r))
    return G @ G.T


def call(cfg, fn, *args):
    """``fn(*args)``; under JAX jit-compiled (one compilation instead of hundreds of eager ones)."""
    if cfg.backend == "jax":
        import jax

        return jax.jit(fn)(*args)
    return fn(*args)


def rel(a, b):
    return float(np.linalg.norm(to_np(a) - b) / np.linalg.norm(b))


# ------------------------------------------------------------------ pivoted Cholesky
@real_cfg
def test_pivoted_cholesky_exact_at_the_rank(cfg):
    M = low_rank_psd(40, 5)
    L, info = lo.pivoted_cholesky(lo.Dense(cfg.arr(M)), 5, tol=0.0, return_info=True)
    L = to_np(L)
    assert L.shape == (40, 5)
    assert rel(L @ L.T, M) <= (1e-5 if cfg.single else 1e-12)
    # asked for more than the rank: it stops at the rank (the remaining diagonal is rounding)
    L8, info8 = lo.pivoted_cholesky(lo.Dense(cfg.arr(M)), 8, return_info=True)
    assert to_np(L8).shape[1] in (5, 8) and rel(to_np(L8) @ to_np(L8).T, M) <= (1e-5 if cfg.single else 1e-12)
    assert float(to_np(info.trace_error)) <= (1e-5 if cfg.single else 1e-12) * np.trace(M)


@real_cfg
def test_pivoted_cholesky_trace_error_and_pivots(cfg):
    s = np.linspace(0.5, 1.5, 60)[np.random.default_rng(2).permutation(60)]
    M = s[:, None] * kernel(60, 0.4) * s[None, :]  # distinct diagonal entries: the greedy order is defined
    L, info = lo.pivoted_cholesky(lo.PSD(lo.Dense(cfg.arr(M))), 12, return_info=True)
    L = to_np(L).astype(np.float64)
    true_err = np.trace(M - L @ L.T)
    hist = to_np(info.history)
    assert L.shape == (60, 12) and hist.shape == (13,)
    assert abs(float(to_np(info.trace_error)) - true_err) <= (1e-4 if cfg.single else 1e-10) * np.trace(M)
    assert np.all(np.diff(hist) <= 1e-6 * hist[0]) and hist[0] == pytest.approx(np.trace(M), rel=1e-6)
    # greedy: the first pivot is the largest diagonal entry; L is lower triangular on the pivots
    piv = to_np(info.pivots).astype(int)
    assert piv[0] == int(np.argmax(np.diag(M)))
    np.testing.assert_allclose(np.triu(L[piv], 1), 0, atol=1e-6 if cfg.single else 1e-13)
    # the residual is PSD with the reported trace, and beats a rank-12 truncation of random columns
    assert np.linalg.eigvalsh(M - L @ L.T).min() >= -(1e-4 if cfg.single else 1e-10)


def test_pivoted_cholesky_complex_and_generic_operator():
    rng = np.random.default_rng(3)
    G = rng.standard_normal((30, 4)) + 1j * rng.standard_normal((30, 4))
    M = G @ G.conj().T
    A = lo.Kronecker(lo.Dense(np.eye(2)), lo.Dense(M))  # no Dense column access: columns via products
    L = lo.pivoted_cholesky(A, 8, tol=0.0)
    np.testing.assert_allclose(L @ L.conj().T, np.kron(np.eye(2), M), atol=1e-10 * np.abs(M).max())


# ------------------------------------------------------------------------- Nyström
@real_cfg
def test_nystrom_error_against_the_best_rank_r(cfg):
    n, r = 80, 12
    Q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((n, n)))
    lam = 0.5 ** np.arange(n)  # decaying spectrum: best rank-k error is lam[k]
    M = (Q * lam) @ Q.T
    Ahat = lo.nystrom(lo.PSD(lo.Dense(cfg.arr(M))), r, seed=1)
    assert isinstance(Ahat, lo.LowRank) and "PSD" in Ahat.annotations
    D = to_np(Ahat.to_dense()).astype(np.float64)
    err = np.linalg.norm(M - D, 2)
    # Tropp et al.: with a sketch of r, the error is about that of the best rank-(r - p) for small p
    assert err <= 10 * lam[r - 4], (err, lam[r - 4], lam[r])
    assert err >= lam[r] * (1 - 1e-4)  # and never better than the best rank r (a sanity bound)
    # Nyström never overshoots: A - Â is PSD
    assert np.linalg.eigvalsh((M - D + (M - D).T) / 2).min() >= -(1e-5 if cfg.single else 1e-12)


# -------------------------------------------------------------------- Jacobi + CG
@real_cfg
def test_jacobi(cfg):
    rng = np.random.default_rng(5)
    d = 10.0 ** rng.uniform(-2, 2, 50)
    M = np.diag(d) + 0.01 * kernel(50)
    Jm = lo.jacobi(lo.PSD(lo.Dense(cfg.arr(M))))
    assert isinstance(Jm, lo.Diagonal) and "PSD" in Jm.annotations
    np.testing.assert_allclose(to_np(Jm.d), 1 / np.diag(M), rtol=1e-6 if cfg.single else 1e-14)
    b = cfg.arr(rng.standard_normal(50))
    tol = 1e-5 if cfg.single else 1e-10
    _, plain = lo.solve(lo.PSD(lo.Dense(cfg.arr(M))), b, alg=lo.CG(tol=tol), return_info=True)
    x, pre = lo.solve(lo.PSD(lo.Dense(cfg.arr(M))), b, alg=lo.CG(tol=tol, precond=Jm), return_info=True)
    assert int(pre.iterations) * 3 <= int(plain.iterations)
    assert rel(x, np.linalg.solve(M, to_np(b))) <= 100 * tol
    # structured diagonals come from the diag rules (a Kronecker product here)
    K = lo.Kronecker(lo.Dense(np.diag([1.0, 2.0])), lo.Dense(np.diag([3.0, 4.0, 5.0])))
    np.testing.assert_allclose(lo.jacobi(K).d, 1 / np.kron([1.0, 2.0], [3.0, 4.0, 5.0]))


def test_jacobi_bad_diagonals():
    with pytest.raises(lo.SingularMatrixError, match="diagonal entry 1"):
        lo.jacobi(lo.Dense(np.diag([1.0, 0.0, 2.0])))
    with pytest.raises(lo.NotPSDError, match="annotated PSD"):
        lo.jacobi(lo.PSD(lo.Dense(np.diag([1.0, -1.0]))))
    assert lo.jacobi(lo.Dense(np.diag([1.0, -2.0]))).d[1] == -0.5  # fine without a PSD promise (GMRES)
    with pytest.raises(lo.NonFiniteError):
        lo.jacobi(lo.Dense(np.diag([1.0, np.nan])))
    with pytest.raises(lo.NotSquareError):
        lo.jacobi(lo.Dense(np.ones((2, 3))))


@real_cfg
def test_preconditioned_cg_needs_far_fewer_iterations(cfg):
    n = 150
    K = kernel(n, 0.5)
    noise = 1e-2 if cfg.single else 1e-3
    A = lo.PSD(lo.Dense(cfg.arr(K))) + lo.ScalarMul(cfg.arr(noise), n)
    M = K + noise * np.eye(n)
    b = cfg.arr(np.random.default_rng(6).standard_normal(n))
    tol = 1e-3 if cfg.single else 1e-10  # float32: the true residual floor is about eps * cond(A) ~ 1e-3
    counts = {}
    cases = [("none", None), ("pivoted_cholesky", lo.PivotedCholeskyPrecond(rank=60).build(A).inverse())]
    if cfg.backend != "jax":  # JAX compiles each case: keep its share of the run time small
        cases += [("jacobi", lo.jacobi(A)), ("nystrom", lo.NystromPrecond(rank=60, seed=2).build(A).inverse())]
    for name, P in cases:
        x, info = call(cfg, lambda A, P, b: lo.solve(A, b, alg=lo.CG(tol=tol, precond=P, on_failure="warn"),
                                                     return_info=True), A, P, b)
        assert bool(to_np(info.converged).all())
        assert rel(x, np.linalg.solve(M, to_np(b).astype(np.float64))) <= (1e-2 if cfg.single else 1e-6)
        counts[name] = int(info.iterations)
    assert counts["pivoted_cholesky"] * 5 <= counts["none"], counts
    if cfg.backend != "jax":
        assert counts["nystrom"] * 5 <= counts["none"], counts
        assert counts["jacobi"] >= counts["none"] // 2  # a constant diagonal: Jacobi cannot help here


@real_cfg
def test_preconditioner_operator_identities(cfg):
    n = 50
    K = kernel(n)
    d = np.linspace(0.1, 0.3, n)
    A = lo.PSD(lo.Dense(cfg.arr(K))) + lo.Diagonal(cfg.arr(d))
    P = lo.PivotedCholeskyPrecond(rank=8).build(A)
    L = to_np(lo.pivoted_cholesky(lo.Dense(cfg.arr(K)), 8)).astype(np.float64)
    Pd = L @ L.T + np.diag(d)
    t = 1e-4 if cfg.single else 1e-11
    assert rel(P.operator().to_dense(), Pd) <= t
    assert rel(P.inverse().to_dense(), np.linalg.inv(Pd)) <= t * 10
    E = cfg.arr(np.eye(n))
    F = to_np(P.half(E)).astype(np.float64)
    assert rel(F @ F.T, Pd) <= t
    assert rel(P.half_inv(P.half(E)), np.eye(n)) <= t and rel(P.half_inv_h(E), np.linalg.inv(F).T) <= t * 10
    assert float(to_np(P.logdet())) == pytest.approx(np.linalg.slogdet(Pd)[1], rel=t)


# ------------------------------------------------------------------------------ Auto
def test_auto_picks_a_preconditioner_and_says_so():
    n = 120
    K = kernel(n, 0.5)
    b = np.random.default_rng(7).standard_normal(n)
    auto = lo.Auto(dense_n=50, precond_rank=40)
    A = lo.PSD(lo.Dense(K)) + lo.ScalarMul(1e-3, n)
    text = lo.explain(lo.solve, A, auto)
    assert "pivoted Cholesky (rank <= 40)" in text and "Woodbury" in text
    # Auto returns a spec (built in the solve, not by explain); explain shows its repr
    spec = lo.FirstOf((lo.PivotedCholeskyPrecond(rank=40), lo.JacobiPrecond()))
    assert repr(spec) in text and auto.select("solve", A)[0].precond == spec
    x, info = lo.solve(A, b, alg=auto, return_info=True)
    _, plain = lo.solve(A, b, alg=lo.Auto(dense_n=50, precond=False), return_info=True)
    np.testing.assert_allclose((K + 1e-3 * np.eye(n)) @ x, b, atol=1e-7)
    assert int(info.iterations) * 4 <= int(plain.iterations)
    assert "precond=False: no preconditioner" in lo.explain(lo.solve, A, lo.Auto(dense_n=50, precond=False))
    # a Dense matrix: its diagonal is cheap -> Jacobi
    D = lo.PSD(lo.Dense(K + np.diag(np.linspace(1e-3, 1.0, n))))
    assert "Jacobi" in lo.explain(lo.solve, D, auto)
    # precond_rank=0: no pivoted Cholesky; the Sum's diagonal is not cheap (Dense + c I is: Jacobi)
    assert "Jacobi" in lo.explain(lo.solve, A, lo.Auto(dense_n=50, precond_rank=0))
    # an operator whose diagonal is not cheap (a product of dense factors): no preconditioner
    G = np.random.default_rng(8).standard_normal((n, n + 10)) / np.sqrt(n)
    B = lo.PSD(lo.Dense(G) @ lo.Dense(G.T))  # rectangular factors: no structure rule, no cheap diagonal
    assert "no preconditioner" in lo.explain(lo.solve, B, auto)
    assert "dense Cholesky" in lo.explain(lo.solve, A)  # default dense_n: dense, no preconditioner
    Z = np.eye(n)
    Z[3, 3] = 0.0  # a zero diagonal entry: Jacobi does not apply, and the FirstOf Auto picks gives none
    assert repr(lo.FirstOf((lo.JacobiPrecond(),))) in lo.explain(lo.solve, lo.PSD(lo.Dense(Z)), auto)
    assert lo.build_preconditioner(auto.select("solve", lo.PSD(lo.Dense(Z)))[0].precond, lo.PSD(lo.Dense(Z))) is None
    with pytest.raises(ValueError, match="precond_rank"):
        lo.Auto(precond_rank=-1)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_auto_preconditioned_solve_on_torch_and_jax(backend):
    n = 80
    K, b = kernel(n, 0.5), np.random.default_rng(9).standard_normal(n)
    cfg = next(c for c in REAL if c.backend == backend and c.dtype == "float64")
    A = lo.PSD(lo.Dense(cfg.arr(K))) + lo.ScalarMul(1e-3, n)
    x, info = lo.solve(A, cfg.arr(b), alg=lo.Auto(dense_n=50, precond_rank=30), return_info=True)
    assert info.all_converged
    np.testing.assert_allclose((K + 1e-3 * np.eye(n)) @ to_np(x), b, atol=1e-7)


def test_jit_of_preconditioned_cg():
    import jax
    import jax.numpy as jnp

    n = 60
    K, b = kernel(n, 0.5), np.random.default_rng(10).standard_normal(n)
    A = lo.PSD(lo.Dense(jnp.asarray(K))) + lo.ScalarMul(jnp.asarray(1e-3), n)
    Pinv = lo.PivotedCholeskyPrecond(rank=30).build(A).inverse()

    @jax.jit
    def solve(A, Pinv, b):  # the preconditioner operator is a pytree argument
        return lo.solve(A, b, alg=lo.CG(tol=1e-10, precond=Pinv), return_info=True)

    x, info = solve(A, Pinv, jnp.asarray(b))
    np.testing.assert_allclose((K + 1e-3 * np.eye(n)) @ np.asarray(x), b, atol=1e-7)
    _, plain = lo.solve(lo.PSD(lo.Dense(K)) + lo.ScalarMul(1e-3, n), b, alg=lo.CG(tol=1e-10), return_info=True)
    assert int(info.iterations) * 4 <= int(plain.iterations)  # plain CG counted on the numpy twin
    # Auto under jit: the pivoted Cholesky runs traced (fixed shapes, lax.fori_loop)
    auto = jax.jit(lambda A, b: lo.solve(A, b, alg=lo.Auto(dense_n=50, precond_rank=30)))
    np.testing.assert_allclose(np.asarray(auto(A, jnp.asarray(b))), np.asarray(x), rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------- preconditioned SLQ
def gp_problem(n=100, ls=0.5, noise=0.05):
    X = np.random.default_rng(11).uniform(0, 1, (n, 3))
    D2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    return D2, np.array([np.log(ls), 0.0, np.log(noise)])


@real_cfg
def test_preconditioned_slq_value_within_its_error_bars(cfg):
    D2, th = gp_problem()
    n = D2.shape[0]
    K = np.exp(-D2 / (2 * np.exp(2 * th[0])))
    s = float(np.exp(th[2]))
    A = lo.PSD(lo.Dense(cfg.arr(K))) + lo.ScalarMul(cfg.arr(s), n)
    exact = np.linalg.slogdet(K + s * np.eye(n))[1]
    specs = [lo.PivotedCholeskyPrecond(rank=40)]
    if not cfg.single and cfg.backend != "jax":
        specs.append(lo.NystromPrecond(rank=40, seed=3))
    for spec in specs:
        alg = lo.SLQ(num_probes=10, precond=spec)
        v, info = call(cfg, lambda A, alg=alg: lo.logdet(A, alg=alg, return_info=True), A)
        assert info.method == "SLQ (preconditioned)"
        # the exact standard deviation of the probes' mean: Rademacher probes on log B, B = F^-1 A F^-H
        P = spec.build(lo.PSD(lo.Dense(K)) + lo.ScalarMul(s, n))
        B = P.half_inv(P.half_inv_h(K + s * np.eye(n)).T)
        sd = np.sqrt(2 * (np.log(np.linalg.eigvalsh((B + B.T) / 2)) ** 2).sum() / 10)
        slack = 2e-5 * abs(exact) if cfg.single else 1e-9 * abs(exact)  # float32 rounding of a sum of n logs
        assert abs(float(to_np(v)) - exact) <= 4 * sd + slack, (type(spec).__name__, float(to_np(v)), exact, sd)
        assert sd / 4 <= float(to_np(info.stderr)) <= 4 * sd  # the reported error bar is of the right size
    if cfg.backend == "numpy":  # the preconditioner removes most of the variance
        _, plain = lo.logdet(A, alg=lo.SLQ(num_probes=10), return_info=True)
        assert info.stderr * 10 <= plain.stderr
    if cfg.backend == "jax":
        return
    # at rank n the preconditioner is A itself: the value is exact up to rounding
    v = call(cfg, lambda A: lo.logdet(A, alg=lo.SLQ(num_probes=4, precond=lo.PivotedCholeskyPrecond(rank=n))), A)
    assert float(to_np(v)) == pytest.approx(exact, rel=1e-4 if cfg.single else 1e-9)


def _grads(cfg, spec, probes=20):
    """(linops gradient of log det A wrt θ, dense autodiff gradient) for the GP covariance."""
    D2, th = gp_problem()
    n = D2.shape[0]
    alg = lo.SLQ(num_probes=probes, grad_tol=1e-5 if cfg.single else 1e-10, precond=spec)
    if cfg.backend == "torch":
        import torch

        dt = getattr(torch, cfg.dtype)
        D2t = torch.tensor(D2, dtype=dt)

        def parts(t):
            K = torch.exp(t[1]) * torch.exp(-D2t / (2 * torch.exp(2 * t[0])))
            return K, torch.exp(t[2])

        t = torch.tensor(th, dtype=dt, requires_grad=True)
        K, s = parts(t)
        (g,) = torch.autograd.grad(lo.logdet(lo.PSD(lo.Dense(K)) + lo.ScalarMul(s, n), alg=alg), t)
        t64 = torch.tensor(th, dtype=torch.float64, requires_grad=True)
        K64 = torch.exp(t64[1]) * torch.exp(-torch.tensor(D2) / (2 * torch.exp(2 * t64[0])))
        (ge,) = torch.autograd.grad(torch.logdet(K64 + torch.exp(t64[2]) * torch.eye(n, dtype=torch.float64)), t64)
        return g.numpy().astype(np.float64), ge.numpy()
    import jax
    import jax.numpy as jnp

    D2j = jnp.asarray(D2, dtype=cfg.dtype)

    def f(t):
        K = jnp.exp(t[1]) * jnp.exp(-D2j / (2 * jnp.exp(2 * t[0])))
        return lo.logdet(lo.PSD(lo.Dense(K)) + lo.ScalarMul(jnp.exp(t[2]), n), alg=alg)

    def fe(t):
        K = jnp.exp(t[1]) * jnp.exp(-jnp.asarray(D2) / (2 * jnp.exp(2 * t[0])))
        return jnp.linalg.slogdet(K + jnp.exp(t[2]) * jnp.eye(n))[1]

    g = jax.jit(jax.grad(f))(jnp.asarray(th, dtype=cfg.dtype))
    return np.asarray(g, dtype=np.float64), np.asarray(jax.grad(fe)(jnp.asarray(th)))


@pytest.mark.parametrize("cfg", [c for c in REAL if c.backend != "numpy"], ids=[c.id for c in REAL if c.backend != "numpy"])
def test_preconditioned_slq_gradient_against_dense_autodiff(cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lo.ConvergenceWarning)
        g, ge = _grads(cfg, lo.PivotedCholeskyPrecond(rank=50))
    err = np.abs(g - ge) / np.abs(ge)
    # float64: the control-variate estimator at rank 50 of n = 100 is within about 3e-3 per parameter;
    # the plain estimator with these 20 probes is off by ten times more (checked in the test below)
    assert err.max() <= (3e-2 if cfg.single else 1e-2), err


def test_preconditioned_gradient_beats_plain_and_nystrom_is_unbiased():
    cfg = next(c for c in REAL if c.backend == "torch" and c.dtype == "float64")
    g_pc, ge = _grads(cfg, lo.PivotedCholeskyPrecond(rank=50))
    g_plain, _ = _grads(cfg, None)
    err_pc = np.abs(g_pc - ge) / np.abs(ge)
    err_plain = np.abs(g_plain - ge) / np.abs(ge)
    assert err_pc.max() * 10 <= err_plain.max(), (err_pc, err_plain)
    # Nyström: no control variate, but still an unbiased estimate (error of the plain estimator's order)
    g_ny, _ = _grads(cfg, lo.NystromPrecond(rank=50, seed=1), probes=40)
    assert (np.abs(g_ny - ge) / np.abs(ge)).max() <= 0.1


def test_slq_with_a_built_preconditioner_and_bad_inputs():
    D2, th = gp_problem(60)
    K = np.exp(-D2 / (2 * np.exp(2 * th[0])))
    A = lo.PSD(lo.Dense(K)) + lo.ScalarMul(0.05, 60)
    P = lo.PivotedCholeskyPrecond(rank=30).build(A)
    v, info = lo.logdet(A, alg=lo.SLQ(num_probes=8, precond=P), return_info=True)
    assert abs(v - np.linalg.slogdet(K + 0.05 * np.eye(60))[1]) <= 4 * info.stderr + 1e-9
    with pytest.raises(TypeError, match="precond must be"):
        lo.SLQ(precond="pivoted_cholesky")
    with pytest.raises(lo.ShapeError, match="preconditioner is 60 x 60"):
        lo.logdet(lo.PSD(lo.Dense(np.eye(5))), alg=lo.SLQ(precond=P))
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        lo.PivotedCholeskyPrecond(rank=0)
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        lo.pivoted_cholesky(lo.Dense(np.eye(3)), 2.5)
    with pytest.raises(ValueError, match="tol"):
        lo.pivoted_cholesky(lo.Dense(np.eye(3)), 2, tol=-1)
    with pytest.raises(ValueError, match="seed"):
        lo.NystromPrecond(seed="a")
    with pytest.raises(lo.NotPSDError, match="negative diagonal entry"):
        lo.pivoted_cholesky(lo.Dense(np.diag([1.0, -1.0])), 2)
    with pytest.raises(lo.NotPSDError, match="positive semi-definite"):
        lo.nystrom(lo.Dense(-np.eye(4)), 2)
    with pytest.raises(lo.NotPSDError, match="must be positive"):
        lo.PivotedCholeskyPrecond(rank=3).build(lo.PSD(lo.Dense(K)) + lo.ScalarMul(-0.1, 60))
    with pytest.raises(lo.NotSquareError):
        lo.pivoted_cholesky(lo.Dense(np.ones((3, 4))), 2)


def test_preconditioned_gradient_without_a_diagonal_term():
    """A single dense operator (no noise term to split off): P = L L^H + residual diagonal, still unbiased."""
    import torch

    D2, th = gp_problem(80)
    n = D2.shape[0]
    t = torch.tensor(th, requires_grad=True)
    M = torch.exp(t[1]) * torch.exp(-torch.tensor(D2) / (2 * torch.exp(2 * t[0]))) + torch.exp(t[2]) * torch.eye(n)
    alg = lo.SLQ(num_probes=20, grad_tol=1e-10, precond=lo.PivotedCholeskyPrecond(rank=50))
    v, info = lo.logdet(lo.PSD(lo.Dense(M)), alg=alg, return_info=True)
    (g,) = torch.autograd.grad(v, t)
    t2 = torch.tensor(th, requires_grad=True)
    M2 = torch.exp(t2[1]) * torch.exp(-torch.tensor(D2) / (2 * torch.exp(2 * t2[0]))) + torch.exp(t2[2]) * torch.eye(n)
    exact = torch.logdet(M2)
    (ge,) = torch.autograd.grad(exact, t2)
    assert abs(float(v.detach()) - float(exact.detach())) <= 4 * float(info.stderr) + 1e-9 * abs(float(exact.detach()))
    assert (np.abs((g - ge).numpy()) / np.abs(ge.numpy())).max() <= 2e-2


# ------------------------------------------------------------ specs built in the solve
@real_cfg
def test_spec_is_built_in_the_solve_with_the_same_numbers(cfg):
    """``CG(precond=spec)`` builds ``lo.build_preconditioner(spec, A)`` inside the solve: the same iterates as
    passing that operator (bit for bit eagerly; under jax.jit to rounding)."""
    n, noise = 80, 1e-2
    K = kernel(n, 0.5)
    A = lo.PSD(lo.Dense(cfg.arr(K))) + lo.ScalarMul(cfg.arr(noise), n)
    b = cfg.arr(np.random.default_rng(12).standard_normal(n))
    ref = np.linalg.solve(K + noise * np.eye(n), to_np(b).astype(np.float64))
    tol = 1e-4 if cfg.single else 1e-10
    specs = [lo.FirstOf((lo.PivotedCholeskyPrecond(rank=20), lo.JacobiPrecond()))]
    if cfg.backend != "jax":  # JAX compiles each case: keep its share of the run time small
        specs += [lo.PivotedCholeskyPrecond(rank=20), lo.JacobiPrecond(), lo.NystromPrecond(rank=20, seed=1)]
    for spec in specs:
        M = lo.build_preconditioner(spec, A)
        x1, i1 = call(cfg, lambda A, b, s=spec: lo.solve(A, b, alg=lo.CG(tol=tol, precond=s), return_info=True), A, b)
        x2, i2 = call(cfg, lambda A, M, b: lo.solve(A, b, alg=lo.CG(tol=tol, precond=M), return_info=True), A, M, b)
        assert bool(to_np(i1.converged).all()), spec
        if cfg.backend == "jax":
            # XLA fuses M's products with the build when both are in one graph: rounding differs, CG may stop
            # one step apart; both meet tol, so they differ by about tol * cond(A) (cond = 3.5e3) at most
            assert abs(int(i1.iterations) - int(i2.iterations)) <= 1, spec
            assert rel(x1, to_np(x2).astype(np.float64)) <= (1e-3 if cfg.single else 1e-6), spec
        else:
            assert int(i1.iterations) == int(i2.iterations) and np.array_equal(to_np(x1), to_np(x2)), spec
        assert rel(x1, ref) <= (1e-2 if cfg.single else 1e-7), spec  # float32: eps * cond(A) floor
    # the factored form (spec.build, kept for old code) gives the same operator as build_preconditioner
    P, E = lo.PivotedCholeskyPrecond(rank=20).build(A), cfg.arr(np.eye(n))
    assert np.array_equal(to_np(P.inverse() @ E), to_np(lo.build_preconditioner(lo.PivotedCholeskyPrecond(rank=20), A) @ E))


def test_auto_gives_the_numbers_of_the_spec_it_shows():
    """Auto's solve is CG with the spec explain shows, and that spec's operator is the one Auto built before
    the specs existed (pivoted Cholesky P^{-1}, Jacobi when the diagonal terms are not positive)."""
    n = 120
    K = kernel(n, 0.5)
    b = np.random.default_rng(13).standard_normal(n)
    auto = lo.Auto(dense_n=50, precond_rank=40)
    for A, old in (
        (lo.PSD(lo.Dense(K)) + lo.ScalarMul(1e-3, n), lambda A: lo.PivotedCholeskyPrecond(rank=40).build(A).inverse()),
        (lo.PSD(lo.Dense(K + 0.5 * np.eye(n)) + lo.ScalarMul(-1e-3, n)), lo.jacobi),  # noise < 0: Jacobi
    ):
        alg, _ = auto.select("solve", A)
        assert isinstance(alg, lo.CG) and repr(alg.precond) in lo.explain(lo.solve, A, auto)
        x, info = lo.solve(A, b, alg=auto, return_info=True)
        x_old, info_old = lo.solve(A, b, alg=lo.CG(tol=auto.krylov_tol, precond=old(A)), return_info=True)
        assert np.array_equal(x, x_old) and int(info.iterations) == int(info_old.iterations)
        np.testing.assert_allclose(A.to_dense() @ x, b, atol=1e-7)


def test_spec_under_jax_jit_vmap_and_grad():
    """The build runs traced inside ``lax.custom_linear_solve`` (vmapped over the noise), and the implicit
    gradient matches dense autodiff (the adjoint solve builds the preconditioner again)."""
    import jax
    import jax.numpy as jnp

    n = 60
    K, b = jnp.asarray(kernel(n, 0.5)), jnp.asarray(np.random.default_rng(14).standard_normal(n))
    w = jnp.asarray(np.random.default_rng(15).standard_normal(n))
    spec = lo.FirstOf((lo.PivotedCholeskyPrecond(rank=20), lo.JacobiPrecond()))

    def solve(s, K):
        return lo.solve(lo.PSD(lo.Dense(K)) + lo.ScalarMul(s, n), b, alg=lo.CG(tol=1e-11, precond=spec))

    noises = np.array([1e-3, 1e-2, 1e-1])
    X = jax.jit(jax.vmap(solve, in_axes=(0, None)))(jnp.asarray(noises), K)
    for s, x in zip(noises, np.asarray(X), strict=True):
        assert rel(x, np.linalg.solve(np.asarray(K) + s * np.eye(n), np.asarray(b))) <= 1e-8
    g = jax.jit(jax.grad(lambda s, K: solve(s, K) @ w, argnums=(0, 1)))(1e-2, K)
    ge = jax.grad(lambda s, K: jnp.linalg.solve(K + s * jnp.eye(n), b) @ w, argnums=(0, 1))(1e-2, K)
    for a, e in zip(g, ge, strict=True):
        assert rel(a, np.asarray(e)) <= 1e-7


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_spec_gradient_on_torch_matches_dense_autodiff(dtype):
    import torch

    n, dt = 60, getattr(torch, dtype)
    K = torch.tensor(kernel(n, 0.5), dtype=dt, requires_grad=True)
    s = torch.tensor(1e-1, dtype=dt, requires_grad=True)  # float32: cond(A) ~ 1e2 keeps CG at its tolerance
    b = torch.tensor(np.random.default_rng(16).standard_normal(n), dtype=dt, requires_grad=True)
    w = torch.tensor(np.random.default_rng(17).standard_normal(n), dtype=dt)
    alg = lo.CG(tol=1e-5 if dtype == "float32" else 1e-11, precond=lo.PivotedCholeskyPrecond(rank=20))
    g = torch.autograd.grad(lo.solve(lo.PSD(lo.Dense(K)) + lo.ScalarMul(s, n), b, alg=alg) @ w, (K, s, b))
    K64, s64, b64 = (t.detach().double().requires_grad_() for t in (K, s, b))
    x64 = torch.linalg.solve(K64 + s64 * torch.eye(n, dtype=torch.float64), b64)
    ge = torch.autograd.grad(x64 @ w.double(), (K64, s64, b64))
    for a, e in zip(g, ge, strict=True):  # float32: the solves' tolerance times cond(A) ~ 1e2
        assert rel(a, e.numpy()) <= (2e-3 if dtype == "float32" else 1e-8)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_jacobi_spec_for_gmres_and_the_adjoint_solve(backend):
    """A spec works for every iterative solver; the adjoint solve (``b @ inv(A)``) builds it from A and
    applies its adjoint, as for an operator passed ready-made."""
    cfg = next(c for c in REAL if c.backend == backend and c.dtype == "float64")
    n, rng = 80, np.random.default_rng(18)
    N = np.diag(10.0 ** rng.uniform(-1, 2, n)) + rng.standard_normal((n, n)) / np.sqrt(n)  # badly scaled rows
    B, A = rng.standard_normal((n, 2)), lo.Dense(cfg.arr(N))
    Ainv = lo.inv(A, alg=lo.GMRES(tol=1e-10, precond=lo.JacobiPrecond()))
    assert rel(Ainv @ cfg.arr(B), np.linalg.solve(N, B)) <= 1e-8  # (plain GMRES stalls at its 800 iterations)
    Y = cfg.arr(B.T) @ Ainv  # B^T A^{-1}: the adjoint solve with diag(A)^{-H}
    assert rel(Y, B.T @ np.linalg.inv(N)) <= 1e-8
    ref = lo.inv(A, alg=lo.GMRES(tol=1e-10, precond=lo.jacobi(A)))
    assert np.array_equal(to_np(Y), to_np(cfg.arr(B.T) @ ref))


def test_first_of_falls_back_and_bad_specs():
    n = 60
    K = kernel(n, 0.5)
    neg = lo.PSD(lo.Dense(K + 0.5 * np.eye(n)) + lo.ScalarMul(-1e-3, n))  # PSD, but its diagonal terms are not
    with pytest.raises(lo.NotPSDError, match="must be positive"):
        lo.build_preconditioner(lo.PivotedCholeskyPrecond(rank=10), neg)
    M = lo.build_preconditioner(lo.FirstOf((lo.PivotedCholeskyPrecond(rank=10), lo.JacobiPrecond())), neg)
    assert isinstance(M, lo.Diagonal) and rel(M.d, 1 / (np.diag(K) + 0.5 - 1e-3)) <= 1e-14
    Z = lo.PSD(lo.Dense(np.diag([1.0, 0.0, 2.0])))
    with pytest.raises(lo.SingularMatrixError, match="diagonal entry 1"):
        lo.build_preconditioner(lo.JacobiPrecond(), Z)
    assert lo.build_preconditioner(lo.FirstOf((lo.JacobiPrecond(),)), Z) is None  # none applies: plain CG
    with pytest.raises(lo.NonFiniteError):  # NaN is an error, not "does not apply"
        lo.build_preconditioner(lo.FirstOf((lo.JacobiPrecond(),)), lo.Dense(np.diag([1.0, np.nan])))
    with pytest.raises(lo.NotSquareError):
        lo.build_preconditioner(lo.JacobiPrecond(), lo.Dense(np.ones((2, 3))))
    for bad in ((), ("jacobi",), lo.JacobiPrecond()):
        pytest.raises(TypeError, lo.FirstOf, bad).match("specs must be")
    with pytest.raises(TypeError, match="precond must be"):
        lo.solve(lo.PSD(lo.Dense(np.eye(3))), np.ones(3), alg=lo.CG(precond="jacobi"))
    # specs are hashable configurations; a built Preconditioner stands for its inverse; None and operators pass
    assert len({lo.PivotedCholeskyPrecond(rank=10), lo.PivotedCholeskyPrecond(rank=10), lo.NystromPrecond()}) == 2
    P = lo.PivotedCholeskyPrecond(rank=10).build(neg + lo.ScalarMul(1.0, n))
    assert lo.build_preconditioner(P, neg).V is P.inverse().V
    assert lo.build_preconditioner(None, neg) is None and lo.build_preconditioner(M, neg) is M


def test_slq_with_jacobi_and_first_of():
    D2, th = gp_problem(80)
    n = D2.shape[0]
    K = np.exp(-D2 / (2 * np.exp(2 * th[0])))
    d = np.linspace(0.05, 0.5, n)
    A, M = lo.PSD(lo.Dense(K)) + lo.Diagonal(d), K + np.diag(d)
    exact = np.linalg.slogdet(M)[1]
    v, info = lo.logdet(A, alg=lo.SLQ(num_probes=10, precond=lo.JacobiPrecond()), return_info=True)
    # P = diag(A), F = P^{1/2}: the exact standard deviation of the probes' mean on log(F^-1 A F^-H)
    s = 1 / np.sqrt(np.diag(M))
    sd = np.sqrt(2 * (np.log(np.linalg.eigvalsh(s[:, None] * M * s[None, :])) ** 2).sum() / 10)
    assert abs(v - exact) <= 4 * sd + 1e-10 * abs(exact) and sd / 4 <= info.stderr <= 4 * sd
    # FirstOf: the same numbers as the spec that applies; the identity (plain SLQ's value) when none does
    pc = lo.PivotedCholeskyPrecond(rank=30)
    assert lo.logdet(A, alg=lo.SLQ(num_probes=6, precond=lo.FirstOf((pc,)))) == lo.logdet(A, alg=lo.SLQ(num_probes=6, precond=pc))
    neg = lo.PSD(lo.Dense(K + 0.5 * np.eye(n)) + lo.ScalarMul(-1e-3, n))
    none = lo.logdet(neg, alg=lo.SLQ(num_probes=6, precond=lo.FirstOf((pc,))))
    assert none == pytest.approx(lo.logdet(neg, alg=lo.SLQ(num_probes=6)), rel=1e-13)


# ------------------------------------------------------------------------- layering
def test_the_algorithms_layer_never_imports_functions():
    """No import of linops.functions in linops/algorithms, not even inside a function or by name; Auto's choice,
    the specs and the array algorithms run without it loaded; the old names still import from algorithms."""
    import pathlib
    import re
    import subprocess
    import sys

    upward = re.compile(r"^\s*(from\s+(\.\.functions|linops)\b|from\s+\.\.\s+import\s.*\bfunctions\b|import\s+linops\b)"
                        r"|import_module\(|__import__\(", re.M)
    found = [(p.name, m.group(0)) for p in (pathlib.Path(lo.__file__).parent / "algorithms").glob("*.py")
             for m in upward.finditer(p.read_text())]
    assert not found, found
    code = (
        "import sys, numpy as np, linops as lo\nfrom linops.algorithms import lowrank_approx\n"
        "K = np.exp(-np.subtract.outer(np.arange(60.0), np.arange(60.0)) ** 2 / 50)\n"
        "alg, why = lo.Auto(dense_n=10).select('solve', lo.PSD(lo.Dense(K)) + lo.ScalarMul(1e-3, 60))\n"
        "L, info = lowrank_approx.factor(lo.Dense(K), np.diag(K).copy(), 5, 0.0)\n"
        "assert L.shape == (60, 5) and info.rank == 5\n"
        "assert 'linops.functions' not in sys.modules and 'plum' not in sys.modules, 'loaded the functions layer'\n"
        "print(repr(alg.precond))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr(lo.FirstOf((lo.PivotedCholeskyPrecond(rank=60), lo.JacobiPrecond())))
    import linops.algorithms as la
    from linops.algorithms import Preconditioner, jacobi, pivoted_cholesky

    assert (jacobi, pivoted_cholesky, Preconditioner) == (lo.jacobi, lo.pivoted_cholesky, lo.Preconditioner)
    assert {"jacobi", "pivoted_cholesky", "Preconditioner", "JacobiPrecond", "FirstOf"} <= set(dir(la)) & set(la.__all__)
    assert {"build_preconditioner", "JacobiPrecond", "FirstOf", "PreconditionerSpec"} <= set(lo.__all__)
