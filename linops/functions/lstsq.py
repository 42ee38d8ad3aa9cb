"""``lstsq`` (least-squares, minimum-norm solutions) and ``pinv`` (the Moore-Penrose pseudo-inverse).

``lo.lstsq(A, b)`` is ``lo.pinv(A) @ b``: the x of least norm among those minimising
``||A x - b||_2``, for any shape or rank of A (m x n). ``lo.pinv(A)`` is a lazy operator of
shape (n, m); keep it to solve many right-hand sides with one decomposition. Rules, each
stating its identity (``_pinv``, plum-dispatched like ``_inv``):

* Diagonal -> ``diag(d_i^+)`` with ``d_i^+ = 1/d_i`` for ``|d_i| > rcond max|d|``, else 0;
  Identity -> itself.
* Kronecker -> Kronecker of the factors' pseudo-inverses (exact for any factor shapes).
* BlockDiag -> BlockDiag of the blocks' pseudo-inverses (exact for rectangular blocks).
* LowRank ``U V^H`` (U m x r, V n x r of full rank r) -> ``V (V^H V)^{-1} (U^H U)^{-1} U^H``,
  kept low rank, O((m + n) r^2); rank-deficient factors fall back to the generic rule.
* Adjoint / Transpose -> adjoint / transpose of the pseudo-inverse.
* Dense, square, under ``Auto``: the inverse by the factorisation ``lo.inv`` would use (LU, or
  Cholesky when annotated PSD); an exactly singular one (a zero pivot) falls back to the SVD.
  Under ``jax.jit`` singularity cannot be seen, so the SVD is used.
* Anything else: ``Auto`` picks a dense thin SVD (``lo.SVD()``) when ``max(m, n) <= dense_n``,
  else ``lo.LSMR(atol=krylov_tol, btol=krylov_tol)``, which applies LSMR per product.

The **cutoff** ``rcond``: singular values ``s_i <= rcond * s_max`` count as zero, with
``rcond = eps * max(m, n)`` (``eps`` of the operator's real dtype; NumPy's and JAX's default
for ``lstsq``). For a Kronecker product the cutoff is applied per factor.

**Gradients** (torch and jax) of the SVD and LSMR pseudo-inverses are implicit, never through
the SVD or the iterations. For ``x = A^+ b``, a constant-rank A and a loss with gradient ``g``
with respect to x: ``dL/db = w`` and ``dL/dA = -w x^H + r λ^H + z q^H``, with ``w = A^{+H} g``,
``λ = A^+ w``, ``z = A^{+H} x``, ``q = g - A^+ A g`` and ``r = b - A x``. For A of full column
rank this is the normal-equations adjoint (``λ = (A^H A)^{-1} g``, ``q = 0``); ``q`` and ``z``
are the terms a rank-deficient or wide A adds. The cost is two more least-squares solves
(with ``A^H`` on ``[g, x]`` and with ``A`` on ``[w, A g]``). With LSMR's ``damp > 0`` the
solution is ``x = K^{-1} A^H b``, ``K = A^H A + damp^2 I``, and the gradient is
``dL/db = A μ``, ``dL/dA = r μ^H - A μ x^H`` with ``μ = K^{-1} g`` from one CG solve.
Structured rules (Diagonal, LowRank, the LU inverse) differentiate through their formulas.
"""

from __future__ import annotations

from ..algorithms import SVD, Algorithm, Auto
from ..algorithms.base import colnorm
from ..algorithms.cg import cg
from ..algorithms.info import SolveInfo, report
from ..algorithms.lsmr import LSMR, lsmr, report_lsmr
from ..errors import NotPSDError, SingularMatrixError
from ..operators import Adjoint, BlockDiag, Dense, Diagonal, Identity, Kronecker, LinearOperator, LowRank, Transpose
from ..operators.base import array_leaves
from ._dispatch import STRUCTURE, as_operator, check_rhs, dense_checked, dispatch, generic_methods
from .inverse import inv

__all__ = ["lstsq", "pinv", "PseudoInverse", "SVDPinv", "IterativePinv"]


def lstsq(A: LinearOperator, B, alg: Algorithm = Auto(), return_info: bool = False):  # noqa: B008
    """The minimum-norm least-squares solution ``x = A^+ b`` for A (m x n), b (m,) or (m, k).

    ``alg``: ``Auto()`` (structure, then a dense SVD up to ``dense_n``, else LSMR), ``lo.SVD()``
    or ``lo.LSMR(...)`` (``damp > 0``: Tikhonov). With ``return_info=True`` returns ``(x, info)``:
    LSMR's :class:`~linops.algorithms.SolveInfo`, or for a direct method one with zero
    iterations and ``||b - A x|| / ||b||`` measured with one product. Raises ShapeError (b does
    not fit A), NonFiniteError (NaN/inf), ConvergenceError (LSMR missed its tolerances).
    """
    A = as_operator(A, "lstsq")
    check_rhs(A, B, "lstsq")
    P = _pinv(A, alg)
    if not return_info:
        return P @ B
    if isinstance(P, PseudoInverse):
        return P.solve_with_info(B)
    X = P @ B
    return X, _direct_info(A, P, X, B)


def pinv(A: LinearOperator, alg: Algorithm = Auto()) -> LinearOperator:  # noqa: B008
    """The Moore-Penrose pseudo-inverse of A (m x n) as a lazy operator of shape (n, m).

    Small operators hold a thin SVD (cutoff ``rcond = eps max(m, n)``, relative to ``s_max``);
    with LSMR (``Auto`` above ``dense_n``) each product is a minimum-norm least-squares solve.
    Structured operators keep their structure (see the module docstring).
    """
    return _pinv(as_operator(A, "pinv"), alg)


def rcond(A: LinearOperator) -> float:
    """The relative singular-value cutoff ``eps * max(m, n)`` for ``A``."""
    xp = A.xp
    return xp.eps(xp.real_dtype(A.dtype)) * max(A.shape)


def _direct_info(A, P, x, b):
    xp = A.xp
    X, B = (x[:, None], b[:, None]) if b.ndim == 1 else (x, b)
    col = lambda Y: xp.sqrt(xp.sum(xp.real(xp.conj(Y) * Y), axis=0))  # noqa: E731
    bn = col(B)
    rel = col(B - A @ X) / xp.where(bn > 0, bn, 1 + 0 * bn)
    return SolveInfo(type(P).__name__, 0, rel == rel, rel, rel[None, :], rel < 0)


def _no_grad(xp, M):
    """``M`` cut off from automatic differentiation (the pseudo-inverses' gradients are implicit)."""
    if xp.name == "torch":
        return M.detach()
    if xp.name == "jax":
        from jax import lax

        return lax.stop_gradient(M)
    return M


# ------------------------------------------------------------------- pseudo-inverses
class PseudoInverse(LinearOperator):
    """Base of ``A^+`` (n x m) for A (m x n): products ``A^+ X`` carry implicit gradients.

    Subclasses give ``_forward(X) -> (A^+ X, SolveInfo or None)`` without gradient handling,
    ``_conjugated(kind)`` for ``(A^+)^H = (A^H)^+`` (kind "H") and ``(A^+)^T`` ("T").
    """

    _leaves = ("A",)

    def __init__(self, A: LinearOperator):
        self.A = A
        super().__init__(A.shape[::-1], A.dtype, A.xp, A.device, A.annotations & {"PSD", "SelfAdjoint", "Unitary"})

    def _report(self, info) -> None:
        pass

    def _solve(self, X):
        """``A^+ X`` with no gradient handling (checked and reported)."""
        Y, info = self._forward(X)
        self._report(info)
        return Y

    def _matmat(self, X):
        Y, info = _apply(self, X)
        self._report(info)
        return Y

    def _rmatmat(self, X):  # X A^+ = ((A^+)^T X^T)^T
        return self._conjugated("T")._matmat(X.T).T

    def _adjoint(self):
        return self._conjugated("H")

    def _transpose(self):
        return self._conjugated("T")

    def solve_with_info(self, B):
        """``(A^+ B, SolveInfo)``; non-convergence raises or warns as the algorithm says."""
        vec = B.ndim == 1
        X, info = _apply(self, B[:, None] if vec else B)
        self._report(info)
        if info is None:
            info = _direct_info(self.A, self, X, B[:, None] if vec else B)
        return (X[:, 0] if vec else X), info

    def _adjoint_parts(self, X, Y, G, need_A: bool):
        """The implicit VJP of ``Y = A^+ X`` (torch's convention, no autodiff inside).

        Returns ``(dL/dX, (Ys, Gs))``: the gradient for A is that of ``Re <Gs, A Ys>``, or None.
        """
        xp = self.xp
        k = X.shape[1]
        H = self._conjugated("H")
        if not need_A:
            return H._solve(G), None
        WZ = H._solve(xp.concat([G, Y], 1))
        W, Z = WZ[:, :k], WZ[:, k:]
        A = self.A
        R = X - A._matmat(Y)
        LP = self._solve(xp.concat([W, A._matmat(G)], 1))
        Lam, Q = LP[:, :k], G - LP[:, k:]
        return W, (xp.concat([Y, Lam, Q], 1), xp.concat([-W, R, Z], 1))


class SVDPinv(PseudoInverse):
    """``A^+ = V diag(s^+) U^H`` from a dense thin SVD ``A = U diag(s) V^H``; O(m n min(m, n)) once,
    then O((m + n) min(m, n) k) per product. ``s^+`` zeroes ``s_i <= rcond s_max``."""

    _leaves = ("A", "U", "s", "Vh")

    def __init__(self, A: LinearOperator, factors=None):
        if factors is None:
            xp = A.xp
            M = _no_grad(xp, dense_checked(A, False, "pinv"))
            factors = xp.svd(M)
        self.U, self.s, self.Vh = factors
        super().__init__(A)

    def _forward(self, X):
        xp, s = self.xp, self.s
        keep = s > rcond(self.A) * s[0]
        sinv = xp.where(keep, 1 / xp.where(keep, s, 1 + 0 * s), 0 * s)
        conj = xp.conj
        return conj(self.Vh).T @ (sinv[:, None] * (conj(self.U).T @ X)), None

    def _conjugated(self, kind):
        conj = self.xp.conj
        if kind == "H":
            return SVDPinv(self.A.H, (conj(self.Vh).T, self.s, conj(self.U).T))
        return SVDPinv(self.A.T, (self.Vh.T, self.s, self.U.T))


class IterativePinv(PseudoInverse):
    """``A^+`` applied by LSMR: each product is a minimum-norm least-squares solve (``damp > 0``:
    the Tikhonov solution operator ``(A^H A + damp^2 I)^{-1} A^H``)."""

    def __init__(self, A: LinearOperator, alg: LSMR):
        self.alg = alg
        super().__init__(A)

    def _forward(self, X):
        A, alg = self.A, self.alg
        max_iters = alg.max_iters if alg.max_iters is not None else 10 * min(A.shape)
        AH = A.H
        return lsmr(A._matmat, AH._matmat, X, A.xp, alg.atol, alg.btol, alg.conlim, max_iters, alg.damp)

    def _report(self, info):
        if info is not None:
            report_lsmr(info, self.alg, self.xp)

    def _conjugated(self, kind):
        return IterativePinv(self.A.H if kind == "H" else self.A.T, self.alg)

    def _adjoint_parts(self, X, Y, G, need_A):
        if self.alg.damp == 0:
            return super()._adjoint_parts(X, Y, G, need_A)
        # x = K^{-1} A^H b with K = A^H A + damp^2 I (positive definite): mu = K^{-1} g by CG
        A, AH, xp, alg = self.A, self.A.H, self.xp, self.alg
        lam2 = alg.damp**2
        tol = max(alg.atol, alg.btol, 10 * xp.eps(xp.real_dtype(A.dtype)))
        Mu, info = cg(lambda P: AH._matmat(A._matmat(P)) + lam2 * P, G, xp, tol, 10 * A.shape[1])
        report(info, tol, alg.on_failure, xp)
        W = A._matmat(Mu)
        if not need_A:
            return W, None
        R = X - A._matmat(Y)
        return W, (xp.concat([Y, Mu], 1), xp.concat([-W, R], 1))


# ------------------------------------------------------------- implicit gradients
def _apply(P: PseudoInverse, X):
    """``(A^+ X, info)`` with implicit gradients on torch and jax."""
    xp = P.xp
    if xp.name == "jax":
        return _apply_jax(P, X)
    if xp.name == "torch":
        import torch

        arrays, rebuild = array_leaves(P)
        if torch.is_grad_enabled() and (X.requires_grad or any(getattr(a, "requires_grad", False) for a in arrays)):
            sink: list = []
            Y = _torch_function().apply(X, rebuild, sink, *arrays)
            return Y, sink[0]
    return P._forward(X)


def _apply_jax(P, X):
    import jax

    conj = P.xp.conj

    @jax.custom_vjp
    def apply(P, X):
        return P._forward(X)

    def fwd(P, X):
        Y, info = P._forward(X)
        return (Y, info), (P, X, Y)

    def bwd(res, cts):
        P, X, Y = res
        G = conj(cts[0])  # jax's cotangents are the conjugates of torch's gradients
        W, parts = P._adjoint_parts(X, Y, G, True)
        Ys, Gs = parts
        _, vjp = jax.vjp(lambda Q: Q.A._matmat(Ys), P)
        (ct_P,) = vjp(conj(Gs))
        return ct_P, conj(W)

    apply.defvjp(fwd, bwd)
    return apply(P, X)


_FUNCTION = None


def _torch_function():
    global _FUNCTION
    if _FUNCTION is not None:
        return _FUNCTION
    import torch

    class PinvApply(torch.autograd.Function):
        """y = A^+ x with inputs (x, *the pseudo-inverse's tensors); backward: two more solves."""

        @staticmethod
        def forward(ctx, X, rebuild, sink, *arrays):
            P = rebuild(arrays)
            with torch.no_grad():
                Y, info = P._forward(X)
            sink.append(info)
            ctx.rebuild = rebuild
            ctx.save_for_backward(X, Y, *arrays)
            return Y

        @staticmethod
        def backward(ctx, G):
            X, Y, *arrays = ctx.saved_tensors
            P = ctx.rebuild(arrays)
            wanted = [i for i, a in enumerate(arrays) if ctx.needs_input_grad[3 + i]]
            with torch.no_grad():
                W, parts = P._adjoint_parts(X, Y, G, bool(wanted))
            grads = [None] * len(arrays)
            if wanted:
                Ys, Gs = parts
                with torch.enable_grad():
                    leaves = [a.detach().requires_grad_(i in wanted) for i, a in enumerate(arrays)]
                    out = ctx.rebuild(leaves).A._matmat(Ys)
                    got = torch.autograd.grad(out, [leaves[i] for i in wanted], grad_outputs=Gs, allow_unused=True)
                for i, g in zip(wanted, got, strict=True):
                    grads[i] = g
            return (W, None, None, *grads)

    _FUNCTION = PinvApply
    return _FUNCTION


# ----------------------------------------------------------------------------- rules
@dispatch
def _pinv(A: LinearOperator, alg: Auto):
    return _pinv(A, alg.select("pinv", A)[0])


generic_methods("_pinv", "lstsq/pinv", "lo.Auto(), lo.SVD() or lo.LSMR()", resolve=False)


@dispatch
def _pinv(A: LinearOperator, alg: SVD):
    """Dense thin SVD: A^+ = V diag(s^+) U^H, s_i <= rcond s_max dropped; implicit gradients."""
    return SVDPinv(A)


@dispatch
def _pinv(A: LinearOperator, alg: LSMR):
    """LSMR per product (minimum-norm least squares); implicit gradients."""
    return IterativePinv(A, alg)


@dispatch
def _pinv(A: Dense, alg: Auto):
    """Square non-singular Dense: A^+ = A^{-1} by LU (Cholesky if PSD); else as for any operator."""
    if A.is_square and max(A.shape) <= alg.dense_n and A.xp.is_concrete(A.M):
        try:
            Ainv = inv(A, alg.select("inv", A)[0])
        except (SingularMatrixError, NotPSDError):
            Ainv = None  # singular (or PSD only semi-definitely): the SVD gives the minimum-norm solution
        if Ainv is not None and _well_conditioned(A, Ainv):
            return Ainv
    return _pinv(A, alg.select("pinv", A)[0])


def _well_conditioned(A: Dense, Ainv: LinearOperator) -> bool:
    """Whether ``||A||_F max_i ||A^{-1} z_i|| / ||z_i||`` (two fixed random probes, an estimate of
    cond(A) within a factor of about sqrt(n)) stays below ``1 / rcond``: a numerically singular
    matrix (a tiny but non-zero pivot) goes to the SVD instead, O(n^2) next to the O(n^3) factorisation."""
    xp = A.xp
    M = _no_grad(xp, A.M)
    Z = xp.normal(xp.make_key(0), (A.shape[0], 2), A.dtype, A.device)
    Y = _no_grad(xp, Ainv @ Z)
    if xp.all_finite(Y) is False:
        return False
    grow = xp.to_numpy(colnorm(xp, Y) / colnorm(xp, Z)).max()
    norm = float(xp.to_numpy(xp.sqrt(xp.sum(xp.real(xp.conj(M) * M)))))
    return bool(norm * grow * rcond(A) < 1)


def _generic(A, alg):
    """Fall through from a structure rule that does not apply to the generic (LinearOperator, alg) rule."""
    return _pinv.invoke(LinearOperator, type(alg))(A, alg)


@dispatch(precedence=STRUCTURE)
def _pinv(A: Diagonal, alg: Algorithm):
    """diag(d)^+ = diag(d^+): 1/d_i where |d_i| > rcond max|d|, else 0."""
    xp, d = A.xp, A.d
    a = xp.abs(d)
    keep = a > rcond(A) * a.max()
    return Diagonal(xp.where(keep, 1 / xp.where(keep, d, 1 + 0 * d), 0 * d))


@dispatch(precedence=STRUCTURE)
def _pinv(A: Identity, alg: Algorithm):
    """I^+ = I."""
    return A


@dispatch(precedence=STRUCTURE)
def _pinv(A: Kronecker, alg: Algorithm):
    """(A_1 ⊗ ... ⊗ A_p)^+ = A_1^+ ⊗ ... ⊗ A_p^+ (any factor shapes)."""
    return Kronecker(*(pinv(f, alg) for f in A.factors))


@dispatch(precedence=STRUCTURE)
def _pinv(A: BlockDiag, alg: Algorithm):
    """diag(B_1, ..., B_p)^+ = diag(B_1^+, ..., B_p^+) (any block shapes)."""
    return BlockDiag(*(pinv(b, alg) for b in A.blocks))


@dispatch(precedence=STRUCTURE)
def _pinv(A: Adjoint, alg: Algorithm):
    """(A^H)^+ = (A^+)^H."""
    return pinv(A.A, alg).H


@dispatch(precedence=STRUCTURE)
def _pinv(A: Transpose, alg: Algorithm):
    """(A^T)^+ = (A^+)^T."""
    return pinv(A.A, alg).T


@dispatch(precedence=STRUCTURE)
def _pinv(A: LowRank, alg: Algorithm):
    """(U V^H)^+ = V (V^H V)^{-1} (U^H U)^{-1} U^H for full-rank U, V; kept low rank, O((m + n) r^2)."""
    xp, conj = A.xp, A.xp.conj
    for F in (A.U, A.V):
        xp.check_finite(F, lambda: f"a factor of {A._label()}")

    def right_inverse_t(F):  # F (F^H F)^{-1}: the Gram matrix by Cholesky
        L = xp.cholesky(conj(F).T @ F)
        return conj(xp.cho_solve(L, conj(F).T)).T

    try:
        if A.U is A.V:
            return LowRank(right_inverse_t(A.U))
        return LowRank(right_inverse_t(A.V), right_inverse_t(A.U))
    except NotPSDError:  # rank-deficient factors: a Gram matrix is singular
        return _generic(A, alg)
