"""Krylov and randomised algorithms of linops vs lineax, matfree, scipy, scikit-learn and CoLA.

Eight tables, float64 on the CPU; every call builds the operator. JAX functions are compiled ahead
of time (``jax.jit(f).lower(...).compile()``: the "compile" column, not in the time) and every
timed call ends in ``jax.block_until_ready``. Each answer is checked against an exact reference:

1. CG to relative residual 1e-10, dense SPD n = 2000 (eigenvalues ``linspace(1, 100)``):
   ``lo.solve(lo.PSD(lo.Dense(M)), b, alg=lo.CG(tol))`` (jax jitted; numpy) vs ``lineax.linear_solve``
   with ``lx.CG`` and ``scipy.sparse.linalg.cg``.
2. GMRES(30) and BiCGStab, dense non-symmetric n = 2000, same tolerance: linops vs lineax and scipy.
3. Least squares, 6000 x 1500: ``lo.lstsq(lo.Dense(M), b, alg=lo.LSMR(...))`` vs scipy ``lsmr`` /
   ``lsqr``, matfree's ``lstsq.lsmr`` and ``numpy.linalg.lstsq`` (the reference).
4. SLQ log-determinant of the RBF kernel + 0.1 I of ``bench_cg.py`` (n = 4096) vs matfree's
   stochastic Lanczos quadrature at the same probes x steps, and Cholesky.
5. ``exp(-t M) b`` and ``log(M) b`` (n = 4096) by ``lo.exp`` / ``lo.log`` with ``alg=lo.Lanczos()`` vs
   matfree's ``funm_lanczos_sym`` at the same Krylov dimension and scipy's ``expm_multiply``.
6. Top-10 eigenpairs (n = 3000): ``lo.eigh(A, k=10, alg=lo.Lanczos() / lo.LOBPCG())`` vs scipy
   ``eigsh`` / ``lobpcg`` and CoLA (own venv).
7. Top-10 singular triplets (4000 x 1000): ``lo.svd(A, k=10, alg=lo.RandomizedSVD() / lo.Lanczos())``
   vs scipy ``svds`` and scikit-learn's ``randomized_svd``.
8. Trace estimation at 60 products (n = 2000, eigenvalues 1/k and 1/k²): ``lo.Hutchinson``,
   ``lo.HutchPlusPlus``, ``lo.XTrace`` vs matfree's Hutchinson and XTrace, over 20 seeds.

The matrices (but the kernel) are ``Q diag(λ) Qᵀ`` with the fast random orthogonal Q of
``_common.FastOrthogonal``: their decompositions are known exactly, so the references cost
O(n² log n) instead of an O(n³) ``eigh`` (about a minute at n = 4096 on one core).

Run: ``python benchmarks/bench_krylov_peers.py`` (about 5-6 minutes on the 2-core development
machine, 1-1.5 of them compiling); ``--smoke``: every table at small sizes (a check that it runs);
``--only 1,4``: a subset.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import (  # first: sets thread counts
    CONTENDER_HEAD as HEAD, THREADS, FastOrthogonal as Orth, contender as spec, contender_rows as rows_of, finish,
    fmt_err, fmt_ratio, fmt_s, jax_compiled as compiled, load_average, measure_contenders, plain_call as plain,
    run_in_cola, section, short_error, symmetric_from_spectrum as sym_matrix, try_import as peer, _version,
)

if THREADS == "1":  # XLA's CPU products single-threaded too, like BLAS (must precede `import jax`)
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import numpy as np  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import linops as lo  # noqa: E402
from bench_cg import rbf_inputs, sqdist  # noqa: E402  (the kernel of its section 3)

FULL = {"spd": 2000, "nonsym": 2000, "lsq": (6000, 1500), "slq": 4096, "fab": 4096, "eig": 3000,
        "svd": (4000, 1000), "trace": 2000, "repeat": 3, "seeds": 20}
SMOKE = {"spd": 300, "nonsym": 300, "lsq": (1200, 300), "slq": 600, "fab": 600, "eig": 500,
         "svd": (800, 200), "trace": 400, "repeat": 1, "seeds": 5}
S = dict(FULL)
TOL = 1e-10  # tables 1-2 (relative residual) and 3 (LSMR's atol = btol)
SLQ_PROBES, SLQ_STEPS, NOISE = 10, 30, 0.1
T_EXP, FAB_TOL = 0.5, 1e-8  # table 5: exp(-t M) b; linops' adaptive Krylov tolerance
K_EIG = 10
TRACE_MATVECS = 60
BUDGET_S = 30  # per table: interleaved rounds stop after this long (at least one round)
COLA_TIMEOUT = 240
NO_MATFREE = "matfree not installed (pip install matfree)"


# --------------------------------------------------------------------------- helpers
def lookup(name):
    """``lo.<name>``, or None when this checkout does not have it yet."""
    try:
        return getattr(lo, name)
    except AttributeError:
        return None


def missing(*names):
    gone = [n for n in names if lookup(n) is None]
    return f"not available in this checkout (lo.{', lo.'.join(gone)})" if gone else None


def rel_diff(x, y):
    x, y = np.asarray(x).reshape(-1), np.asarray(y).reshape(-1)
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def top_int(x):
    return int(np.asarray(x).max())


def lo_pair(specs, key, label, f, args, jargs, check, gone, note="", check_jax=None):
    """linops on jax (jitted on ``jargs``) and numpy (on ``args``): rows ``lo jax <key>`` and ``lo np <key>``."""
    specs[f"lo jax {key}"] = spec(f"{label}, jax, jitted", lambda: compiled(f, *jargs), check_jax or check,
                                  f"lo jax {key}", note, gone)
    specs[f"lo np {key}"] = spec("linops, same, numpy", lambda: plain(lambda: f(*args)), check, f"lo np {key}",
                                 unavailable=gone)


def measure(specs):
    return measure_contenders(specs, S["repeat"], BUDGET_S)


def timing_note(load0, extra=""):
    return (f"Median of {S['repeat']} interleaved calls after a warm-up (fewer where a table passed its {BUDGET_S} s "
            f"budget); 'linops / this': linops' time (same backend and method) over this row's. "
            f"Load average before: {load0}, after: {load_average()}. {extra}").strip()


# --------------------------------------------------------------------------- 1-2. solves
SOLVE_COLS = ["iterations", "reports success", "true residual ‖Mx−b‖/‖b‖", f"≤ 2·{TOL:g}"]


def _solve_check(M, b, its_fmt=str):
    def check(res):
        x, its, ok = res
        rr = rel_diff(M @ np.asarray(x), b)
        return [its_fmt(top_int(its)), "yes" if bool(np.all(np.asarray(ok))) else "NO", fmt_err(rr),
                "yes" if rr <= 2 * TOL else "NO"]
    return check


def _scipy_solver(fn, M, b, **kw):
    def call():
        its = [0]

        def cb(*_):
            its[0] += 1

        x, flag = fn(M, b, rtol=TOL, atol=0.0, callback=cb, **kw)
        return x, its[0], flag == 0
    return call


def _solve_specs(M, b, meth, opts, psd, scipy_fn, scipy_kw):
    """linops (jax jitted, numpy), lineax twice and scipy on one method. lineax runs as asked (rtol, atol=0:
    its default max-norm makes that componentwise) and with linops' and scipy's criterion ‖r‖₂ ≤ tol ‖b‖₂."""
    lx = peer("lineax")
    Mj, bj = jnp.asarray(M), jnp.asarray(b)
    chk = _solve_check(M, b)
    gone = missing(meth)
    alg = None if gone else lookup(meth)(tol=TOL, **opts)
    wrap = (lambda M: lo.PSD(lo.Dense(M))) if psd else lo.Dense

    def f_lo(M, b):
        x, info = lo.solve(wrap(M), b, alg=alg, return_info=True)
        return x, info.iterations, info.converged

    args = "".join(f", {k}={v}" for k, v in opts.items())
    specs = {}
    lo_pair(specs, meth, f"linops `lo.solve({'lo.PSD(lo.Dense(M))' if psd else 'lo.Dense(M)'}, b, "
            f"alg=lo.{meth}(tol={TOL:g}{args}))`", f_lo, (M, b), (Mj, bj), chk, gone)
    bn = float(np.linalg.norm(b))
    for key, kw, how, note in (
            ("", dict(rtol=TOL, atol=0.0), f"rtol={TOL:g}, atol=0", "componentwise |rᵢ| ≤ tol |bᵢ| and a step test"),
            (" same", dict(rtol=0.0, atol=TOL * bn, norm=jnp.linalg.norm), f"atol={TOL:g}‖b‖, rtol=0, 2-norm",
             "linops' residual criterion; lineax also requires ‖Δx‖ ≤ atol")):
        def f_lx(M, b, kw=kw):
            tags = (lx.positive_semidefinite_tag,) if psd else ()
            sol = lx.linear_solve(lx.MatrixLinearOperator(M, *tags), b, getattr(lx, meth)(**kw, **opts), throw=False)
            return sol.value, sol.stats["num_steps"], sol.result == lx.RESULTS.successful

        its = (lambda c: f"{c} cycles × {opts['restart']}") if meth == "GMRES" else str
        specs[f"lx {meth}{key}"] = spec(f"lineax `{meth}({how}{args})`", lambda f=f_lx: compiled(f, Mj, bj),
                                        _solve_check(M, b, its), f"lo jax {meth}", note,
                                        None if lx else "lineax not installed (pip install lineax)")
    specs[f"scipy {meth}"] = spec(f"scipy `{scipy_fn.__name__}(M, b, rtol={TOL:g}, atol=0{args})`",
                                  lambda: plain(_scipy_solver(scipy_fn, M, b, **scipy_kw)), chk, f"lo np {meth}")
    return specs


def section_cg():
    n, load0 = S["spd"], load_average()
    M, _ = sym_matrix(np.linspace(1.0, 100.0, n), 0)
    b = np.random.default_rng(0).standard_normal(n)
    specs = _solve_specs(M, b, "CG", {}, True, spla.cg, {})
    meta = measure(specs)
    notes = [f"M = Q diag(linspace(1, 100, {n})) Qᵀ (condition number 100), b ~ N(0, I), float64. Iterations: one "
             "product with M each (lineax's CG adds one every 10 to refresh the residual).",
             timing_note(load0, "jax rows are compared with linops jax, numpy rows with linops numpy.")]
    return section(f"CG to relative residual {TOL:g}, dense SPD {n}x{n}, condition number 100: linops vs lineax and "
                   "scipy", HEAD + SOLVE_COLS + ["notes"], rows_of(specs, meta, len(SOLVE_COLS)), notes)


def section_nonsym():
    n, load0 = S["nonsym"], load_average()
    rng = np.random.default_rng(1)
    M = sym_matrix(np.linspace(2.0, 10.0, n), 1)[0] + rng.standard_normal((n, n)) / np.sqrt(n)
    b = rng.standard_normal(n)
    specs = _solve_specs(M, b, "GMRES", {"restart": 30}, False, spla.gmres, dict(restart=30, callback_type="pr_norm"))
    specs.update(_solve_specs(M, b, "BiCGStab", {}, False, spla.bicgstab, {}))
    meta = measure(specs)
    notes = [f"M = Q diag(linspace(2, 10, {n})) Qᵀ + G/√n (G Gaussian): non-symmetric, non-normal, eigenvalues near "
             "[1, 11]; b ~ N(0, I), float64.",
             "Iterations as each library counts them: GMRES inner (Arnoldi) steps, one product each, plus one per "
             "restart cycle (linops, scipy); lineax's GMRES counts restart cycles of 30 steps and tests convergence "
             "only between cycles. BiCGStab: iterations of two products each.",
             timing_note(load0, "jax rows are compared with linops jax (same method), scipy with linops numpy.")]
    return section(f"GMRES and BiCGStab to relative residual {TOL:g}, dense non-symmetric {n}x{n}: linops vs lineax "
                   "and scipy", HEAD + SOLVE_COLS + ["notes"], rows_of(specs, meta, len(SOLVE_COLS)), notes)


# --------------------------------------------------------------------------- 3. least squares
def section_lstsq():
    mf = peer("matfree.lstsq")
    (m, n), load0 = S["lsq"], load_average()
    rng = np.random.default_rng(2)
    M = rng.standard_normal((m, n)) * np.logspace(0, -0.5, n)
    b = M @ rng.standard_normal(n) + 0.1 * rng.standard_normal(m)  # inconsistent: the residual is not 0
    t0 = time.perf_counter()
    x_ls, _, _, sv = np.linalg.lstsq(M, b, rcond=None)
    t_lstsq = time.perf_counter() - t0
    gb = np.linalg.norm(M.T @ b)

    def normal_res(x):
        return fmt_err(float(np.linalg.norm(M.T @ (b - M @ np.asarray(x))) / gb))

    def check(res):
        return [str(top_int(res[1])), fmt_err(rel_diff(res[0], x_ls)), normal_res(res[0])]

    gone = missing("LSMR", "lstsq")
    alg = None if gone else lo.LSMR(atol=TOL, btol=TOL)

    def f_lo(M, b):
        x, info = lo.lstsq(lo.Dense(M), b, alg=alg, return_info=True)
        return x, info.iterations

    def f_mf(M, b):
        x, stats = mf.lsmr(atol=TOL, btol=TOL)(lambda u, M: u @ M, b, M)
        return x, stats["iteration_count"]

    specs = {}
    lo_pair(specs, "LSMR", f"linops `lo.lstsq(lo.Dense(M), b, alg=lo.LSMR(atol={TOL:g}, btol={TOL:g}))`", f_lo, (M, b),
            (jnp.asarray(M), jnp.asarray(b)), check, gone)
    specs["matfree"] = spec(f"matfree `lstsq.lsmr(atol={TOL:g}, btol={TOL:g})`, jitted",
                            lambda: compiled(f_mf, jnp.asarray(M), jnp.asarray(b)), check, "lo jax LSMR",
                            "SciPy's LSMR ported to JAX", None if mf else NO_MATFREE)
    for fn, note in ((spla.lsmr, ""), (spla.lsqr, "CG on the normal equations (Paige-Saunders)")):
        specs[fn.__name__] = spec(f"scipy `{fn.__name__}(M, b, atol={TOL:g}, btol={TOL:g})`",
                                  lambda fn=fn: plain(lambda: fn(M, b, atol=TOL, btol=TOL)[::2]), check,
                                  "lo np LSMR", note)
    meta = measure(specs)
    rows = rows_of(specs, meta, 3) + [
        ["`numpy.linalg.lstsq` (SVD, gelsd)", fmt_s(t_lstsq) + " (1 run)", "—",
         fmt_ratio(meta["lo np LSMR"].get("median_s"), t_lstsq), "—", "reference", normal_res(x_ls), "the dense x_ls"]]
    notes = [f"M = G diag(logspace(0, −0.5, {n})), G {m}x{n} Gaussian (condition number {sv[0] / sv[-1]:.1f}); "
             "b = M x₀ + 0.1 e (an inconsistent system), float64. Iterations: one product with M and one with Mᵀ each.",
             timing_note(load0)]
    return section(f"Least squares, dense {m}x{n}: LSMR in linops vs scipy, matfree and numpy",
                   HEAD + ["iterations", "‖x − x_ls‖/‖x_ls‖", "‖Mᵀ(b − Mx)‖/‖Mᵀb‖", "notes"], rows, notes)


# --------------------------------------------------------------------------- 4. SLQ
def section_slq():
    import scipy.linalg as sl

    mf = peer("matfree")
    n, load0, ns = S["slq"], load_average(), 5
    K = np.exp(-sqdist(rbf_inputs(n, 1)) / 2) + NOISE * np.eye(n)
    Kj = jnp.asarray(K)

    def chol():
        return 2 * float(np.log(np.diag(sl.cholesky(K, lower=True, check_finite=False))).sum()), 0.0

    exact = chol()[0]

    def f_lo(K, seed=0):
        v, info = lo.logdet(lo.PSD(lo.Dense(K)), alg=lo.SLQ(num_probes=SLQ_PROBES, steps=SLQ_STEPS, seed=seed),
                            return_info=True)
        return v, info.stderr

    def f_mf(reortho):
        from matfree import decomp, funm, stochtrace as st

        integrand = funm.monte_carlo_funm_sym_logdet(decomp.tridiag_sym(SLQ_STEPS, reortho=reortho))
        est = st.estimator_monte_carlo_mean_and_sem(integrand, st.sampler_signs(Kj[0], num=SLQ_PROBES))
        return lambda K, key: est(lambda v: K @ v, key)

    errs = {}

    def check_for(name):
        def check(res):
            v, se = (float(np.asarray(a)) for a in res)
            e = np.abs(errs.get(name, []))
            tail = f"{e.mean():.1e} (max {e.max():.1e})" if len(e) else "(on the numpy row)"
            return [f"{v:.2f}", f"{se:.2f}", f"{(v - exact) / abs(exact):+.1e}", tail]
        return check

    specs = {}
    lo_pair(specs, "SLQ", f"linops `lo.logdet(lo.PSD(lo.Dense(K)), alg=lo.SLQ(num_probes={SLQ_PROBES}, "
            f"steps={SLQ_STEPS}))`", f_lo, (K,), (Kj,), check_for("lo np SLQ"), None,
            "Rademacher probes, no reorthogonalisation", check_for("lo jax SLQ"))
    for ro, label, note in (("full", f"matfree `funm.monte_carlo_funm_sym_logdet(decomp.tridiag_sym({SLQ_STEPS}))` "
                                     f"+ `stochtrace` ({SLQ_PROBES} Rademacher probes), jitted",
                             "full reorthogonalisation (its default)"),
                            ("none", "matfree, same, `tridiag_sym(..., reortho='none')`", "no reorthogonalisation")):
        specs[f"mf {ro}"] = spec(label, lambda ro=ro: compiled(f_mf(ro), Kj, jax.random.PRNGKey(0)),
                                 check_for(f"mf {ro}"), "lo jax SLQ", note, None if mf else NO_MATFREE)
    specs["chol"] = spec("scipy `cholesky` → 2 Σ log diag L (exact)", lambda: plain(chol),
                         lambda res: [f"{res[0]:.2f}", "—", "reference", "—"], "lo np SLQ")
    meta = measure(specs)
    errs["lo np SLQ"] = [(float(f_lo(K, s)[0]) - exact) / abs(exact) for s in range(ns)]
    for key in ("mf full", "mf none"):
        if meta[key].get("exe") is not None:
            errs[key] = [(float(meta[key]["exe"](Kj, jax.random.PRNGKey(s))[0]) - exact) / abs(exact)
                         for s in range(ns)]
    notes = [f"K = exp(−‖xᵢ − xⱼ‖² / 2) + {NOISE} I, {n} inputs uniform on [−3, 3]² (seed 1), as in `bench_cg.py`; "
             f"both SLQs use {SLQ_PROBES} probes x {SLQ_STEPS} products. linops' seeds 0-{ns - 1} are run on numpy "
             "(under jit each seed would recompile; the jax backend draws other probes from the same distribution), "
             f"matfree's PRNGKey(0..{ns - 1}) through the compiled function.", timing_note(load0)]
    return section(f"SLQ log-determinant, RBF kernel + {NOISE} I, n = {n}: linops vs matfree",
                   HEAD + ["log det", "stderr (reported)", "relative error", f"mean \\|rel. error\\|, seeds 0-{ns - 1}",
                           "notes"], rows_of(specs, meta, 4), notes)


# --------------------------------------------------------------------------- 5. f(A) b
def section_fab():
    mf = peer("matfree")
    n, load0 = S["fab"], load_average()
    lam = np.geomspace(1.0, 100.0, n)
    M, Q = sym_matrix(lam, 3)
    b = np.random.default_rng(3).standard_normal(n)
    gone = missing("Lanczos", "exp", "log")
    specs = {}
    for fn, X, ann, f_np, what in (("exp", -T_EXP * M, "SelfAdjoint", np.exp, f"exp(−{T_EXP:g} M) b"),
                                   ("log", M, "PSD", np.log, "log(M) b")):
        ref = Q(f_np(-T_EXP * lam if fn == "exp" else lam) * Q.T(b))

        def f_lo(X, v, m=None, fn=fn, ann=ann):
            alg = lo.Lanczos(tol=FAB_TOL) if m is None else lo.Lanczos(max_iters=m)
            return getattr(lo, fn)(getattr(lo, ann)(lo.Dense(X)), alg=alg) @ v

        m, err = None, gone
        if not gone:
            try:  # the Krylov dimension the adaptive (eager) run settles on
                m = top_int(getattr(lo, fn)(getattr(lo, ann)(lo.Dense(X)), alg=lo.Lanczos(tol=FAB_TOL))
                            .matmat_with_info(b)[1].iterations)
            except Exception as e:
                err = "failed: " + short_error(e)

        def chk(res, ref=ref, m=m):
            return [str(m), fmt_err(rel_diff(res, ref))]

        def f_mf(X, v, m=m, fn=fn):
            from matfree import decomp, funm

            return funm.funm_lanczos_sym(funm.dense_funm_sym_eigh(getattr(jnp, fn)), decomp.tridiag_sym(m))(
                lambda u: X @ u, v)

        ctor = f"lo.{fn}(lo.{ann}(lo.Dense({'−tM' if fn == 'exp' else 'M'}))"
        specs[f"lo np {fn}"] = spec(f"{what}: linops `{ctor}, alg=lo.Lanczos(tol={FAB_TOL:g})) @ b`, numpy",
                                    lambda f=f_lo, X=X: plain(lambda: f(X, b)), chk, f"lo np {fn}",
                                    "adaptive: the dimension doubles from 20 until two agree to tol (≤ 2m products)",
                                    err)
        specs[f"lo jax {fn}"] = spec(f"{what}: linops, same with `lo.Lanczos(max_iters=m)`, jax, jitted",
                                     lambda f=f_lo, X=X, m=m: compiled(lambda X, v: f(X, v, m), jnp.asarray(X),
                                                                       jnp.asarray(b)),
                                     chk, f"lo jax {fn}", "fixed dimension m under jit", err)
        specs[f"mf {fn}"] = spec(f"{what}: matfree `funm_lanczos_sym(dense_funm_sym_eigh({fn}), tridiag_sym(m))`, "
                                 "jitted", lambda f=f_mf, X=X: compiled(f, jnp.asarray(X), jnp.asarray(b)), chk,
                                 f"lo jax {fn}", "full reorthogonalisation", err or (None if mf else NO_MATFREE))
        if fn == "exp":
            specs["scipy exp"] = spec(f"{what}: scipy `expm_multiply(−tM, b)`",
                                      lambda X=X: plain(lambda: spla.expm_multiply(X, b)),
                                      lambda res, ref=ref: ["—", fmt_err(rel_diff(res, ref))], "lo np exp",
                                      "truncated Taylor with scaling (Al-Mohy-Higham), to double precision")
    meta = measure(specs)
    notes = [f"M = Q diag(geomspace(1, 100, {n})) Qᵀ (condition number 100), b ~ N(0, I), t = {T_EXP:g}, float64. "
             "The exact answers Q f(Λ) Qᵀ b come from the known eigendecomposition. m: the Krylov dimension linops' "
             "adaptive numpy run settles on; the jitted linops and matfree rows use that same m. scipy has no "
             "matrix-free log(M) b (only the dense `logm`).", timing_note(load0)]
    return section(f"f(A) b by Lanczos, dense SPD {n}x{n}: linops vs matfree and scipy",
                   HEAD + ["Krylov dimension m", "‖y − y_exact‖/‖y_exact‖", "notes"], rows_of(specs, meta, 2), notes)


# --------------------------------------------------------------------------- 6-7. eigenpairs, SVD
_COLA_EIG = """
import torch, cola
torch.set_default_dtype(torch.float64)
M = torch.tensor(np.load(f"{DATA}/M.npy"))
out = {}
for name, alg in (("lanczos", lambda: cola.Lanczos(max_iters=MAXIT, tol=TOL)),
                  ("lobpcg", lambda: cola.LOBPCG(max_iters=MAXIT))):
    try:
        fn = lambda: cola.eig(cola.SelfAdjoint(cola.ops.Dense(M)), k=K, which="LM", alg=alg())
        s, _, (w, V) = _time(fn, repeat=REPEAT)
        np.save(f"{DATA}/{name}_V.npy", V.to_dense().numpy())
        out[name] = {"s": s, "w": [float(v) for v in w]}
    except Exception as e:
        out[name] = {"error": _err(e)}
print(json.dumps(out))
"""


def section_eigh():
    n, load0 = S["eig"], load_average()
    lam = 1.0 + 9.0 * np.exp(-np.arange(n) / 8.0)
    M, _ = sym_matrix(lam, 4)
    top = np.sort(lam)[-K_EIG:]

    def check(res):
        w, V = (np.asarray(a) for a in res)
        order = np.argsort(w)
        w, V = w[order], V[:, order]
        return [fmt_err(float(np.max(np.abs(w - top) / top))),
                fmt_err(float(np.linalg.norm(M @ V - V * w, axis=0).max() / top[-1])),
                fmt_err(float(np.abs(V.T @ V - np.eye(K_EIG)).max()))]

    specs = {}
    for meth, kw in (("Lanczos", {}), ("LOBPCG", dict(tol=1e-8))):
        def f(M, meth=meth, kw=kw):
            w, V = lo.eigh(lo.PSD(lo.Dense(M)), k=K_EIG, alg=lookup(meth)(**kw))
            return w, V.to_dense()

        args = ", ".join(f"{k}={v:g}" for k, v in kw.items())
        lo_pair(specs, meth, f"linops `lo.eigh(lo.PSD(lo.Dense(M)), k={K_EIG}, alg=lo.{meth}({args}))`", f, (M,),
                (jnp.asarray(M),), check, missing(meth), "fixed Krylov dimension under jit" * (meth == "Lanczos"))
    X0 = np.random.default_rng(5).standard_normal((n, K_EIG))
    specs["eigsh"] = spec(f"scipy `eigsh(M, k={K_EIG}, which='LA', tol=1e-8)` (ARPACK)",
                          lambda: plain(lambda: spla.eigsh(M, k=K_EIG, which="LA", tol=1e-8, v0=np.ones(n))),
                          check, "lo np Lanczos")
    specs["lobpcg"] = spec(f"scipy `lobpcg(M, X0 ({n}x{K_EIG}), largest=True, tol=1e-8·λ₁, maxiter=500)`",
                           lambda: plain(lambda: spla.lobpcg(M, X0, largest=True, tol=1e-8 * top[-1], maxiter=500)),
                           check, "lo np LOBPCG", "scipy's tol is absolute on ‖Av − λv‖")
    meta = measure(specs)
    rows = rows_of(specs, meta, 3)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "M.npy", M)
        cola = run_in_cola(_COLA_EIG, timeout=COLA_TIMEOUT, prelude=True,
                           consts={"DATA": tmp, "K": K_EIG, "MAXIT": 300, "TOL": 1e-8, "REPEAT": 1})
        for name, label, ref in (("lanczos", f"CoLA `cola.eig(SelfAdjoint(Dense(M)), k={K_EIG}, "
                                             "alg=Lanczos(max_iters=300, tol=1e-8))`, torch", "lo np Lanczos"),
                                 ("lobpcg", "CoLA `cola.eig(..., alg=LOBPCG(max_iters=300))`, torch", "lo np LOBPCG")):
            r = (cola["result"].get(name, {"error": "no result"}) if cola["ok"]
                 else {"error": "not run: " + cola["error"]})
            if "error" in r:
                rows.append([label, r["error"], "—", "—"] + ["—"] * 3 + [""])
                continue
            rows.append([label, fmt_s(r["s"]), "—", fmt_ratio(meta[ref].get("median_s"), r["s"])] +
                        check((np.asarray(r["w"]), np.load(Path(tmp) / f"{name}_V.npy"))) +
                        ["own venv, 1 run after a warm-up; its import not timed"])
    notes = [f"M = Q diag(1 + 9 exp(−k/8)) Qᵀ, n = {n}, k = 0..n−1 ((λ₁₁ − 1)/(λ₁₀ − 1) = e^(−1/8) ≈ 0.88), "
             "float64; exact eigenvalues known. Errors: max relative eigenvalue error, max residual ‖Av − λv‖/λ₁, "
             "max |VᵀV − I|.", timing_note(load0)]
    return section(f"Top-{K_EIG} eigenpairs, dense SPD {n}x{n}: linops vs scipy and CoLA",
                   HEAD + ["eigenvalue error", "residual", "orthogonality", "notes"], rows, notes)


def section_svd():
    sk = peer("sklearn.utils.extmath")
    (m, n), load0 = S["svd"], load_average()
    sig = np.maximum(np.exp(-np.arange(n) / 10.0), 1e-4)
    A = Orth(m, 6)(np.vstack([Orth(n, 7)(np.diag(sig)).T, np.zeros((m - n, n))]))  # Q_m[:, :n] diag(σ) Q_nᵀ
    top = sig[:K_EIG]

    def check(res):  # (U (m, k), s (k,), V (n, k)) in any order
        U, s, V = (np.asarray(a) for a in res)
        order = np.argsort(-s)
        U, s, V = U[:, order], s[order], V[:, order]
        r = max(np.linalg.norm(A @ V - U * s, axis=0).max(), np.linalg.norm(A.T @ U - V * s, axis=0).max())
        return [fmt_err(float(np.max(np.abs(s - top) / top))), fmt_err(float(r / top[0]))]

    specs = {}
    for meth, kw in (("RandomizedSVD", dict(oversample=10, power_iters=2)), ("Lanczos", {})):
        def f(A, meth=meth, kw=kw):
            U, s, V = lo.svd(lo.Dense(A), k=K_EIG, alg=lookup(meth)(**kw))
            return U.to_dense(), s, V.to_dense()

        args = ", ".join(f"{k}={v}" for k, v in kw.items())
        lo_pair(specs, meth, f"linops `lo.svd(lo.Dense(A), k={K_EIG}, alg=lo.{meth}({args}))`", f, (A,),
                (jnp.asarray(A),), check, missing(meth))
    specs["sklearn"] = spec(f"scikit-learn `randomized_svd(A, {K_EIG}, n_oversamples=10, n_iter=2, "
                            "power_iteration_normalizer='QR', random_state=0)`",
                            lambda: plain(lambda: (lambda U, s, Vt: (U, s, Vt.T))(*sk.randomized_svd(
                                A, K_EIG, n_oversamples=10, n_iter=2, power_iteration_normalizer="QR",
                                random_state=0))),
                            check, "lo np RandomizedSVD", "same budget as linops' row",
                            None if sk else "scikit-learn not installed (pip install scikit-learn)")
    specs["svds"] = spec(f"scipy `svds(A, k={K_EIG}, tol=1e-8)` (ARPACK)",
                         lambda: plain(lambda: (lambda U, s, Vt: (U, s, Vt.T))(
                             *spla.svds(A, k=K_EIG, tol=1e-8, random_state=0))), check, "lo np Lanczos")
    meta = measure(specs)
    notes = [f"A = U diag(σ) Vᵀ, {m}x{n}, σₖ = max(exp(−k/10), 1e−4), U and V from the fast random orthogonal "
             "matrices (exact triplets known), float64. RandomizedSVD is an approximation with no tolerance: its "
             "error is set by σ₂₁/σ₁₀ and the power iterations. Residual: max over the 10 triplets of "
             "max(‖Av − σu‖, ‖Aᵀu − σv‖)/σ₁.", timing_note(load0)]
    return section(f"Top-{K_EIG} singular triplets, dense {m}x{n}: linops vs scipy and scikit-learn",
                   HEAD + ["σ error (max relative)", "residual", "notes"], rows_of(specs, meta, 2), notes)


# --------------------------------------------------------------------------- 8. trace
def section_trace():
    mf = peer("matfree")
    n, ns, budget, load0 = S["trace"], S["seeds"], TRACE_MATVECS, load_average()
    mats = {p: sym_matrix(np.arange(1, n + 1, dtype=float) ** -p, 8 + p)[0] for p in (1, 2)}
    exact = {p: float(np.sum(np.arange(1, n + 1, dtype=float) ** -p)) for p in (1, 2)}
    M2 = jnp.asarray(mats[2])
    stats, runs, specs = {}, {}, {}

    def seed0(res):
        t, se = (float(np.asarray(a)) for a in res)
        return [str(budget), "(on the numpy row)", f"seed 0: {abs(t - exact[2]) / exact[2]:.1e}; stderr "
                f"{se / exact[2]:.1e}"]

    def check_for(name):
        return lambda res: [str(budget)] + [stats.get((name, p), "—") for p in (1, 2)]

    for meth, kw in (("Hutchinson", dict(num_probes=budget)), ("HutchPlusPlus", dict(num_matvecs=budget)),
                     ("XTrace", dict(num_matvecs=budget))):
        def f(M, meth=meth, kw=kw, seed=0):
            t, info = lo.trace(lo.PSD(lo.Dense(M)), alg=lookup(meth)(seed=seed, **kw), return_info=True)
            return t, info.stderr

        args = ", ".join(f"{k}={v}" for k, v in kw.items())
        lo_pair(specs, meth, f"linops `lo.trace(lo.PSD(lo.Dense(M)), alg=lo.{meth}({args}))`", f, (mats[2],), (M2,),
                check_for(f"lo np {meth}"), missing(meth), check_jax=seed0)
        runs[f"lo np {meth}"] = lambda p, s, f=f: f(mats[p], seed=s)

    def f_mf(kind):
        from matfree import stochtrace as st

        x = jnp.zeros(n)
        est = (st.estimator_monte_carlo_mean_and_sem(st.monte_carlo_trace(), st.sampler_signs(x, num=budget))
               if kind == "Hutchinson" else
               st.estimator_leave_one_out_mean_and_sem(st.leave_one_out_xtrace(),
                                                       st.sampler_normal(x, num=budget // 2)))
        return lambda M, key: est(lambda v: M @ v, key)

    for kind, call in (("Hutchinson", f"estimator_monte_carlo(monte_carlo_trace(), sampler_signs(num={budget}))"),
                       ("XTrace", "estimator_leave_one_out(leave_one_out_xtrace(), "
                                  f"sampler_normal(num={budget // 2}))")):
        specs[f"mf {kind}"] = spec(f"matfree {kind}: `{call}`, jitted",
                                   lambda kind=kind: compiled(f_mf(kind), M2, jax.random.PRNGKey(0)),
                                   check_for(f"mf {kind}"), f"lo jax {kind}", unavailable=None if mf else NO_MATFREE)
    meta = measure(specs)
    for kind in ("Hutchinson", "XTrace"):
        if meta[f"mf {kind}"].get("exe") is not None:
            runs[f"mf {kind}"] = (lambda p, s, e=meta[f"mf {kind}"]["exe"]:
                                  e(jnp.asarray(mats[p]), jax.random.PRNGKey(s)))
    for name, run in runs.items():
        for p in (1, 2):
            if "error" not in meta[name]:
                out = np.array([[float(np.asarray(a)) for a in run(p, s)] for s in range(ns)]) / exact[p]
                e = np.abs(out[:, 0] - 1)
                stats[(name, p)] = f"{e.mean():.1e} (max {e.max():.1e}); stderr {out[:, 1].mean():.1e}"
    notes = [f"M = Q diag(λ) Qᵀ, n = {n}, two spectra: λₖ = 1/k (tr {exact[1]:.3f}) and 1/k² (tr {exact[2]:.4f}), "
             f"float64; every method spends {budget} products with M (Hutch++: {budget // 3} sketch + "
             f"{budget // 3} projection + {budget - 2 * (budget // 3)} Hutchinson; XTrace: {budget // 2} Gaussian "
             "test vectors, two products each). Errors over seeds 0.. (linops, on numpy: under jit each seed would "
             "recompile) or PRNGKey(0..) (matfree, through the compiled function). Times: the λ = 1/k² matrix.",
             timing_note(load0)]
    return section(f"Trace estimation with {budget} products, dense {n}x{n}: linops vs matfree",
                   HEAD + ["products", f"λₖ = 1/k: mean \\|rel. error\\| over {ns} seeds (max); mean stderr/tr",
                           "λₖ = 1/k²: same", "notes"], rows_of(specs, meta, 3), notes)


SECTIONS = (section_cg, section_nonsym, section_lstsq, section_slq, section_fab, section_eigh, section_svd,
            section_trace)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="small sizes, one timed run: checks that every table runs")
    ap.add_argument("--only", help="comma-separated table numbers (1-8), e.g. 1,4")
    args, _ = ap.parse_known_args()
    if args.smoke:
        S.update(SMOKE)
    sections = []
    for i in ([int(i) for i in args.only.split(",")] if args.only else range(1, len(SECTIONS) + 1)):
        fn, t0 = SECTIONS[i - 1], time.perf_counter()
        try:
            s = fn()
        except Exception as e:  # one failing table must not hide the others
            s = section(f"{fn.__name__}: failed", ["error"], [[short_error(e)]])
        size = " (--smoke sizes)" if args.smoke else ""
        s["notes"].append(f"Table wall time: {time.perf_counter() - t0:.0f} s{size}.")
        sections.append(s)
    if sections:  # the results header does not list these
        vers = ", ".join(f"{m} {_version(m)}" for m in ("lineax", "equinox", "matfree", "scikit-learn"))
        sections[0]["notes"].append(f"Peers in the main environment: {vers}; XLA_FLAGS={os.environ.get('XLA_FLAGS')}.")
    return sections


if __name__ == "__main__":
    finish(main())
