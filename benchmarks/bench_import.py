"""``import linops`` time and what it loads, each in a fresh interpreter.

For each measurement a new ``python -c`` process runs the import between two
``time.perf_counter()`` calls (interpreter start-up excluded); we report the best and the
median of several processes. Also measured: ``import numpy`` alone (linops' floor), the
first use of a dispatched function (``lo.solve`` loads plum and, on the first solve, scipy),
and ``import cola`` in CoLA's own virtual environment.

Target: ``import linops`` < 0.3 s, loading neither torch nor jax.

Run: ``python benchmarks/bench_import.py``
"""

from __future__ import annotations

import statistics

from _common import ROOT, fmt_ratio, fmt_s, run_in_cola, run_in_main, section, finish

TARGET_S = 0.3
RUNS = 7
COLA_RUNS = 3

_PROBE = """
import time, sys, json
t0 = time.perf_counter()
{stmt}
dt = time.perf_counter() - t0
mods = sorted({{m.split('.')[0] for m in sys.modules}})
print(json.dumps({{"s": dt, "mods": mods}}))
"""

_FIRST_SOLVE = """
import time, sys, json
t0 = time.perf_counter()
import linops as lo
import numpy as np
t1 = time.perf_counter()
solve = lo.solve
t2 = time.perf_counter()
x = solve(lo.Dense(2.0 * np.eye(4)), np.ones(4))
t3 = time.perf_counter()
assert abs(x - 0.5).max() < 1e-15
mods = sorted({m.split('.')[0] for m in sys.modules})
print(json.dumps({"import": t1 - t0, "access": t2 - t1, "first": t3 - t2, "s": t3 - t0, "mods": mods}))
"""


def _runs(stmt_or_code: str, n: int, cola: bool = False, raw: bool = False):
    code = stmt_or_code if raw else _PROBE.format(stmt=stmt_or_code)
    out, err = [], None
    for _ in range(n):
        res = run_in_cola(code, timeout=120) if cola else run_in_main(code, timeout=120)
        if not res["ok"]:
            err = res["error"]
            break
        out.append(res["result"])
    return out, err


def _heavy(mods):
    return [m for m in ("torch", "jax", "jaxlib", "scipy", "plum", "beartype") if m in mods]


def main():
    rows, notes = [], []
    np_runs, _ = _runs("import numpy", RUNS)
    t_np = min(r["s"] for r in np_runs)

    lo_runs, err = _runs("import linops", RUNS)
    if err:
        raise RuntimeError(f"import linops failed: {err}")
    t_lo = min(r["s"] for r in lo_runs)
    med_lo = statistics.median(r["s"] for r in lo_runs)
    mods = lo_runs[0]["mods"]
    forbidden = [m for m in ("torch", "jax", "jaxlib") if m in mods]
    verdict = ("met" if t_lo < TARGET_S else "MISSED") + (
        f"; loads {', '.join(forbidden)}: MISSED" if forbidden else "; no torch/jax: met")
    rows.append(["`import linops`", fmt_s(t_lo), fmt_s(med_lo), ", ".join(_heavy(mods)) or "numpy only",
                 "`import numpy`", fmt_s(t_np), fmt_ratio(t_lo, t_np), f"< {TARGET_S} s: {verdict}"])

    fs_runs, err = _runs(_FIRST_SOLVE, RUNS, raw=True)
    if fs_runs:
        best = min(fs_runs, key=lambda r: r["s"])
        rows.append(["`import linops` + first `lo.solve` (4x4)", fmt_s(best["s"]),
                     fmt_s(statistics.median(r["s"] for r in fs_runs)), ", ".join(_heavy(best["mods"])),
                     "`import numpy`", fmt_s(t_np), fmt_ratio(best["s"], t_np),
                     f"import {fmt_s(best['import'])}, `lo.solve` attribute (plum) {fmt_s(best['access'])}, "
                     f"first call (scipy, dispatch) {fmt_s(best['first'])}"])
    else:
        notes.append(f"first-solve probe failed: {err}")

    cola_runs, err = _runs("import cola", COLA_RUNS, cola=True)
    if cola_runs:
        t_c = min(r["s"] for r in cola_runs)
        rows.append(["`import cola` (CoLA's venv)", fmt_s(t_c), fmt_s(statistics.median(r["s"] for r in cola_runs)),
                     ", ".join(_heavy(cola_runs[0]["mods"])), "`import linops`", fmt_s(t_lo), fmt_ratio(t_c, t_lo),
                     f"linops is {t_c / t_lo:.0f}x faster to import"])
    else:
        rows.append(["`import cola` (CoLA's venv)", "not run", "—", "—", "—", "—", "—", err])

    cols = ["what", "best", "median", "heavy modules loaded", "comparator", "comparator best", "ratio", "notes"]
    notes = [
        f"Best / median of {RUNS} fresh interpreters ({COLA_RUNS} for CoLA), timing the import statement only "
        "(interpreter start-up excluded). linops is imported from the checkout (`PYTHONPATH`).",
        "heavy modules: which of torch, jax, jaxlib, scipy, plum, beartype are in `sys.modules` afterwards.",
    ] + notes
    return [section("Import time", cols, rows, notes)]


if __name__ == "__main__":
    finish(main())
