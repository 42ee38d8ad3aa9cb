"""The public extension point: the plum functions that hold every rule, one per function family.

Add a rule for your own operator type with the same decorator linops uses::

    from linops.functions import rules

    @rules.slogdet.dispatch(precedence=rules.STRUCTURE)
    def _(A: MyOperator, alg: rules.Algorithm):
        return sign, logabsdet

A *structure rule* is registered on ``(YourOperator, Algorithm)`` with
``precedence=STRUCTURE`` so that it wins over the generic dense rules for every
algorithm; a rule for a specific algorithm type (``(YourOperator, rules.LU)``) needs no
precedence. Registering on ``(LinearOperator, ...)`` changes behaviour for everyone.

============  ===============================================  ======================
rule          signature (positional)                           returns
============  ===============================================  ======================
inv           (A, alg)                                         an operator, A^{-1}
slogdet       (A, alg)                                         (sign, log|det A|)
diag          (A, alg)                                         1-D array
trace         (A, alg)                                         scalar (an EstimateInfo if estimated)
eigh, eig     (A, alg)                                         (w, V operator), any order
svd           (A, alg)                                         (U op, s, V op), any order
matfun        (A, alg, fn) with fn.f(xp, eigenvalues)          an operator, f(A)
pinv          (A, alg)                                         an operator, A^+ (n x m)
============  ===============================================  ======================

``lo.solve`` uses ``inv``; ``logdet`` and ``det`` use ``slogdet``; ``exp``, ``log``,
``sqrt``, ``isqrt``, ``pow`` and ``apply`` use ``matfun``; ``lstsq`` and ``pinv`` use ``pinv``.
"""

from ..algorithms import LU, SVD, Algorithm, Auto, Cholesky, Eig, Eigh, Exact
from ._dispatch import STRUCTURE, when
from .determinants import _slogdet as slogdet
from .diagonals import _diag as diag
from .diagonals import _trace as trace
from .eigen import _eig as eig
from .eigen import _eigh as eigh
from .eigen import _svd as svd
from .inverse import _inv as inv
from .lstsq import _pinv as pinv
from .matfun import _matfun as matfun

__all__ = [
    "STRUCTURE", "when", "inv", "slogdet", "diag", "trace", "eigh", "eig", "svd", "matfun", "pinv",
    "Algorithm", "Auto", "Cholesky", "LU", "Eigh", "Eig", "SVD", "Exact",
]
