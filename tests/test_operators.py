"""Every zoo operator against its dense twin: products on both sides, to_dense, .T, .H, slicing."""

from __future__ import annotations

import numpy as np
import pytest

import linops as lo

from .helpers import assert_close, rhs
from .zoo import CASE_IDS, CASES, to_np


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request):
    return request.param


def test_shape_dtype_backend(case, cfg):
    op, M = case.make(cfg)
    assert op.shape == M.shape
    assert op.xp.name == cfg.backend
    assert str(op.dtype).replace("torch.", "") == cfg.dtype


def test_to_dense(case, cfg):
    op, M = case.make(cfg)
    assert_close(op.to_dense(), M, cfg)
    assert_close(lo.to_dense(op), M, cfg)


def test_matvec_and_matmat(case, cfg):
    op, M = case.make(cfg)
    x, xn = rhs(cfg, M.shape[1])
    X, Xn = rhs(cfg, M.shape[1], 3)
    assert_close(op @ x, M @ xn, cfg)
    assert_close(op @ X, M @ Xn, cfg)


def test_row_major_products(case, cfg):
    """``x @ A`` for (m,), (k, m) and batched (b, k, m) inputs; ``x @ A.T`` for (n,)-rows."""
    op, M = case.make(cfg)
    y, yn = rhs(cfg, M.shape[0])
    Y, Yn = rhs(cfg, M.shape[0], 3)
    assert_close(y @ op, yn @ M, cfg)
    assert_close(Y.T @ op, Yn.T @ M, cfg)
    Z, Zn = rhs(cfg, 6, M.shape[1])
    assert_close(Z @ op.T, Zn @ M.T, cfg)
    batched = Y.T.reshape(1, 3, M.shape[0])
    assert_close(batched @ op, (Yn.T @ M).reshape(1, 3, M.shape[1]), cfg)


def test_transpose_and_adjoint(case, cfg):
    op, M = case.make(cfg)
    assert_close(op.T.to_dense(), M.T, cfg)
    assert_close(op.H.to_dense(), M.conj().T, cfg)
    x, xn = rhs(cfg, M.shape[0])
    assert_close(op.H @ x, M.conj().T @ xn, cfg)
    assert_close(op.T.T @ rhs(cfg, M.shape[1])[0], M @ rhs(cfg, M.shape[1])[1], cfg)


def test_algebra(case, cfg):
    op, M = case.make(cfg)
    assert_close((op + op).to_dense(), 2 * M, cfg)
    assert_close((op - 2.0 * op).to_dense(), -M, cfg)
    assert_close((-op).to_dense(), -M, cfg)
    assert_close((op / 4).to_dense(), M / 4, cfg)
    assert_close((op @ op.H).to_dense(), M @ M.conj().T, cfg)


def test_slicing(case, cfg):
    op, M = case.make(cfg)
    m, n = M.shape
    assert_close(op[1:, : n - 1].to_dense(), M[1:, : n - 1], cfg)
    rows = np.array([m - 1, 0, 1])
    assert_close(op[rows].to_dense(), M[rows], cfg)
    cols = np.array([n - 1, 1])
    sub = op[::2, cols]
    assert_close(sub @ rhs(cfg, 2)[0], M[::2][:, cols] @ rhs(cfg, 2)[1], cfg)
    assert_close(rhs(cfg, sub.shape[0])[0] @ sub, rhs(cfg, sub.shape[0])[1] @ M[::2][:, cols], cfg)


def test_repr_is_a_tree_with_shapes(case, cfg):
    op, M = case.make(cfg)
    text = repr(op)
    assert text.splitlines()[0].startswith(type(op).__name__ + f"({M.shape[0]}x{M.shape[1]}")
    for line in text.splitlines()[1:]:
        assert "─ " in line and "x" in line


def test_immutable(case, cfg):
    op, _ = case.make(cfg)
    with pytest.raises(AttributeError, match="immutable"):
        op.shape = (1, 1)


def test_annotations_propagate(case, cfg):
    op, _ = case.make(cfg)
    if case.psd:
        assert "PSD" in op.annotations, repr(op)
    if case.self_adjoint and not cfg.complex:
        assert "SelfAdjoint" in op.annotations, repr(op)
