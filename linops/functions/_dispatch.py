"""The one plum dispatcher of linops' functions, the structure-rule precedence, and shared checks.

Rules are plum methods on ``(operator type, algorithm type)``. A *structure rule*
(registered on ``(SomeOperator, Algorithm)``) applies under every algorithm and passes the
algorithm on to the parts it produces; a *generic rule* is registered on
``(LinearOperator, SomeAlgorithm)``. Where both match, e.g. ``(Kronecker, LU)``, plum
would call it ambiguous: ``STRUCTURE`` precedence settles it in favour of the structure.
This is the only use of precedence in linops.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing

from plum import Dispatcher

from ..algorithms.base import Algorithm, Auto
from ..errors import NonFiniteError, NotSelfAdjointError, NotSquareError, ShapeError
from ..operators.base import LinearOperator

dispatch = Dispatcher()

#: precedence of structure rules over the generic (operator, algorithm) rules
STRUCTURE = 1


def when(condition, needs: str, fallback):
    """Make a structure rule conditional: if ``condition(A)`` fails, ``fallback(A, alg, ...)`` runs.

    The condition is kept on the rule (``rule.condition``) so that ``lo.explain`` reports
    a rule that does not apply, and what it needs, instead of naming it wrongly.
    """

    def decorate(rule):
        @functools.wraps(rule)
        def conditional(A, alg, *rest):
            if not condition(A):
                return fallback(A, alg, *rest)
            return rule(A, alg, *rest)

        # plum reads the signature: give the wrapper the rule's, with annotations resolved
        # here (the rule's module uses postponed annotations; a closure cannot resolve them)
        hints = typing.get_type_hints(rule)
        sig = inspect.signature(rule)
        conditional.__signature__ = sig.replace(
            parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()]
        )
        conditional.__annotations__ = hints
        del conditional.__wrapped__
        conditional.condition = (condition, needs)
        return conditional

    return decorate


def square_parts(attr: str):
    """Condition: every part in ``A.<attr>`` (factors, blocks) is square."""
    return lambda A: all(p.is_square for p in getattr(A, attr))


def self_adjoint(A) -> bool:
    return "SelfAdjoint" in A.annotations


def as_operator(A, fn: str) -> LinearOperator:
    if isinstance(A, LinearOperator):
        return A
    raise TypeError(
        f"lo.{fn} takes a LinearOperator, got {type(A).__name__}; wrap an array with lo.Dense(M)"
    )


def require_square(A, fn: str) -> LinearOperator:
    A = as_operator(A, fn)
    if A.shape[0] != A.shape[1]:
        raise NotSquareError(f"lo.{fn} needs a square operator, got {A._label()}")
    return A


def check_rhs(A: LinearOperator, b, fn: str) -> None:
    xp = A.xp
    if not isinstance(b, xp.array_types):
        A._check_array(b, f"in lo.{fn}")
    if b.ndim not in (1, 2) or b.shape[0] != A.shape[0]:
        raise ShapeError(
            f"lo.{fn}: right-hand side of shape {tuple(b.shape)} does not fit {A._label()}; "
            f"expected ({A.shape[0]},) or ({A.shape[0]}, k)"
        )


def dense_checked(A: LinearOperator, hermitian: bool, fn: str):
    """``A.to_dense()``, checked to be finite and, if ``hermitian``, equal to its adjoint.

    The checks cost O(n^2) next to the O(n^3) factorisation that follows; they are skipped
    for values being traced (jax.jit), whose contents cannot be inspected.
    """
    M = A.to_dense()
    xp = A.xp
    gap = xp.hermitian_gap(M) if hermitian else None
    if gap is None:
        xp.check_finite(M, lambda: f"the matrix of {A._label()}")
    else:
        asym, scale = gap
        if not math.isfinite(scale):  # max |M| is NaN or inf exactly when M holds one
            raise NonFiniteError(f"the matrix of {A._label()} contains NaN or infinity")
        if asym > 100 * xp.eps(A.dtype) * max(scale, 1e-300) * A.shape[0] ** 0.5:
            raise NotSelfAdjointError(
                f"lo.{fn} with a Hermitian algorithm needs a self-adjoint operator, but {A._label()} has "
                f"max |A - A^H| = {asym:.3g} (max |A| = {scale:.3g}); drop the PSD/SelfAdjoint annotation, "
                "or use lo.LU() / lo.eig for general operators"
            )
    return M


def no_rule(fn: str, A: LinearOperator, alg, accepted: str) -> TypeError:
    """The error for an algorithm that ``fn`` cannot use on ``A`` (a user's choice, not a bug)."""
    return TypeError(f"lo.{fn} has no rule for {A._label()} with alg={alg!r}; use {accepted}")


def generic_methods(name: str, fn: str, accepted: str, resolve: bool = True, extra: int = 0):
    """Register the two generic methods every function has, on the plum function ``name``.

    * ``(LinearOperator, Auto)``: ``Auto.select(fn, A)`` picks a concrete algorithm, and the
      call is dispatched again with it (skipped with ``resolve=False``, for a function whose
      Auto rule does more).
    * ``(LinearOperator, Algorithm)``: any other algorithm without a rule raises ``TypeError``
      naming the ``accepted`` ones.

    ``extra`` is the number of positional arguments after ``(A, alg)`` (a matrix function's
    scalar function: 1); they are passed through. Returns the plum function.
    """
    if extra == 0:

        def by_auto(A: LinearOperator, alg: Auto):
            return function(A, alg.select(fn, A)[0])

        def refuse(A: LinearOperator, alg: Algorithm):
            raise no_rule(fn, A, alg, accepted)
    else:  # plum finds a *args method ambiguous next to fixed-arity ones: spell the argument out

        def by_auto(A: LinearOperator, alg: Auto, arg):
            return function(A, alg.select(fn, A)[0], arg)

        def refuse(A: LinearOperator, alg: Algorithm, arg):
            raise no_rule(fn, A, alg, accepted)

    function = None
    for method in (by_auto, refuse) if resolve else (refuse,):
        method.__name__ = name  # plum files methods under the function's name
        method.__annotations__ = typing.get_type_hints(method)  # resolved here, not in a closure
        function = dispatch(method)
    return function


def generic_rule_applies(fn, A: LinearOperator, alg, *extra) -> bool:
    """Whether ``fn(A, alg)`` would reach a generic (LinearOperator, ...) rule, not a structure rule."""
    method = fn.resolve_method((A, alg, *extra))[0]
    condition = getattr(method, "condition", None)
    if condition is not None and not condition[0](A):
        return True
    first = next(iter(inspect.signature(method).parameters.values())).annotation
    return first is LinearOperator or first == "LinearOperator"
