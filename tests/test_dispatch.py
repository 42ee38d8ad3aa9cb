"""Dispatch hygiene: no ambiguity anywhere, the structured path is the one taken, explain is honest."""

from __future__ import annotations

import numpy as np
import pytest
from plum import Signature
from plum import AmbiguousLookupError

import linops as lo
from linops import algorithms, operators
from linops.functions import rules
from linops.operators.base import LinearOperator


def _subclasses(cls):
    out = set()
    for sub in cls.__subclasses__():
        out.add(sub)
        out |= _subclasses(sub)
    return out


OPERATOR_TYPES = sorted(_subclasses(LinearOperator), key=lambda c: c.__name__)
ALGORITHMS = sorted(_subclasses(algorithms.Algorithm) | {algorithms.Algorithm}, key=lambda c: c.__name__)
FUNCTIONS = [rules.inv, rules.slogdet, rules.diag, rules.trace, rules.eigh, rules.eig, rules.svd, rules.pinv]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_every_operator_algorithm_pair_resolves_unambiguously(fn):
    for op_type in OPERATOR_TYPES:
        for alg in ALGORITHMS:
            try:
                fn.resolve_method(Signature(op_type, alg))
            except AmbiguousLookupError as e:  # pragma: no cover - the failure we guard against
                pytest.fail(f"{fn.__name__}({op_type.__name__}, {alg.__name__}) is ambiguous: {e}")


def test_matrix_functions_resolve_unambiguously():
    for op_type in OPERATOR_TYPES:
        for alg in ALGORITHMS:
            rules.matfun.resolve_method(Signature(op_type, alg, object))


def test_kronecker_solve_never_forms_the_product(monkeypatch):
    """The structure rule factorises the factors only: forming the 4096 x 4096 product would be caught."""
    rng = np.random.default_rng(0)
    fs = [lo.PSD(lo.Dense(np.eye(16) * 2 + rng.standard_normal((16, 16)) * 0.01)) for _ in range(3)]
    fs = [lo.PSD(lo.Dense((f.M + f.M.T) / 2)) for f in fs]
    K = lo.Kronecker(*fs)

    def forbidden(self):
        raise AssertionError("the Kronecker product was formed")

    monkeypatch.setattr(lo.Kronecker, "to_dense", forbidden)
    b = rng.standard_normal(K.shape[0])
    x = lo.solve(K, b)
    np.testing.assert_allclose(K @ x, b, atol=1e-10)
    lo.logdet(K)
    lo.eigh(K, k=3)
    lo.trace(K)
    lo.diag(K)
    lo.sqrt(K)


def test_woodbury_never_forms_n_by_n(monkeypatch):
    rng = np.random.default_rng(1)
    n, r = 2000, 5
    U, d = rng.standard_normal((n, r)), rng.uniform(1, 2, n)
    A = lo.Dense(U) @ lo.Dense(U.T) + lo.Diagonal(d)
    monkeypatch.setattr(operators.Sum, "to_dense", lambda self: (_ for _ in ()).throw(AssertionError("formed")))
    b = rng.standard_normal(n)
    x = lo.solve(A, b)
    assert np.linalg.norm(A @ x - b) / np.linalg.norm(b) < 1e-12
    np.testing.assert_allclose(lo.logdet(A), np.linalg.slogdet(U @ U.T + np.diag(d))[1], rtol=1e-10)


def test_explain_reports_structure_and_auto_choice():
    D = lo.Dense(np.eye(3))
    text = lo.explain(lo.solve, lo.Kronecker(D, D))
    assert "structure rule for Kronecker" in text
    text = lo.explain(lo.solve, lo.PSD(D))
    assert "Auto selects Cholesky(" in text and "annotated PSD" in text
    text = lo.explain(lo.logdet, D + D)
    assert "LU()" in text
    # a structure rule whose precondition fails is reported, with the rule that runs instead
    text = lo.explain(lo.solve, lo.KroneckerSum(D, lo.Dense(np.ones((2, 2)))))
    assert "does not apply: it needs self-adjoint" in text and "Auto selects LU()" in text
    assert "Unitary" in lo.explain(lo.inv, lo.Unitary(D))


def test_user_rule_for_a_user_operator():
    """A user operator gets its own rule with the same decorator (documented in architecture.md)."""
    class Reflection(LinearOperator):
        """I - 2 v v^T for a unit vector v."""

        _leaves = ("v",)

        def __init__(self, v):
            self.v = v
            super().__init__((v.shape[0], v.shape[0]), v.dtype, lo.Dense(v[:, None]).xp, None, ("Unitary", "SelfAdjoint"))

        def _matmat(self, X):
            return X - 2 * self.v[:, None] * (self.v @ X)[None, :]

        def _rmatmat(self, X):
            return self._matmat(X.T).T

    @rules.slogdet.dispatch(precedence=rules.STRUCTURE)
    def _(A: Reflection, alg: rules.Algorithm):
        return -1.0, 0.0

    v = np.array([0.6, 0.8])
    H = Reflection(v)
    assert lo.slogdet(H) == (-1.0, 0.0)
    np.testing.assert_allclose(lo.solve(H, np.array([1.0, 2.0])), H.to_dense() @ np.array([1.0, 2.0]))
