"""2-D Poisson on a 256 x 256 grid: ``(T ⊕ T) x = b`` with T the 1-D Laplacian tridiag(-1, 2, -1).

n = 65536. Contenders (float64, CPU, every call factorises/decomposes):

* linops: ``lo.solve(lo.KroneckerSum(Tl, Tl), b)`` with ``Tl = lo.PSD(lo.Dense(T))`` (and with
  ``lo.SelfAdjoint``): the factors' eigendecompositions, ``Q diag(1/(λ_i + λ_j)) Qᵀ``.
* hand-written numpy: the same method written out (one ``eigh`` per factor,
  ``Q₁ ((Q₁ᵀ B Q₂) / (λ_i + μ_j)) Q₂ᵀ``).
* scipy.sparse: ``spsolve`` (SuperLU) on the 65536 x 65536 sparse Laplacian (CSC).
* GPyTorch's linear_operator: ``SumKroneckerLinearOperator(T ⊗ I, I ⊗ T)`` ``.solve`` (torch).
* CoLA (own venv, torch float64): ``cola.solve`` on ``PSD(KronSum(PSD(Dense(T)), PSD(Dense(T))))``.

Accuracy: relative residual ``‖A x − b‖ / ‖b‖`` with the sparse matrix, and the difference
from spsolve's answer.

Run: ``python benchmarks/bench_poisson.py``
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import (  # first: sets thread counts
    fmt_err, fmt_ratio, fmt_s, load_average, run_in_cola, section, short_error, time_interleaved, finish,
)

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

M = 256
N = M * M
REPEAT = 5
COLA_TIMEOUT = 200


def make_problem(seed=0):
    T = 2 * np.eye(M) - np.eye(M, k=1) - np.eye(M, k=-1)
    b = np.random.default_rng(seed).standard_normal(N)
    return T, b


def sparse_laplacian():
    t = sp.diags([-np.ones(M - 1), 2 * np.ones(M), -np.ones(M - 1)], [-1, 0, 1], format="csr")
    eye = sp.identity(M, format="csr")
    return (sp.kron(t, eye) + sp.kron(eye, t)).tocsc()


def hand_eigen(T1, T2, b):
    """``(T1 ⊕ T2)⁻¹ b`` from one ``eigh`` per factor (as general code must; with T1 = T2 one would do)."""
    w1, Q1 = np.linalg.eigh(T1)
    w2, Q2 = np.linalg.eigh(T2)
    B = b.reshape(T1.shape[0], T2.shape[0])
    return (Q1 @ ((Q1.T @ B @ Q2) / (w1[:, None] + w2[None, :])) @ Q2.T).reshape(-1)


def linops_calls(T, b):
    import linops as lo

    return {
        "linops PSD": lambda: lo.solve(lo.KroneckerSum(lo.PSD(lo.Dense(T)), lo.PSD(lo.Dense(T))), b),
        "linops SelfAdjoint": lambda: lo.solve(
            lo.KroneckerSum(lo.SelfAdjoint(lo.Dense(T)), lo.SelfAdjoint(lo.Dense(T))), b),
    }


def linop_call(T, b):
    import torch
    from linear_operator.operators import (DenseLinearOperator, KroneckerProductLinearOperator,
                                           SumKroneckerLinearOperator)

    Tt = torch.tensor(T)
    eye = torch.eye(M, dtype=torch.float64)
    bt = torch.tensor(b)[:, None]

    def solve():
        with torch.no_grad():
            A = SumKroneckerLinearOperator(
                KroneckerProductLinearOperator(DenseLinearOperator(Tt), DenseLinearOperator(eye)),
                KroneckerProductLinearOperator(DenseLinearOperator(eye), DenseLinearOperator(Tt)))
            return A.solve(bt)[:, 0].numpy()

    return solve


_COLA = """
import torch, cola
torch.set_default_dtype(torch.float64)
T = torch.tensor(np.load(f"{DATA}/T.npy")); b = torch.tensor(np.load(f"{DATA}/b.npy"))
out = {"inv_rules": None}
try:
    import inspect, cola.linalg.inverse.inv as invmod
    out["inv_rules"] = "KronSum" in inspect.getsource(invmod)
except Exception:
    pass
A = cola.PSD(cola.ops.KronSum(cola.PSD(cola.ops.Dense(T)), cola.PSD(cola.ops.Dense(T))))
try:
    t0 = time.perf_counter(); x = cola.solve(A, b); out["s"] = time.perf_counter() - t0
    np.save(f"{DATA}/x_cola.npy", x.numpy())
except Exception as e:
    out["error"] = _err(e)
print(json.dumps(out))
"""


def cola_run(T, b):
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "T.npy", T)
        np.save(Path(tmp) / "b.npy", b)
        res = run_in_cola(_COLA, timeout=COLA_TIMEOUT, prelude=True, consts={"DATA": tmp})
        xf = Path(tmp) / "x_cola.npy"
        res["x"] = np.load(xf) if xf.exists() else None
    return res


def main():
    T, b = make_problem()
    L = sparse_laplacian()
    notes = []
    load0 = load_average()

    def residual(x):
        return float(np.linalg.norm(L @ np.asarray(x) - b) / np.linalg.norm(b))

    calls = {"spsolve": lambda: spla.spsolve(L, b), "hand": lambda: hand_eigen(T, T, b)}
    calls.update(linops_calls(T, b))
    try:
        calls["linear_operator"] = linop_call(T, b)
    except Exception as e:
        notes.append(f"linear_operator not run: {short_error(e)}")
    timed = time_interleaved(calls, REPEAT)
    for who in ("spsolve", "hand"):
        if "error" in timed[who]:
            raise RuntimeError(f"{who} failed: {timed[who]['error']}")
    x_sp = timed["spsolve"]["result"]
    t_sp = timed["spsolve"]["median_s"]
    t_lo = timed["linops PSD"].get("median_s")

    def row(label, r, note=""):
        if "error" in r:
            return [label, "failed: " + r["error"], fmt_s(t_sp), "—", "—", "—", "—", note]
        x = r["result"]
        rel = float(np.linalg.norm(x - x_sp) / np.linalg.norm(x_sp))
        return [label, fmt_s(r["median_s"]), fmt_s(t_sp), fmt_ratio(r["median_s"], t_sp),
                fmt_ratio(t_lo, r["median_s"]), fmt_err(residual(x)), fmt_err(rel), note]

    rows = [
        row("linops `KroneckerSum(PSD(Dense(T)), PSD(Dense(T)))`", timed["linops PSD"]),
        row("linops `KroneckerSum(SelfAdjoint(Dense(T)), SelfAdjoint(Dense(T)))`", timed["linops SelfAdjoint"]),
        row("hand-written numpy eigen-solver", timed["hand"], "same method as linops, written out (one eigh per factor)"),
        row("scipy.sparse `spsolve` (SuperLU)", timed["spsolve"], "reference"),
    ]
    if "linear_operator" in timed:
        rows.append(row("linear_operator `SumKroneckerLinearOperator(T⊗I, I⊗T)`", timed["linear_operator"]))

    cola = cola_run(T, b)
    label = "CoLA `PSD(KronSum(PSD(Dense(T)), PSD(Dense(T))))`, `cola.solve` (Auto → CG)"
    if not cola["ok"]:
        rows.append([label, "not run: " + cola["error"], fmt_s(t_sp), "—", "—", "—", "—", ""])
    elif "error" in cola["result"]:
        rows.append([label, "raised: " + cola["result"]["error"], fmt_s(t_sp), "—", "—", "—", "—", ""])
    else:
        r = cola["result"]
        x = cola["x"]
        rows.append([label, fmt_s(r["s"]) + " (1 run)", fmt_s(t_sp), fmt_ratio(r["s"], t_sp), fmt_ratio(t_lo, r["s"]),
                     fmt_err(residual(x)), fmt_err(float(np.linalg.norm(x - x_sp) / np.linalg.norm(x_sp))),
                     "CG, tol 1e-6, max_iters 1000 (CoLA's defaults)"])
        if r.get("inv_rules") is False:
            notes.append("CoLA 0.0.7 has no `inv` rule for KronSum: `cola.solve` falls back to Auto, which picks CG "
                         "for a PSD operator of more than 1000 rows (GMRES if not annotated PSD; not run here to stay "
                         "within the time budget).")
    rows.append(["Dense 65536 x 65536", "not run", "—", "—", "—", "—", "—", f"{N * N * 8 / 1e9:.1f} GB"])
    notes = [
        f"T = tridiag(-1, 2, -1) of size {M} as a dense array; n = {N}; b standard normal; float64. Median of "
        f"{REPEAT} calls after one warm-up, in-process contenders interleaved round by round; CoLA runs once. "
        f"Load average before: {load0}, after: {load_average()}.",
        "residual: ‖A x − b‖ / ‖b‖ with the sparse Laplacian; 'vs spsolve': ‖x − x_spsolve‖ / ‖x_spsolve‖. "
        "The condition number is about 2.7e4.",
        "spsolve's time excludes building the sparse matrix.",
    ] + notes
    cols = ["solver", "time", "spsolve", "ratio to spsolve", "linops (PSD) / this", "relative residual",
            "vs spsolve", "notes"]
    return [section(f"2-D Poisson, `KroneckerSum(T, T)` with T 256x256 (n = {N})", cols, rows, notes)]


if __name__ == "__main__":
    finish(main())
