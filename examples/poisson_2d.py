"""The 2-D Poisson and heat equations on the unit square, with the grid Laplacian as a Kronecker sum.

    python examples/poisson_2d.py                              # grids N = 63, 127, 255 (n up to 65,025)
    LINOPS_EXAMPLE_SMALL=1 python examples/poisson_2d.py       # grids N = 7, 15, 31 (CI)

On an N x N interior grid (spacing h = 1 / (N + 1), zero Dirichlet boundary) the 5-point
Laplacian is ``-Δ_h = T ⊕ T = T ⊗ I + I ⊗ T``, with ``T = tridiag(-1, 2, -1) / h²`` the 1-D
second difference. linops keeps it as ``lo.KroneckerSum(T, T)`` (``T`` a ``lo.Tridiagonal``
annotated PSD), never forming the n x n matrix (n = N²), and its rules work through the
eigendecomposition of the single N x N factor ``T = Q Λ Q^T``:

* ``lo.solve(L, f)`` = ``(Q ⊗ Q) diag(1 / (λ_i + λ_j)) (Q ⊗ Q)^T f``: one N x N ``eigh`` and four
  N x N x N matrix products, O(N³) = O(n^1.5) time and O(n) memory.
* ``lo.exp(-t L)`` = ``exp(-t T) ⊗ exp(-t T)`` (the two terms of a Kronecker sum commute).

What it shows:

1. Poisson ``-Δu = f`` with the manufactured solution ``u = sin(πx) sin(2πy)``,
   ``f = 5π² u``: the max error against the exact ``u`` falls like h² (ratio about 4 per halving
   of h). Because ``u`` sampled on the grid is an eigenvector of the discrete Laplacian with
   eigenvalue ``λ_h = (4/h²)(sin²(πh/2) + sin²(πh))``, the discrete solution is exactly
   ``(5π² / λ_h) u``; linops must reproduce it to rounding, which is what is checked.
2. Heat ``u_t = Δu`` from ``u0 = sin(πx) sin(2πy)``: ``u(t) = exp(-t L) u0`` by ``lo.exp``.
   The discrete answer is ``exp(-t λ_h) u0`` (exact to rounding, checked); the continuous one
   is ``exp(-5π² t) u0`` (O(h²) away, printed).
3. The same function on torch (float64) and JAX (float64, under ``jax.jit``) when installed: one
   code path for all three. Each solve is timed next to ``scipy.sparse.linalg.spsolve`` (sparse
   LU) on the same matrix; the timings are informational, only errors are checked.

The script exits with status 1 if a check fails. Tolerances (relative to the largest entry of
the reference): ``TOL = 1e-9`` for the agreement with the exact discrete solutions and between
backends (rounding in the eigen route is of order cond(L) · eps ≈ 3e4 · 2e-16 ≈ 1e-11 at N = 255), and the
observed order of convergence must lie in [1.9, 2.1].
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

import linops as lo

SMALL = os.environ.get("LINOPS_EXAMPLE_SMALL", "") not in ("", "0")
SIZES = (7, 15, 31) if SMALL else (63, 127, 255)  # N + 1 doubles: h halves
TIMES = (0.001, 0.01, 0.05)  # heat-equation times
TOL = 1e-9
REPEATS = 3  # timings are the best of REPEATS calls


# ------------------------------------------------------------------------------- the problem
def grid(N: int) -> tuple[float, np.ndarray]:
    """Spacing h and the manufactured solution u = sin(πx) sin(2πy) on the N x N interior grid,
    flattened with y fastest (the order of ``KroneckerSum(T_x, T_y)``)."""
    h = 1.0 / (N + 1)
    x = h * np.arange(1, N + 1)
    return h, np.outer(np.sin(np.pi * x), np.sin(2 * np.pi * x)).reshape(-1)


def discrete_eigenvalue(h: float) -> float:
    """The eigenvalue of the 5-point -Δ_h for the mode sin(πx) sin(2πy): (4/h²)(sin²(πh/2) + sin²(πh))."""
    return 4 / h**2 * (math.sin(math.pi * h / 2) ** 2 + math.sin(math.pi * h) ** 2)


def laplacian(N: int, asarray=np.asarray) -> lo.KroneckerSum:
    """-Δ_h = T ⊕ T with T = tridiag(-1, 2, -1) / h², on the backend of ``asarray``.

    ``lower is upper`` makes the Tridiagonal SelfAdjoint; lo.PSD adds what we know besides
    (its eigenvalues are positive), so the Kronecker sum is PSD and SelfAdjoint too."""
    h = 1.0 / (N + 1)
    off = asarray(np.full(N - 1, -1 / h**2))
    T = lo.PSD(lo.Tridiagonal(off, asarray(np.full(N, 2 / h**2)), off))
    return lo.KroneckerSum(T, T)


def scipy_laplacian(N: int):
    import scipy.sparse as sp

    h = 1.0 / (N + 1)
    T = sp.diags([-np.ones(N - 1), 2 * np.ones(N), -np.ones(N - 1)], [-1, 0, 1]) / h**2
    I = sp.identity(N)  # noqa: E741
    return (sp.kron(T, I) + sp.kron(I, T)).tocsc()


def best_time(fn, *args) -> tuple[object, float]:
    """(result, best wall-clock seconds of REPEATS calls)."""
    best, out = math.inf, None
    for _ in range(REPEATS):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return out, best


def max_rel(got, ref) -> float:
    return float(np.max(np.abs(np.asarray(got) - ref)) / np.max(np.abs(ref)))


# ------------------------------------------------------------------------------- the checks
class Checks:
    def __init__(self):
        self.failures: list[str] = []

    def __call__(self, ok: bool, what: str) -> str:
        if not ok:
            self.failures.append(what)
        return "ok" if ok else "FAIL"


def poisson_table(check: Checks) -> None:
    from scipy.sparse.linalg import spsolve

    print("1. Poisson -Δu = f, u = sin(πx) sin(2πy), f = 5π² u   (numpy float64)")
    print(f"   {'N':>5s} {'n':>8s} {'h':>9s} {'max|U-u|':>11s} {'ratio':>6s} {'order':>6s} "
          f"{'vs discrete':>12s} {'lo.solve':>9s} {'spsolve':>9s}")
    prev = None
    for N in SIZES:
        h, u = grid(N)
        L = laplacian(N)
        f = 5 * math.pi**2 * u
        U, t_lo = best_time(lo.solve, L, f)
        exact_discrete = 5 * math.pi**2 / discrete_eigenvalue(h) * u
        e_disc = max_rel(U, exact_discrete)
        err = float(np.max(np.abs(U - u)))
        A = scipy_laplacian(N)
        Us, t_sp = best_time(spsolve, A, f)
        e_sp = max_rel(Us, exact_discrete)
        ratio = "" if prev is None else f"{prev / err:6.2f}"
        order = "" if prev is None else f"{math.log2(prev / err):6.3f}"
        status = check(e_disc <= TOL and e_sp <= TOL, f"Poisson N={N}: lo {e_disc:.1e}, spsolve {e_sp:.1e} > {TOL:g}")
        if prev is not None:
            p = math.log2(prev / err)
            check(1.9 <= p <= 2.1, f"Poisson N={N}: observed order {p:.3f} outside [1.9, 2.1]")
        print(f"   {N:5d} {N * N:8d} {h:9.2e} {err:11.3e} {ratio:>6s} {order:>6s} {e_disc:9.1e} {status:>2s} "
              f"{t_lo * 1e3:7.1f}ms {t_sp * 1e3:7.1f}ms")
        prev = err
    print(f"   (vs discrete: max rel. difference from the exact discrete solution (5π²/λ_h) u, tolerance {TOL:g};"
          f"\n    times: best of {REPEATS}, lo.solve including the N x N eigh, spsolve including its sparse LU)")
    print("\n   lo.explain(lo.solve, L):")
    print("   " + lo.explain(lo.solve, laplacian(SIZES[-1])).replace("\n", "\n   "))


def heat_table(check: Checks) -> None:
    N = SIZES[-1]
    h, u0 = grid(N)
    L = laplacian(N)
    lam = discrete_eigenvalue(h)
    print(f"\n2. Heat u_t = Δu, u0 = sin(πx) sin(2πy), u(t) = lo.exp(-t L) @ u0   (numpy float64, N = {N})")
    print(f"   {'t':>6s} {'vs exp(-tλ_h)u0':>16s} {'vs exp(-5π²t)u0':>16s} {'lo.exp + apply':>15s}")
    for t in TIMES:
        ut, secs = best_time(lambda t=t: lo.exp(-t * L) @ u0)
        e_disc = max_rel(ut, math.exp(-t * lam) * u0)
        e_cont = max_rel(ut, math.exp(-5 * math.pi**2 * t) * u0)
        status = check(e_disc <= TOL, f"heat t={t}: {e_disc:.1e} from the discrete solution > {TOL:g}")
        print(f"   {t:6.3f} {e_disc:13.1e} {status:>2s} {e_cont:16.2e} {secs * 1e3:13.1f}ms")
    print(f"   (λ_h = {lam:.6f} against 5π² = {5 * math.pi**2:.6f}; errors are max relative differences)")
    print("\n   lo.explain(lo.exp, -t * L):")
    print("   " + lo.explain(lo.exp, -TIMES[0] * L).replace("\n", "\n   "))


# ------------------------------------------------------------------------------- backends
def backends() -> list[tuple[str, object, object]]:
    """(name, asarray, wrap) per installed backend besides numpy; ``wrap(fn)`` is what is called
    and timed (``jax.jit`` of ``fn``, waiting for the result, for JAX; ``fn`` itself for torch)."""
    out = []
    try:
        import torch

        out.append(("torch float64", lambda a: torch.tensor(a, dtype=torch.float64), lambda fn: fn))
    except ImportError:
        print("   torch not installed: skipping torch")
    try:
        import jax
        import jax.numpy as jnp

        # x64 for this script's comparisons (linops never changes JAX settings itself)
        jax.config.update("jax_enable_x64", True)

        def jit(fn):
            compiled = jax.jit(fn)
            return lambda *a: jax.block_until_ready(compiled(*a))

        out.append(("jax float64 (jit)", lambda a: jnp.asarray(a, dtype=jnp.float64), jit))
    except ImportError:
        print("   jax not installed: skipping JAX")
    return out


def heat_and_poisson(L, f, u0, t):
    """One code path for every backend: a Poisson solve and a heat step with the same operator."""
    return lo.solve(L, f), lo.exp(-t * L) @ u0


def backend_table(check: Checks) -> None:
    N = SIZES[-1]
    h, u = grid(N)
    t = TIMES[1]
    f = 5 * math.pi**2 * u
    ref_U = 5 * math.pi**2 / discrete_eigenvalue(h) * u
    ref_heat = math.exp(-t * discrete_eigenvalue(h)) * u
    print(f"\n3. The same code on every backend (N = {N}, heat t = {t}): heat_and_poisson(L, f, u0, t)")
    print(f"   {'backend':<20s} {'Poisson':>12s} {'heat':>12s} {'time':>10s}")
    rows = [("numpy float64", np.asarray, lambda fn: fn)] + backends()
    for name, asarray, wrap in rows:
        L = laplacian(N, asarray)
        fn = wrap(heat_and_poisson)
        args = (L, asarray(f), asarray(u), t)
        fn(*args)  # warm-up: compilation (JAX), first-call costs
        (U, ut), secs = best_time(fn, *args)
        e1, e2 = max_rel(U, ref_U), max_rel(ut, ref_heat)
        status = check(e1 <= TOL and e2 <= TOL, f"{name}: Poisson {e1:.1e}, heat {e2:.1e} > {TOL:g}")
        print(f"   {name:<20s} {e1:12.1e} {e2:12.1e} {secs * 1e3:8.1f}ms  {status}")
    print("   (max rel. difference from the exact discrete solutions; time: best of "
          f"{REPEATS} after a warm-up call, for the solve and the heat step together)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-backends", action="store_true", help="numpy only (skip torch and JAX)")
    args = parser.parse_args(argv)
    print(f"2-D Poisson and heat equations with lo.KroneckerSum ({'small' if SMALL else 'default'} sizes: "
          f"N = {', '.join(map(str, SIZES))})\n")
    check = Checks()
    t0 = time.perf_counter()
    poisson_table(check)
    heat_table(check)
    if not args.no_backends:
        backend_table(check)
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    if check.failures:
        print(f"\n{len(check.failures)} check(s) FAILED:\n  " + "\n  ".join(check.failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
