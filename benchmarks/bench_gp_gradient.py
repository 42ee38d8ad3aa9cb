"""Exact-GP marginal-likelihood gradient to 1e-3: preconditioned CG + SLQ against Cholesky autograd.

The problem: n = 2000 inputs uniform on the unit cube [0, 1]^3 (seed 0), targets
y = sin(2π x1) cos(π x2) + x3^2 + N(0, 0.1^2); the covariance is
A(θ) = σ² exp(-||x_i - x_j||² / 2ℓ²) + s I, float64, torch, θ = (log ℓ, log σ², log s). The
gradient is of the negative log marginal likelihood -log p(y) = ½ yᵀA⁻¹y + ½ log det A + (n/2) log 2π:

(a) dense: torch autograd through ``torch.linalg.cholesky`` (the reference);
(b) linops: ``A = lo.PSD(lo.Dense(K)) + lo.ScalarMul(s, n)``; ½ yᵀA⁻¹y by
    ``lo.solve(A, y, alg=lo.CG(tol=1e-10, precond=P.inverse()))`` with
    ``P = lo.PivotedCholeskyPrecond(rank).build(A)``, and ½ log det A by
    ``lo.logdet(A, alg=lo.SLQ(num_probes, steps, grad_tol=1e-8, precond=lo.PivotedCholeskyPrecond(rank)))``
    (implicit gradients: one adjoint CG solve; p preconditioned probe solves plus the
    differentiated preconditioner, see ``linops/functions/stochastic_logdet.py``);
(c) the same without a preconditioner (last session's estimator), for comparison.

Printed: per-parameter relative error |g - g_chol| / |g_chol| (and the max), the norm-wise error,
the time of forward + backward (median of ``--repeat`` interleaved calls after a warm-up), and
the settings. Several hyperparameter points are run, the first (ℓ = 0.5) being the headline.

    python benchmarks/bench_gp_gradient.py                 # about 1-3 minutes on 2 loaded cores
    python benchmarks/bench_gp_gradient.py --quick         # one point, one repeat
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402,F401  (one BLAS thread, repository root on sys.path; before numpy/torch)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import linops as lo  # noqa: E402

N = 2000
TARGET = 1e-3


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, (n, 3))
    f = np.sin(2 * math.pi * X[:, 0]) * np.cos(math.pi * X[:, 1]) + X[:, 2] ** 2
    y = f + 0.1 * rng.standard_normal(n)
    X, y = torch.tensor(X), torch.tensor(y)
    return y, torch.cdist(X, X) ** 2


def kernel(D2, th):
    return torch.exp(th[1]) * torch.exp(-D2 / (2 * torch.exp(2 * th[0])))


def nll_dense(D2, y, th):
    n = len(y)
    A = kernel(D2, th) + torch.exp(th[2]) * torch.eye(n, dtype=D2.dtype)
    L = torch.linalg.cholesky(A)
    alpha = torch.cholesky_solve(y[:, None], L)[:, 0]
    return 0.5 * (y @ alpha) + torch.log(torch.diagonal(L)).sum() + 0.5 * n * math.log(2 * math.pi)


def nll_linops(D2, y, th, probes, rank, steps, precond: bool):
    n = len(y)
    A = lo.PSD(lo.Dense(kernel(D2, th))) + lo.ScalarMul(torch.exp(th[2]), n)
    if precond:
        P = lo.PivotedCholeskyPrecond(rank=rank).build(A)
        cg = lo.CG(tol=1e-10, precond=P.inverse())
        slq = lo.SLQ(num_probes=probes, steps=steps, grad_tol=1e-8, precond=lo.PivotedCholeskyPrecond(rank=rank))
    else:
        cg = lo.CG(tol=1e-10)
        slq = lo.SLQ(num_probes=probes, steps=steps, grad_tol=1e-8)
    alpha, info = lo.solve(A, y, alg=cg, return_info=True)
    logdet = lo.logdet(A, alg=slq)
    return 0.5 * (y @ alpha) + 0.5 * logdet + 0.5 * n * math.log(2 * math.pi), int(info.iterations)


def grad(fn, th0):
    th = th0.clone().requires_grad_(True)
    t = time.perf_counter()
    out = fn(th)
    value, extra = (out if isinstance(out, tuple) else (out, None))
    (g,) = torch.autograd.grad(value, th)
    return time.perf_counter() - t, float(value), g.numpy(), extra


def run_point(D2, y, theta, probes, rank, steps, repeat, with_plain):
    th0 = torch.tensor(theta, dtype=torch.float64)
    calls = {
        "cholesky": lambda th: nll_dense(D2, y, th),
        "linops_pc": lambda th: nll_linops(D2, y, th, probes, rank, steps, True),
    }
    if with_plain:
        calls["linops_plain"] = lambda th: nll_linops(D2, y, th, probes, rank, steps, False)
    for fn in calls.values():  # warm-up
        grad(fn, th0)
    times = {k: [] for k in calls}
    out = {}
    for _ in range(repeat):
        for k, fn in calls.items():
            t, v, g, extra = grad(fn, th0)
            times[k].append(t)
            out[k] = (v, g, extra)
    return {k: (statistics.median(times[k]), *out[k]) for k in calls}


def pchol_trace_error(D2, theta, rank):
    th = torch.tensor(theta, dtype=torch.float64)
    _, info = lo.pivoted_cholesky(lo.Dense(kernel(D2, th)), rank, return_info=True)
    return float(info.trace_error / info.trace), float(info.trace_error) / (N * math.exp(theta[2]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=30)
    ap.add_argument("--rank", type=int, default=100)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    y, D2 = data(N)
    # (log ℓ, log σ², log s): the headline point, then a shorter lengthscale (a harder kernel)
    points = [(math.log(0.5), 0.0, math.log(0.01))]
    if not args.quick:
        points += [(math.log(0.5), 0.0, math.log(0.1)), (math.log(0.25), 0.0, math.log(0.01))]
    repeat = 1 if args.quick else args.repeat
    print(f"# Exact-GP gradient, n = {N}, RBF + noise, float64, torch {torch.__version__}, 1 thread")
    print(f"# linops: CG(tol=1e-10, precond=pivoted Cholesky rank {args.rank}) + SLQ(num_probes={args.probes}, "
          f"steps={args.steps}, grad_tol=1e-8, precond=PivotedCholeskyPrecond(rank={args.rank}))")
    print(f"# times: forward + backward, median of {repeat} interleaved calls after a warm-up")
    ok = True
    for i, theta in enumerate(points):
        rel_tr, per_noise = pchol_trace_error(D2, theta, args.rank)
        res = run_point(D2, y, theta, args.probes, args.rank, args.steps, repeat, with_plain=(i == 0))
        t_ex, v_ex, g_ex, _ = res["cholesky"]
        ls, os_, s = (math.exp(v) for v in theta)
        print(f"\n## ℓ = {ls:g}, σ² = {os_:g}, s = {s:g}: rank-{args.rank} pivoted Cholesky trace error "
              f"{rel_tr:.1e} of tr K ({per_noise:.1e} of n s)")
        print(f"  {'method':34s} {'time':>8s} {'ratio':>6s}  {'rel err (log ℓ, log σ², log s)':36s} {'max':>8s} "
              f"{'norm':>8s}  -log p(y) err")
        print(f"  {'Cholesky autograd':34s} {t_ex:7.2f}s {1:6.2f}  g = ({g_ex[0]:.4f}, {g_ex[1]:.4f}, {g_ex[2]:.4f})")
        for key, name in (("linops_pc", "linops CG + SLQ, preconditioned"), ("linops_plain", "linops CG + SLQ, plain")):
            if key not in res:
                continue
            t, v, g, iters = res[key]
            rel = np.abs(g - g_ex) / np.abs(g_ex)
            norm = np.linalg.norm(g - g_ex) / np.linalg.norm(g_ex)
            print(f"  {name:34s} {t:7.2f}s {t / t_ex:6.2f}  ({rel[0]:.1e}, {rel[1]:.1e}, {rel[2]:.1e}){'':12s} "
                  f"{rel.max():8.1e} {norm:8.1e}  {v - v_ex:+.1e}  (data-fit CG: {iters} iterations)")
            if key == "linops_pc" and i == 0:
                ok = rel.max() <= TARGET
    print(f"\nheadline (first point, preconditioned): max relative error <= {TARGET:g}: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
