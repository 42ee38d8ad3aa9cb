"""Every dispatched function on every zoo operator against a dense numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla

import linops as lo

from .helpers import assert_close, rhs
from .zoo import CASE_IDS, CASES, to_np

SQUARE = [c for c in CASES if c.square]
INVERTIBLE = [c for c in CASES if c.invertible]
SELF_ADJOINT = [c for c in CASES if c.self_adjoint]
PSD = [c for c in CASES if c.psd]


def ids(cases):
    return [c.name for c in cases]


@pytest.mark.parametrize("case", INVERTIBLE, ids=ids(INVERTIBLE))
def test_solve_and_inverse(case, cfg):
    op, M = case.make(cfg)
    n = M.shape[0]
    b, bn = rhs(cfg, n)
    B, Bn = rhs(cfg, n, 3)
    ref = np.linalg.solve(M, bn)
    assert_close(lo.solve(op, b), ref, cfg, scale=max(1, np.abs(ref).max()), factor=10)
    Ainv = lo.inv(op)
    assert_close(Ainv @ B, np.linalg.solve(M, Bn), cfg, factor=10)
    assert_close(B.T @ Ainv, Bn.T @ np.linalg.inv(M), cfg, factor=10)
    assert_close(lo.inv(Ainv) @ b, M @ bn, cfg, factor=10)


@pytest.mark.parametrize("case", INVERTIBLE, ids=ids(INVERTIBLE))
def test_slogdet_logdet_det(case, cfg):
    op, M = case.make(cfg)
    sign_ref, logabs_ref = np.linalg.slogdet(M)
    sign, logabs = lo.slogdet(op)
    assert_close(logabs, logabs_ref, cfg, factor=10)
    assert_close(sign, sign_ref, cfg, factor=10)
    assert_close(lo.det(op), np.linalg.det(M), cfg, scale=max(1, abs(np.linalg.det(M))), factor=10)
    if cfg.complex:
        ref = np.log(complex(sign_ref)) + logabs_ref
        got = to_np(lo.logdet(op))
        # compare modulo 2 pi i
        diff = np.exp(1j * (got.imag - ref.imag))
        assert abs(got.real - ref.real) < 10 * cfg.tol * max(1, abs(ref.real)) and abs(diff - 1) < 10 * cfg.tol
    elif np.real(sign_ref) > 0:
        assert_close(lo.logdet(op), logabs_ref, cfg, factor=10)
    else:
        with pytest.raises(lo.DomainError, match="negative"):
            lo.logdet(op)


@pytest.mark.parametrize("case", SQUARE, ids=ids(SQUARE))
def test_trace_and_diag(case, cfg):
    op, M = case.make(cfg)
    assert_close(lo.trace(op), np.trace(M), cfg)
    assert_close(lo.diag(op), np.diag(M), cfg)


@pytest.mark.parametrize("case", [c for c in CASES if not c.square], ids=ids([c for c in CASES if not c.square]))
def test_diag_rectangular(case, cfg):
    op, M = case.make(cfg)
    assert_close(lo.diag(op), np.diag(M), cfg)


@pytest.mark.parametrize("case", SELF_ADJOINT, ids=ids(SELF_ADJOINT))
def test_eigh(case, cfg):
    op, M = case.make(cfg)
    if case.name == "diagonal" and cfg.complex:
        pytest.skip("the complex diagonal case is not Hermitian")
    ref = np.linalg.eigvalsh(M)
    w, V = lo.eigh(op)
    assert_close(w, ref, cfg, factor=10)
    Vd = to_np(V.to_dense())
    assert_close(M @ Vd, Vd * to_np(w), cfg, factor=10)
    for which, expect in (("LA", ref[-2:]), ("SA", ref[:2])):
        wk, Vk = lo.eigh(op, k=2, which=which)
        assert_close(wk, expect, cfg, factor=10)
        Vkd = to_np(Vk.to_dense())
        assert Vkd.shape == (M.shape[0], 2)
        assert_close(M @ Vkd, Vkd * to_np(wk), cfg, factor=10)


@pytest.mark.parametrize("case", SQUARE, ids=ids(SQUARE))
def test_eig(case, cfg):
    op, M = case.make(cfg)
    if cfg.backend == "jax" and cfg.single and case.name in ("permutation",):
        pytest.skip("float32 eig of a permutation is ill-conditioned")
    w, V = lo.eig(op)
    wn, Vd = to_np(w), to_np(V.to_dense())
    ref = np.linalg.eigvals(M)
    # eigenvalues as multisets: each computed one has a reference partner
    dist = np.abs(wn[:, None] - ref[None, :]).min(axis=1)
    assert dist.max() <= 100 * cfg.tol * max(1, np.abs(ref).max())
    resid = np.abs(M @ Vd - Vd * wn).max() / max(1, np.abs(M).max())
    assert resid <= 100 * cfg.tol


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_svd(case, cfg):
    op, M = case.make(cfg)
    U, s, V = lo.svd(op)
    ref = np.linalg.svd(M, compute_uv=False)
    r = to_np(s).shape[0]  # compact: structure may omit singular values that are exactly zero
    assert r <= ref.shape[0]
    assert_close(s, ref[:r], cfg, factor=10)
    assert np.abs(ref[r:]).max(initial=0) <= 10 * cfg.tol * max(1, ref[0])
    rebuilt = to_np(U.to_dense()) * to_np(s) @ to_np(V.to_dense()).conj().T
    assert_close(rebuilt, M, cfg, factor=10)
    Uk, sk, Vk = lo.svd(op, k=1)
    assert_close(sk, ref[:1], cfg, factor=10)


@pytest.mark.parametrize("case", SQUARE, ids=ids(SQUARE))
def test_exp(case, cfg):
    op, M = case.make(cfg)
    small = op / 4
    ref = sla.expm(M / 4)
    assert_close(lo.exp(small).to_dense(), ref, cfg, factor=50)


@pytest.mark.parametrize("case", PSD, ids=ids(PSD))
@pytest.mark.parametrize("fn", ["sqrt", "isqrt", "log", "pow"])
def test_matrix_functions_psd(case, cfg, fn):
    op, M = case.make(cfg)
    w, Q = np.linalg.eigh(M)
    f = {"sqrt": np.sqrt, "isqrt": lambda x: 1 / np.sqrt(x), "log": np.log, "pow": lambda x: x**0.3}[fn]
    ref = (Q * f(w)) @ Q.conj().T
    out = lo.pow(op, 0.3) if fn == "pow" else getattr(lo, fn)(op)
    assert_close(out.to_dense(), ref, cfg, factor=50)
    x, xn = rhs(cfg, M.shape[0])
    assert_close(out @ x, ref @ xn, cfg, factor=50)


@pytest.mark.parametrize("case", PSD[:4], ids=ids(PSD[:4]))
def test_apply_user_function(case, cfg):
    op, M = case.make(cfg)
    w, Q = np.linalg.eigh(M)
    out = lo.apply(lambda x: 1 / (1 + x), op)
    assert_close(out.to_dense(), (Q / (1 + w)) @ Q.conj().T, cfg, factor=50)
