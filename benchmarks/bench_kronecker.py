"""Kronecker product of three 32x32 SPD factors (n = 32768): solve, logdet, top-5 eigh.

Contenders, all float64 on the CPU, all including the factorisation in every call:

* linops: ``K = lo.Kronecker(*(lo.PSD(lo.Dense(A_i))))``; ``lo.solve(K, b)``, ``lo.logdet(K)``,
  ``lo.eigh(K, k=5)``.
* hand-written numpy/scipy: one Cholesky per factor (``cho_factor``), ``cho_solve`` along each
  axis of the reshaped vector; logdet ``Σ (n / n_i) logdet A_i``; top 5 eigenpairs from the
  factors' ``eigh`` (products of eigenvalues, Kronecker products of eigenvectors).
* CoLA (own venv, torch float64): ``cola.solve``, ``cola.logdet``, ``cola.eig(K, k=5)``.
* GPyTorch's linear_operator (torch float64): ``KroneckerProductLinearOperator`` ``.solve``,
  ``.logdet()``, ``.eigh()`` then the top 5.
* Dense: not run (the 32768 x 32768 matrix is 8.6 GB).

Correctness: every answer is compared with the hand-written one; linops' solve and
eigenpairs are also checked by their residuals, computed with the factors.

Run: ``python benchmarks/bench_kronecker.py``
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import (  # first: sets thread counts
    fmt_err, fmt_ratio, fmt_s, load_average, run_in_cola, section, short_error, time_interleaved, finish,
)

import numpy as np
import scipy.linalg as sl

N_I = 32
P = 3
N = N_I**P
K_EIG = 5
REPEAT = 9
COLA_EIG_TIMEOUT = 60  # CoLA's Auto eig (Lanczos, up to 1000 iterations); a 300 s trial did not finish either


def make_problem(seed=0):
    rng = np.random.default_rng(seed)
    factors = []
    for _ in range(P):
        X = rng.standard_normal((N_I, N_I))
        factors.append(X @ X.T + N_I * np.eye(N_I))
    b = rng.standard_normal(N)
    return factors, b


# ------------------------------------------------------------------ hand-written
def _along_axes(ops, b):
    """Apply ``ops[i]`` (maps (n_i, R) -> (n_i, R)) along axis i of b reshaped to (n_1, ..., n_p)."""
    ns = [N_I] * len(ops)
    T = b.reshape(ns[0], -1)
    for i, op in enumerate(ops):
        Y = op(T)
        nxt = ns[i + 1] if i + 1 < len(ns) else 1
        T = Y.reshape(ns[i], -1).T.reshape(nxt, -1)  # rotate the finished axis to the back
    return T.reshape(-1)


def hand_matvec(factors, x):
    return _along_axes([lambda T, A=A: A @ T for A in factors], x)


def hand_solve(factors, b):
    cfs = [sl.cho_factor(A, lower=True, check_finite=False) for A in factors]
    return _along_axes([lambda T, c=c: sl.cho_solve(c, T, check_finite=False) for c in cfs], b)


def hand_logdet(factors):
    total = 0.0
    for A in factors:
        L = np.linalg.cholesky(A)
        total += (N // A.shape[0]) * 2.0 * np.log(np.diagonal(L)).sum()
    return total


def hand_eigh_top(factors, k=K_EIG):
    pairs = [np.linalg.eigh(A) for A in factors]
    w = pairs[0][0]
    for wi, _ in pairs[1:]:
        w = np.multiply.outer(w, wi).reshape(-1)
    idx = np.argpartition(w, -k)[-k:]
    idx = idx[np.argsort(w[idx])]
    V = np.empty((N, k))
    for j, flat in enumerate(idx):
        sub = np.unravel_index(flat, [N_I] * P)
        v = pairs[0][1][:, sub[0]]
        for (_, Q), s in zip(pairs[1:], sub[1:]):
            v = np.kron(v, Q[:, s])
        V[:, j] = v
    return w[idx], V


# ----------------------------------------------------------------------- linops
def linops_ops(factors):
    import linops as lo

    def K():
        return lo.Kronecker(*(lo.PSD(lo.Dense(A)) for A in factors))

    def eig():
        w, V = lo.eigh(K(), k=K_EIG)
        return np.asarray(w), V.to_dense()

    return {"solve": lambda b: lo.solve(K(), b), "logdet": lambda: float(lo.logdet(K())), "eigh": eig}


# -------------------------------------------------------------- linear_operator
def linop_ops(factors):
    import torch
    from linear_operator.operators import DenseLinearOperator, KroneckerProductLinearOperator

    Ts = [torch.tensor(A) for A in factors]

    def K():  # rebuilt per call: linear_operator caches factorisations on the object
        return KroneckerProductLinearOperator(*(DenseLinearOperator(T) for T in Ts))

    def solve(b):
        with torch.no_grad():
            return K().solve(torch.tensor(b)[:, None])[:, 0].numpy()

    def logdet():
        with torch.no_grad():
            return float(K().logdet())

    def eig():
        with torch.no_grad():
            w, V = K().eigh()
            top = torch.topk(w, K_EIG).indices.flip(0)
            return w[top].numpy(), V[:, top].to_dense().numpy()

    return {"solve": solve, "logdet": logdet, "eigh": eig}


# ------------------------------------------------------------------------- CoLA
_COLA_MAIN = """
import torch, cola
torch.set_default_dtype(torch.float64)
Ts = [torch.tensor(np.load(f"{DATA}/A{i}.npy")) for i in range(P)]
b = torch.tensor(np.load(f"{DATA}/b.npy"))
def K():
    return cola.PSD(cola.ops.Kronecker(*[cola.PSD(cola.ops.Dense(T)) for T in Ts]))
out = {}
try:
    med, mn, x = _time(lambda: cola.solve(K(), b), repeat=REPEAT)
    np.save(f"{DATA}/x_cola.npy", x.numpy())
    out["solve"] = {"s": med}
except Exception as e:
    out["solve"] = {"error": _err(e)}
try:
    med, mn, ld = _time(lambda: cola.logdet(K()), repeat=REPEAT)
    out["logdet"] = {"s": med, "value": float(ld)}
except Exception as e:
    out["logdet"] = {"error": _err(e)}
print(json.dumps(out))
"""

_COLA_EIG = """
import torch, cola
torch.set_default_dtype(torch.float64)
Ts = [torch.tensor(np.load(f"{DATA}/A{i}.npy")) for i in range(P)]
K = cola.PSD(cola.ops.Kronecker(*[cola.PSD(cola.ops.Dense(T)) for T in Ts]))
alg = cola.Auto() if ITERS is None else cola.Lanczos(max_iters=ITERS)
t0 = time.perf_counter()
try:
    w, V = cola.eig(K, k=K_EIG, which="LM", alg=alg)
    s = time.perf_counter() - t0
    out = {"s": s, "w": [float(v) for v in w], "alg": repr(alg)}
except Exception as e:
    out = {"error": _err(e)}
print(json.dumps(out))
"""


def cola_runs(factors, b):
    with tempfile.TemporaryDirectory() as d:
        for i, A in enumerate(factors):
            np.save(Path(d) / f"A{i}.npy", A)
        np.save(Path(d) / "b.npy", b)
        consts = {"DATA": d, "P": P, "REPEAT": REPEAT, "K_EIG": K_EIG}
        main = run_in_cola(_COLA_MAIN, prelude=True, consts=consts)
        x = None
        if main["ok"] and (Path(d) / "x_cola.npy").exists():
            x = np.load(Path(d) / "x_cola.npy")
        eig_auto = run_in_cola(_COLA_EIG, timeout=COLA_EIG_TIMEOUT, prelude=True, consts={**consts, "ITERS": None})
        eig_50 = run_in_cola(_COLA_EIG, prelude=True, consts={**consts, "ITERS": 50})
    return main, x, eig_auto, eig_50


# ------------------------------------------------------------------------- main
def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def main():
    factors, b = make_problem()
    notes = []

    load0 = load_average()
    lo_ops = linops_ops(factors)
    try:
        lin = linop_ops(factors)
    except Exception as e:  # record, do not fake
        lin = None
        notes.append(f"linear_operator not run: {short_error(e)}")
    calls = {
        "solve": {"linops": lambda: lo_ops["solve"](b), "hand": lambda: hand_solve(factors, b)},
        "logdet": {"linops": lo_ops["logdet"], "hand": lambda: hand_logdet(factors)},
        "eigh": {"linops": lo_ops["eigh"], "hand": lambda: hand_eigh_top(factors)},
    }
    if lin is not None:
        calls["solve"]["linear_operator"] = lambda: lin["solve"](b)
        calls["logdet"]["linear_operator"] = lin["logdet"]
        calls["eigh"]["linear_operator"] = lin["eigh"]
    timed = {op: time_interleaved(fns, REPEAT) for op, fns in calls.items()}
    t_hand = {op: timed[op]["hand"] for op in timed}
    t_lo = {op: timed[op]["linops"] for op in timed}
    for op in timed:
        for who in ("hand", "linops"):
            if "error" in timed[op][who]:
                raise RuntimeError(f"{who} {op} failed: {timed[op][who]['error']}")

    x_ref = t_hand["solve"]["result"]
    ld_ref = t_hand["logdet"]["result"]
    w_ref, V_ref = t_hand["eigh"]["result"]
    x_lo = t_lo["solve"]["result"]
    w_lo, V_lo = t_lo["eigh"]["result"]
    err = {
        "solve": f"vs hand {fmt_err(_rel(x_lo, x_ref))}; residual {fmt_err(_rel(hand_matvec(factors, x_lo), b))}",
        "logdet": f"vs hand {fmt_err(abs(t_lo['logdet']['result'] - ld_ref) / abs(ld_ref))}",
    }
    eig_res = max(np.linalg.norm(hand_matvec(factors, V_lo[:, j]) - w_lo[j] * V_lo[:, j]) / abs(w_lo[j])
                  for j in range(K_EIG))
    align = min(abs(float(V_lo[:, j] @ V_ref[:, j])) for j in range(K_EIG))
    err["eigh"] = (f"λ vs hand {fmt_err(_rel(w_lo, w_ref))}; max ‖Kv−λv‖/λ {fmt_err(eig_res)}; "
                   f"min |⟨v, v_hand⟩| {align:.6f}")

    # linear_operator
    t_lin, lin_err = {}, {}
    if lin is not None:
        for op in timed:
            r = timed[op]["linear_operator"]
            if "error" in r:
                notes.append(f"linear_operator {op}: {r['error']}")
                continue
            t_lin[op] = r
        if "solve" in t_lin:
            lin_err["solve"] = fmt_err(_rel(t_lin["solve"]["result"], x_ref))
        if "logdet" in t_lin:
            lin_err["logdet"] = fmt_err(abs(t_lin["logdet"]["result"] - ld_ref) / abs(ld_ref))
        if "eigh" in t_lin:
            lin_err["eigh"] = fmt_err(_rel(t_lin["eigh"]["result"][0], w_ref))

    # CoLA
    cola_main, x_cola, eig_auto, eig_50 = cola_runs(factors, b)
    t_cola, cola_err, cola_note = {}, {}, {}
    if cola_main["ok"]:
        r = cola_main["result"]
        for op in ("solve", "logdet"):
            if "s" in r[op]:
                t_cola[op] = r[op]["s"]
            else:
                cola_note[op] = r[op]["error"]
        if x_cola is not None:
            cola_err["solve"] = fmt_err(_rel(x_cola, x_ref))
        if "value" in r["logdet"]:
            cola_err["logdet"] = fmt_err(abs(r["logdet"]["value"] - ld_ref) / abs(ld_ref))
    else:
        cola_note["solve"] = cola_note["logdet"] = cola_main["error"]
    if eig_auto["ok"] and "s" in eig_auto["result"]:
        t_cola["eigh"] = eig_auto["result"]["s"]
        cola_err["eigh"] = fmt_err(_rel(eig_auto["result"]["w"], w_ref))
    else:
        cola_note["eigh"] = ("`cola.eig(K, k=5)` with Auto (Lanczos, 1000 iterations): "
                             + (eig_auto.get("error") or eig_auto["result"]["error"]))
    extra_rows = []
    if eig_50["ok"] and "s" in eig_50["result"]:
        r = eig_50["result"]
        extra_rows.append(["top-5 eigh, CoLA with `Lanczos(max_iters=50)`", fmt_s(t_lo["eigh"]["median_s"]),
                           fmt_s(t_hand["eigh"]["median_s"]),
                           fmt_ratio(t_lo["eigh"]["median_s"], t_hand["eigh"]["median_s"]), fmt_s(r["s"]),
                           fmt_ratio(t_lo["eigh"]["median_s"], r["s"]), "—", "—",
                           f"CoLA λ vs hand {fmt_err(_rel(r['w'], w_ref))} (single run)"])
    else:
        notes.append("CoLA `Lanczos(max_iters=50)` eig: " + (eig_50.get("error") or eig_50["result"]["error"]))

    names = {"solve": "solve `K x = b`", "logdet": "logdet", "eigh": "top-5 eigh (`k=5`)"}
    rows = []
    for op in ("solve", "logdet", "eigh"):
        tl = t_lo[op]["median_s"]
        th = t_hand[op]["median_s"]
        tc = t_cola.get(op)
        tn = t_lin[op]["median_s"] if op in t_lin else None
        check = [err[op]]
        if op in cola_err:
            check.append(f"CoLA vs hand {cola_err[op]}")
        if op in lin_err:
            check.append(f"linear_operator vs hand {lin_err[op]}")
        rows.append([names[op], fmt_s(tl), fmt_s(th), fmt_ratio(tl, th),
                     fmt_s(tc) if tc is not None else (cola_note.get(op) or "not run"), fmt_ratio(tl, tc),
                     fmt_s(tn) if tn is not None else "not run", fmt_ratio(tl, tn), "; ".join(check)])
    rows += extra_rows
    rows.append(["Dense (`lo.Dense(np.kron(...))`)", "not run", "—", "—", "—", "—", "—", "—",
                 f"{N} x {N} float64 is {N * N * 8 / 1e9:.1f} GB (machine: 24 GB, 2 cores); O(n³) Cholesky"])
    cols = ["operation", "linops", "hand numpy", "linops / hand", "CoLA", "linops / CoLA", "linear_operator",
            "linops / linear_operator", "correctness"]
    notes = [
        f"Three {N_I}x{N_I} SPD factors (X Xᵀ + {N_I} I), n = {N}, float64, one right-hand side. Median of "
        f"{REPEAT} timed calls after one warm-up, the in-process contenders interleaved round by round; each "
        "call builds the operator and factorises (no caching). Load average before: " + load0 + ", after: "
        + load_average() + ".",
        "linops and hand-written: numpy/scipy (OpenBLAS). CoLA and linear_operator: torch float64 tensors (MKL), "
        "CoLA in its own venv/process (its import is not timed). CoLA's numpy input goes through JAX in float32 "
        "unless x64 is enabled, so torch is its fair float64 backend.",
        "linear_operator: `.eigh()` returns all n eigenvalues (from the factors) and Kronecker eigenvectors; "
        "the top 5 columns are then taken with `topk` and densified. Its logdet clamps eigenvalues at 1e-7.",
        f"CoLA's `eig` has no Kronecker rule: Auto picks Lanczos (up to 1000 iterations, full "
        f"reorthogonalisation) for n > 1000; given {COLA_EIG_TIMEOUT} s here (a 300 s trial, at two threads on a loaded machine, did not finish either). "
        "The extra row runs it with 50 iterations.",
        "correctness: relative 2-norm differences; residuals use the factors (K is never formed).",
    ] + notes
    return [section(f"Kronecker product, 3 factors of {N_I}x{N_I} SPD (n = {N})", cols, rows, notes)]


if __name__ == "__main__":
    finish(main())
