"""The Einsum family and MLR: special points, counts vs opt_einsum, exponents, validation, products.

The dense-reference grid (every backend, gradients, jit) runs through the zoo cases in
``tests/zoo_einsum.py``; this file holds the family-specific checks.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import linops as lo
from linops.operators import einsum_family as ef

from .zoo import CONFIGS, to_np
from .zoo_einsum import banded_mlr_twin, einsum_twin, mlr_twin

POINTS = lo.einsum_points(rho=0.5)
SHAPES = [(16, 16), (14, 15), (9, 12)]  # exact, padded, padded rectangular
TOL = 1e-12


def _cores(E):
    return np.asarray(E.A), np.asarray(E.B)


def _err(X, Y):
    return float(np.abs(to_np(X) - to_np(Y)).max())


# ------------------------------------------------------------------ special points
@pytest.mark.parametrize("d_in,d_out", SHAPES)
def test_special_points_equal_their_dedicated_operators(d_in, d_out):
    errs = {}
    # dense: alpha = delta = 1, B is a scalar
    E = lo.Einsum.from_theta(POINTS["dense"], d_in, d_out, seed=1)
    A, B = _cores(E)
    errs["dense"] = _err(E.to_dense(), lo.Dense(B[0, 0, 0, 0, 0] * A[0, :d_out, 0, 0, :d_in]).to_dense())
    # low rank: W = U V^H with U = B[0, :, :, 0, 0], V = A[0, 0, :, 0, :]^T
    E = lo.Einsum.from_theta(POINTS["low_rank"], d_in, d_out, seed=2)
    A, B = _cores(E)
    LR = E.as_lowrank()
    assert isinstance(LR, lo.LowRank)
    errs["low_rank"] = max(_err(E.to_dense(), LR.to_dense()),
                           _err(E.to_dense(), lo.LowRank(B[0, :d_out, :, 0, 0], A[0, 0, :, 0, :d_in].T).to_dense()))
    # Kronecker: W = kron(B[0, :, 0, 0, :], A[0, :, 0, 0, :]) (B is the slow factor)
    E = lo.Einsum.from_theta(POINTS["kronecker"], d_in, d_out, seed=3)
    A, B = _cores(E)
    K = lo.Kronecker(lo.Dense(B[0, :, 0, 0, :]), lo.Dense(A[0, :, 0, 0, :]))
    errs["kronecker"] = max(_err(E.to_dense(), K.to_dense()[:d_out, :d_in]), _err(E.to_dense(), E.as_kronecker().to_dense()))
    # TT (two cores, rank r): lo.TensorTrain and the explicit formula Σ_r G1[o1, i1, r] G2[r, o2, i2]
    E = lo.Einsum.from_theta(POINTS["tt"], d_in, d_out, seed=4)
    A, B = _cores(E)
    G1, G2 = B[0, :, :, 0, :].transpose(0, 2, 1), A[0, :, :, 0, :].transpose(1, 0, 2)  # (e, b, r), (r, d, a)
    e, b, _ = G1.shape
    _, d, a = G2.shape
    T = np.zeros((e * d, b * a))
    for o1 in range(e):
        for o2 in range(d):
            for i1 in range(b):
                for i2 in range(a):
                    T[o1 * d + o2, i1 * a + i2] = G1[o1, i1] @ G2[:, o2, i2]
    errs["tt_formula"] = _err(E.to_dense(), T[:d_out, :d_in])
    if hasattr(lo, "TensorTrain"):
        TT = lo.TensorTrain([G1[None], G2[..., None]], d_in, d_out)
        errs["tt"] = max(_err(E.to_dense(), TT.to_dense()), _err(E.to_dense(), E.as_tensor_train().to_dense()))
    # Monarch / BTT: the same cores, and the output shuffle perm[f E + e] = e F + f
    for name in ("monarch", "btt"):
        E = lo.Einsum.from_theta(POINTS[name], d_in, d_out, seed=5)
        A, B = _cores(E)
        s = E.sizes
        perm = np.arange(s.e * s.f).reshape(s.e, s.f).T.reshape(-1)
        if name == "monarch":
            op = lo.Monarch(A[:, 0, 0].transpose(1, 0, 2), B[:, :, 0, :, 0], d_in)
        else:
            op = lo.BTT(A[:, 0].transpose(2, 0, 1, 3), B[..., 0].transpose(0, 1, 3, 2), d_in)
        errs[name] = max(_err(E.to_dense(), op.to_dense()[perm][:d_out]), _err(E.to_dense(), E.as_monarch().to_dense()))
        if name == "btt":
            errs["btt"] = max(errs["btt"], _err(E.to_dense(), E.as_btt().to_dense()))
    print(f"\nspecial-point max errors at {d_in}x{d_out}:", {k: f"{v:.1e}" for k, v in errs.items()})
    assert max(errs.values()) < TOL, errs


def test_conversions_return_the_dedicated_types_and_refuse_other_points():
    E = lo.Einsum.from_theta(POINTS["monarch"], 16, 16)
    P, M = E.as_monarch().factors
    assert isinstance(P, lo.Permutation) and isinstance(M, lo.Monarch) and M.is_block_square
    assert isinstance(lo.Einsum.from_theta(POINTS["btt"], 16).as_btt().factors[1], lo.BTT)
    assert isinstance(lo.Einsum.from_theta(POINTS["kronecker"], 16).as_kronecker(), lo.Kronecker)
    G = lo.Einsum.from_theta((0.5, 0.25, 0.25, 0.25, 0.5, 0.25, 0.5), 16)
    for method in ("as_monarch", "as_btt", "as_kronecker", "as_lowrank", "tt_cores"):
        with pytest.raises(lo.ShapeError, match="is not a"):
            getattr(G, method)()


# ------------------------------------------------------------------- flop counts
THETAS = list(POINTS.values()) + [
    (0.5, 0.25, 0.25, 0.25, 0.5, 0.25, 0.0), (0.5, 0.25, 0.25, 0.25, 0.5, 0.25, 0.25),
    (0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0),  # a Hadamard product of two matrices: A·B-first plans appear
    (0.25, 0.5, 0.25, 0.5, 0.0, 0.5, 0.5), (0.75, 0.0, 0.25, 0.0, 0.75, 0.25, 0.0), (0.2, 0.3, 0.5, 0.6, 0.1, 0.3, 0.7),
]


def _opt_cost(E, columns, transposed):
    """opt_einsum's op count of the path the operator runs, on the equation written here from the
    definition (size-1 axes dropped)."""
    import opt_einsum

    s = E.sizes
    size = {"a": s.a, "b": s.b, "g": s.g, "d": s.d, "e": s.e, "f": s.f, "r": s.r, "c": columns}
    x, out = ("cfed", "cgba") if transposed else ("gbac", "fedc")
    keep = lambda t: "".join(ch for ch in t if size[ch] > 1)  # noqa: E731
    terms = [keep("fdrga"), keep("fergb"), keep(x)]
    eq = ",".join(terms) + "->" + keep(out)
    shapes = [tuple(size[ch] for ch in t) for t in terms]
    plan = E.plan(columns, transposed)
    _, info = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize=[plan.first, (0, 1)])
    _, best = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize="optimal")
    return int(info.opt_cost), int(best.opt_cost)


@pytest.mark.parametrize("theta", THETAS, ids=[str(t) for t in THETAS])
def test_flops_and_params_agree_with_opt_einsum(theta):
    pytest.importorskip("opt_einsum")
    for d_in, d_out in [(16, 16), (64, 48), (30, 100)]:
        E = lo.Einsum.from_theta(theta, d_in, d_out)
        assert E.num_params == E.A.size + E.B.size
        for c in (1, 3):
            for transposed in (False, True):
                ran, best = _opt_cost(E, c, transposed)
                assert E.plan(c, transposed).flops == ran == best
        assert E.flops(1) == E.plan(1).flops == lo.einsum_counts(E.sizes)[1]


def test_fallback_order_without_opt_einsum(monkeypatch):
    """Without opt_einsum the same count picks the order: the same flops, the same products."""
    E = lo.Einsum.from_theta((0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0), 12, 12)
    X = np.random.default_rng(0).standard_normal((12, 5))
    ref = [(E.flops(c), E.plan(c, True).flops) for c in (1, 5)], E @ X, X.T @ E
    ef._plan.cache_clear()
    monkeypatch.setitem(sys.modules, "opt_einsum", None)  # `import opt_einsum` raises ImportError
    try:
        assert E.plan(1).chosen_by == "fallback"
        got = [(E.flops(c), E.plan(c, True).flops) for c in (1, 5)], E @ X, X.T @ E
    finally:
        ef._plan.cache_clear()
    assert got[0] == ref[0]
    assert _err(got[1], ref[1]) < 1e-13 and _err(got[2], ref[2]) < 1e-13


# --------------------------------------------------------------------- exponents
EXP_THETAS = THETAS[:-1]  # quarter multiples: sizes factor exactly at d = 2^8, 2^12, 2^16


@pytest.mark.parametrize("theta", EXP_THETAS, ids=[str(t) for t in EXP_THETAS])
def test_exponents_match_log_log_fits(theta):
    nu, omega, psi = lo.einsum_exponents(theta)
    ks = [8, 12, 16]
    params, flops, ranks = [], [], []
    for k in ks:
        s = lo.einsum_sizes(theta, 2**k)
        assert (s.n_in, s.n_out) == (2**k, 2**k)  # exact factorisation, no padding
        p, f = lo.einsum_counts(s)
        params.append(p)
        flops.append(f)
        ranks.append(lo.einsum_rank(s))
    slope = lambda y: np.polyfit(ks, np.log2(y), 1)[0]  # noqa: E731
    fit_nu = slope(flops) - 1
    fit_omega = 1 + fit_nu - slope(params)
    # the counts are sums of two powers of d: the fitted slope sits within 0.05 of the larger one
    assert abs(fit_nu - nu) < 0.05 and abs(fit_omega - omega) < 0.05, (fit_nu, nu, fit_omega, omega)
    assert abs(slope(ranks) - psi) < 1e-9
    # the rank formula itself is exact: a random instance at d = 2^4, 2^6
    for d in (16, 64):
        E = lo.Einsum.from_theta(theta, d, seed=d)
        if (E.sizes.n_in, E.sizes.n_out) == (d, d):
            assert np.linalg.matrix_rank(E.to_dense()) == lo.einsum_rank(E.sizes)


def test_named_point_exponents():
    assert lo.Einsum.from_theta("monarch", 16).theta == POINTS["monarch"]
    expect = {"dense": (1, 0, 1), "low_rank": (0.5, 0, 0.5), "kronecker": (0.5, 0.5, 1), "tt": (1, 0.5, 1),
              "monarch": (0.5, 0, 1), "btt": (1, 0, 1)}
    for name, want in expect.items():
        assert np.allclose(lo.einsum_exponents(POINTS[name]), want), name


# -------------------------------------------------------------------- validation
@pytest.mark.parametrize("theta,match", [
    ((0.5, 0.5, 0, 1, 0, 0), "needs 7 entries"),
    ((0.5, 0.4, 0, 1, 0, 0, 0), "alpha \\+ beta \\+ gamma must be 1"),
    ((1, 0, 0, 0.5, 0.4, 0.2, 0), "delta \\+ epsilon \\+ phi must be 1"),
    ((1.5, -0.5, 0, 1, 0, 0, 0), "outside \\[0, 1\\]"),
    ((1, 0, 0, 1, 0, 0, float("nan")), "rho = nan"),
    ("densest", "unknown named point 'densest'; known: dense, low_rank"),
    ((1, 0, 0, 1, 0, 0, "x"), "sequence of 7 numbers"),
    (None, "sequence of 7 numbers"),
])
def test_theta_validation(theta, match):
    with pytest.raises(ValueError, match=match):
        lo.Einsum.from_theta(theta, 16)


def test_size_and_core_validation():
    with pytest.raises(ValueError, match="d_in must be a positive integer"):
        lo.einsum_sizes(POINTS["dense"], 0)
    with pytest.raises(ValueError, match="d_out must be a positive integer"):
        lo.einsum_sizes(POINTS["dense"], 4, 2.5)
    with pytest.raises(lo.ShapeError, match="5-D"):
        lo.Einsum(np.ones((2, 2)), np.ones((1, 1, 1, 1, 1)))
    with pytest.raises(lo.ShapeError, match="needs B of shape"):
        lo.Einsum(np.ones((2, 1, 1, 3, 2)), np.ones((2, 2, 1, 2, 1)))
    with pytest.raises(lo.ShapeError, match="cannot be padded"):
        lo.Einsum(np.ones((1, 2, 1, 1, 3)), np.ones((1, 1, 1, 1, 1)), d_in=4)
    with pytest.raises(lo.ShapeError, match="cannot be cut"):
        lo.Einsum(np.ones((1, 2, 1, 1, 3)), np.ones((1, 1, 1, 1, 1)), d_out=3)


def test_rounding_rule():
    s = lo.einsum_sizes((0.5, 0.5, 0, 0.5, 0.25, 0.25, 0.5), 10, 13)
    # a = floor(sqrt(10) + 1/2) = 3, b = ceil(10 / 3) = 4, g = 1 (zero exponent)
    assert (s.a, s.b, s.g) == (3, 4, 1)
    # d = floor(13^0.5 + 1/2) = 4, e = floor(13^0.25 + 1/2) = 2, f = ceil(13 / 8) = 2
    assert (s.d, s.e, s.f) == (4, 2, 2) and s.r == 3
    for d in range(1, 40):
        for th in THETAS:
            s = lo.einsum_sizes(th, d, d + 3)
            assert d <= s.n_in and d + 3 <= s.n_out


# ------------------------------------------------------------ products, backends
PRODUCT_THETAS = [(POINTS["monarch"], 14, 15), ((0.5, 0.25, 0.25, 0.25, 0.5, 0.25, 0.5), 11, 10),
                  ((0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0), 9, 12), (POINTS["low_rank"], 12, 7)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_products_on_every_backend(cfg):
    rng = np.random.default_rng(0)
    for theta, d_in, d_out in PRODUCT_THETAS:
        A, B = _cores(lo.Einsum.from_theta(theta, d_in, d_out, seed=1))
        if cfg.complex:
            A, B = A + 0.5j * rng.standard_normal(A.shape), B - 0.5j * rng.standard_normal(B.shape)
        wide = np.complex128 if cfg.complex else np.float64
        A, B = to_np(cfg.arr(A)).astype(wide), to_np(cfg.arr(B)).astype(wide)  # the config's rounding
        E = lo.Einsum(cfg.arr(A), cfg.arr(B), d_in, d_out, theta)
        W = einsum_twin(A, B, d_in, d_out)
        X = rng.standard_normal((d_in, 3))
        Y = rng.standard_normal((2, d_out))
        tol = cfg.tol * 10

        def products(E, X, Y):
            return E @ X, Y @ E, E @ X[:, 0], E.T.to_dense(), E.H.to_dense(), lo.diag(E)

        if cfg.backend == "jax":  # one compilation instead of one per primitive and shape (eager JAX is
            import jax           # covered by the zoo grid)

            products = jax.jit(products)
        EX, YE, Ex, WT, WH, dg = products(E, cfg.arr(X), cfg.arr(Y))
        assert _err(EX, W @ X) < tol and _err(YE, Y @ W) < tol and _err(Ex, W @ X[:, 0]) < tol
        assert _err(WT, W.T) < tol and _err(WH, W.conj().T) < tol and _err(dg, np.diag(W)) < tol


# --------------------------------------------------------------------------- MLR
def test_mlr_against_a_dense_construction():
    rng = np.random.default_rng(1)
    for n, ranks in [(16, (2, 1, 3)), (13, (1, 2, 2, 1)), (7, (3,))]:
        M = lo.MLR.random(n, ranks, seed=2)
        Us, Vs = [np.asarray(u) for u in M.U], [np.asarray(v) for v in M.V]
        W = mlr_twin(Us, Vs, n)
        N = M.padded_size
        assert N % 2 ** (len(ranks) - 1) == 0 and N - 2 ** (len(ranks) - 1) < n <= N
        assert M.num_params == 2 * N * sum(ranks)
        assert M.flops(3) == 3 * N * (4 * sum(ranks) + len(ranks) - 1)
        X = rng.standard_normal((n, 4))
        assert _err(M @ X, W @ X) < 1e-13 and _err(X.T @ M, X.T @ W) < 1e-13
        assert _err(M.T.to_dense(), W.T) < 1e-13 and _err((2.5 * M).to_dense(), 2.5 * W) < 1e-13
        assert _err(lo.diag(M), np.diag(W)) < 1e-13 and abs(lo.trace(M) - np.trace(W)) < 1e-12
        assert _err(M.as_lowrank().to_dense(), W) < 1e-13
        S = M + lo.MLR.random(n, ranks, seed=3)
        assert isinstance(S, lo.MLR) and S.ranks == tuple(2 * r for r in ranks)
    assert "einsum_rules" in lo.explain(lo.diag, M) and "einsum_rules" in lo.explain(lo.trace, M)


def test_mlr_psd_and_woodbury_through_as_lowrank():
    rng = np.random.default_rng(4)
    Us = [rng.standard_normal((2**l, 16 // 2**l, 2)) for l in range(3)]
    M = lo.MLR(Us, n=15)
    assert "PSD" in M.annotations and isinstance(M + M, lo.MLR) and "PSD" in (M + M).annotations
    W = mlr_twin(Us, Us, 15)
    D = lo.Diagonal(np.linspace(1.0, 2.0, 15))
    b = rng.standard_normal(15)
    ref = np.linalg.solve(np.diag(np.linspace(1.0, 2.0, 15)) + W, b)
    S = D + M.as_lowrank()
    assert "Woodbury" in lo.explain(lo.solve, S) or "low rank" in lo.explain(lo.solve, S)
    assert _err(lo.solve(S, b), ref) < 1e-10
    assert _err(lo.solve(D + M, b), ref) < 1e-10  # generic route, same answer


def test_banded_mlr():
    rng = np.random.default_rng(5)
    for n, ranks, w in [(16, (1, 2, 1), 1), (13, (2, 1, 1, 1), 2), (16, (1, 1, 2), 0)]:
        B = lo.BandedMLR.random(n, ranks, bandwidth=w, seed=6)
        Us, Vs = [np.asarray(u) for u in B.U], [np.asarray(v) for v in B.V]
        W = banded_mlr_twin(Us, Vs, n)
        X = rng.standard_normal((n, 3))
        assert _err(B @ X, W @ X) < 1e-13 and _err(X.T @ B, X.T @ W) < 1e-13
        assert _err(lo.diag(B), np.diag(W)) < 1e-13 and abs(lo.trace(B) - np.trace(W)) < 1e-12
        N = B.padded_size
        used = sum(2 * (N // 2**l) * r * sum(max(2**l - abs(o), 0) for o in range(-w, w + 1)) for l, r in enumerate(ranks))
        assert B.num_params == used
        if w == 0:  # bandwidth 0 is MLR
            M = lo.MLR([(u[0], v[0]) for u, v in zip(B.U, B.V, strict=True)], n)
            assert _err(M.to_dense(), W) < 1e-13


def test_mlr_validation():
    with pytest.raises(lo.ShapeError, match="must have 2\\^1 = 2 blocks"):
        lo.MLR([np.ones((1, 8, 1)), np.ones((3, 8, 1))])
    with pytest.raises(lo.ShapeError, match="covers"):
        lo.MLR([np.ones((1, 8, 1)), np.ones((2, 3, 1))])
    with pytest.raises(lo.ShapeError, match="must lie in"):
        lo.MLR([np.ones((1, 8, 1)), np.ones((2, 4, 1))], n=6)
    with pytest.raises(lo.ShapeError, match="3-D"):
        lo.MLR([np.ones((8, 1))])
    with pytest.raises(ValueError, match="non-empty list"):
        lo.MLR([])
    with pytest.raises(lo.ShapeError, match="odd leading size"):
        lo.BandedMLR([(np.ones((2, 1, 8, 1)), np.ones((2, 1, 8, 1)))])
