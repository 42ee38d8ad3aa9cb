"""``eigh``, ``eig`` and ``svd``, with their structure rules.

Eigenvectors and singular vectors come back as operators: a Kronecker product's
eigenvectors are the Kronecker product of its factors' (never formed), a block
diagonal's are block diagonal. With ``k`` given, the k selected vectors come back as a
``Dense`` n x k operator, computed with k products, still without forming the operator.

Rules (structure first, then dense):

* Kronecker: eigenvalues are all products ``λ_i μ_j``, singular values likewise; vectors
  ``⊗ Q_i``. KroneckerSum: eigenvalues are all sums ``λ_i + μ_j``, vectors ``⊗ Q_i``.
* BlockDiag: blockwise, eigenvalues concatenated. Diagonal, Identity, ``c I``: closed form.
* LowRank ``U V^H``: SVD from QR factors of U and V and an r x r SVD, O((m + n) r^2).
* Otherwise: dense ``Eigh`` / ``Eig`` / ``SVD``; with k, the iterative algorithms of
  :mod:`linops.functions.eigen_krylov` (Lanczos, LOBPCG, SubspaceIteration, Arnoldi,
  Golub-Kahan-Lanczos, RandomizedSVD) on the whole operator.
"""

from __future__ import annotations

import numpy as np

from ..algorithms import SVD, Algorithm, Arnoldi, Auto, Eig, Eigh, Lanczos
from ..operators import (
    BlockDiag,
    Dense,
    Diagonal,
    Identity,
    Kronecker,
    KroneckerSum,
    LinearOperator,
    LowRank,
    ScalarMul,
)
from ._dispatch import generic_methods, generic_rule_applies, STRUCTURE, dense_checked, dispatch, require_square

__all__ = ["eigh", "eig", "svd", "kronecker_sum_eigh"]

_WHICH = ("LA", "SA", "LM", "SM")


def eigh(A: LinearOperator, k: int | None = None, which: str = "LA", alg: Algorithm = Auto()):
    """Eigenpairs ``(w, V)`` of self-adjoint ``A``: ``A V = V diag(w)``.

    ``k=None``: all n eigenvalues, ascending, and ``V`` as an (often structured) operator.
    ``k``: the k eigenvalues chosen by ``which`` ("LA"/"SA" largest/smallest algebraic,
    "LM"/"SM" largest/smallest magnitude), returned ascending, with ``V`` a Dense n x k.
    Iterative choices, on the whole operator with k products per block (need ``k``):
    ``alg=lo.Lanczos()`` (any ``which``; also ``Auto`` with k given, n > ``dense_n`` and no
    structure rule), ``lo.LOBPCG()`` ("LA"/"SA", optional preconditioner),
    ``lo.SubspaceIteration()`` ("LM"). Their gradients are implicit (never through the
    iterations; see :mod:`linops.functions.eigen_krylov`).
    Raises NotSelfAdjointError for an operator that is not self-adjoint.
    """
    A = require_square(A, "eigh")
    if k is not None and isinstance(alg, Auto) and A.shape[0] > alg.dense_n and generic_rule_applies(_eigh, A, alg):
        alg = Lanczos(tol=alg.lanczos_tol)
    from .eigen_krylov import KRYLOV_EIGH, krylov_eigh

    if isinstance(alg, KRYLOV_EIGH):
        if k is None:
            raise ValueError(f"lo.eigh with alg={type(alg).__name__}() computes k eigenpairs: pass k (e.g. k=6)")
        return krylov_eigh(A, k, which, alg)
    w, V = _eigh(A, alg)
    return _select(A, w, V, k, which, ascending=True)


def eig(A: LinearOperator, k: int | None = None, which: str = "LM", alg: Algorithm = Auto()):
    """Eigenpairs ``(w, V)`` of square ``A`` (complex in general): ``A V = V diag(w)``.

    ``k=None``: all eigenvalues in the order the rule produced them (as ``numpy.linalg.eig``).
    ``k``: the k chosen by ``which``, best first: "LM"/"SM" largest/smallest magnitude,
    "LR"/"SR" (or "LA"/"SA") largest/smallest real part, "LI"/"SI" imaginary part; ``V`` a
    Dense n x k. ``alg=lo.Arnoldi()`` computes them by Arnoldi on the whole operator (needs k).
    """
    A = require_square(A, "eig")
    from .eigen_krylov import arnoldi_eig, eig_key

    if isinstance(alg, Arnoldi):
        if k is None:
            raise ValueError("lo.eig with alg=Arnoldi() computes k eigenpairs: pass k (e.g. k=6)")
        return arnoldi_eig(A, k, which, alg)
    w, V = _eig(A, alg)
    if k is None:
        return w, V
    key, largest = eig_key(A.xp, w, which)
    _check_k(k, w.shape[0])
    order = A.xp.topk(key, k, largest=largest)
    return w[order], _columns(V, order)


def svd(A: LinearOperator, k: int | None = None, alg: Algorithm = Auto()):
    """``(U, s, V)`` with ``A = U diag(s) V^H``, ``s`` descending.

    At most min(m, n) values: a structure rule may leave out singular values it knows to be
    exactly zero (LowRank gives its rank r; a Kronecker product of rectangular factors the
    products of the factors' thin SVDs). ``U`` and ``V`` are operators with orthonormal
    columns; with ``k`` the top k triplets, ``U`` and ``V`` Dense. Iterative choices (need k):
    ``alg=lo.Lanczos()`` (Golub-Kahan-Lanczos bidiagonalisation, residual-checked; ``Auto``'s
    pick with k and min(m, n) > ``dense_n``) and ``lo.RandomizedSVD()`` (range finder).
    """
    if not isinstance(A, LinearOperator):
        raise TypeError(f"lo.svd takes a LinearOperator, got {type(A).__name__}; wrap an array with lo.Dense(M)")
    from .eigen_krylov import KRYLOV_SVD, krylov_svd

    if isinstance(alg, Auto) and generic_rule_applies(_svd, A, alg):
        chosen = alg.select("svd", A)[0]
        alg = chosen if k is not None or not isinstance(chosen, KRYLOV_SVD) else SVD()
    if isinstance(alg, KRYLOV_SVD):
        if k is None:
            raise ValueError(f"lo.svd with alg={type(alg).__name__}() computes k triplets: pass k (e.g. k=6)")
        return krylov_svd(A, k, alg)
    U, s, V = _svd(A, alg)
    xp = A.xp
    if k is not None:
        _check_k(k, s.shape[0])
        order = xp.topk(s, k)
        return _columns(U, order), s[order], _columns(V, order)
    order = xp.argsort(s, descending=True)
    return U[:, order], s[order], V[:, order]


# ------------------------------------------------------------------------ helpers
def _check_k(k, n):
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in 1..{n}, got {k!r}")


def _columns(V: LinearOperator, idx) -> Dense:
    """The columns ``idx`` of operator V as a Dense n x k, without forming V.

    A Kronecker product's column is the Kronecker product of one column per factor
    (``unravel_index``), O(n k); anything else costs k products.
    """
    if isinstance(V, Kronecker) and all(isinstance(f, Dense) for f in V.factors):
        sizes = [f.shape[1] for f in V.factors]
        multi, rem = [], idx  # unravel_index with array arithmetic, so it traces under jax.jit
        for size in reversed(sizes):
            multi.append(rem % size)
            rem = rem // size
        out = None
        for f, j in zip(V.factors, reversed(multi)):
            C = f.M[:, j]  # (n_i, k)
            out = C if out is None else (out[:, None, :] * C[None, :, :]).reshape(-1, C.shape[1])
        return Dense(out)
    return Dense(V[:, idx].to_dense())


def _select(A, w, V, k, which, ascending):
    xp = A.xp
    if which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH}, got {which!r}")
    if k is None:
        order = xp.argsort(xp.real(w))
        return w[order], V[:, order]
    _check_k(k, w.shape[0])
    key = xp.abs(w) if which in ("LM", "SM") else xp.real(w)
    order = xp.topk(key, k, largest=which in ("LA", "LM"))
    if ascending:
        order = order[xp.argsort(xp.real(w[order]))]
    return w[order], _columns(V, order)


def _outer(xp, vectors, op):
    """All combinations ``op(a_i, b_j, ...)`` flattened in Kronecker order."""
    out = vectors[0]
    for v in vectors[1:]:
        out = op(out[:, None], v[None, :]).reshape(-1)
    return out


def _identity_like(A):
    return Identity(A.shape[0], A.dtype, A.device, backend=None if A._weak else A.xp)


# --------------------------------------------------------------------------- eigh
generic_methods("_eigh", "eigh", "lo.Auto() or lo.Eigh()")


@dispatch
def _eigh(A: LinearOperator, alg: Eigh):
    M = dense_checked(A, alg.check_symmetric, "eigh")
    w, Q = A.xp.eigh(M)
    return w, Dense(Q)


@dispatch(precedence=STRUCTURE)
def _eigh(A: Diagonal, alg: Algorithm):
    xp = A.xp
    if xp.is_complex(A.dtype):
        dense_checked(A, True, "eigh")
    return xp.real(A.d), _identity_like(A)


@dispatch(precedence=STRUCTURE)
def _eigh(A: Identity, alg: Algorithm):
    return A.xp.ones((A.shape[0],), A.xp.real_dtype(A.dtype), A.device), A


@dispatch(precedence=STRUCTURE)
def _eigh(A: ScalarMul, alg: Algorithm):
    xp = A.xp
    return A.c * xp.ones((A.shape[0],), A.dtype, A.device), _identity_like(A)


@dispatch(precedence=STRUCTURE)
def _eigh(A: Kronecker, alg: Algorithm):
    """Eigenvalues of ``⊗ A_i`` are the products of the factors'; eigenvectors ``⊗ Q_i``."""
    pairs = [_eigh(require_square(f, "eigh"), alg) for f in A.factors]
    w = _outer(A.xp, [p[0] for p in pairs], lambda a, b: a * b)
    return w, Kronecker(*(p[1] for p in pairs))


def kronecker_sum_eigh(A: KroneckerSum, alg: Algorithm = Auto()):
    """``(λ, Q)`` of ``⊕ A_i``: λ all sums of the factors' eigenvalues, ``Q = ⊗ Q_i``.

    A factor repeated (the same object, as in a square grid's Laplacian) is decomposed once.
    """
    done: dict[int, tuple] = {}
    for f in A.factors:
        if id(f) not in done:
            done[id(f)] = _eigh(f, alg)
    pairs = [done[id(f)] for f in A.factors]
    w = _outer(A.xp, [p[0] for p in pairs], lambda a, b: a + b)
    return w, Kronecker(*(p[1] for p in pairs))


@dispatch(precedence=STRUCTURE)
def _eigh(A: KroneckerSum, alg: Algorithm):
    return kronecker_sum_eigh(A, alg)


@dispatch(precedence=STRUCTURE)
def _eigh(A: BlockDiag, alg: Algorithm):
    """Blockwise: eigenvalues concatenated, eigenvectors block diagonal."""
    pairs = [_eigh(require_square(b, "eigh"), alg) for b in A.blocks]
    return A.xp.concat([p[0] for p in pairs]), BlockDiag(*(p[1] for p in pairs))


# ---------------------------------------------------------------------------- eig
generic_methods("_eig", "eig", "lo.Auto(), lo.Eig() or lo.Eigh()")


@dispatch
def _eig(A: LinearOperator, alg: Eig):
    w, Q = A.xp.eig(dense_checked(A, False, "eig"))
    return w, Dense(Q)


@dispatch
def _eig(A: LinearOperator, alg: Eigh):
    return _eigh(A, alg)


@dispatch(precedence=STRUCTURE)
def _eig(A: Diagonal, alg: Algorithm):
    return A.d, _identity_like(A)


@dispatch(precedence=STRUCTURE)
def _eig(A: Kronecker, alg: Algorithm):
    """Eigenvalues of ``⊗ A_i`` are the products of the factors'; eigenvectors ``⊗ V_i``."""
    pairs = [_eig(require_square(f, "eig"), alg) for f in A.factors]
    xp = A.xp
    ws = [p[0] for p in pairs]
    dtype = xp.result_type(*(w.dtype for w in ws))
    w = _outer(xp, [xp.astype(v, dtype) for v in ws], lambda a, b: a * b)
    vs = [p[1] for p in pairs]
    return w, Kronecker(*(Dense(xp.astype(v.to_dense(), dtype)) for v in vs))


@dispatch(precedence=STRUCTURE)
def _eig(A: BlockDiag, alg: Algorithm):
    pairs = [_eig(require_square(b, "eig"), alg) for b in A.blocks]
    xp = A.xp
    dtype = xp.result_type(*(p[0].dtype for p in pairs))
    w = xp.concat([xp.astype(p[0], dtype) for p in pairs])
    return w, BlockDiag(*(Dense(xp.astype(p[1].to_dense(), dtype)) for p in pairs))


# ---------------------------------------------------------------------------- svd
generic_methods("_svd", "svd", "lo.Auto() or lo.SVD()")


@dispatch
def _svd(A: LinearOperator, alg: SVD):
    xp = A.xp
    U, s, Vh = xp.svd(dense_checked(A, False, "svd"))
    return Dense(U), s, Dense(xp.conj(Vh).T)


@dispatch(precedence=STRUCTURE)
def _svd(A: Kronecker, alg: Algorithm):
    """Singular values of ``⊗ A_i`` are the products of the factors'; vectors ``⊗ U_i``, ``⊗ V_i``."""
    trip = [_svd(f, alg) for f in A.factors]
    s = _outer(A.xp, [t[1] for t in trip], lambda a, b: a * b)
    return Kronecker(*(t[0] for t in trip)), s, Kronecker(*(t[2] for t in trip))


@dispatch(precedence=STRUCTURE)
def _svd(A: BlockDiag, alg: Algorithm):
    trip = [_svd(b, alg) for b in A.blocks]
    xp = A.xp
    return BlockDiag(*(t[0] for t in trip)), xp.concat([t[1] for t in trip]), BlockDiag(*(t[2] for t in trip))


@dispatch(precedence=STRUCTURE)
def _svd(A: LowRank, alg: Algorithm):
    """``U V^H = Qu (Ru Rv^H) Qv^H``: two thin QRs and an r x r SVD, O((m + n) r^2)."""
    xp = A.xp
    Qu, Ru = xp.qr(A.U)
    Qv, Rv = xp.qr(A.V)
    W, s, Zh = xp.svd(Ru @ xp.conj(Rv).T)
    return Dense(Qu @ W), s, Dense(Qv @ xp.conj(Zh).T)
