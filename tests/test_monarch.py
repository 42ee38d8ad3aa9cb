"""Monarch: shapes, the analytic projection, counts and errors (the dense grid runs through the zoo)."""

from __future__ import annotations

import numpy as np
import pytest

import linops as lo

from .zoo import CONFIGS, to_np
from .zoo_structured import monarch_twin

REAL = [c for c in CONFIGS if not c.complex]
SHAPES = [(16, 16, 4), (12, 20, 3), (30, 17, 4), (10, 10, 3), (64, 64, 8)]


def _random(rng, d_in, d_out, nblocks):
    (k, q, p), (l_, s, r) = lo.monarch_shapes(d_in, d_out, nblocks)
    return rng.standard_normal((k, q, p)), rng.standard_normal((l_, s, r))


@pytest.mark.parametrize("cfg", REAL, ids=[c.id for c in REAL])
@pytest.mark.parametrize("d_in,d_out,nblocks", SHAPES)
def test_projection_recovers_a_monarch_matrix(cfg, d_in, d_out, nblocks):
    rng = np.random.default_rng(d_in + d_out)
    R, L = _random(rng, d_in, d_out, nblocks)
    D = monarch_twin(R, L, d_in, d_out)
    M, err = lo.monarch_project(cfg.arr(D), nblocks)
    tol = 1e-10 if not cfg.single else 1e-5
    assert float(to_np(err)) < tol
    assert np.abs(to_np(M.to_dense()) - D).max() < tol * max(1.0, np.abs(D).max()) * 10


@pytest.mark.parametrize("d_in,d_out,nblocks", SHAPES[:4])
def test_projection_is_the_best_monarch(d_in, d_out, nblocks):
    rng = np.random.default_rng(3)
    D = rng.standard_normal((d_out, d_in))
    M, err = lo.monarch_project(D, nblocks)
    err = float(err)
    direct = np.linalg.norm(M.to_dense() - D) / np.linalg.norm(D)
    assert abs(direct - err) < 1e-12
    # never beaten by random Monarch matrices, nor by perturbations of the projection itself
    for _ in range(20):
        R, L = _random(rng, d_in, d_out, nblocks)
        assert np.linalg.norm(monarch_twin(R, L, d_in, d_out) - D) / np.linalg.norm(D) >= err
        dR = 1e-3 * rng.standard_normal(M.R.shape)
        dL = 1e-3 * rng.standard_normal(M.L.shape)
        near = lo.Monarch(M.R + dR, M.L + dL, d_in, d_out).to_dense()
        assert np.linalg.norm(near - D) / np.linalg.norm(D) >= err - 1e-12


def test_counts_match_the_einsum_path():
    M = lo.Monarch(np.ones((4, 5, 3)), np.ones((4, 6, 5)), d_in=11, d_out=22)
    (k, q, p), (l_, s, r) = M.blocks
    assert M.num_params == M.R.size + M.L.size == k * q * p + l_ * s * r
    # the two einsums 'kqp,kpc->kqc' and 'lsr,lrc->lsc' do k q p c and l s r c multiply-adds
    c = 7
    assert M.flops(c) == 2 * (k * q * p * c + l_ * s * r * c)
    assert M.flops(1) < 2 * 11 * 22


def test_square_monarch_is_inverted_blockwise_without_forming_it():
    rng = np.random.default_rng(0)
    R = rng.standard_normal((8, 8, 8)) / 3 + 2 * np.eye(8)
    L = rng.standard_normal((8, 8, 8)) / 3 + 2 * np.eye(8)
    M = lo.Monarch(R, L)
    D = monarch_twin(R, L, 64, 64)
    assert "structure rule for Monarch" in lo.explain(lo.inv, M)
    b = rng.standard_normal(64)
    np.testing.assert_allclose(lo.solve(M, b), np.linalg.solve(D, b), rtol=1e-10, atol=1e-12)
    sign, logabs = lo.slogdet(M)
    s_ref, l_ref = np.linalg.slogdet(D)
    assert sign == s_ref and abs(logabs - l_ref) < 1e-10
    padded = lo.Monarch(R, L, d_in=60, d_out=60)
    assert "does not apply" in lo.explain(lo.inv, padded)


def test_bad_shapes_raise_shape_errors():
    with pytest.raises(lo.ShapeError, match="intermediate"):
        lo.Monarch(np.ones((3, 4, 3)), np.ones((3, 4, 5)))
    with pytest.raises(lo.ShapeError, match="d_in"):
        lo.Monarch(np.ones((3, 3, 3)), np.ones((3, 3, 3)), d_in=5)
    with pytest.raises(lo.ShapeError, match="3-D"):
        lo.Monarch(np.ones((9, 9)), np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="nblocks"):
        lo.monarch_shapes(4, 4, 5)
    with pytest.raises(lo.ShapeError, match="padded"):
        lo.Monarch(np.ones((3, 3, 3)), np.ones((3, 3, 3)), d_in=8).factors()


# --------------------------------------------------------------------------------------- BTT
BTT_SHAPES = [(16, 16, 1), (12, 20, 2), (30, 17, 3), (64, 48, 4)]


@pytest.mark.parametrize("cfg", REAL, ids=[c.id for c in REAL])
@pytest.mark.parametrize("d_in,d_out,rank", BTT_SHAPES)
def test_btt_projection_recovers_a_btt_matrix(cfg, d_in, d_out, rank):
    from .zoo_structured import btt_twin

    rng = np.random.default_rng(d_in * rank)
    (n1, n2), (m1, m2) = lo.btt_shapes(d_in, d_out)
    R, L = rng.standard_normal((n1, m2, rank, n2)), rng.standard_normal((m2, m1, n1, rank))
    D = btt_twin(R, L, d_in, d_out)
    W, err = lo.btt_project(cfg.arr(D), rank)
    tol = 1e-10 if not cfg.single else 1e-5
    assert float(to_np(err)) < tol
    assert np.abs(to_np(W.to_dense()) - D).max() < 10 * tol * max(1.0, np.abs(D).max())
    # a lower rank cannot do better than a higher one, and every projection beats random BTTs
    if rank > 1 and not cfg.single:
        _, lower = lo.btt_project(D, rank - 1)
        assert float(lower) >= float(err)


def test_btt_projection_is_the_best_btt():
    from .zoo_structured import btt_twin

    rng = np.random.default_rng(5)
    D = rng.standard_normal((20, 12))
    for rank in (1, 2, 3):
        W, err = lo.btt_project(D, rank)
        (n1, n2), (m1, m2) = lo.btt_shapes(12, 20)
        for _ in range(10):
            R, L = rng.standard_normal((n1, m2, rank, n2)), rng.standard_normal((m2, m1, n1, rank))
            assert np.linalg.norm(btt_twin(R, L, 12, 20) - D) >= float(err) * np.linalg.norm(D)
            near = lo.BTT(W.R + 1e-3 * rng.standard_normal(W.R.shape), W.L + 1e-3 * rng.standard_normal(W.L.shape), 12, 20)
            assert np.linalg.norm(near.to_dense() - D) >= float(err) * np.linalg.norm(D) - 1e-12


def test_btt_rank_one_is_monarch_and_counts_match():
    rng = np.random.default_rng(1)
    W = lo.BTT(rng.standard_normal((4, 4, 1, 4)), rng.standard_normal((4, 4, 4, 1)))
    M = W.as_monarch()
    np.testing.assert_allclose(M.to_dense(), W.to_dense(), atol=1e-14)
    assert M.blocks == ((4, 4, 4), (4, 4, 4)) and M.is_block_square
    W3 = lo.BTT(np.ones((3, 5, 2, 4)), np.ones((5, 6, 3, 2)))
    # einsums 'iuaj,ijc->iuac' (n1 m2 r n2 c) and 'uoia,iuac->ouc' (m2 m1 n1 r c)
    assert W3.num_params == W3.R.size + W3.L.size
    assert W3.flops(3) == 2 * 3 * (3 * 5 * 2 * 4 + 5 * 6 * 3 * 2)


def test_btt_bad_cores():
    with pytest.raises(lo.ShapeError, match="4-D"):
        lo.BTT(np.ones((3, 3, 3)), np.ones((3, 3, 3, 1)))
    with pytest.raises(lo.ShapeError, match="needs L of shape"):
        lo.BTT(np.ones((3, 4, 2, 3)), np.ones((4, 3, 3, 1)))
    with pytest.raises(ValueError, match="rank"):
        lo.btt_project(np.ones((4, 4)), 0)
