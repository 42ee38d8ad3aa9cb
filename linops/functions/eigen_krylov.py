"""k eigenpairs / singular triplets of large operators by Krylov and block methods, with implicit gradients.

* ``krylov_eigh(A, k, which, alg)``: self-adjoint A by ``Lanczos`` (full
  reorthogonalisation; the Krylov dimension doubles until the k pairs converge),
  ``LOBPCG`` ("LA"/"SA") or ``SubspaceIteration`` ("LM").
* ``arnoldi_eig(A, k, which, alg)``: general square A by Arnoldi.
* ``krylov_svd(A, k, alg)``: Golub-Kahan-Lanczos (``Lanczos``) or ``RandomizedSVD``.

Gradients of ``krylov_eigh`` (torch ``autograd.Function``, jax ``custom_vjp``) are implicit:
nothing is backpropagated through the iterations. With cotangents ``ḡ`` (k,) for the
eigenvalues and ``Ḡ`` (n, k) for the eigenvectors, the cotangent of A is

    Ā = (V (diag(ḡ) + F ∘ (V^H Ḡ)) - X) V^H,   F_ij = 1 / (λ_j - λ_i) (0 for i = j or λ_i = λ_j)

where column i of X solves ``P (A - λ_i I) P x_i = P ḡ_i`` with ``P = I - V V^H`` (MINRES,
relative tolerance ``max(alg.tol, 100 eps)``, skipped when Ḡ is zero): the first term is
``dλ_i = v_i^H dA v_i``, the second the eigenvector change inside span(V), the third the
change outside it. It reaches A's arrays through the VJP of the one product ``A V``.
Eigenvectors are defined up to a phase, so only losses invariant to it have a gradient
(the formula drops the diagonal of ``V^H Ḡ``); a degenerate pair inside the k has none.
"""

from __future__ import annotations

from ..algorithms import Lanczos
from ..algorithms.arnoldi import Arnoldi, arnoldi
from ..algorithms.info import SolveInfo, report
from ..algorithms.lanczos import default_dimension, lanczos, ritz
from ..algorithms.lobpcg import LOBPCG, lobpcg
from ..algorithms.minres import minres
from ..algorithms.randomized import RandomizedSVD, bidiagonal, golub_kahan, randomized_svd
from ..algorithms.subspace import SubspaceIteration, subspace_iteration
from ..operators import Dense, LinearOperator
from ..operators.base import array_leaves

__all__ = ["krylov_eigh", "lanczos_eigh", "arnoldi_eig", "krylov_svd", "KRYLOV_EIGH", "KRYLOV_SVD"]

#: the ``alg=`` types ``lo.eigh`` with k hands to this module, and those ``lo.svd`` does
KRYLOV_EIGH = (Lanczos, LOBPCG, SubspaceIteration)
KRYLOV_SVD = (Lanczos, RandomizedSVD)
_EIGH_WHICH = {Lanczos: ("LA", "SA", "LM", "SM"), LOBPCG: ("LA", "SA"), SubspaceIteration: ("LM",)}
_EIG_WHICH = ("LM", "SM", "LR", "SR", "LI", "SI", "LA", "SA")


def _safe(xp, s):
    return xp.where(s > 0, s, 1 + 0 * s)


_JITTED: dict = {}


def _run(kernel, op, *args, static: int = 0):
    """``kernel(op, *args)``; on jax through a cached ``jax.jit`` whose last ``static`` arguments
    are static, so repeated calls with the same operator structure and options compile once
    (the operator is a pytree argument, not a closure)."""
    if op.xp.name != "jax":
        return kernel(op, *args)
    import jax

    n_args = 1 + len(args)
    key = (kernel, n_args, static)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(kernel, static_argnums=tuple(range(n_args - static, n_args)))
    return _JITTED[key](op, *args)


def _k_lanczos(op, v0, m):
    return lanczos(op._matmat, v0, op.xp, m)


def _k_arnoldi(op, v0, m):
    return arnoldi(op._matmat, v0, op.xp, m)


def _k_golub_kahan(op, v0, steps):
    return golub_kahan(op._matmat, op.H._matmat, v0, op.shape[0], op.xp, steps)


def _k_randomized(op, omega, k, power_iters):
    return randomized_svd(op._matmat, op.H._matmat, omega, op.xp, k, power_iters)


def _k_lobpcg(op, X0, pc, k, tol, max_iters, largest):
    return lobpcg(op._matmat, X0, op.xp, k, tol, max_iters, largest, None if pc is None else pc._matmat)


def _k_subspace(op, X0, k, tol, max_iters):
    return subspace_iteration(op._matmat, X0, op.xp, k, tol, max_iters)


# --------------------------------------------------------------------------- eigh
def krylov_eigh(A: LinearOperator, k: int, which: str, alg):
    """``(w (k,) ascending, Dense V (n, k))`` of self-adjoint A by ``alg``; implicit gradients."""
    from .eigen import _check_k

    allowed = _EIGH_WHICH[type(alg)]
    if which not in allowed:
        hint = " (largest magnitude only: use lo.Lanczos() or lo.LOBPCG() for others)" if allowed == ("LM",) else ""
        raise ValueError(f"lo.eigh with alg={type(alg).__name__}() takes which in {allowed}, got {which!r}{hint}")
    _check_k(k, A.shape[0])
    if isinstance(alg, (LOBPCG, SubspaceIteration)):
        b = alg.block or k
        if not k <= b <= A.shape[0]:
            raise ValueError(f"{type(alg).__name__}: block must be in k..n = {k}..{A.shape[0]}, got {b}")

    def solve(op):
        w, V, info = _EIGH_SOLVERS[type(alg)](op, k, which, alg)
        report(info, alg.tol, alg.on_failure, op.xp)
        order = op.xp.argsort(w)
        return w[order], V[:, order]

    w, V = _with_implicit_gradient(A, solve, alg)
    return w, Dense(V)


def lanczos_eigh(A: LinearOperator, k: int, which: str, alg):
    """k eigenpairs of self-adjoint A by Lanczos (kept for callers of the earlier name)."""
    return krylov_eigh(A, k, which, alg)


def _lanczos(A, k, which, alg):
    xp = A.xp
    n = A.shape[0]
    cap = min(n, alg.max_iters or n)
    m = min(cap, default_dimension(k, n))
    v0 = xp.normal(xp.make_key(alg.seed), (n, 1), A.dtype, A.device)
    while True:
        alpha, beta, Q = _run(_k_lanczos, A, v0, m, static=1)
        theta, _, S = ritz(xp, alpha, beta)
        theta, S = theta[0], xp.astype(S[0], A.dtype)
        V = xp.einsum("jn,ji->ni", Q[0], S)  # Ritz vectors (n, m)
        valid = xp.sqrt(xp.sum(xp.real(xp.conj(V) * V), axis=0)) > 0.5  # drop directions past a breakdown
        key = xp.abs(theta) if which in ("LM", "SM") else theta
        largest = which in ("LA", "LM")
        big = xp.abs(theta).max() + 1
        idx = xp.topk(xp.where(valid, key, -big if largest else big), k, largest=largest)
        scale = _safe(xp, xp.abs(theta).max())
        rel = xp.abs(beta[m - 1, 0] * xp.real(S[m - 1, :]))[idx] / scale
        converged = rel <= alg.tol
        if m >= cap or not xp.is_concrete(converged) or bool(converged.all()):
            break
        m = min(cap, 2 * m)
    info = SolveInfo("Lanczos", m, converged, rel, rel[None, :], ~valid[idx])
    return theta[idx], V[:, idx], info


def _start(A, alg, cols):
    """The seeded Gaussian start block (n, cols), n = A.shape[1] (the domain)."""
    return A.xp.normal(A.xp.make_key(alg.seed), (A.shape[1], cols), A.dtype, A.device)


def _lobpcg(A, k, which, alg):
    M = alg.precond
    X0 = _start(A, alg, alg.block or k)
    opts = (k, alg.tol, alg.max_iters or 500, which == "LA")
    if M is None or isinstance(M, LinearOperator):
        return _run(_k_lobpcg, A, X0, M, *opts, static=4)
    return lobpcg(A._matmat, X0, A.xp, *opts, M)  # a plain callable: not a jit argument


def _subspace(A, k, which, alg):
    return _run(_k_subspace, A, _start(A, alg, alg.block or k), k, alg.tol, alg.max_iters or 1000, static=3)


_EIGH_SOLVERS = {Lanczos: _lanczos, LOBPCG: _lobpcg, SubspaceIteration: _subspace}


# ---------------------------------------------------------------- implicit gradient
def _cotangent_left(A, w, V, gw, gV, alg):
    """``L`` with ``Ā = L V^H`` (module docstring); A, w, V, gw, gV carry no gradient."""
    xp = A.xp
    n, k = V.shape
    dt = V.dtype
    Vh = xp.conj(V).T
    inner = xp.diag(xp.astype(gw, dt))
    need_vectors = not xp.is_concrete(gV) or bool(xp.to_numpy(xp.abs(gV)).max() > 0)
    if not need_vectors:
        return V @ inner
    diff = w[None, :] - w[:, None]  # (i, j): λ_j - λ_i
    F = xp.where(diff != 0, 1 / xp.where(diff != 0, diff, 1 + 0 * diff), 0 * diff)
    inner = inner + xp.astype(F, dt) * (Vh @ gV)

    def proj(Y):
        return Y - V @ (Vh @ Y)

    wc = xp.astype(w, dt)[None, :]

    def shifted(Y):
        PY = proj(Y)
        return proj(A._matmat(PY) - PY * wc)

    tol = max(alg.tol, 100 * float(xp.eps(w.dtype)))
    X, info = minres(shifted, proj(gV), xp, tol, 10 * n)
    report(info, tol, "warn", xp)
    return V @ inner - proj(X)


def _with_implicit_gradient(A, solve, alg):
    xp = A.xp
    if xp.name == "jax":
        return _eigh_jax(A, solve, alg)
    if xp.name == "torch":
        import torch

        arrays, rebuild = array_leaves(A)
        if torch.is_grad_enabled() and any(getattr(a, "requires_grad", False) for a in arrays):
            return _torch_eigh_function().apply(alg, rebuild, solve, *arrays)
    return solve(A)


def _eigh_jax(A, solve, alg):
    import jax

    @jax.custom_vjp
    def pairs(op):
        return solve(op)

    def fwd(op):
        w, V = solve(op)
        return (w, V), (op, w, V)

    def bwd(res, g):
        op, w, V = res
        xp = op.xp
        L = jax.lax.stop_gradient(_cotangent_left(op, w, V, g[0], g[1], alg))
        _, pull = jax.vjp(lambda o: xp.real(xp.sum(xp.conj(L) * o._matmat(V))), op)
        return pull(xp.ones((), w.dtype))

    pairs.defvjp(fwd, bwd)
    return pairs(A)


_EIGH_FUNCTION = None


def _torch_eigh_function():
    global _EIGH_FUNCTION
    if _EIGH_FUNCTION is not None:
        return _EIGH_FUNCTION
    import torch

    class KrylovEigh(torch.autograd.Function):
        """k eigenpairs with inputs (A's tensors); backward: Ā = L V^H through the VJP of A V."""

        @staticmethod
        def forward(ctx, alg, rebuild, solve, *arrays):
            with torch.no_grad():
                w, V = solve(rebuild(arrays))
            ctx.alg, ctx.rebuild = alg, rebuild
            ctx.save_for_backward(w, V, *arrays)
            return w, V

        @staticmethod
        def backward(ctx, gw, gV):
            w, V, *arrays = ctx.saved_tensors
            A = ctx.rebuild(arrays)
            with torch.no_grad():
                L = _cotangent_left(A, w, V, gw, gV, ctx.alg)
            wanted = [i for i in range(len(arrays)) if ctx.needs_input_grad[3 + i]]
            grads = [None] * len(arrays)
            if wanted:
                with torch.enable_grad():
                    leaves = [a.detach().requires_grad_(i in wanted) for i, a in enumerate(arrays)]
                    f = (L.conj() * ctx.rebuild(leaves)._matmat(V)).sum().real
                    got = torch.autograd.grad(f, [leaves[i] for i in wanted], allow_unused=True)
                for i, gr in zip(wanted, got, strict=True):
                    grads[i] = gr
            return (None, None, None, *grads)

    _EIGH_FUNCTION = KrylovEigh
    return _EIGH_FUNCTION


# ---------------------------------------------------------------------------- eig
def eig_key(xp, w, which: str):
    """``(key, largest)``: the real sort key of eigenvalues ``w`` for ``which``."""
    if which not in _EIG_WHICH:
        raise ValueError(f"which must be one of {_EIG_WHICH} for lo.eig, got {which!r}")
    if which in ("LM", "SM"):
        return xp.abs(w), which == "LM"
    if which in ("LI", "SI"):
        return xp.real(-1j * w) if xp.is_complex(w.dtype) else 0 * w, which == "LI"
    return xp.real(w), which in ("LR", "LA")


def arnoldi_eig(A: LinearOperator, k: int, which: str, alg: Arnoldi):
    """``(w (k,), Dense V (n, k))``, best first by ``which``; the Krylov dimension doubles until converged."""
    from .eigen import _check_k

    xp = A.xp
    n = A.shape[0]
    eig_key(xp, xp.zeros((1,), A.dtype, A.device), which)  # validates which
    _check_k(k, n)
    cdt = xp.complex_dtype(A.dtype)
    cap = min(n, alg.max_iters or n)
    m = min(cap, default_dimension(k, n))
    v0 = _start(A, alg, 1)
    while True:
        H, Q = _run(_k_arnoldi, A, v0, m, static=1)
        theta, Y = xp.eig(xp.astype(H[0, :m, :m], cdt))
        V = xp.astype(Q[0, :m], cdt).T @ Y
        valid = xp.sqrt(xp.sum(xp.real(xp.conj(V) * V), axis=0)) > 0.5  # directions past a breakdown are zero
        key, largest = eig_key(xp, theta, which)
        big = xp.abs(key).max() + 1
        idx = xp.topk(xp.where(valid, key, -big if largest else big), k, largest=largest)
        scale = _safe(xp, xp.where(valid, xp.abs(theta), 0 * xp.abs(theta)).max())
        rel = (xp.abs(H[0, m, m - 1]) * xp.abs(Y[m - 1, :]))[idx] / scale
        converged = rel <= alg.tol
        if m >= cap or not xp.is_concrete(converged) or bool(converged.all()):
            break
        m = min(cap, 2 * m)
    info = SolveInfo("Arnoldi", m, converged, rel, rel[None, :], ~valid[idx])
    report(info, alg.tol, alg.on_failure, xp)
    return theta[idx], Dense(V[:, idx])


# ---------------------------------------------------------------------------- svd
def krylov_svd(A: LinearOperator, k: int, alg):
    """``(Dense U (m, k), s (k,) descending, Dense V (n, k))`` by Golub-Kahan-Lanczos or randomized."""
    from .eigen import _check_k

    xp = A.xp
    m_rows, n = A.shape
    _check_k(k, min(m_rows, n))
    if isinstance(alg, RandomizedSVD):
        ell = min(k + alg.oversample, min(m_rows, n))
        U, s, V = _run(_k_randomized, A, _start(A, alg, ell), k, alg.power_iters, static=2)
        return Dense(U), s, Dense(V)
    cap = min(m_rows, n, alg.max_iters or min(m_rows, n))
    steps = min(cap, default_dimension(k, min(m_rows, n)))
    v0 = _start(A, alg, 1)
    while True:
        alpha, beta, Ub, Vb = _run(_k_golub_kahan, A, v0, steps, static=1)
        P, s, Wh = xp.svd(bidiagonal(xp, alpha, beta))
        P, W = xp.astype(P, A.dtype), xp.conj(xp.astype(Wh, A.dtype)).T
        U = Ub.T @ P
        V = Vb[:steps].T @ W
        valid = (xp.sqrt(xp.sum(xp.real(xp.conj(U) * U), axis=0)) > 0.5) & (
            xp.sqrt(xp.sum(xp.real(xp.conj(V) * V), axis=0)) > 0.5
        )
        idx = xp.topk(xp.where(valid, s, -1 + 0 * s), k)
        scale = _safe(xp, s.max())
        rel = xp.abs(beta[steps - 1] * xp.abs(P[steps - 1, :]))[idx] / scale
        converged = rel <= alg.tol
        if steps >= cap or not xp.is_concrete(converged) or bool(converged.all()):
            break
        steps = min(cap, 2 * steps)
    info = SolveInfo("Lanczos", steps, converged, rel, rel[None, :], ~valid[idx])
    report(info, alg.tol, alg.on_failure, xp)
    return Dense(U[:, idx]), s[idx], Dense(V[:, idx])
