"""Dispatch overhead on tiny operators: what linops adds on top of the raw array call.

4x4 float64, numpy and torch (CPU). Each call is timed with timeit (loops of ~20 ms, 25
repeats, garbage collection off) and reported as the median per call in microseconds.

Targets (from the performance issue): ``A @ x`` at most 3 µs over raw ``M @ x``; a 4x4
``lo.solve(A, b)`` at most 15 µs in total.

Run: ``python benchmarks/bench_dispatch.py``
"""

from __future__ import annotations

from _common import (  # first: sets thread counts
    fmt_err, fmt_ratio, fmt_us, load_average, section, time_small, time_small_interleaved, finish,
)

import numpy as np

MATVEC_OVERHEAD_US = 3.0
SOLVE_TOTAL_US = 15.0


def _err(a, b) -> float:
    a = np.asarray(a.detach() if hasattr(a, "detach") else a)
    b = np.asarray(b.detach() if hasattr(b, "detach") else b)
    return float(np.max(np.abs(a - b)))


def _row(backend, op, lo_fn, cmp_name, cmp_fn, target=None, kind=None):
    """Time both, check they agree, and build a table row."""
    err = _err(lo_fn(), cmp_fn())
    s_lo, s_cmp = time_small_interleaved([lo_fn, cmp_fn])
    t_lo, t_cmp = s_lo["median_us"], s_cmp["median_us"]
    verdict = ""
    if kind == "overhead":
        verdict = f"overhead ≤ {target:g} µs: " + ("met" if t_lo - t_cmp <= target else "MISSED")
    elif kind == "total":
        verdict = f"total ≤ {target:g} µs: " + ("met" if t_lo <= target else "MISSED")
    return [backend, op, f"{fmt_us(t_lo)} ({s_lo['min_us']:.1f})", cmp_name,
            f"{fmt_us(t_cmp)} ({s_cmp['min_us']:.1f})", fmt_ratio(t_lo, t_cmp),
            f"{t_lo - t_cmp:+.1f} µs", fmt_err(err), verdict], {"lo_us": t_lo, "cmp_us": t_cmp, "err": err}


def numpy_rows():
    import scipy.linalg as sl

    import linops as lo

    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 4))
    M = X @ X.T + 4 * np.eye(4)  # SPD, so the same matrix serves LU and Cholesky
    x = rng.standard_normal(4)
    A = lo.Dense(M)
    P = lo.PSD(lo.Dense(M))
    Ainv = lo.inv(A)

    def lu_pair():
        return sl.lu_solve(sl.lu_factor(M, check_finite=False), x, check_finite=False)

    def cho_pair():
        return sl.cho_solve(sl.cho_factor(M, check_finite=False), x, check_finite=False)

    lu = sl.lu_factor(M)
    rows = []
    rows.append(_row("numpy", "`A @ x` (Dense)", lambda: A @ x, "`M @ x`", lambda: M @ x,
                     MATVEC_OVERHEAD_US, "overhead"))
    rows.append(_construction_row(lo, M))
    rows.append(_row("numpy", "`lo.solve(A, b)` (LU)", lambda: lo.solve(A, x), "`numpy.linalg.solve`",
                     lambda: np.linalg.solve(M, x), SOLVE_TOTAL_US, "total"))
    rows.append(_row("numpy", "`lo.solve(A, b)` (LU)", lambda: lo.solve(A, x), "scipy `lu_factor`+`lu_solve`",
                     lu_pair, SOLVE_TOTAL_US, "total"))
    rows.append(_row("numpy", "`lo.solve(PSD(A), b)` (Cholesky)", lambda: lo.solve(P, x),
                     "scipy `cho_factor`+`cho_solve`", cho_pair, SOLVE_TOTAL_US, "total"))
    rows.append(_row("numpy", "`lo.inv(A) @ b` (factor reused)", lambda: Ainv @ x, "scipy `lu_solve`",
                     lambda: sl.lu_solve(lu, x, check_finite=False)))
    return rows


def _construction_row(lo, M):
    st = time_small(lambda: lo.Dense(M))
    t = st["median_us"]
    return ["numpy", "`lo.Dense(M)` (construction)", f"{fmt_us(t)} ({st['min_us']:.1f})", "—", "—", "—", "—", "—", ""], {"lo_us": t}


def torch_rows():
    import torch

    import linops as lo

    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 4))
    M = torch.tensor(X @ X.T + 4 * np.eye(4))
    x = torch.tensor(rng.standard_normal(4))
    A = lo.Dense(M)
    P = lo.PSD(lo.Dense(M))

    def lu_pair():
        LU, piv = torch.linalg.lu_factor(M)
        return torch.linalg.lu_solve(LU, piv, x[:, None])[:, 0]

    def cho_pair():
        L = torch.linalg.cholesky(M)
        return torch.cholesky_solve(x[:, None], L)[:, 0]

    rows = []
    with torch.no_grad():
        rows.append(_row("torch", "`A @ x` (Dense)", lambda: A @ x, "`M @ x`", lambda: M @ x,
                         MATVEC_OVERHEAD_US, "overhead"))
        rows.append(_row("torch", "`lo.solve(A, b)` (LU)", lambda: lo.solve(A, x), "`torch.linalg.solve`",
                         lambda: torch.linalg.solve(M, x), SOLVE_TOTAL_US, "total"))
        rows.append(_row("torch", "`lo.solve(A, b)` (LU)", lambda: lo.solve(A, x),
                         "`torch.linalg.lu_factor`+`lu_solve`", lu_pair, SOLVE_TOTAL_US, "total"))
        rows.append(_row("torch", "`lo.solve(PSD(A), b)` (Cholesky)", lambda: lo.solve(P, x),
                         "`torch.linalg.cholesky`+`cholesky_solve`", cho_pair, SOLVE_TOTAL_US, "total"))
    return rows


def main():
    load0 = load_average()
    rows = numpy_rows()
    notes = []
    try:
        rows += torch_rows()
    except ImportError as e:
        notes.append(f"torch rows not run: {e}")
    cols = ["backend", "linops call", "linops", "comparator", "comparator time", "ratio", "difference",
            "max abs diff", "target"]
    notes = [
        "4x4 float64 SPD matrix (the same one for LU and Cholesky). Each cell: median per call over 25 timeit "
        "repeats of ~20 ms (in parentheses: the fastest repeat); linops and its comparator alternate repeat by "
        f"repeat. The targets are judged on the medians. Load average before: {load0}, after: {load_average()}.",
        "`lo.solve` includes the factorisation, like the comparators; `lo.inv(A) @ b` reuses it.",
        "max abs diff: linops' answer against the comparator's (correctness check).",
        "torch rows under `torch.no_grad()`.",
    ] + notes
    return [section("Dispatch overhead (4x4, median µs per call)", cols, [r[0] for r in rows], notes)]


if __name__ == "__main__":
    finish(main())
