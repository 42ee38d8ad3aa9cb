"""``lo.explain``: which rule and algorithm a call would use, and why, without running it."""

from __future__ import annotations

import inspect

from ..algorithms import Algorithm, Auto
from ..operators import LinearOperator
from . import eigen, inverse, logdet, matfun, trace

_TABLE = {
    inverse.inv: (inverse._inv, "inv"),
    inverse.solve: (inverse._inv, "solve"),
    logdet.logdet: (logdet._slogdet, "logdet"),
    logdet.slogdet: (logdet._slogdet, "slogdet"),
    logdet.det: (logdet._slogdet, "det"),
    trace.trace: (trace._trace, "trace"),
    trace.diag: (trace._diag, "diag"),
    eigen.eigh: (eigen._eigh, "eigh"),
    eigen.eig: (eigen._eig, "eig"),
    eigen.svd: (eigen._svd, "svd"),
    matfun.exp: (matfun._matfun, "apply"),
    matfun.log: (matfun._matfun, "apply"),
    matfun.sqrt: (matfun._matfun, "apply"),
    matfun.isqrt: (matfun._matfun, "apply"),
    matfun.pow: (matfun._matfun, "apply"),
    matfun.apply: (matfun._matfun, "apply"),
}


def _describe(internal, A, alg, extra) -> tuple[str, bool]:
    method, _ = internal.resolve_method((A, alg, *extra))
    ann = inspect.signature(method).parameters
    op_type = list(ann.values())[0].annotation
    op_name = op_type if isinstance(op_type, str) else getattr(op_type, "__name__", str(op_type))
    doc = (inspect.getdoc(method) or "").split("\n")[0]
    generic = op_name == "LinearOperator"
    where = f"{inspect.getmodule(method).__name__}.{method.__name__}"
    kind = "generic rule" if generic else "structure rule"
    return f"{kind} for {op_name} ({where}){': ' + doc if doc else ''}", generic


def explain(fn, A: LinearOperator, alg: Algorithm = Auto()) -> str:
    """Say which rule ``fn(A, alg=alg)`` dispatches to and, for ``Auto``, what it selects and why.

    >>> print(lo.explain(lo.inv, lo.Kronecker(A, B)))   # doctest: +SKIP
    lo.inv(Kronecker(...)) with alg=Auto()
      structure rule for Kronecker (...): (A_1 ⊗ ... ⊗ A_p)^{-1} = A_1^{-1} ⊗ ... ⊗ A_p^{-1} (square factors).
      the parts are resolved the same way, with alg=Auto()
    """
    if fn not in _TABLE:
        raise ValueError(f"lo.explain knows {sorted(f.__name__ for f in _TABLE)}, not {getattr(fn, '__name__', fn)!r}")
    if not isinstance(A, LinearOperator):
        raise TypeError(f"lo.explain takes a LinearOperator, got {type(A).__name__}")
    internal, name = _TABLE[fn]
    extra = (None,) if internal is matfun._matfun else ()
    lines = [f"lo.{fn.__name__}({A._label()}) with alg={alg!r}"]
    text, generic = _describe(internal, A, alg, extra)
    if generic and isinstance(alg, Auto):
        if name in ("inv", "solve") and "Unitary" in A.annotations:
            lines.append("  annotated Unitary: the inverse is A.H")
            return "\n".join(lines)
        concrete, reason = alg.select(name, A)
        lines.append(f"  Auto selects {concrete!r}: {reason}")
        text, generic = _describe(internal, A, concrete, extra)
    lines.append("  " + text)
    if not generic:
        lines.append(f"  the parts it produces are resolved the same way, with alg={alg!r}")
    return "\n".join(lines)
