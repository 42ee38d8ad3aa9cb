"""A tour of linops: build, compose, print, solve, logdet, eigh and explain, on every backend.

Runs on numpy always, and on torch and JAX when they are installed. Every result is
compared with the same quantity computed densely in numpy (``np.kron``,
``np.linalg.solve``, ...) and the largest relative error is printed; the script exits
with status 1 if any error exceeds ``TOL``, so CI catches a regression.

    python examples/quickstart.py                           # default sizes; JAX's compilations take most of the time
    LINOPS_EXAMPLE_SMALL=1 python examples/quickstart.py    # the small sizes CI uses

What it shows, per backend:

1. A Kronecker product of three PSD factors: its ``repr`` tree, a solve (one Cholesky per
   factor), ``logdet`` (from the factors), all eigenpairs and the top 3, ``lo.explain``.
2. Composition: ``K @ K`` keeps the Kronecker structure (mixed-product rule);
   ``G.H @ G + I`` is annotated PSD by propagation, with no help from the user;
   ``lo.explain`` shows ``Auto`` choosing LU for a plain dense matrix, Cholesky once it is
   annotated PSD.
3. Low rank plus diagonal, ``U U^T + D``: solve and logdet by Woodbury / the matrix
   determinant lemma, O(n r^2), without forming the n x n matrix.
4. The 2-D Poisson equation: the grid Laplacian ``T_x ⊕ T_y`` (a Kronecker sum of 1-D
   tridiagonal second-difference matrices) solved through the factors' eigendecompositions.
5. Gradients through ``lo.logdet``: torch autograd (and ``jax.grad`` under ``jax.jit``),
   compared with differentiating the dense ``slogdet``.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import linops as lo

SMALL = os.environ.get("LINOPS_EXAMPLE_SMALL", "") not in ("", "0")
KRON_SIZES = (4, 3, 2) if SMALL else (8, 6, 5)  # N = 24 or 240
GRID = (6, 5) if SMALL else (24, 20)  # Poisson unknowns: 30 or 480
LOWRANK_N, LOWRANK_R = (40, 3) if SMALL else (500, 5)
TOL = 1e-8  # relative to the largest entry of the dense reference (float64 throughout)

failures: list[str] = []


# --------------------------------------------------------------------------- backends
def available_backends():
    """(name, to_backend, to_numpy) for numpy and for torch / JAX where importable."""
    out = [("numpy", np.asarray, np.asarray)]
    try:
        import torch

        out.append(("torch", torch.as_tensor, lambda t: t.detach().cpu().numpy()))
    except ImportError:
        print("torch not installed: skipping the torch tour")
    try:
        import jax
        import jax.numpy as jnp

        # float64 in JAX is opt-in; linops never changes JAX's settings, the user does.
        jax.config.update("jax_enable_x64", True)
        out.append(("jax", jnp.asarray, np.asarray))
    except ImportError:
        print("jax not installed: skipping the JAX tour")
    return out


def report(backend: str, what: str, got, ref, to_numpy) -> None:
    """Print the max relative error of ``got`` against the dense reference ``ref``."""
    got = np.asarray(to_numpy(got) if not np.isscalar(got) else got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    err = float(np.max(np.abs(got - ref))) / max(1.0, float(np.max(np.abs(ref))))
    ok = err <= TOL
    print(f"    {what:<44s} max rel. error {err:8.1e}" + ("" if ok else f"   FAIL (> {TOL:g})"))
    if not ok:
        failures.append(f"{backend}: {what} (error {err:.1e})")


def indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + line for line in str(text).splitlines())


# ----------------------------------------------------------------------- problem data
rng = np.random.default_rng(0)


def spd(n: int) -> np.ndarray:
    X = rng.standard_normal((n, n))
    return X @ X.T / n + np.eye(n)


def second_difference(n: int) -> np.ndarray:
    """The 1-D Dirichlet Laplacian tridiag(-1, 2, -1) / h^2 on n interior points (dense, for reference)."""
    h = 1.0 / (n + 1)
    return (2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)) / h**2


def second_difference_bands(n: int):
    """The bands (lower, diagonal, upper) of :func:`second_difference`."""
    h2 = (1.0 / (n + 1)) ** 2
    return -np.ones(n - 1) / h2, 2 * np.ones(n) / h2, -np.ones(n - 1) / h2


FACTORS = [spd(n) for n in KRON_SIZES]
KRON = FACTORS[0]
for F in FACTORS[1:]:
    KRON = np.kron(KRON, F)
N = KRON.shape[0]
B_KRON = rng.standard_normal(N)

G_DENSE = rng.standard_normal((KRON_SIZES[0] + 3, KRON_SIZES[0]))
GRAM = G_DENSE.T @ G_DENSE + np.eye(G_DENSE.shape[1])
B_GRAM = rng.standard_normal(GRAM.shape[0])

U_LR = rng.standard_normal((LOWRANK_N, LOWRANK_R))
D_LR = rng.uniform(1.0, 2.0, LOWRANK_N)
W_DENSE = U_LR @ U_LR.T + np.diag(D_LR)
B_LR = rng.standard_normal(LOWRANK_N)

NX, NY = GRID
POISSON = np.kron(second_difference(NX), np.eye(NY)) + np.kron(np.eye(NX), second_difference(NY))
F_POISSON = np.ones(NX * NY)  # constant source term

# The dense computations every backend is compared with, each done once, in numpy.
_DENSE = {
    "kron solve": lambda: np.linalg.solve(KRON, B_KRON),
    "kron logdet": lambda: np.linalg.slogdet(KRON)[1],
    "kron eigvalsh": lambda: np.linalg.eigvalsh(KRON),
    "kron2 logdet": lambda: np.linalg.slogdet(KRON @ KRON)[1],
    "gram solve": lambda: np.linalg.solve(GRAM, B_GRAM),
    "gram logdet": lambda: np.linalg.slogdet(GRAM)[1],
    "lowrank solve": lambda: np.linalg.solve(W_DENSE, B_LR),
    "lowrank logdet": lambda: np.linalg.slogdet(W_DENSE)[1],
    "poisson solve": lambda: np.linalg.solve(POISSON, F_POISSON),
    "poisson logdet": lambda: np.linalg.slogdet(POISSON)[1],
}
_REF: dict = {}


def ref(key: str):
    if key not in _REF:
        _REF[key] = _DENSE[key]()
    return _REF[key]


# ------------------------------------------------------------------------------- tour
# Each section computes its numbers in one function of operators and arrays. On JAX the
# function runs under jax.jit: operators are pytrees, so they go in as arguments, and
# one compilation replaces JAX's op-by-op dispatch of the eager mode.


def kronecker_numbers(K, b):
    w, V = lo.eigh(K)  # all eigenpairs; V is an operator: the factors' eigenvectors ⊗, columns reordered
    w3, _ = lo.eigh(K, k=3)  # the three largest eigenvalues, ascending
    return {"x": lo.solve(K, b), "logdet": lo.logdet(K), "w": w, "V": V.to_dense(), "w3": w3,
            "logdet K@K": lo.logdet(K @ K)}


def solve_and_logdet(A, b):
    return {"x": lo.solve(A, b), "logdet": lo.logdet(A)}


def tour(name: str, xp, to_numpy) -> None:
    print(f"\n=== {name} " + "=" * (60 - len(name)))
    t0 = time.perf_counter()
    if name == "jax":
        import jax

        run = jax.jit
    else:
        run = lambda f: f  # noqa: E731

    # 1. Kronecker product of PSD factors --------------------------------------------
    K = lo.Kronecker(*(lo.PSD(lo.Dense(xp(F))) for F in FACTORS))
    print(f"  1. Kronecker product, {N} x {N}, never formed:")
    print(indent(repr(K)))
    r = run(kronecker_numbers)(K, xp(B_KRON))
    report(name, "solve(K, b)", r["x"], ref("kron solve"), to_numpy)
    report(name, "logdet(K)", r["logdet"], ref("kron logdet"), to_numpy)
    report(name, "eigh(K): all eigenvalues", r["w"], ref("kron eigvalsh"), to_numpy)
    V = to_numpy(r["V"])
    report(name, "eigh(K): K V - V diag(w)", KRON @ V - V * to_numpy(r["w"]), 0 * KRON, np.asarray)
    report(name, "eigh(K, k=3): top eigenvalues", r["w3"], ref("kron eigvalsh")[-3:], to_numpy)
    print(indent(lo.explain(lo.solve, K)))

    # 2. Composition --------------------------------------------------------------------
    K2 = K @ K  # mixed product: (A ⊗ B)(C ⊗ D) = AC ⊗ BD, still a Kronecker product
    print(f"  2. K @ K is a {type(K2).__name__} of {type(K2.factors[0]).__name__}s, so its logdet is per factor")
    report(name, "logdet(K @ K)", r["logdet K@K"], ref("kron2 logdet"), to_numpy)
    G = lo.Dense(xp(G_DENSE))
    P = G.H @ G + lo.Identity(G.shape[1])  # G^H G is PSD, so is a sum of PSD terms: no annotation needed
    print("     G.H @ G + I is annotated PSD by propagation:")
    print(indent(repr(P), "      "))
    r = run(solve_and_logdet)(P, xp(B_GRAM))
    report(name, "solve(G^H G + I, b)", r["x"], ref("gram solve"), to_numpy)
    report(name, "logdet(G^H G + I)", r["logdet"], ref("gram logdet"), to_numpy)
    # Without a structure rule, Auto picks by annotation: LU in general, Cholesky for PSD.
    M = lo.Dense(xp(GRAM))
    print(indent(lo.explain(lo.solve, M)))
    print(indent(lo.explain(lo.solve, lo.PSD(M))))

    # 3. Low rank plus diagonal (Woodbury) ---------------------------------------------------
    W = lo.LowRank(xp(U_LR)) + lo.Diagonal(xp(D_LR))
    print(f"  3. U U^T + D with n = {LOWRANK_N}, r = {LOWRANK_R}:")
    print(indent(repr(W)))
    r = run(solve_and_logdet)(W, xp(B_LR))
    report(name, "solve(U U^T + D, b)  (Woodbury)", r["x"], ref("lowrank solve"), to_numpy)
    report(name, "logdet(U U^T + D)  (determinant lemma)", r["logdet"], ref("lowrank logdet"), to_numpy)
    print(indent(lo.explain(lo.solve, W)))

    # 4. 2-D Poisson equation: -Δu = 1 on the unit square, u = 0 on the boundary -------------
    # The 1-D matrices are positive definite; saying so (lo.PSD) makes the Kronecker sum
    # self-adjoint, which is what its fast solver needs.
    Tx, Ty = (lo.PSD(lo.Tridiagonal(*map(xp, second_difference_bands(m)))) for m in GRID)
    L = lo.KroneckerSum(Tx, Ty)
    print(f"  4. 2-D Poisson on a {NX} x {NY} grid:")
    print(indent(repr(L)))
    r = run(solve_and_logdet)(L, xp(F_POISSON))
    report(name, "solve(Tx ⊕ Ty, f)", r["x"], ref("poisson solve"), to_numpy)
    report(name, "logdet(Tx ⊕ Ty)", r["logdet"], ref("poisson logdet"), to_numpy)
    print(indent(lo.explain(lo.solve, L)))

    print(f"  ({name} tour: {time.perf_counter() - t0:.2f} s)")


# -------------------------------------------------------------------------- gradients
def torch_gradients() -> None:
    import torch

    print("\n=== torch gradients through lo.logdet " + "=" * 31)
    A = torch.tensor(FACTORS[0], requires_grad=True)
    B = torch.tensor(FACTORS[1], requires_grad=True)
    lo.logdet(lo.Kronecker(lo.PSD(lo.Dense(A)), lo.PSD(lo.Dense(B)))).backward()
    A_ref = A.detach().clone().requires_grad_()
    B_ref = B.detach().clone().requires_grad_()
    torch.linalg.slogdet(torch.kron(A_ref, B_ref))[1].backward()  # the dense way
    to_np = lambda t: t.detach().numpy()  # noqa: E731
    report("torch", "d logdet(A ⊗ B) / dA", A.grad, to_np(A_ref.grad), to_np)
    report("torch", "d logdet(A ⊗ B) / dB", B.grad, to_np(B_ref.grad), to_np)

    U = torch.tensor(U_LR, requires_grad=True)
    d = torch.tensor(D_LR, requires_grad=True)
    lo.logdet(lo.LowRank(U) + lo.Diagonal(d)).backward()
    U_ref = U.detach().clone().requires_grad_()
    d_ref = d.detach().clone().requires_grad_()
    torch.linalg.slogdet(U_ref @ U_ref.T + torch.diag(d_ref))[1].backward()
    report("torch", "d logdet(U U^T + D) / dU", U.grad, to_np(U_ref.grad), to_np)
    report("torch", "d logdet(U U^T + D) / dd", d.grad, to_np(d_ref.grad), to_np)


def jax_gradients() -> None:
    import jax
    import jax.numpy as jnp

    print("\n=== jax.grad through lo.logdet, under jax.jit " + "=" * 24)

    @jax.jit
    def f(U, d):  # operators are built inside; they are pytrees, so they may also be arguments
        return lo.logdet(lo.LowRank(U) + lo.Diagonal(d))

    gU, gd = jax.grad(f, argnums=(0, 1))(jnp.asarray(U_LR), jnp.asarray(D_LR))
    Winv = np.linalg.inv(W_DENSE)  # d logdet(W) = tr(W^{-1} dW), so dU = 2 W^{-1} U, dd = diag(W^{-1})
    report("jax", "d logdet(U U^T + D) / dU", gU, 2 * Winv @ U_LR, np.asarray)
    report("jax", "d logdet(U U^T + D) / dd", gd, np.diag(Winv), np.asarray)


def main() -> int:
    sizes = "small" if SMALL else "default"
    print(f"linops {lo.__version__} quickstart ({sizes} sizes; tolerance {TOL:g})")
    backends = available_backends()
    for name, xp, to_numpy in backends:
        tour(name, xp, to_numpy)
    names = [b[0] for b in backends]
    if "torch" in names:
        torch_gradients()
    if "jax" in names:
        jax_gradients()
    if failures:
        print(f"\n{len(failures)} check(s) FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nall checks passed on {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
