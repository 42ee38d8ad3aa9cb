"""Bad input gets a named exception that says what and where, never a silent wrong answer."""

from __future__ import annotations

import numpy as np
import pytest

import linops as lo

torch = pytest.importorskip("torch")
jnp = pytest.importorskip("jax.numpy")

rng = np.random.default_rng(0)
A3 = lo.Dense(rng.standard_normal((3, 3)))
R = lo.Dense(rng.standard_normal((3, 4)))


@pytest.mark.parametrize(
    "thunk, match",
    [
        (lambda: A3 @ np.ones(4), r"Dense\(3x3.*shape \(4,\)"),
        (lambda: np.ones(4) @ A3, r"shape \(4,\)"),
        (lambda: A3 + R, r"cannot add"),
        (lambda: A3 @ R.T, r"inner sizes 3 and 4"),
        (lambda: lo.Block([[A3, R], [R, A3]]), r"different widths|different heights"),
        (lambda: lo.Tridiagonal(np.ones(2), np.ones(4), np.ones(3)), "lengths n-1, n, n-1"),
        (lambda: lo.LowRank(np.ones((3, 2)), np.ones((3, 1))), "equal rank"),
        (lambda: lo.Dense(np.ones(3)), "2-D array"),
        (lambda: lo.solve(A3, np.ones(4)), "right-hand side of shape"),
    ],
)
def test_shape_errors(thunk, match):
    with pytest.raises(lo.ShapeError, match=match):
        thunk()


@pytest.mark.parametrize("fn", [lo.solve, lo.inv, lo.logdet, lo.slogdet, lo.eigh, lo.exp, lo.trace, lo.sqrt])
def test_not_square(fn):
    with pytest.raises(lo.NotSquareError, match="square"):
        fn(R, np.ones(3)) if fn is lo.solve else fn(R)


def test_mixed_backends_name_both():
    T = lo.Dense(torch.ones(3, 3))
    J = lo.Dense(jnp.ones((3, 3)))
    with pytest.raises(lo.BackendMismatchError, match="torch.*jax|jax.*torch"):
        T + J
    with pytest.raises(lo.BackendMismatchError, match="numpy.*torch|torch.*numpy"):
        lo.Kronecker(T, A3)
    with pytest.raises(lo.BackendMismatchError, match="torch.*numpy"):
        T @ np.ones(3)
    with pytest.raises(TypeError):  # BackendMismatchError is a TypeError
        lo.solve(T, jnp.ones(3))


def test_mixed_devices():
    cpu = lo.Dense(torch.ones(2, 2))
    meta = lo.Dense(torch.ones(2, 2, device="meta"))
    with pytest.raises(lo.DeviceMismatchError, match="cpu.*meta|meta.*cpu"):
        cpu + meta


@pytest.mark.parametrize(
    "op",
    [
        lo.Dense(np.array([[1.0, 2.0], [2.0, 4.0]])),
        lo.Diagonal(np.array([1.0, 0.0, 2.0])),
        lo.Kronecker(lo.Dense(np.eye(2)), lo.Dense(np.zeros((2, 2)))),
        lo.Triangular(np.array([[1.0, 0.0], [3.0, 0.0]])),
        lo.ScalarMul(0.0, 3),
    ],
    ids=["dense", "diagonal", "kronecker-factor", "triangular", "zero-scalar"],
)
def test_singular(op):
    with pytest.raises(lo.SingularMatrixError, match="singular"):
        lo.solve(op, np.ones(op.shape[0]))


def test_singular_slogdet_is_zero_not_an_error():
    sign, logabs = lo.slogdet(lo.Dense(np.array([[1.0, 2.0], [2.0, 4.0]])))
    assert sign == 0 and logabs == -np.inf


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_psd_promise_broken(backend):
    M = np.array([[1.0, 2.0], [2.0, 1.0]])  # symmetric, indefinite
    M = {"numpy": M, "torch": torch.tensor(M), "jax": jnp.asarray(M)}[backend]
    with pytest.raises(lo.NotPSDError, match="not positive definite"):
        lo.solve(lo.PSD(lo.Dense(M)), M[0] * 0 + 1)
    with pytest.raises(lo.NotPSDError):
        lo.logdet(lo.PSD(lo.Dense(M)))


def test_psd_promise_on_nonsymmetric_matrix():
    M = np.array([[2.0, 1.0], [0.0, 2.0]])
    with pytest.raises(lo.NotSelfAdjointError, match="not self-adjoint|self-adjoint"):
        lo.solve(lo.PSD(lo.Dense(M)), np.ones(2))
    with pytest.raises(lo.NotSelfAdjointError):
        lo.eigh(lo.Dense(M))


@pytest.mark.parametrize("fn", [lo.solve, lo.logdet, lo.eigh, lo.exp, lo.svd])
def test_non_finite(fn):
    M = np.array([[1.0, np.nan], [np.nan, 1.0]])
    with pytest.raises(lo.NonFiniteError, match="NaN or infinity"):
        fn(lo.Dense(M), np.ones(2)) if fn is lo.solve else fn(lo.Dense(M))


def test_logdet_negative_determinant():
    with pytest.raises(lo.DomainError, match="slogdet"):
        lo.logdet(lo.Diagonal(np.array([1.0, -2.0])))


def test_bad_options_and_arguments():
    with pytest.raises(TypeError):
        lo.CG if False else lo.Cholesky(tol=1e-3)  # unknown option
    with pytest.raises(TypeError, match="no rule"):
        lo.solve(A3, np.ones(3), alg=lo.Eigh())
    with pytest.raises(ValueError, match="which"):
        lo.eigh(lo.PSD(lo.Dense(np.eye(3))), k=1, which="XX")
    with pytest.raises(ValueError, match="k must be"):
        lo.eigh(lo.PSD(lo.Dense(np.eye(3))), k=4)
    with pytest.raises(TypeError, match="lo.Dense"):
        lo.solve(np.eye(3), np.ones(3))
    with pytest.raises(TypeError, match="wrap arrays"):
        A3 + np.eye(3)
    with pytest.raises(TypeError, match="A @ B"):
        A3 * A3
    with pytest.raises(IndexError, match="stay 2-D"):
        A3[0]
    with pytest.raises(IndexError, match="out of range"):
        A3[np.array([0, 5])]
    with pytest.raises(ValueError, match="not a permutation"):
        lo.Permutation([0, 0, 1])
    with pytest.raises(AttributeError, match="immutable"):
        A3.M = None
