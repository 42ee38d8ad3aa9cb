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
    }
    if with_cola:
        info.update(cola_versions())
    return info


def machine_header_md(info: dict) -> str:
    keys = ["date", "cpu", "cores", "os", "python", "numpy", "scipy", "torch", "jax", "plum-dispatch", "linops",
            "linear_operator", "cola"]
    return "\n".join(f"- **{k}**: {info[k]}" for k in keys if k in info)


# --------------------------------------------------------------------------- peers
def run_in_cola(code: str, timeout: int | None = None) -> dict:
    """Run ``code`` with CoLA's python; it must print one JSON object as its last stdout line.

    Returns ``{"ok": True, "result": obj, "wall_s": s}`` or ``{"ok": False, "error": text}``;
    a timeout reads "did not finish in N s".
    """
    timeout = PEER_TIMEOUT if timeout is None else timeout
    if not COLA_PYTHON.exists():
        return {"ok": False, "error": f"CoLA venv missing ({COLA_PYTHON}); see benchmarks/README.md"}
    return _run_python(str(COLA_PYTHON), code, timeout)


def run_in_main(code: str, timeout: int | None = None) -> dict:
    """Like :func:`run_in_cola`, with this interpreter (for peers that need a fresh process)."""
    return _run_python(sys.executable, code, PEER_TIMEOUT if timeout is None else timeout)


def _run_python(python: str, code: str, timeout: int) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run([python, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout,
                           cwd=str(HERE))
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
