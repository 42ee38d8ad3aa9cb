"""``lo.explain``: which rule and algorithm a call would use, and why, without running it."""

from __future__ import annotations

import inspect

from ..algorithms import Algorithm, Auto
from ..operators import LinearOperator
from . import determinants, diagonals, eigen, inverse, lstsq, matfun

_TABLE = {
    inverse.inv: (inverse._inv, "inv"),
    inverse.solve: (inverse._inv, "solve"),
    determinants.logdet: (determinants._slogdet, "logdet"),
    determinants.slogdet: (determinants._slogdet, "slogdet"),
    determinants.det: (determinants._slogdet, "det"),
    diagonals.trace: (diagonals._trace, "trace"),
    diagonals.diag: (diagonals._diag, "diag"),
    eigen.eigh: (eigen._eigh, "eigh"),
    eigen.eig: (eigen._eig, "eig"),
    eigen.svd: (eigen._svd, "svd"),
    matfun.exp: (matfun._matfun, "apply"),
    matfun.log: (matfun._matfun, "apply"),
    matfun.sqrt: (matfun._matfun, "apply"),
    matfun.isqrt: (matfun._matfun, "apply"),
    matfun.pow: (matfun._matfun, "apply"),
    matfun.apply: (matfun._matfun, "apply"),
    lstsq.lstsq: (lstsq._pinv, "lstsq"),
    lstsq.pinv: (lstsq._pinv, "pinv"),
}


def _method(internal, A, alg, extra, generic_only=False):
    if generic_only:  # the method plum would pick for a plain LinearOperator, found by types
        from plum import Signature

        internal._resolve_pending_registrations()
        return internal._resolver.resolve(Signature(LinearOperator, type(alg), *(object for _ in extra))).implementation
    return internal.resolve_method((A, alg, *extra))[0]


def _label(method) -> tuple[str, bool]:
    params = list(inspect.signature(method).parameters.values())
    op_type = params[0].annotation
    op_name = op_type if isinstance(op_type, str) else getattr(op_type, "__name__", str(op_type))
    doc = (inspect.getdoc(method) or "").split("\n")[0]
    where = f"{inspect.getmodule(method).__name__}.{method.__name__}"
    generic = op_name == "LinearOperator"
    kind = "generic rule" if generic else "structure rule"
    return f"{kind} for {op_name} ({where}){': ' + doc if doc else ''}", generic


def explain(fn, A: LinearOperator, alg: Algorithm = Auto()) -> str:
    """Say which rule ``fn(A, alg=alg)`` dispatches to and, for ``Auto``, what it selects and why.

    Structure rules with a precondition (square factors, self-adjoint, ...) are checked, and
    one that does not apply is reported with what it needs before the rule that runs instead.
    """
    if fn not in _TABLE:
        raise ValueError(f"lo.explain knows {sorted({f.__name__ for f in _TABLE})}, not {getattr(fn, '__name__', fn)!r}")
    if not isinstance(A, LinearOperator):
        raise TypeError(f"lo.explain takes a LinearOperator, got {type(A).__name__}")
    internal, name = _TABLE[fn]
    extra = (None,) if internal is matfun._matfun else ()
    lines = [f"lo.{fn.__name__}({A._label()}) with alg={alg!r}"]
    method = _method(internal, A, alg, extra)
    text, generic = _label(method)
    condition = getattr(method, "condition", None)
    if condition is not None and not condition[0](A):
        lines.append(f"  {text.split(':')[0]} does not apply: it needs {condition[1]}")
        method = _method(internal, A, alg, extra, generic_only=True)
        text, generic = _label(method)
    if generic and isinstance(alg, Auto):
        if name in ("inv", "solve") and "Unitary" in A.annotations:
            lines.append("  annotated Unitary: the inverse is A.H")
            return "\n".join(lines)
        concrete, reason = alg.select(name, A)
        lines.append(f"  Auto selects {concrete!r}: {reason}")
        text, generic = _label(_method(internal, A, concrete, extra, generic_only=True))
    lines.append("  " + text)
    if not generic:
        lines.append(f"  the parts it produces are resolved the same way, with alg={alg!r}")
    return "\n".join(lines)
