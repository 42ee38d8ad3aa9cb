"""Exact GP regression sharded over all visible JAX devices: RBF kernel + noise, hyperparameters
fitted by maximising the marginal likelihood with CG solves and SLQ log-determinants (implicit
gradients), the kernel matrix never formed (``lo.shard``: points sharded by rows, ring products).

    python examples/gp_sharded.py                          # n = 16384
    LINOPS_EXAMPLE_SMALL=1 python examples/gp_sharded.py   # n = 1024 (CI, < 60 s)

Without an accelerator the example asks XLA for 4 virtual CPU devices (before importing JAX),
so the sharded code paths run anywhere; on a machine with GPUs it uses all of them.

SLQ is called once per probe (``num_probes=1``, several seeds) rather than with a block of
probes: on the virtual CPU mesh, the batched LAPACK ``eigh`` of several Lanczos tridiagonals,
replicated on each device, deadlocked jaxlib's CPU thread pool (docs/architecture.md, "Sharding").
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time

if shutil.which("nvidia-smi") is None and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

import linops as lo  # noqa: E402

jax.config.update("jax_enable_x64", True)
SMALL = os.environ.get("LINOPS_EXAMPLE_SMALL") == "1"
N, STEPS, PROBES = (1024, 4, 4) if SMALL else (16384, 30, 8)


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, (n, 2))
    y = np.sin(X[:, 0]) * np.cos(0.7 * X[:, 1]) + 0.3 * X[:, 0] + 0.1 * rng.standard_normal(n)
    return jnp.asarray(X), jnp.asarray(y)


def covariance(X, params, mesh):
    log_ls, log_os, log_noise = params
    K = lo.RBF(X, lengthscale=jnp.exp(log_ls), outputscale=jnp.exp(log_os))
    return lo.PSD(lo.shard(K, mesh) + lo.ScalarMul(jnp.exp(log_noise), X.shape[0]))


def neg_mll(params, X, y, mesh):
    """-log p(y) / n with CG (tol 1e-6) and SLQ (PROBES probes, one per call); implicit gradients."""
    A = covariance(X, params, mesh)
    alpha = lo.solve(A, y, alg=lo.CG(tol=1e-6))
    logdet = sum(lo.logdet(A, alg=lo.SLQ(num_probes=1, steps=30, seed=s, grad_tol=1e-4)) for s in range(PROBES)) / PROBES
    n = y.shape[0]
    return (0.5 * (y @ alpha) + 0.5 * logdet + 0.5 * n * math.log(2 * math.pi)) / n


def exact_neg_mll(params, X, y):
    log_ls, log_os, log_noise = params
    K = lo.RBF(X, lengthscale=jnp.exp(log_ls), outputscale=jnp.exp(log_os)).to_dense() + jnp.exp(log_noise) * jnp.eye(len(y))
    L = jnp.linalg.cholesky(K)
    a = jax.scipy.linalg.cho_solve((L, True), y)
    return float((0.5 * y @ a + jnp.sum(jnp.log(jnp.diag(L))) + 0.5 * len(y) * math.log(2 * math.pi)) / len(y))


def main() -> int:
    devices = jax.devices()
    n = N - N % len(devices)
    mesh = Mesh(np.array(devices), ("x",))
    X, y = data(n)
    Xs, ys = lo.shard(X, mesh), lo.shard(y, mesh)
    print(f"GP regression, n = {n} points sharded over {len(devices)} {devices[0].platform} devices, {STEPS} Adam steps")
    step = jax.jit(jax.value_and_grad(lambda p, X, y: neg_mll(p, X, y, mesh)))
    params = jnp.array([0.0, 0.0, math.log(0.1)])
    m, v = jnp.zeros(3), jnp.zeros(3)
    mem = step.lower(params, Xs, ys).compile().memory_analysis()
    per_device = (mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes) / 2**20
    times, losses = [], []
    for t in range(1, STEPS + 1):
        t0 = time.perf_counter()
        loss, g = step(params, Xs, ys)
        g.block_until_ready()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        params = params - 0.1 * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8)
        if t == 1 or t == STEPS:
            print(f"step {t:3d}  -mll/n {float(loss):+.5f}  |grad| {float(jnp.linalg.norm(g)):.3e}")
    ls, os_, noise = (float(jnp.exp(p)) for p in params)
    print(f"fitted lengthscale {ls:.3f}  outputscale {os_:.3f}  noise {noise:.4f}")
    steady = times[1:] if len(times) > 1 else times
    print(f"time per marginal-likelihood-plus-gradient step: {np.median(steady):.3f} s (first, with compilation: {times[0]:.1f} s)")
    print(f"compiled per-device memory (arguments + temporaries + outputs): {per_device:.2f} MiB;"
          f" the dense kernel would be {n * n * 8 / 2**20:.0f} MiB (one row block of the product holds 2^19 entries, 4 MiB)")
    ok = losses[-1] < losses[0] - 0.1  # the fit makes progress (from lengthscale 1, noise 0.1)
    if SMALL:  # check the stochastic objective against the exact one (dense Cholesky) at the fitted point
        exact = exact_neg_mll(params, X, y)
        est = float(jax.jit(lambda p, X, y: neg_mll(p, X, y, mesh))(params, Xs, ys))
        print(f"-mll/n at the fit: sharded CG + SLQ {est:+.5f}, exact Cholesky {exact:+.5f}")
        ok = ok and abs(est - exact) < 0.02
    print("fit:", "ok" if ok else "UNEXPECTED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
