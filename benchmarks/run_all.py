"""Run the benchmarks (each script in its own process) and write one results file per group.

Groups: ``core`` (dispatch, import, kronecker, lowrank, poisson) -> ``benchmarks/results/core.md``;
``algorithms`` (cg, krylov_peers) -> ``benchmarks/results/algorithms.md``; ``operators`` (structured)
-> ``benchmarks/results/operators.md``. A run writes the file of each group it ran topics of, and leaves
the other groups' files alone.

Usage::

    python benchmarks/run_all.py                 # all scripts, one BLAS thread (see _common.py)
    python benchmarks/run_all.py dispatch import # a subset, by topic name (core.md gets just these)
    python benchmarks/run_all.py algorithms      # a whole group, by group name
    LINOPS_BENCH_THREADS=0 python benchmarks/run_all.py   # the libraries' default thread counts

A script that fails or runs past its time limit is reported in its group's file as such;
the others still run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import HERE, RESULTS, THREADS, load_average, machine_header_md, machine_info, sections_md

SCRIPTS = {  # topic -> (script, time limit in seconds, group)
    "dispatch": ("bench_dispatch.py", 180, "core"),
    "import": ("bench_import.py", 180, "core"),
    "kronecker": ("bench_kronecker.py", 420, "core"),
    "lowrank": ("bench_lowrank.py", 480, "core"),
    "poisson": ("bench_poisson.py", 360, "core"),
    "cg": ("bench_cg.py", 540, "algorithms"),
    "krylov_peers": ("bench_krylov_peers.py", 720, "algorithms"),
    "structured": ("bench_structured.py", 600, "operators"),
}

GROUPS = {  # group -> (title of its results file, file name under results/)
    "core": ("linops core benchmarks", "core.md"),
    "algorithms": ("linops iterative-algorithm benchmarks (CG, SLQ, implicit gradients; Krylov and randomised "
                   "methods vs lineax, matfree, scipy)", "algorithms.md"),
    "operators": ("linops structured-operator products", "operators.md"),
}


def run(topic: str, script: str, limit: int, tmp: Path) -> dict:
    out = tmp / f"{topic}.json"
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, str(HERE / script), "--json", str(out)], capture_output=True, text=True,
                           timeout=limit, cwd=str(HERE))
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = None, (e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or ""))
    wall = time.perf_counter() - t0
    sections = json.loads(out.read_text()) if rc == 0 and out.exists() else None
    status = "ok" if sections is not None else (f"did not finish in {limit} s" if rc is None else f"exit {rc}")
    tail = "\n".join(line for line in err.strip().splitlines()[-5:]) if sections is None else ""
    print(f"[{topic}] {status} in {wall:.0f} s", flush=True)
    return {"topic": topic, "script": script, "status": status, "wall_s": wall, "sections": sections, "tail": tail}


def write_group(group: str, results: list[dict], info: dict, minutes: float) -> Path:
    title, name = GROUPS[group]
    parts = [
        f"# {title}\n",
        f"Written by `python benchmarks/run_all.py` on {info['date']} in {minutes:.1f} min "
        "(each topic in a fresh process). What each table measures: `benchmarks/README.md`.\n",
        "## Machine\n",
        machine_header_md(info) + f"\n- **load average at the end**: {load_average()}\n",
    ]
    if THREADS != "0":
        parts.append(
            "Timings use one BLAS/OpenMP thread per process for every library (`LINOPS_BENCH_THREADS=1`, the "
            "default): the machine is shared, and with the default two threads OpenBLAS and MKL stalled badly "
            "whenever the other core was busy (see the README). Ratios compare like with like.\n")
    summary = ["| topic | script | status | wall time |", "|---|---|---|---|"]
    for r in results:
        summary.append(f"| {r['topic']} | `{r['script']}` | {r['status']} | {r['wall_s']:.0f} s |")
    parts.append("## Runs\n\n" + "\n".join(summary) + "\n")
    for r in results:
        if r["sections"] is not None:
            parts.append(sections_md(r["sections"]))
        else:
            parts.append(f"## {r['topic']}: not measured\n\n`{r['script']}` {r['status']}.\n\n```\n{r['tail']}\n```\n")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_text("\n".join(parts))
    return path


def main(argv: list[str]) -> int:
    topics = []
    for a in argv or list(SCRIPTS):
        topics += [t for t, v in SCRIPTS.items() if v[2] == a] if a in GROUPS else [a]
    unknown = [t for t in topics if t not in SCRIPTS]
    if unknown:
        print(f"unknown topic(s) {unknown}; known: {list(SCRIPTS)}, groups: {list(GROUPS)}", file=sys.stderr)
        return 2
    topics = list(dict.fromkeys(topics))
    t_start = time.perf_counter()
    info = machine_info()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for topic in topics:
            script, limit, group = SCRIPTS[topic]
            results.append({**run(topic, script, limit, Path(tmp)), "group": group})
    total = time.perf_counter() - t_start
    for group in GROUPS:
        mine = [r for r in results if r["group"] == group]
        if mine:
            minutes = sum(r["wall_s"] for r in mine) / 60
            print(f"wrote {write_group(group, mine, info, minutes)}")
    print(f"done in {total:.0f} s")
    return 0 if all(r["sections"] is not None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
