"""Structured-operator products vs a dense matmul, d = 256 ... 4096, float32 on the CPU (issue 5).

For every size ``d`` and every structure (all ``d x d``, built with linops' constructors):

* Monarch with ``b = 2^floor(log2(d)/2) ≈ sqrt(d)`` blocks (``lo.monarch_shapes(d, d, b)``);
* BTT of rank 1 and 4 on the grid ``n1 = m2 = b``, ``n2 = m1 = d / b`` (no padding);
* TensorTrain with 3 cores on ``lo.tt_shapes(d, d, 3)``, ranks (1, 4, 4, 1);
* Butterfly with log2(d) factors (``lo.Butterfly.random``, no bit reversal);
* LowRank ``U V^T`` of rank d / 16; Kronecker of two dense factors ``b x b`` and ``d/b x d/b``;
* the Einsum special points ``lo.einsum_points()`` (rank exponent 1/4) via ``lo.Einsum.from_theta``,
  at linops' default sizes (which pad the input when ``sqrt(d)`` is not an integer);

the product with a batch of B = 256 activations is timed, interleaved with the dense product in
the same process, on numpy and torch (and jit-compiled JAX, rows layout only):

* **rows** (the main table): ``X @ W`` for ``X`` (B, d), the layout of a neural-network layer
  (linops: ``op.__rmatmul__`` -> ``_rmatmat``); dense ``X @ W``;
* **columns**: ``W @ Xc`` for ``Xc`` (d, B) C-contiguous (``_matmat``); dense ``W @ Xc``.

Correctness: every product (each backend, each layout) is compared with float64 numpy. For
d <= ``DENSE_CHECK_MAX_D`` against ``to_dense()`` of a float64 copy of the same (float32-rounded)
parameters, whose ``_matmat`` path (``to_dense``) is first checked against its ``_rmatmat`` path
(``eye @ op``); above it (the dense Butterfly/TT matrices are not formed at large d) by probes:
``(X @ W) v`` against ``X (W v)`` and ``u (W Xc)`` against ``(u W) Xc`` with 4 random probe columns.

Run: ``python benchmarks/bench_structured.py`` (about 3-5 minutes on the 2-core development machine).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from _common import THREADS, fmt_err, load_average, section, short_error, time_small_interleaved, finish

if THREADS == "1":  # XLA's CPU products single-threaded too, like BLAS (must precede `import jax`)
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import linops as lo  # noqa: E402

try:  # JAX is a bonus: its column says so when it is missing
    import jax  # noqa: E402
    import jax.numpy as jnp  # noqa: E402
except ImportError:  # pragma: no cover
    jax = jnp = None

if THREADS not in ("0", ""):
    torch.set_num_threads(int(THREADS))

DS = (256, 512, 1024, 2048, 4096)
BATCH = 256
TT_RANKS = (1, 4, 4, 1)
LOWRANK_DIV = 16  # rank d / 16
#: timed rounds per size (each round: every callable once, in loops of >= TARGET_S seconds)
REPEAT = {256: 9, 512: 9, 1024: 7, 2048: 5, 4096: 3}
TARGET_S = 0.02
DENSE_CHECK_MAX_D = 1024
#: a relative error above this flags the row (float32: ~ eps32 sqrt(d) = 4e-6 at d = 1024 is typical)
ERR_FLAG = 1e-4
N_PROBES = 4
BACKENDS = ("numpy", "torch", "jax")


# ------------------------------------------------------------------------- structures
def _gauss(rng, shape, fan_in):
    return rng.standard_normal(shape) / math.sqrt(fan_in)


def _blocks(d: int) -> int:
    """``b = 2^floor(log2(d) / 2)``: sqrt(d) for even powers of two, the smaller factor otherwise."""
    return 2 ** ((d.bit_length() - 1) // 2)


def make_monarch(d, rng):
    b = _blocks(d)
    (k, q, p), (l_, s, r) = lo.monarch_shapes(d, d, b)
    R, L = _gauss(rng, (k, q, p), p), _gauss(rng, (l_, s, r), r)
    return f"{b} blocks: R {k}×{q}×{p}, L {l_}×{s}×{r}", lambda c: lo.Monarch(c(R), c(L))


def make_btt(rank):
    def make(d, rng):
        b = _blocks(d)
        n1, n2, m1, m2 = b, d // b, d // b, b
        R = _gauss(rng, (n1, m2, rank, n2), n2)
        L = _gauss(rng, (m2, m1, n1, rank), n1 * rank)
        return f"in {n1}×{n2}, out {m1}×{m2}, rank {rank}", lambda c: lo.BTT(c(R), c(L))
    return make


def make_tt(d, rng):
    ns, ms = lo.tt_shapes(d, d, 3)
    cores = [_gauss(rng, (TT_RANKS[k], ms[k], ns[k], TT_RANKS[k + 1]), ns[k] * TT_RANKS[k]) for k in range(3)]
    grid = "×".join(map(str, ns))
    return f"grid {grid}, ranks {TT_RANKS}", lambda c: lo.TensorTrain([c(G) for G in cores])


def make_butterfly(d, rng):
    blocks = np.asarray(lo.Butterfly.random(d, seed=int(rng.integers(2**31))).blocks)
    return f"{d.bit_length() - 1} factors of {d // 2} 2×2 blocks", lambda c: lo.Butterfly(c(blocks))


def make_lowrank(d, rng):
    r = d // LOWRANK_DIV
    U, V = _gauss(rng, (d, r), 1), _gauss(rng, (d, r), d)
    return f"rank {r}", lambda c: lo.LowRank(c(U), c(V))


def make_kronecker(d, rng):
    n1, n2 = _blocks(d), d // _blocks(d)
    A1, A2 = _gauss(rng, (n1, n1), n1), _gauss(rng, (n2, n2), n2)
    return f"{n1}×{n1} ⊗ {n2}×{n2}", lambda c: lo.Kronecker(lo.Dense(c(A1)), lo.Dense(c(A2)))


def make_einsum(name):
    def make(d, rng):
        E = lo.Einsum.from_theta(lo.einsum_points()[name], d, seed=int(rng.integers(2**31)))
        A, B, th = np.asarray(E.A), np.asarray(E.B), E.theta
        s = E.sizes
        desc = f"a,b,g={s.a},{s.b},{s.g}; d,e,f={s.d},{s.e},{s.f}; r={s.r}"
        if s.n_in != d:
            desc += f" (padded to {s.n_in})"
        return desc, lambda c: lo.Einsum(c(A), c(B), d, d, th)
    return make


STRUCTURES = {  # key -> (label, builder(d, rng) -> (description, make(convert) -> operator))
    "monarch": ("Monarch", make_monarch),
    "btt1": ("BTT rank 1", make_btt(1)),
    "btt4": ("BTT rank 4", make_btt(4)),
    "tt": ("TensorTrain, 3 cores", make_tt),
    "butterfly": ("Butterfly", make_butterfly),
    "lowrank": (f"LowRank (d/{LOWRANK_DIV})", make_lowrank),
    "kronecker": ("Kronecker", make_kronecker),
    **{f"einsum_{k}": (f"Einsum `{k}`", make_einsum(k)) for k in lo.einsum_points()},
}


# ------------------------------------------------------------------------ counts
def params_flops(op, c: int, rows: bool) -> tuple[int, int, str]:
    """``(parameters, flops of one product with c columns/rows, source of the flop count)``."""
    if isinstance(op, lo.Einsum):  # the plan linops runs for this layout
        return op.num_params, op.plan(c, transposed=rows).flops, "Einsum.plan"
    if isinstance(op, lo.TensorTrain):  # X @ W runs the sweep of W^T
        return op.num_params, (op.T if rows else op).flops(c), "flops()"
    if hasattr(op, "flops"):
        return op.num_params, op.flops(c), "flops()"
    if isinstance(op, lo.LowRank):
        m, n = op.shape
        return op.rank * (m + n), 2 * c * op.rank * (m + n), "computed 2c r (m + n)"
    if isinstance(op, lo.Kronecker):  # square factors: factor i costs 2 n_i N per column
        N = op.shape[1]
        ns = [f.shape[0] for f in op.factors]
        return sum(n * n for n in ns), 2 * c * N * sum(ns), "computed 2c N Σ n_i"
    m, n = op.shape
    return m * n, 2 * c * m * n, "computed 2cmn"


# ------------------------------------------------------------------- backends
def converters():
    """name -> (convert float64 numpy -> float32 array of the backend, array -> numpy float64)."""
    conv = {
        "numpy": (lambda a: np.asarray(a, np.float32), lambda y: np.asarray(y, np.float64)),
        "torch": (lambda a: torch.from_numpy(np.asarray(a, np.float32)), lambda y: y.numpy().astype(np.float64)),
    }
    if jax is not None:
        conv["jax"] = (lambda a: jnp.asarray(np.asarray(a, np.float32)), lambda y: np.asarray(y, np.float64))
    return conv


def _rows_jax(op, X):
    return X @ op


def _dense_rows_jax(W, X):
    return X @ W


def _jitted(fn, *args):
    """``fn`` compiled ahead of time for ``args``; the call blocks until the result is ready."""
    exe = jax.jit(fn).lower(*args).compile()
    return lambda: jax.block_until_ready(exe(*args))


def op_callables(backend: str, op, X, Xc) -> dict:
    """layout -> ``fn() -> result`` for the operator (JAX: rows only, jit-compiled)."""
    if backend == "jax":
        return {"rows": _jitted(_rows_jax, op, X)}
    return {"rows": lambda: X @ op, "cols": lambda: op @ Xc}


def dense_callables(backend: str, W, X, Xc) -> dict:
    if backend == "jax":
        return {"rows": _jitted(_dense_rows_jax, W, X)}
    return {"rows": lambda: X @ W, "cols": lambda: W @ Xc}


def _rel(y, ref) -> float:
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


# -------------------------------------------------------------------------- one size
def measure_size(d: int, seed: int) -> dict:
    """Build, check and time everything at size ``d``. Returns nested results (see ``main``)."""
    rng = np.random.default_rng(seed)
    conv = converters()
    round32 = lambda a: np.asarray(np.asarray(a, np.float32), np.float64)  # noqa: E731
    X64 = round32(rng.standard_normal((BATCH, d)))
    W64 = round32(_gauss(rng, (d, d), d))
    probes_v = rng.standard_normal((d, N_PROBES))
    probes_u = rng.standard_normal((N_PROBES, d))
    out = {"d": d, "ops": {}, "dense": {}, "ref_gap": {}}

    fns = {}
    # dense baselines
    for be, (to_be, _) in conv.items():
        W, X, Xc = to_be(W64), to_be(X64), to_be(np.ascontiguousarray(X64.T))
        for layout, fn in dense_callables(be, W, X, Xc).items():
            fns[("dense", be, layout)] = fn
    out["dense_counts"] = (d * d, 2 * BATCH * d * d)

    for key, (label, builder) in STRUCTURES.items():
        desc, make = builder(d, rng)
        op64 = make(round32)  # float64 numpy copy of the float32-rounded parameters
        rec = {"label": label, "desc": desc, "err": {}, "fail": {}}
        p, f_rows, src = params_flops(op64, BATCH, rows=True)
        rec.update(params=p, flops={"rows": f_rows, "cols": params_flops(op64, BATCH, rows=False)[1]}, src=src)
        if d <= DENSE_CHECK_MAX_D:
            Wd = op64.to_dense()
            out["ref_gap"][key] = _rel(np.eye(d) @ op64, Wd)  # _rmatmat path vs _matmat path
            refs = {"rows": X64 @ Wd, "cols": Wd @ X64.T}
        for be, (to_be, back) in conv.items():
            try:
                op = make(to_be)
                X, Xc = to_be(X64), to_be(np.ascontiguousarray(X64.T))
                mine = op_callables(be, op, X, Xc)
            except Exception as e:  # record, do not fake: the cell shows the error
                rec["fail"][be] = short_error(e)
                continue
            for layout, fn in mine.items():
                try:
                    y = back(fn())
                except Exception as e:
                    rec["fail"][(be, layout)] = short_error(e)
                    continue
                if d <= DENSE_CHECK_MAX_D:
                    err = _rel(y, refs[layout])
                elif layout == "rows":  # (X W) v vs X (W v): W v by the _matmat (matvec) path
                    err = _rel(y @ probes_v, X64 @ np.stack([op64 @ v for v in probes_v.T], 1))
                else:  # u (W Xc) vs (u W) Xc: u W by the _rmatmat path
                    err = _rel(probes_u @ y, (probes_u @ op64) @ X64.T)
                rec["err"][(be, layout)] = err
                fns[(key, be, layout)] = fn
        out["ops"][key] = rec
    # dense baselines' own errors (float32 BLAS vs float64)
    for be, (_, back) in conv.items():
        for layout in ("rows", "cols"):
            if ("dense", be, layout) in fns:
                y = back(fns[("dense", be, layout)]())
                ref = X64 @ W64 if layout == "rows" else W64 @ X64.T
                out["dense"][(be, layout, "err")] = _rel(y, ref)

    names = list(fns)
    t0 = time.perf_counter()
    timings = time_small_interleaved([fns[n] for n in names], repeat=REPEAT[d], target_s=TARGET_S)
    out["seconds"] = time.perf_counter() - t0
    out["times"] = {n: t["median_us"] * 1e-6 for n, t in zip(names, timings, strict=True)}
    return out


# ------------------------------------------------------------------------ formatting
def _t(s) -> str:
    if s is None:
        return "—"
    return f"{s * 1e6:.0f} µs" if s < 1e-3 else (f"{s * 1e3:.2f} ms" if s < 0.1 else f"{s * 1e3:.0f} ms")


def _x(r) -> str:
    return "—" if r is None else (f"{r:.2f}×" if r < 10 else f"{r:.1f}×")


def _num(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def _speedup(res, key, be, layout):
    td = res["times"].get(("dense", be, layout))
    to = res["times"].get((key, be, layout))
    return None if td is None or to is None else td / to


def _err_cell(rec, layout, bes) -> str:
    cells = []
    for be in bes:
        e = rec["err"].get((be, layout))
        if e is None:
            cells.append("—")
        else:
            cells.append(fmt_err(e) + (" **WRONG**" if not e <= ERR_FLAG else ""))
    return " / ".join(cells)


def summary_section(results, bes):
    cols = ["structure"] + [f"d = {r['d']}" for r in results]
    rows = [["dense `X @ W` (time)"] + [" · ".join(_t(r["times"].get(("dense", be, "rows"))) for be in bes)
                                         for r in results]]
    for key, (label, _) in STRUCTURES.items():
        row = [label]
        for r in results:
            rec = r["ops"][key]
            ceil = r["dense_counts"][1] / rec["flops"]["rows"]
            row.append(" · ".join(_x(_speedup(r, key, be, "rows")) for be in bes) + f" ({_x(ceil)})")
        rows.append(row)
    names = " · ".join(bes)
    notes = [
        f"Each cell: the speed-up over the dense product in the same backend, {names}; t_dense / t_structure, so "
        "above 1× the structure is faster. In parentheses the FLOP ratio, dense FLOPs / the structure's FLOPs: the "
        "ceiling the speed-up would reach if both ran at the same GFLOP/s. The first row gives the dense times.",
        f"Rows layout: `X @ W` with X of shape ({BATCH}, d), float32, one thread; the per-size tables below give "
        "times, FLOPs, GFLOP/s and errors, and the columns-layout table the other orientation.",
    ]
    return section(f"Summary: speed-up over dense `X @ W` (B = {BATCH}, float32, rows layout)", cols, rows, notes)


def size_section(res, bes):
    d = res["d"]
    cols = ["structure", "sizes", "params", "MFLOP", "FLOP ratio"]
    for be in bes:
        cols += [f"{be} time", f"{be} speed-up", f"{be} GFLOP/s"]
    cols += [f"rel. error ({' / '.join(bes)})"]
    dp, df = res["dense_counts"]
    row = ["dense `X @ W`", f"{d}×{d}", _num(dp), f"{df / 1e6:.1f}", "1×"]
    for be in bes:
        t = res["times"].get(("dense", be, "rows"))
        row += [_t(t), "1×" if t else "—", f"{df / t / 1e9:.1f}" if t else "—"]
    row.append(" / ".join(fmt_err(res["dense"].get((be, "rows", "err"))) for be in bes))
    rows = [row]
    for key, rec in res["ops"].items():
        f = rec["flops"]["rows"]
        row = [rec["label"], rec["desc"], _num(rec["params"]), f"{f / 1e6:.2f}", _x(df / f)]
        for be in bes:
            t = res["times"].get((key, be, "rows"))
            fail = rec["fail"].get(be) or rec["fail"].get((be, "rows"))
            if t is None:
                row += [f"failed: {fail}" if fail else "—", "—", "—"]
            else:
                row += [_t(t), _x(_speedup(res, key, be, "rows")), f"{f / t / 1e9:.1f}"]
        row.append(_err_cell(rec, "rows", bes))
        rows.append(row)
    how = (f"vs float64 `to_dense()` (d ≤ {DENSE_CHECK_MAX_D})" if d <= DENSE_CHECK_MAX_D
           else f"by {N_PROBES} probes, (X W) v vs X (W v), float64 reference")
    notes = [f"Median of {REPEAT[d]} interleaved rounds (each a timeit loop of ≥ {TARGET_S * 1e3:.0f} ms); "
             f"errors: relative Frobenius norm {how}. This size took {res['seconds']:.0f} s to time."]
    if res["ref_gap"]:
        worst = max(res["ref_gap"], key=res["ref_gap"].get)
        gap = res["ref_gap"][worst]
        notes.append("Reference check: `to_dense()` (the `_matmat` path) vs `eye @ op` (the `_rmatmat` path) in "
                     f"float64 agree to {fmt_err(gap)} (worst: {STRUCTURES[worst][0]})"
                     + (" — **the two paths disagree: the references are not trustworthy**" if gap > ERR_FLAG else "."))
    return section(f"d = {d}: rows layout `X @ W`, X of shape ({BATCH}, {d})", cols, rows, notes)


def columns_section(results):
    bes = ("numpy", "torch")
    cols = ["structure"] + [f"d = {r['d']}" for r in results] + ["max rel. error (all d, numpy / torch)"]
    rows = [["dense `W @ Xc` (time)"] + [" · ".join(_t(r["times"].get(("dense", be, "cols"))) for be in bes)
                                          for r in results] + ["—"]]
    for key, (label, _) in STRUCTURES.items():
        row = [label]
        for r in results:
            ceil = r["dense_counts"][1] / r["ops"][key]["flops"]["cols"]
            row.append(" · ".join(_x(_speedup(r, key, be, "cols")) for be in bes) + f" ({_x(ceil)})")
        errs = []
        for be in bes:
            es = [r["ops"][key]["err"].get((be, "cols")) for r in results]
            es = [e for e in es if e is not None]
            errs.append((fmt_err(max(es)) + (" **WRONG**" if max(es) > ERR_FLAG else "")) if es else "—")
        rows.append(row + [" / ".join(errs)])
    notes = [
        f"`W @ Xc` with Xc of shape (d, {BATCH}) C-contiguous (linops' `_matmat`), numpy · torch speed-ups over "
        "dense `W @ Xc` in the same backend, FLOP ratio in parentheses (the same as for rows except for Einsum, "
        "whose contraction order is planned per layout). Errors: vs `to_dense()` up to d = "
        f"{DENSE_CHECK_MAX_D}, then by probes u (W Xc) vs (u W) Xc.",
    ]
    return section(f"Columns layout: `W @ Xc` (B = {BATCH} columns, float32)", cols, rows, notes)


# ------------------------------------------------------------------------------ main
def sizes_to_run() -> tuple[int, ...]:
    """``DS``, or the sizes in ``LINOPS_BENCH_SIZES`` (comma-separated; for trying the script quickly)."""
    env = os.environ.get("LINOPS_BENCH_SIZES")
    if not env:
        return DS
    ds = tuple(int(v) for v in env.split(","))
    bad = [d for d in ds if d not in REPEAT]
    if bad:
        raise ValueError(f"LINOPS_BENCH_SIZES: sizes must be among {DS}, got {bad}")
    return ds


#: (structure, backend) pairs broken down at d = PROFILE_D: the products furthest below their FLOP ratio
PROFILE_D = 4096
PROFILE = (("monarch", "numpy"), ("btt4", "numpy"), ("btt4", "torch"), ("tt", "torch"), ("butterfly", "numpy"),
           ("butterfly", "torch"))
PROFILE_CALLS = 3


def _numpy_profile(fn) -> list[tuple[str, float]]:
    """(entry, seconds per call) by cProfile's own time. numpy's operators (``@``, ``*``, ``+``) are
    not function calls, so their time shows as the own time of the linops function that uses them."""
    import cProfile
    import pstats

    pr = cProfile.Profile()
    pr.enable()
    for _ in range(PROFILE_CALLS):
        fn()
    pr.disable()
    out = []
    for (file, _line, name), (_, _, tt, _, _) in pstats.Stats(pr).stats.items():
        if file == "~":  # a C function: "<built-in method numpy._core._multiarray_umath.c_einsum>" -> "c_einsum"
            where = "numpy " + name.strip("<>").split(".")[-1].split(" ")[-1]
        else:
            where = ("linops " if "linops" in file else "numpy ") + f"{Path(file).stem}.{name}"
        out.append((where, tt / PROFILE_CALLS))
    return out


def _torch_profile(fn) -> list[tuple[str, float]]:
    """(aten op, self CPU seconds per call) from torch.profiler."""
    import torch.profiler as tp

    with tp.profile(activities=[tp.ProfilerActivity.CPU]) as prof:
        for _ in range(PROFILE_CALLS):
            fn()
    return [(e.key, e.self_cpu_time_total * 1e-6 / PROFILE_CALLS) for e in prof.key_averages()]


def _einsum_optimized(xp):
    """The numpy backend's ``einsum`` with ``optimize=True`` for two operands too (a what-if, restored after)."""
    return lambda spec, *xs: np.einsum(spec, *xs, optimize=True)


def profile_section(res):
    """Where the time goes for the PROFILE pairs at d = PROFILE_D (rows layout)."""
    d = res["d"]
    rng = np.random.default_rng(d + 1)
    conv = converters()
    X64 = rng.standard_normal((BATCH, d))
    rows = []
    for key, be in PROFILE:
        label, builder = STRUCTURES[key]
        _, make = builder(d, rng)
        op, X = make(conv[be][0]), conv[be][0](X64)
        fn = lambda op=op, X=X: X @ op  # noqa: E731
        fn()  # warm-up
        t0 = time.perf_counter()
        for _ in range(PROFILE_CALLS):
            fn()
        total = (time.perf_counter() - t0) / PROFILE_CALLS
        entries = (_numpy_profile if be == "numpy" else _torch_profile)(fn)
        profiled = sum(s for _, s in entries)
        entries = sorted((e for e in entries if e[1] > 0), key=lambda e: -e[1])[:4]
        parts = "; ".join(f"{name} {_t(s)} ({100 * s / profiled:.0f}%)" for name, s in entries)
        what_if = "—"
        if be == "numpy" and key in ("monarch", "btt4"):
            y_ref = np.asarray(fn(), np.float64)
            orig = op.xp.__dict__.get("einsum")
            op.xp.einsum = _einsum_optimized(op.xp)
            try:
                fn()
                t1 = time.perf_counter()
                for _ in range(PROFILE_CALLS):
                    y = fn()
                t_opt = (time.perf_counter() - t1) / PROFILE_CALLS
            finally:
                if orig is None:
                    del op.xp.einsum
                else:
                    op.xp.einsum = orig
            what_if = (f"{_t(t_opt)} with `np.einsum(..., optimize=True)` ({_x(total / t_opt)} faster; "
                       f"result differs from the library's by {fmt_err(_rel(np.asarray(y, np.float64), y_ref))})")
        ratio = res["dense_counts"][1] / res["ops"][key]["flops"]["rows"]
        rows.append([label, be, _t(total), _t(profiled), _x(_speedup(res, key, be, "rows")), _x(ratio), parts,
                     what_if])
    cols = ["structure", "backend", f"time per call ({PROFILE_CALLS} calls)", "under the profiler",
            "speed-up (main table)", "FLOP ratio", "largest parts (time per call, share of the profiled time)",
            "what-if, same call"]
    notes = [
        "numpy: cProfile's own time per function (`numpy c_einsum` is `np.einsum`'s C loop); numpy's operators "
        "(`@`, `*`, `+`, slicing) are not function calls, so their time is the own time of the linops function "
        "that uses them (e.g. `butterfly._factor`: the 2 x 2 block arithmetic). torch: torch.profiler's self CPU time per "
        "aten op (`aten::copy_`/`clone` are the copies made by `reshape`/`.T` of non-contiguous views, "
        "`aten::bmm`/`mm` the matrix products, `aten::mul`/`add`/`cat` the Butterfly's elementwise work). "
        "The two totals differ by the profiler's overhead and by the machine's load.",
        "What-if: the numpy backend's `einsum` passes `optimize=True` only for three or more operands, so the two-"
        "operand contractions of Monarch and BTT run in numpy's own einsum loops, not in BLAS; the last column "
        "re-times the same call with that method swapped for `np.einsum(..., optimize=True)` on the backend object "
        "(restored afterwards; no library file is changed).",
    ]
    return section(f"Where the time goes, d = {d}, rows layout", cols, rows, notes)


def main():
    load0 = load_average()
    t0 = time.perf_counter()
    results = [measure_size(d, seed=d) for d in sizes_to_run()]
    bes = tuple(be for be in BACKENDS if be in converters())
    sections = [summary_section(results, bes)]
    sections += [size_section(r, bes) for r in results]
    sections.append(columns_section(results))
    big = [r for r in results if r["d"] == PROFILE_D]
    if big:
        sections.append(profile_section(big[0]))
    sections[0]["notes"] += general_notes(results, load0, time.perf_counter() - t0)
    return sections


def general_notes(results, load0, seconds) -> list[str]:
    big = results[-1]
    wins = {be: sum(1 for k in STRUCTURES if (_speedup(big, k, be, "rows") or 0) > 1)
            for be in BACKENDS if any(n[1] == be for n in big["times"])}
    won = ", ".join(f"{be} {n} of {len(STRUCTURES)}" for be, n in wins.items())
    small = results[0]
    t_small = [small["times"][n] for n in small["times"] if n[0] == "dense" and n[2] == "rows"]
    np_vs_torch = [r["times"][(k, "numpy", "rows")] / r["times"][(k, "torch", "rows")] for r in results
                   for k in ("monarch", "btt1", "btt4") if (k, "numpy", "rows") in r["times"]
                   and (k, "torch", "rows") in r["times"]]
    bf_rate = max((r["ops"]["butterfly"]["flops"]["rows"] / t) / 1e9 for r in results
                  for n, t in r["times"].items() if n[0] == "butterfly")
    bf_ratio = [r["dense_counts"][1] / r["ops"]["butterfly"]["flops"]["rows"] for r in (small, big)]
    return [
        "**What the ratios mean.** The FLOP ratio is the most a structure can gain: it is reached only if the "
        "structure's product runs at the dense product's GFLOP/s. One-thread BLAS `sgemm` on a large square matrix "
        "is the best case of the machine; the structured products run far below it (see the GFLOP/s columns), "
        "so the speed-up is the FLOP ratio times (structure GFLOP/s / dense GFLOP/s). Where that efficiency ratio is "
        "below 1 / (FLOP ratio), the structure loses to dense despite doing fewer FLOPs.",
        "**Why efficiency is low, and worst at small d.** (1) Every product is a chain of calls (linops' `@` and "
        "checks, reshapes, `moveaxis`, einsum parsing, the Einsum plan lookup), a fixed cost of tens of µs per "
        f"call; at d = {small['d']} the whole dense product takes {_t(min(t_small))} to {_t(max(t_small))}. (2) The permutations are memory copies with no "
        "FLOPs: Monarch's P1/P2 grid transposes, the TensorTrain's rotation of each finished axis, the Einsum "
        "family's permutes before and after each batched product, BTT's reshapes of permuted views (torch's "
        "`aten::copy_` in the profile section below). (3) The products that remain "
        "are small (Monarch/BTT: sqrt(d) x sqrt(d) blocks, batched) or skinny (rank 4 cores), which BLAS runs far "
        "below its large-matrix peak. (4) numpy's `einsum` runs its own loops unless asked to optimise; linops' "
        "numpy backend optimises (BLAS) when the operands hold more than 4096 entries, so small products keep "
        f"the cheaper plain loop: Monarch and BTT take {min(np_vs_torch):.1f}x to {max(np_vs_torch):.1f}x torch's "
        "time on numpy. (5) The Butterfly is elementwise arithmetic on strided "
        f"views, memory-bound: at most {bf_rate:.1f} GFLOP/s here, so its FLOP ratio "
        f"({bf_ratio[0]:.0f}x at d = {small['d']}, {bf_ratio[1]:.0f}x at d = {big['d']}) buys much less.",
        f"At d = {big['d']}, structures faster than dense (rows layout): {won}.",
        "**FLOP counts** are the operators' own: `flops(c)` of Monarch, BTT, TensorTrain (for `X @ W` the sweep of "
        "`W.T`, the same for square grids) and Butterfly (which counts 3 n log2 n arithmetic operations per column: "
        "4 multiplications and 2 additions per 2x2 block, not multiply-adds as 2), and `Einsum.plan(c).flops` "
        "(the contraction order linops runs for that layout); computed for dense (2 B d²), LowRank "
        "(2 B r (m + n)) and Kronecker (2 B d Σ n_i). GFLOP/s = those FLOPs / the median time.",
        f"Inputs: X standard normal, float32, B = {BATCH}; parameters Gaussian scaled by 1/sqrt(fan-in), drawn in "
        "float64 and rounded to float32 (the float64 reference uses the rounded values). numpy 2 uses OpenBLAS, "
        "torch MKL; both on one thread. JAX: `jax.jit(lambda op, X: X @ op)` with the operator as a pytree "
        "argument, compiled ahead of time (compile time not included), XLA on one thread "
        f"(XLA_FLAGS={os.environ.get('XLA_FLAGS')}); rows layout only.",
        "The Einsum points use linops' default sizes (`lo.einsum_sizes`): where d is not a square (512, 2048) the "
        "input is zero-padded to the next a b g (sizes column), and the rank exponent 1/4 gives r = d^(1/4) "
        "(4 to 8) for `low_rank`, `tt` and `btt`. The other structures use power-of-two grids (no padding).",
        f"Load average before: {load0}, after: {load_average()}; the machine (2 cores) was shared with other "
        f"jobs, so single timings are noisy; ratios come from interleaved rounds. {seconds:.0f} s in all.",
    ]


if __name__ == "__main__":
    finish(main())
