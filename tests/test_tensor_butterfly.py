"""TensorTrain and Butterfly: TT-SVD, transform identities, exact rules, counts and errors.

The dense grid (products, functions, gradients, jit) runs through the zoo cases of
``tests/zoo_tensor.py``. Tolerances: 1e-12 relative to the largest reference entry for
float64/complex128, 1e-5 for float32/complex64 (n = 1024 transforms: 10 butterfly levels).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.linalg

import linops as lo

from .zoo import CONFIGS, to_np
from .zoo_tensor import butterfly_twin, tt_twin

REAL = [c for c in CONFIGS if not c.complex]


def rel_err(got, ref) -> float:
    return float(np.abs(to_np(got) - ref).max() / np.abs(ref).max())


def tol_of(cfg) -> float:
    return 1e-5 if cfg.single else 1e-12


def random_cores(rng, ns, ms, ranks, complex_=False):
    def draw(*shape):
        a = rng.standard_normal(shape)
        return a + 1j * rng.standard_normal(shape) if complex_ else a

    return [draw(ranks[k], ms[k], ns[k], ranks[k + 1]) for k in range(len(ns))]


class Counting(np.ndarray):
    """A numpy array that counts the arithmetic done on it: elementwise +, -, * count one per
    output entry; ``matmul`` counts 2 per multiply-add (the op-count of the contraction path)."""

    ops = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        args = [np.asarray(x) if isinstance(x, Counting) else x for x in inputs]
        out = getattr(ufunc, method)(*args, **kw)
        if ufunc in (np.multiply, np.add, np.subtract):
            Counting.ops += out.size
        elif ufunc is np.matmul:
            Counting.ops += 2 * out.size * args[0].shape[-1]
        return out.view(Counting) if isinstance(out, np.ndarray) else out

    def __array_function__(self, func, types, args, kwargs):
        out = super().__array_function__(func, types, args, kwargs)
        return out.view(Counting) if isinstance(out, np.ndarray) else out


def counted(fn, X):
    Counting.ops = 0
    out = fn(X.view(Counting))
    return Counting.ops, np.asarray(out)


# ---------------------------------------------------------------------------------- TensorTrain
TT_GRIDS = [((2, 2, 2), (2, 2, 2), (1, 2, 2, 1)), ((3, 4), (4, 2), (1, 3, 1)), ((2, 3, 2, 2), (3, 2, 2, 2), (1, 2, 3, 2, 1))]


TT_PARAMS = [(c, TT_GRIDS[0]) for c in CONFIGS] + [(c, g) for g in TT_GRIDS[1:] for c in (CONFIGS[0], CONFIGS[2], CONFIGS[4])]


@pytest.mark.parametrize("cfg,grid", TT_PARAMS, ids=[f"{c.id}-{len(g[0])}cores" for c, g in TT_PARAMS])
def test_tt_svd_recovers_a_tt_matrix_at_its_ranks(cfg, grid):
    ns, ms, ranks = grid
    rng = np.random.default_rng(sum(ns))
    cores = random_cores(rng, ns, ms, ranks, cfg.complex)
    D = tt_twin(cores, int(np.prod(ns)), int(np.prod(ms)))
    W, err, bound = lo.tt_project(cfg.arr(D), list(ranks), grid=(ns, ms), return_bound=True)
    assert W.ranks == tuple(ranks) and W.grid == (ns, ms)
    tol = 1e-5 if cfg.single else 1e-11
    assert float(to_np(err)) < tol and float(to_np(bound)) < tol
    assert rel_err(W.to_dense(), D) < tol


@pytest.mark.parametrize("d_in,d_out,d", [(16, 16, 2), (24, 18, 3), (30, 17, 2), (10, 9, 3), (32, 32, 4)])
def test_tt_svd_error_is_exact_and_within_the_bound(d_in, d_out, d):
    rng = np.random.default_rng(d_in * d)
    M = rng.standard_normal((d_out, d_in))
    errors = []
    for rank in (1, 2, 3, 5, None):
        W, err, bound = lo.tt_project(M, rank, d=d, return_bound=True)
        direct = np.linalg.norm(W.to_dense() - M) / np.linalg.norm(M)
        assert abs(float(err) - direct) < 1e-12  # the returned error is the exact one
        assert float(err) <= float(bound) * (1 + 1e-10) + 1e-14  # Oseledets' TT-SVD bound
        if not W.padded:  # orthogonal residuals: the bound is attained
            assert abs(float(err) - float(bound)) < 1e-12
        assert max(W.ranks) <= (rank or max(W.ranks))
        errors.append(float(err))
    assert errors[-1] < 1e-12  # no truncation: exact
    assert W.padded == ((d_in, d_out, d) in ((30, 17, 2), (10, 9, 3)))
    assert all(a >= b - 1e-12 for a, b in zip(errors[:-1], errors[1:], strict=True))  # more rank, never worse


def test_two_core_tt_svd_is_the_optimal_kronecker_rank_approximation():
    """d = 2: one SVD of the rearranged matrix R[(i1, j1), (i2, j2)] = M[(i1, i2), (j1, j2)] (Van
    Loan-Pitsianis), so the error equals the bound and the tail of R's singular values."""
    rng = np.random.default_rng(4)
    M = rng.standard_normal((12, 20))
    (n1, n2), (m1, m2) = (4, 5), (3, 4)
    R = M.reshape(m1, m2, n1, n2).transpose(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)
    s = np.linalg.svd(R, compute_uv=False)
    for r in (1, 2, 4):
        W, err, bound = lo.tt_project(M, r, grid=((n1, n2), (m1, m2)), return_bound=True)
        ref = np.sqrt(np.sum(s[r:] ** 2)) / np.linalg.norm(M)
        assert abs(float(err) - ref) < 1e-12 and abs(float(bound) - ref) < 1e-12


def test_tt_products_padding_and_transpose_against_the_twin():
    rng = np.random.default_rng(2)
    ns, ms, ranks = (3, 2, 2), (2, 3, 2), (1, 2, 3, 1)
    cores = random_cores(rng, ns, ms, ranks)
    W = lo.TensorTrain(cores, d_in=10, d_out=11)
    D = tt_twin(cores, 10, 11)
    X, Y = rng.standard_normal((10, 3)), rng.standard_normal((4, 11))
    np.testing.assert_allclose(W @ X, D @ X, atol=1e-12)
    np.testing.assert_allclose(Y @ W, Y @ D, atol=1e-12)
    np.testing.assert_allclose(W.T.to_dense(), D.T, atol=1e-12)
    np.testing.assert_allclose((2.5 * W).to_dense(), 2.5 * D, atol=1e-12)
    assert W.padded and "3 cores, ranks (1, 2, 3, 1)" in repr(W)


def test_two_core_tt_is_a_btt_of_the_same_rank():
    rng = np.random.default_rng(6)
    cores = random_cores(rng, (3, 4), (5, 2), (1, 3, 1))
    W = lo.TensorTrain(cores, d_in=11, d_out=9)
    B = W.as_btt()
    assert isinstance(B, lo.BTT) and B.grid == ((3, 4), (5, 2), 3)
    np.testing.assert_allclose(B.to_dense(), tt_twin(cores, 11, 9), atol=1e-12)
    assert W.num_params < B.num_params  # the BTT repeats the TT's cores across blocks
    with pytest.raises(lo.ShapeError, match="two-core"):
        lo.TensorTrain(random_cores(rng, (2, 2, 2), (2, 2, 2), (1, 1, 1, 1))).as_btt()


def test_tt_counts_match_the_contraction_path():
    rng = np.random.default_rng(0)
    ns, ms, ranks = (3, 2, 4), (2, 5, 3), (1, 2, 3, 1)
    W = lo.TensorTrain(random_cores(rng, ns, ms, ranks), d_in=20, d_out=25)
    assert W.num_params == sum(G.size for G in W.cores) == sum(ranks[k] * ms[k] * ns[k] * ranks[k + 1] for k in range(3))
    X, Y = rng.standard_normal((20, 7)), rng.standard_normal((7, 25))
    ops, out = counted(W._matmat, X)
    assert ops == W.flops(7) and np.allclose(out, tt_twin(W.cores, 20, 25) @ X)
    ops, out = counted(W._rmatmat, Y)
    assert ops == W.T.flops(7) and np.allclose(out, Y @ tt_twin(W.cores, 20, 25))
    # the docstring's formula, spelled out: first core first
    expect = 2 * 7 * (1 * 2 * 2 * 3 * 1 * (2 * 4) + 2 * 3 * 5 * 2 * 2 * 4 + 3 * 1 * 3 * 4 * (2 * 5) * 1)
    assert W.flops(7) == expect
    S = lo.TensorTrain(random_cores(rng, (2, 3, 2), (2, 3, 2), (1, 2, 2, 1)))
    assert counted(S._rmatmat, rng.standard_normal((3, 12)))[0] == S.flops(3) == S.T.flops(3)


def test_tt_shapes():
    assert lo.tt_shapes(1024, 4096, 3) == ((16, 8, 8), (16, 16, 16))
    assert lo.tt_shapes(8, 12, 2) == ((4, 2), (4, 3))
    assert lo.tt_shapes(10, 7, 3) == ((3, 2, 2), (2, 2, 2))  # no balanced exact factorisation: padded
    assert lo.tt_shapes(1031, 5, 1) == ((1031,), (5,))
    for D, d in ((7, 2), (1000, 3), (97, 3), (4096, 4)):
        g, _ = lo.tt_shapes(D, D, d)
        assert len(g) == d and np.prod(g) >= D and max(g) <= 2 * min(g) + 1


def test_rank_one_tt_rules_go_through_kronecker():
    rng = np.random.default_rng(1)
    mats = [rng.standard_normal((n, n)) + 3 * np.eye(n) for n in (2, 3, 2)]
    W = lo.TensorTrain([m[None, :, :, None] for m in mats])
    D = np.kron(np.kron(mats[0], mats[1]), mats[2])
    for fn in (lo.inv, lo.slogdet):
        assert "structure rule for TensorTrain" in lo.explain(fn, W)
    assert isinstance(lo.inv(W), lo.Kronecker)
    b = rng.standard_normal(12)
    np.testing.assert_allclose(lo.solve(W, b), np.linalg.solve(D, b), rtol=1e-10)
    sign, logabs = lo.slogdet(W)
    ref = np.linalg.slogdet(D)
    assert sign == ref[0] and abs(logabs - ref[1]) < 1e-10
    # Hermitian cores: eigh through the Kronecker rule
    spd = [m @ m.T + np.eye(len(m)) for m in mats]
    S = lo.PSD(lo.TensorTrain([m[None, :, :, None] for m in spd]))
    w, V = lo.eigh(S)
    Sd = np.kron(np.kron(spd[0], spd[1]), spd[2])
    np.testing.assert_allclose(w, np.linalg.eigvalsh(Sd), rtol=1e-10)
    assert "structure rule for TensorTrain" in lo.explain(lo.eigh, S)
    np.testing.assert_allclose(Sd @ V.to_dense(), V.to_dense() * w, atol=1e-10)
    # W symmetric although its cores are not (antisymmetric ⊗ antisymmetric): the generic rule
    J = np.array([[0.0, 1.0], [-1.0, 0.0]])
    A = lo.SelfAdjoint(lo.TensorTrain([J[None, :, :, None], 2 * J[None, :, :, None]]))
    assert "does not apply" in lo.explain(lo.eigh, A)
    np.testing.assert_allclose(lo.eigh(A)[0], np.linalg.eigvalsh(np.kron(J, 2 * J)), atol=1e-12)
    # rank 2, or padded: generic rules, still right
    cores = random_cores(rng, (2, 2), (2, 2), (1, 2, 1))
    cores[0][0, :, :, 0] += 3 * np.eye(2)
    cores[1][0, :, :, 0] += 3 * np.eye(2)
    T2 = lo.TensorTrain(cores)
    assert "does not apply" in lo.explain(lo.inv, T2)
    np.testing.assert_allclose(lo.inv(T2).to_dense(), np.linalg.inv(tt_twin(cores, 4, 4)), atol=1e-10)
    padded = lo.TensorTrain([m[None, :, :, None] for m in mats], d_in=11, d_out=11)
    assert "does not apply" in lo.explain(lo.slogdet, padded)
    assert abs(lo.slogdet(padded)[1] - np.linalg.slogdet(D[:11, :11])[1]) < 1e-10


def test_tt_bad_input():
    G = np.ones((1, 2, 2, 1))
    with pytest.raises(lo.ShapeError, match="4-D"):
        lo.TensorTrain([np.ones((2, 2))])
    with pytest.raises(lo.ShapeError, match="non-empty"):
        lo.TensorTrain([])
    with pytest.raises(lo.ShapeError, match="rank 1"):
        lo.TensorTrain([np.ones((1, 2, 2, 2))])
    with pytest.raises(lo.ShapeError, match="must match"):
        lo.TensorTrain([np.ones((1, 2, 2, 2)), np.ones((3, 2, 2, 1))])
    with pytest.raises(lo.ShapeError, match="d_in"):
        lo.TensorTrain([G, G], d_in=5)
    with pytest.raises(lo.ShapeError, match="only a rank-1"):
        lo.TensorTrain([np.ones((1, 2, 2, 2)), np.ones((2, 2, 2, 1))]).as_kronecker()
    with pytest.raises(ValueError, match="positive integer"):
        lo.tt_shapes(0, 4, 2)
    with pytest.raises(ValueError, match="interior ranks"):
        lo.tt_project(np.ones((8, 8)), [2, 2], d=2)
    with pytest.raises(ValueError, match="maximal rank"):
        lo.tt_project(np.ones((8, 8)), 0)
    with pytest.raises(lo.ShapeError, match="fewer"):
        lo.tt_project(np.ones((8, 8)), 2, grid=((2, 2), (2, 2)))
    with pytest.raises(lo.ShapeError, match="2-D"):
        lo.tt_project(np.ones(8), 2)


# ------------------------------------------------------------------------------------ Butterfly
N = 1024


def _to(cfg, a):
    """``a`` as an array of the configuration's backend, keeping its numpy dtype (real or complex)."""
    if cfg.backend == "torch":
        import torch

        return torch.as_tensor(a, device=cfg.device)
    if cfg.backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(a)
    return a


def _products(F, H, C, xc, x, xr):
    return F @ xc, H @ x, C @ xr


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_fft_hadamard_dct_identities_at_1024(cfg):
    kw = dict(dtype=cfg.native_dtype(), backend=cfg.backend, device=cfg.device)
    tol = tol_of(cfg)
    rng = np.random.default_rng(N)
    xr = rng.standard_normal((N, 3)).astype(np.float32 if cfg.single else np.float64)
    xc = (xr + 1j * rng.standard_normal((N, 3))).astype(np.complex64 if cfg.single else np.complex128)
    x = xc if cfg.complex else xr
    F = lo.Butterfly.fft(N, **kw)  # complex of the configuration's precision
    C = lo.Butterfly.dct(N, **kw)  # real of the configuration's precision
    assert F.num_params == 2 * N * 10 and F.xp.name == cfg.backend and C.xp.name == cfg.backend
    assert isinstance(C, lo.RealPart) and "Unitary" in C.annotations
    run = _products
    if cfg.backend == "jax":  # one compilation: eager JAX would compile each small op of the 10 levels
        import jax

        run = jax.jit(_products)
    fft, had, dct = run(F, lo.Butterfly.hadamard(N, **kw), C, _to(cfg, xc), _to(cfg, x), _to(cfg, xr))
    assert rel_err(fft, np.fft.fft(xc, axis=0)) < tol
    assert rel_err(had, scipy.linalg.hadamard(N) @ x) < tol
    assert rel_err(dct, scipy.fft.dct(xr, axis=0, norm="ortho")) < tol


NO_JAX = [c for c in CONFIGS if c.backend != "jax"]


@pytest.mark.parametrize("cfg", NO_JAX, ids=[c.id for c in NO_JAX])
def test_ifft_ortho_and_row_products_at_1024(cfg):
    """The other transforms and ``x @ B`` (JAX runs them through the zoo grid at n = 8)."""
    kw = dict(dtype=cfg.native_dtype(), backend=cfg.backend, device=cfg.device)
    tol = tol_of(cfg)
    rng = np.random.default_rng(N + 1)
    xr = rng.standard_normal((N, 3)).astype(np.float32 if cfg.single else np.float64)
    xc = (xr + 1j * rng.standard_normal((N, 3))).astype(np.complex64 if cfg.single else np.complex128)
    assert rel_err(lo.Butterfly.ifft(N, **kw) @ _to(cfg, xc), np.fft.ifft(xc, axis=0)) < tol
    Fo = lo.Butterfly.fft(N, norm="ortho", **kw)
    assert "Unitary" in Fo.annotations
    y = Fo @ _to(cfg, xc)
    assert rel_err(y, np.fft.fft(xc, axis=0, norm="ortho")) < tol
    assert rel_err(Fo.H @ y, xc) < tol
    assert rel_err(_to(cfg, xc).T @ lo.Butterfly.fft(N, **kw), np.fft.fft(xc, axis=0).T) < tol  # F is symmetric
    Cd = scipy.fft.dct(np.eye(N), axis=0, norm="ortho")  # the DCT matrix: Cd @ x == dct(x)
    assert rel_err(_to(cfg, xr).T @ lo.Butterfly.dct(N, **kw), xr.T @ Cd) < tol


def test_fft_matches_numpy_to_1e12_and_dct_on_complex_input():
    rng = np.random.default_rng(0)
    for n in (2, 4, 64, 1024):
        x = rng.standard_normal(n) + 1j * rng.standard_normal(n)
        ref = np.fft.fft(x)
        assert np.abs(lo.Butterfly.fft(n) @ x - ref).max() <= 1e-12 * np.abs(ref).max()
    C = lo.Butterfly.dct(16)
    z = rng.standard_normal((16, 2)) + 1j * rng.standard_normal((16, 2))
    np.testing.assert_allclose(C @ z, scipy.fft.dct(z, axis=0, norm="ortho"), atol=1e-13)
    np.testing.assert_allclose(lo.inv(C).to_dense(), scipy.fft.idct(np.eye(16), axis=0, norm="ortho"), atol=1e-13)


RULE_CONFIGS = NO_JAX + [c for c in CONFIGS if c.id == "jax-float64"]  # the zoo grid runs every config at n = 8


@pytest.mark.parametrize("cfg", RULE_CONFIGS, ids=[c.id for c in RULE_CONFIGS])
def test_butterfly_inverse_and_logdet_rules(cfg):
    rng = np.random.default_rng(5)
    n = 16
    blocks = rng.standard_normal((4, n // 2, 2, 2)) + 1.2 * np.eye(2)
    if cfg.complex:
        blocks = blocks + 0.5j * rng.standard_normal(blocks.shape)
    blocks = blocks.astype(cfg.dtype)
    for bitrev in (True,) if cfg.backend == "jax" else (False, True):  # eager JAX is slow: one variant
        B = lo.Butterfly(cfg.arr(blocks), bit_reversal=bitrev)
        D = butterfly_twin(blocks.astype(np.complex128), bitrev)
        assert "structure rule for Butterfly" in lo.explain(lo.inv, B)
        Binv = lo.inv(B)
        assert isinstance(Binv, lo.Butterfly) and Binv.reverse and Binv.bit_reversal == bitrev
        scale = 100 * (1e-5 if cfg.single else 1e-12)
        assert rel_err(Binv.to_dense(), np.linalg.inv(D)) < scale
        assert rel_err(lo.inv(Binv).to_dense(), D) < scale  # reverse=True inverts back to reverse=False
        sign, logabs = lo.slogdet(B)
        s_ref, l_ref = np.linalg.slogdet(D)
        assert abs(complex(to_np(sign)) - s_ref) < scale and abs(float(to_np(logabs)) - l_ref) < scale * abs(l_ref)


def test_butterfly_logdet_sign_includes_the_bit_reversal():
    B = lo.Butterfly.hadamard(8)  # det(H_8) = 8^4 > 0 ... and with the bit reversal's parity
    P = lo.Butterfly(B.blocks, bit_reversal=True)
    for op in (B, P, lo.Butterfly.random(16, seed=1, bit_reversal=True), lo.Butterfly.random(4, seed=2)):
        s, la = lo.slogdet(op)
        ref = np.linalg.slogdet(op.to_dense())
        assert s == ref[0] and abs(la - ref[1]) < 1e-12


def test_butterfly_singular_block():
    blocks = np.tile(np.eye(2), (2, 2, 1, 1))
    blocks[1, 1] = [[1.0, 2.0], [2.0, 4.0]]
    with pytest.raises(lo.SingularMatrixError, match="block 1 of factor 1"):
        lo.inv(lo.Butterfly(blocks))
    assert lo.slogdet(lo.Butterfly(blocks))[0] == 0


def test_random_butterfly_is_orthogonal_and_unitary_for_complex():
    for dtype in (np.float64, np.complex128):
        B = lo.Butterfly.random(64, seed=3, dtype=dtype, bit_reversal=True)
        D = B.to_dense()
        assert "Unitary" in B.annotations and D.dtype == dtype
        np.testing.assert_allclose(D.conj().T @ D, np.eye(64), atol=1e-13)
        np.testing.assert_allclose(D, butterfly_twin(B.blocks, True), atol=1e-14)
    a, b = lo.Butterfly.random(8, seed=1).blocks, lo.Butterfly.random(8, seed=2).blocks
    assert not np.allclose(a, b) and np.array_equal(a, lo.Butterfly.random(8, seed=1).blocks)


def test_butterfly_counts_match_the_product():
    rng = np.random.default_rng(0)
    n, L, c = 64, 6, 5
    B = lo.Butterfly(rng.standard_normal((L, n // 2, 2, 2)), bit_reversal=True)
    assert B.num_params == B.blocks.size == 2 * n * L
    X, Y = rng.standard_normal((n, c)), rng.standard_normal((c, n))
    D = butterfly_twin(B.blocks, True)
    ops, out = counted(B._matmat, X)
    assert ops == B.flops(c) == 3 * c * n * L and np.allclose(out, D @ X)
    ops, out = counted(B._rmatmat, Y)
    assert ops == B.flops(c) and np.allclose(out, Y @ D)
    assert B.flops(1) < 2 * n * n


def test_butterfly_bad_input():
    with pytest.raises(lo.ShapeError, match="power of two"):
        lo.Butterfly.fft(12)
    with pytest.raises(lo.ShapeError, match="power of two"):
        lo.Butterfly.hadamard(1)
    with pytest.raises(lo.ShapeError, match=r"\(L, n/2, 2, 2\)"):
        lo.Butterfly(np.ones((3, 4, 2)))
    with pytest.raises(lo.ShapeError, match="2\\^\\(L-1\\)"):
        lo.Butterfly(np.ones((3, 3, 2, 2)))
    with pytest.raises(ValueError, match="norm"):
        lo.Butterfly.fft(8, norm="unitary")
    with pytest.raises(TypeError, match="LinearOperator"):
        lo.RealPart(np.eye(3))
    with pytest.raises(lo.ShapeError, match="cannot apply"):
        lo.Butterfly.fft(8) @ np.ones(6)


def test_tt_svd_under_jit():
    import jax
    import jax.numpy as jnp

    M = jnp.asarray(np.random.default_rng(8).standard_normal((8, 8)))
    W, err = jax.jit(lambda M: lo.tt_project(M, 2, grid=((2, 2, 2), (2, 2, 2))))(M)
    W2, err2 = lo.tt_project(np.asarray(M), 2, grid=((2, 2, 2), (2, 2, 2)))
    np.testing.assert_allclose(W.to_dense(), W2.to_dense(), atol=1e-10)
    assert abs(float(err) - float(err2)) < 1e-12
