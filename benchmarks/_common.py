"""Shared helpers of the benchmark scripts: timing, the machine header, peers in subprocesses, results.

Each ``bench_*.py`` builds a list of *sections* (a title, a table and notes) and hands it
to :func:`finish`, which prints the markdown and, with ``--json PATH``, writes it as JSON
for ``run_all.py`` to assemble into ``results/core.md``.

CoLA lives in its own virtual environment (its fork of plum conflicts with plum-dispatch,
which linops uses), so CoLA code runs in a subprocess of that environment's python through
:func:`run_in_cola`, which returns what the snippet prints as JSON.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
COLA_PYTHON = Path(os.environ.get("LINOPS_BENCH_COLA_PYTHON", HERE / ".venv-cola" / "bin" / "python"))
PEER_TIMEOUT = int(os.environ.get("LINOPS_BENCH_PEER_TIMEOUT", "300"))

if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

# Threads: one BLAS/OpenMP thread per process unless LINOPS_BENCH_THREADS says otherwise
# ("0" keeps the libraries' defaults). On the shared 2-core machine these benchmarks were
# written on, multi-threaded OpenBLAS ran a 100000x50 Gram product 3-25x slower than one
# thread whenever another process was busy, and MKL's threaded potrf took 8 ms for a 4x4
# matrix; one thread gives every library the same, reproducible footing. This module must
# be imported before numpy/torch for the setting to take effect (the bench scripts do).
THREADS = os.environ.get("LINOPS_BENCH_THREADS", "1")
if THREADS != "0":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, THREADS)


# ----------------------------------------------------------------------------- timing
def time_small(fn, repeat: int = 25, target_s: float = 0.02) -> dict:
    """Per-call time of a fast ``fn`` (microseconds): timeit loops of ~``target_s`` each, ``repeat`` of them.

    Returns ``{"median_us", "min_us", "number", "repeat"}``; the median is what we report.
    """
    t = timeit.Timer(fn)
    number = 1
    while True:  # like Timer.autorange, but to target_s rather than 0.2 s
        if t.timeit(number) >= target_s:
            break
        number *= 2
    gc_was = gc.isenabled()
    gc.disable()
    try:
        runs = [t.timeit(number) / number * 1e6 for _ in range(repeat)]
    finally:
        if gc_was:
            gc.enable()
    return {"median_us": statistics.median(runs), "min_us": min(runs), "number": number, "repeat": repeat}


def time_small_interleaved(fns: list, repeat: int = 25, target_s: float = 0.02) -> list[dict]:
    """:func:`time_small` for several callables, their timeit loops alternating (load hits all alike)."""
    timers, numbers = [], []
    for fn in fns:
        t = timeit.Timer(fn)
        number = 1
        while t.timeit(number) < target_s:
            number *= 2
        timers.append(t)
        numbers.append(number)
    runs = [[] for _ in fns]
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for i, (t, number) in enumerate(zip(timers, numbers)):
                runs[i].append(t.timeit(number) / number * 1e6)
    finally:
        if gc_was:
            gc.enable()
    return [{"median_us": statistics.median(r), "min_us": min(r), "number": n, "repeat": repeat}
            for r, n in zip(runs, numbers)]


def time_big(fn, repeat: int = 3, warmup: int = 1, budget_s: float | None = None) -> dict:
    """Wall time of a slow ``fn`` (seconds): ``warmup`` untimed calls, then ``repeat`` timed ones.

    With ``budget_s`` the repeats stop early once that much time has been spent (at least one).
    Returns ``{"median_s", "min_s", "runs", "result"}`` with the last call's result.
    """
    out = None
    for _ in range(warmup):
        out = fn()
    runs = []
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return {"median_s": statistics.median(runs), "min_s": min(runs), "runs": len(runs), "result": out}


def time_interleaved(fns: dict, repeat: int = 7, warmup: int = 1, budget_s: float | None = None) -> dict:
    """Time several slow callables in rounds (each once per round), so load changes hit all alike.

    ``fns``: name -> callable. A callable that raises is recorded as ``{"error": text}`` and
    dropped from later rounds. Returns name -> ``{"median_s", "min_s", "runs", "result"}``.
    With ``budget_s``, rounds stop once that much time has passed (at least one round).
    """
    out: dict = {}
    live = {}
    for name, fn in fns.items():
        try:
            res = None
            for _ in range(warmup):
                res = fn()
            out[name] = {"runs_s": [], "result": res}
            live[name] = fn
        except Exception as e:
            out[name] = {"error": short_error(e)}
    start = time.perf_counter()
    for _ in range(repeat):
        for name, fn in list(live.items()):
            t0 = time.perf_counter()
            try:
                res = fn()
            except Exception as e:
                out[name] = {"error": short_error(e)}
                del live[name]
                continue
            out[name]["runs_s"].append(time.perf_counter() - t0)
            out[name]["result"] = res
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    for name, r in out.items():
        if "runs_s" in r and r["runs_s"]:
            r["median_s"] = statistics.median(r["runs_s"])
            r["min_s"] = min(r["runs_s"])
            r["runs"] = len(r["runs_s"])
    return out


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ----------------------------------------------------------------------- versions
def _version(mod: str) -> str:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return "not installed"


def cola_versions() -> dict:
    """Versions inside CoLA's venv (or why there are none)."""
    if not COLA_PYTHON.exists():
        return {"cola": f"not installed ({COLA_PYTHON} missing)"}
    code = (
        "import json\nfrom importlib.metadata import version as v\nout={}\n"
        "for m in ('cola-ml','torch','jax','numpy','scipy'):\n"
        "    try: out[m]=v(m)\n    except Exception: out[m]='not installed'\n"
        "print(json.dumps(out))"
    )
    res = run_in_cola(code, timeout=60)
    if not res.get("ok"):
        return {"cola": "unavailable: " + res.get("error", "?")}
    r = res["result"]
    return {"cola": f"{r['cola-ml']} (own venv: torch {r['torch']}, jax {r['jax']}, numpy {r['numpy']}, scipy {r['scipy']})"}


def machine_info(with_cola: bool = True) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import linops

        lv = linops.__version__
    except Exception as e:  # pragma: no cover
        lv = f"import failed: {e}"
    commit = "?"
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "linops"],
                               capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
        if dirty:
            commit += f", plus uncommitted changes to {len(dirty)} file(s) under linops/"
    except Exception:
        pass
    info = {
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "torch": _version("torch"),
        "jax": _version("jax"),
        "plum-dispatch": _version("plum-dispatch"),
        "linops": f"{lv} (commit {commit})",
        "linear_operator": _version("linear-operator"),
        "threads": ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in
                             ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"))
                   + f" (LINOPS_BENCH_THREADS={THREADS}; 0 = library defaults, one thread per core)",
        "load average (1/5/15 min)": load_average(),
    }
    if with_cola:
        info.update(cola_versions())
    return info


def machine_header_md(info: dict) -> str:
    keys = ["date", "cpu", "cores", "os", "python", "numpy", "scipy", "torch", "jax", "plum-dispatch", "linops",
            "linear_operator", "cola", "threads", "load average (1/5/15 min)"]
    return "\n".join(f"- **{k}**: {info[k]}" for k in keys if k in info)


# --------------------------------------------------------------------------- peers
#: Prepended to peer snippets: imports, float64 torch, and ``_time(fn, repeat)`` -> (median s, min s, last result).
PEER_PRELUDE = """
import json, statistics, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np

def _time(fn, repeat=3, warmup=1, budget_s=None):
    out = None
    for _ in range(warmup):
        out = fn()
    runs = []
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return statistics.median(runs), min(runs), out

def _err(e):
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()][:3]
    return f"{type(e).__module__}.{type(e).__name__}: {' '.join(lines)[:400]}"
"""


def run_in_cola(code: str, timeout: int | None = None, prelude: bool = False, consts: dict | None = None) -> dict:
    """Run ``code`` with CoLA's python; it must print one JSON object as its last stdout line.

    ``prelude``: prepend :data:`PEER_PRELUDE` (``_time``, ``_err``, numpy as ``np``, ``json``).
    ``consts``: names defined (by ``repr``) before the snippet, e.g. a data folder.

    Returns ``{"ok": True, "result": obj, "wall_s": s}`` or ``{"ok": False, "error": text}``;
    a timeout reads "did not finish in N s".
    """
    timeout = PEER_TIMEOUT if timeout is None else timeout
    if not COLA_PYTHON.exists():
        return {"ok": False, "error": f"CoLA venv missing ({COLA_PYTHON}); see benchmarks/README.md"}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of linops' environment
    return _run_python(str(COLA_PYTHON), code, timeout, env, prelude, consts)


def run_in_main(code: str, timeout: int | None = None, prelude: bool = False, consts: dict | None = None) -> dict:
    """Like :func:`run_in_cola`, with this interpreter and the checkout on ``PYTHONPATH`` (fresh process)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return _run_python(sys.executable, code, PEER_TIMEOUT if timeout is None else timeout, env, prelude, consts)


def _run_python(python: str, code: str, timeout: int, env: dict, prelude: bool = False, consts=None) -> dict:
    head = "".join(f"{k} = {v!r}\n" for k, v in (consts or {}).items())
    code = head + (PEER_PRELUDE if prelude else "") + textwrap.dedent(code)
    t0 = time.perf_counter()
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout,
                           cwd="/", env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"did not finish in {timeout} s", "timeout": True}
    wall = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.strip().splitlines() if ln.strip()]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"ok": False, "error": f"exit {p.returncode}: {tail[:300]}", "stderr": p.stderr[-3000:]}
    try:
        return {"ok": True, "result": json.loads(lines[-1]), "wall_s": wall}
    except json.JSONDecodeError:
        return {"ok": False, "error": f"unparsable output: {lines[-1][:300]}"}


# ------------------------------------------------------------------- formatting
def fmt_us(x) -> str:
    return "—" if x is None else f"{x:.1f} µs"


def fmt_s(x) -> str:
    if x is None:
        return "—"
    if x < 1e-3:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1e3:.1f} ms"
    return f"{x:.2f} s"


def fmt_ratio(a, b) -> str:
    """``a / b`` as ``"1.23x"``; '—' when either is missing."""
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}x"


def fmt_err(e) -> str:
    return "—" if e is None else f"{e:.1e}"


def table_md(columns: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |")
    return "\n".join(out)


def section(title: str, columns: list[str], rows: list[list], notes: list[str] | None = None) -> dict:
    return {"title": title, "columns": columns, "rows": rows, "notes": list(notes or [])}


def sections_md(sections: list[dict], level: int = 2) -> str:
    parts = []
    for s in sections:
        parts.append("#" * level + " " + s["title"] + "\n")
        parts.append(table_md(s["columns"], s["rows"]) + "\n")
        for n in s["notes"]:
            parts.append(f"- {n}")
        if s["notes"]:
            parts.append("")
    return "\n".join(parts)


def finish(sections: list[dict]) -> None:
    """Print the sections as markdown; with ``--json PATH`` also write them as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the sections here as JSON (used by run_all.py)")
    args, _ = ap.parse_known_args()
    print(sections_md(sections))
    if args.json:
        Path(args.json).write_text(json.dumps(sections, indent=1, default=str))


def short_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


# ------------------------------------------------- contender tables (bench_krylov_peers.py)
def try_import(module: str):
    """The module, or None when it is not installed (its rows then say so)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def jax_compiled(fn, *args):
    """``fn`` jit-compiled ahead of time for ``args``: ``(call, compile seconds, executable)``.

    ``call()`` runs the executable on ``args`` and blocks until the result is ready, so the
    timings exclude tracing and compilation (reported apart) and include the whole computation.
    """
    import jax

    t0 = time.perf_counter()
    exe = jax.jit(fn).lower(*args).compile()
    secs = time.perf_counter() - t0
    return (lambda: jax.block_until_ready(exe(*args))), secs, exe


def plain_call(fn):
    """An eager contender in the form :func:`jax_compiled` returns: ``(fn, None, None)``."""
    return fn, None, None


def contender(label, make, check, ref=None, note="", unavailable=None) -> dict:
    """One row of a contender table.

    ``make() -> (call, compile s or None, executable or None)`` (:func:`jax_compiled`, :func:`plain_call`);
    ``check(result) -> cells`` (the accuracy columns); ``ref``: the key of the linops row this one's
    time is divided into ("linops / this"); ``unavailable``: a reason shown instead of numbers.
    """
    return {"label": label, "make": make, "check": check, "ref": ref, "note": note, "unavailable": unavailable}


def measure_contenders(specs: dict, repeat: int, budget_s: float | None = None) -> dict:
    """Build (and compile) every contender, then time them with :func:`time_interleaved`.

    A contender that is unavailable or raises while being built or run gets ``{"error": text}``;
    the others get ``compile``, ``exe`` and the timing fields.
    """
    meta, fns = {}, {}
    for name, sp in specs.items():
        if sp["unavailable"]:
            meta[name] = {"error": sp["unavailable"]}
            continue
        try:
            call, comp, exe = sp["make"]()
            fns[name], meta[name] = call, {"compile": comp, "exe": exe}
        except Exception as e:  # a failing contender must not hide the others
            meta[name] = {"error": "failed: " + short_error(e)}
    for name, r in time_interleaved(fns, repeat, budget_s=budget_s).items():
        meta[name].update(r)
        if "error" in r:
            meta[name]["error"] = "failed: " + r["error"]
    return meta


#: the first columns of a contender table; then the check's columns and "notes"
CONTENDER_HEAD = ["method", "time (median)", "compile", "linops / this"]


def contender_rows(specs: dict, meta: dict, ncheck: int) -> list[list]:
    """Rows ``[label, time, compile, linops / this, *check cells, note]`` of a measured table."""
    rows = []
    for name, sp in specs.items():
        r = meta[name]
        if "error" in r:
            rows.append([sp["label"], r["error"], "—", "—"] + ["—"] * ncheck + [sp["note"]])
            continue
        try:
            cells = sp["check"](r["result"])
        except Exception as e:
            cells = [f"check failed: {short_error(e)}"] + ["—"] * (ncheck - 1)
        ref = meta.get(sp["ref"], {}) if sp["ref"] else {}
        ratio = "1.00x (ref.)" if sp["ref"] == name else fmt_ratio(ref.get("median_s"), r["median_s"])
        rows.append([sp["label"], fmt_s(r["median_s"]), "—" if r["compile"] is None else fmt_s(r["compile"]),
                     ratio] + cells + [sp["note"]])
    return rows


# ----------------------------------------------- test matrices with known decompositions
class FastOrthogonal:
    """A dense random orthogonal ``Q = P C S₁ D S₂`` of size n, applied in O(n log n) per column.

    P is a random permutation, C / D the orthonormal DCT-II / DST-II, S₁, S₂ random signs.
    ``Q(X)`` is ``Q @ X`` and ``Q.T(X)`` is ``Q^T @ X`` along axis 0 (X of shape (n,) or (n, k)).
    ``Q diag(λ) Q^T`` is then a dense matrix with known eigendecomposition, built in
    O(n² log n) instead of the O(n³) of a QR of a Gaussian matrix.
    """

    def __init__(self, n: int, seed: int):
        import numpy as np

        rng = np.random.default_rng(seed)
        self.perm = rng.permutation(n)
        self.s1, self.s2 = rng.choice([-1.0, 1.0], n), rng.choice([-1.0, 1.0], n)

    @staticmethod
    def _col(s, X):
        return s if X.ndim == 1 else s[:, None]

    def __call__(self, X):
        import scipy.fft as sfft

        Y = sfft.dst(X * self._col(self.s2, X), type=2, norm="ortho", axis=0)
        return sfft.dct(Y * self._col(self.s1, Y), type=2, norm="ortho", axis=0)[self.perm]

    def T(self, X):
        import numpy as np
        import scipy.fft as sfft

        Z = np.empty_like(X)
        Z[self.perm] = X
        Z = sfft.idst(sfft.idct(Z, type=2, norm="ortho", axis=0) * self._col(self.s1, Z), type=2, norm="ortho", axis=0)
        return Z * self._col(self.s2, Z)


def symmetric_from_spectrum(lam, seed: int):
    """``(M, Q)``: the dense symmetric ``M = Q diag(lam) Q^T`` with Q a :class:`FastOrthogonal`."""
    import numpy as np

    Q = FastOrthogonal(len(lam), seed)
    M = Q(Q(np.diag(lam)).T).T
    return (M + M.T) / 2, Q
