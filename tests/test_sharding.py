"""Sharded operators: JAX on a CPU mesh (8 virtual devices), torch.distributed with gloo.

The JAX checks run in a subprocess: ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
must be set before JAX is first imported, and this test session imports JAX early. Every
sharded result is compared with the unsharded one in float64 (relative 1e-10); the compiled
programs are inspected (``as_text``: no array of n * n elements on any device;
``memory_analysis``: per-device argument bytes shrink as 1/p).

SLQ runs with ``num_probes=1`` on the mesh: with several probes the batched LAPACK ``eigh`` of
the Lanczos tridiagonals, replicated on each virtual CPU device, deadlocked jaxlib's CPU
thread pool (all pool threads waiting in ``EigenvalueDecompositionSymmetricKernel``), see
docs/architecture.md ("Sharding").

The torch checks spawn 3 gloo processes (uneven rows: 50 = 17 + 17 + 16).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import linops as lo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

JAX_CODE = r"""
import json, re
import numpy as np
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from jax.sharding import Mesh
import linops as lo
from linops.sharding import ShardedKernel

out = {}
devs = jax.devices()
assert len(devs) == 8, devs
mesh = Mesh(np.array(devs), ("x",))
rng = np.random.default_rng(0)
n = 64
G = rng.standard_normal((n, n))
M = jnp.asarray(G @ G.T / n + np.eye(n))
X = jnp.asarray(rng.standard_normal((n, 3)))
b = jnp.asarray(rng.standard_normal(n))
B = jnp.asarray(rng.standard_normal((n, 2)))
U = jnp.asarray(rng.standard_normal((n, 4)))
d = jnp.asarray(rng.uniform(1, 2, n))
F1, F2 = jnp.asarray(np.eye(8) * 2 + 0.1), jnp.asarray(np.diag(np.arange(1.0, 9.0)))

def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))

def spec(x):
    return str(x.sharding.spec)

def biggest(f, *args):
    # largest array (elements) in the per-device compiled program
    txt = jax.jit(f).lower(*args).compile().as_text()
    sizes = [int(np.prod([int(t) for t in s.split(",") if t])) for s in re.findall(r"f64\[([0-9,]*)\]", txt)]
    return max(sizes), txt

# --- products of each placed type keep the unsharded values; outputs sharded by rows
ops = {
    "dense": lo.Dense(M), "diag": lo.Diagonal(d), "lowrank": lo.LowRank(U),
    "kron": lo.Kronecker(lo.Dense(F1), lo.Dense(F2)), "rbf": lo.RBF(X, lengthscale=0.9, outputscale=1.3),
    "sum": lo.Dense(M) + lo.Diagonal(d) + lo.LowRank(U),
}
prod = jax.jit(lambda A, v: A @ v)
rprod = jax.jit(lambda A, v: v.T @ A)
for name, A in ops.items():
    As, Bs = lo.shard(A, mesh), lo.shard(B, mesh)
    y = prod(As, Bs)
    out[f"mv_{name}"] = rel(y, A @ B)
    out[f"rmv_{name}"] = rel(rprod(As, Bs), B.T @ A)
    out[f"spec_{name}"] = spec(y)
Ks = lo.shard(ops["rbf"], mesh)
out["placed_X"] = spec(Ks.kernel.X)
out["placed_ls"] = spec(Ks.kernel.lengthscale)
out["placed_kron"] = spec(lo.shard(ops["kron"], mesh).factors[0].M)
out["placed_dense"] = spec(lo.shard(ops["dense"], mesh).M)
Kg = lo.shard(ops["rbf"], mesh, ring=False)
out["mv_rbf_gather"] = rel(prod(Kg, lo.shard(B, mesh)), ops["rbf"] @ B)

# --- CG solve (values and implicit gradients) under jit on sharded vectors
def solve_dense(Mx, b):
    return lo.solve(lo.PSD(lo.Dense(Mx)), b, alg=lo.CG(tol=1e-13))
x_s = jax.jit(solve_dense)(lo.shard(M, mesh), lo.shard(b, mesh))
out["cg_dense"] = rel(x_s, np.linalg.solve(np.asarray(M), np.asarray(b)))
out["cg_spec"] = spec(x_s)
gM = jax.jit(jax.grad(lambda Mx, b: solve_dense(Mx, b) @ b))(lo.shard(M, mesh), lo.shard(b, mesh))
gM0 = jax.grad(lambda Mx: jnp.linalg.solve(Mx, b) @ b)(M)
out["cg_grad_dense"] = rel(gM, gM0)
out["cg_grad_spec"] = spec(gM)

def gp_solve(ls, Xp, shard):
    K = lo.RBF(Xp, lengthscale=ls)
    A = lo.PSD((ShardedKernel(K, mesh) if shard else K) + lo.ScalarMul(0.1, n))
    return b @ lo.solve(A, b, alg=lo.CG(tol=1e-13))
g1 = jax.jit(jax.value_and_grad(lambda ls, Xp: gp_solve(ls, Xp, True), (0, 1)))(0.9, lo.shard(X, mesh))
g0 = jax.value_and_grad(lambda ls, Xp: gp_solve(ls, Xp, False), (0, 1))(0.9, X)
Kd = np.asarray(ops["rbf"].to_dense()) / 1.3 + 0.1 * np.eye(n)
out["cg_kernel"] = abs(float(g1[0]) - float(b @ np.linalg.solve(Kd, np.asarray(b)))) / abs(float(g1[0]))
out["cg_kernel_grad_ls"] = abs(float(g1[1][0] - g0[1][0])) / abs(float(g0[1][0]))
out["cg_kernel_grad_X"] = rel(g1[1][1], g0[1][1])

# --- SLQ logdet and its implicit gradient (one probe; see the module docstring)
slq = lo.SLQ(num_probes=1, steps=40, seed=3, grad_tol=1e-13)
def ld(ls, shard):
    K = lo.RBF(X, lengthscale=ls)
    return lo.logdet(lo.PSD((ShardedKernel(K, mesh) if shard else K) + lo.ScalarMul(0.1, n)), alg=slq)
v1, v0 = jax.jit(lambda ls: ld(ls, True))(0.9), ld(0.9, False)
out["slq"] = abs(float(v1 - v0)) / abs(float(v0))
gl1, gl0 = jax.jit(jax.grad(lambda ls: ld(ls, True)))(0.9), jax.grad(lambda ls: ld(ls, False))(0.9)
out["slq_grad"] = abs(float(gl1 - gl0)) / abs(float(gl0))
# Lanczos eigenvalues (lo.eigh with Lanczos) of the sharded dense operator
w1 = jax.jit(lambda Mx: lo.eigh(lo.SelfAdjoint(lo.Dense(Mx)), k=3, alg=lo.Lanczos(tol=1e-10, seed=0))[0])(lo.shard(M, mesh))
w0 = np.sort(np.linalg.eigvalsh(np.asarray(M)))[::-1][:3]
out["lanczos"] = rel(np.sort(np.asarray(w1))[::-1], w0)

# --- no n x n array anywhere, and per-device memory shrinks with the device count
nb, nd = 2048, 512  # kernel (blocks of 2^19 / 2048 = 256 rows at p = 1), dense
Xb = jnp.asarray(rng.standard_normal((nb, 3)))
vb = jnp.asarray(rng.standard_normal((nb, 1)))
Mb = jnp.asarray(rng.standard_normal((nd, nd)))
vd = jnp.asarray(rng.standard_normal((nd, 1)))
mem = {"kernel": [], "dense": []}
for p in (1, 2, 4, 8):
    sub = Mesh(np.array(devs[:p]), ("x",))
    Kp, vp = lo.shard(lo.RBF(Xb), sub), lo.shard(vb, sub)
    big, txt = biggest(lambda A, v: A @ v, Kp, vp)
    out[f"kernel_biggest_p{p}"] = big
    out[f"kernel_permutes_p{p}"] = txt.count("collective-permute")
    ma = jax.jit(lambda A, v: A @ v).lower(Kp, vp).compile().memory_analysis()
    mem["kernel"].append(ma.argument_size_in_bytes + ma.temp_size_in_bytes)
    Dp, vdp = lo.shard(lo.Dense(Mb), sub), lo.shard(vd, sub)
    big, txt = biggest(lambda A, v: A @ v, Dp, vdp)
    out[f"dense_biggest_p{p}"] = big
    ma = jax.jit(lambda A, v: A @ v).lower(Dp, vdp).compile().memory_analysis()
    mem["dense"].append(ma.argument_size_in_bytes + ma.temp_size_in_bytes)
    # the whole CG solve on the sharded kernel: no n x n array either
    big, _ = biggest(lambda A, v: lo.solve(lo.PSD(A + lo.ScalarMul(0.5, nb)), v, alg=lo.CG(tol=1e-8)), Kp, vp)
    out[f"kernel_cg_biggest_p{p}"] = big
out["mem"] = mem
out["nb"], out["nd"] = nb, nd
print("JSON" + json.dumps(out))
"""


def _run_jax():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", JAX_CODE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    line = [s for s in res.stdout.splitlines() if s.startswith("JSON")][-1]
    return json.loads(line[4:])


@pytest.fixture(scope="module")
def jax_results():
    pytest.importorskip("jax")
    return _run_jax()


TOL = 1e-10  # float64, relative


@pytest.mark.parametrize("name", ["dense", "diag", "lowrank", "kron", "rbf", "sum"])
def test_sharded_products_match(jax_results, name):
    assert jax_results[f"mv_{name}"] < TOL
    assert jax_results[f"rmv_{name}"] < TOL
    if name != "kron":  # replicated factors: XLA picks the output's layout
        assert jax_results[f"spec_{name}"] in ("P('x', None)", "P('x',)"), jax_results[f"spec_{name}"]


def test_placement(jax_results):
    r = jax_results
    assert r["placed_X"] == "P('x', None)"  # kernel points by rows
    assert r["placed_ls"] == "P()"  # hyperparameters replicated
    assert r["placed_kron"] == "P()"  # Kronecker factors replicated
    assert r["placed_dense"] == "P('x', None)"
    assert r["mv_rbf_gather"] < TOL


def test_sharded_cg_and_gradients(jax_results):
    r = jax_results
    assert r["cg_dense"] < 1e-10 and r["cg_spec"] == "P('x',)"
    assert r["cg_grad_dense"] < 1e-9 and r["cg_grad_spec"] == "P('x', None)"
    assert r["cg_kernel"] < 1e-10
    assert r["cg_kernel_grad_ls"] < 1e-9 and r["cg_kernel_grad_X"] < 1e-9


def test_sharded_slq_and_lanczos(jax_results):
    r = jax_results
    assert r["slq"] < TOL and r["slq_grad"] < 1e-9
    assert r["lanczos"] < 1e-9


def test_no_full_operator_and_memory_shrinks(jax_results):
    r = jax_results
    nb, nd = r["nb"], r["nd"]
    for p in (1, 2, 4, 8):
        # the kernel never exists as an nb x nb array, sharded or not, in the product or in CG
        # (the largest array is one block of rows against the m/p columns a device holds)
        assert r[f"kernel_biggest_p{p}"] <= nb * nb // 8
        assert r[f"kernel_cg_biggest_p{p}"] <= nb * nb // 8
        # the dense operator: each device holds nd/p rows; no gather of the full matrix
        assert r[f"dense_biggest_p{p}"] <= nd * nd // p
    assert r["kernel_permutes_p8"] > 0 and r["kernel_permutes_p1"] == 0  # the ring's shifts
    for kind in ("kernel", "dense"):
        m = r["mem"][kind]
        assert all(b < a for a, b in zip(m[:-1], m[1:], strict=True)), (kind, m)
        assert m[-1] < m[0] / 4, (kind, m)  # 8 devices: well under a quarter of one device's bytes


def test_shard_errors():
    jax = pytest.importorskip("jax")
    from jax.sharding import Mesh

    mesh = Mesh(np.array(jax.devices()[:1]), ("x",))
    with pytest.raises(ValueError, match="axis"):
        lo.shard(jax.numpy.ones(4), mesh, axis="y")
    with pytest.raises(TypeError, match="JAX"):
        lo.shard(lo.Dense(np.eye(2)), mesh)
    with pytest.raises(TypeError, match="Mesh"):
        lo.shard(jax.numpy.ones(4), "mesh")


# ------------------------------------------------------------------------- torch
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TORCH_WORKER = textwrap.dedent(r"""
    import json, os, sys
    import torch, torch.distributed as dist
    import linops as lo
    from linops.distributed import RowSharded, row_range, shard_rows, sharded_kernel

    def worker(rank, world, port, path):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
        torch.manual_seed(0)
        n = 50
        G = torch.randn(n, n, dtype=torch.float64)
        M = G @ G.T / n + torch.eye(n, dtype=torch.float64)
        X = torch.randn(n, 2, dtype=torch.float64)
        b = torch.randn(n, dtype=torch.float64)
        res = {}
        rel = lambda a, c: float((a - c).norm() / c.norm())
        # products
        A = shard_rows(M, annotations=("PSD", "SelfAdjoint"))
        res["rows"] = list(row_range(n))
        res["mv"] = rel(A @ b, M @ b)
        res["rmv"] = rel(b @ A, b @ M)
        res["dense"] = rel(A.to_dense(), M)
        # CG solve and its implicit gradient w.r.t. the replicated matrix
        Mg = M.clone().requires_grad_(True)
        x = lo.solve(shard_rows(Mg, annotations=("PSD", "SelfAdjoint")), b, alg=lo.CG(tol=1e-13))
        (x @ b).backward()
        Mr = M.clone().requires_grad_(True)
        x0 = torch.linalg.solve(Mr, b)
        (x0 @ b).backward()
        res["cg"] = rel(x, x0)
        res["cg_grad"] = rel(Mg.grad, Mr.grad)
        # own-rows leaf: the rank's block gets its rows of the gradient
        s, t = row_range(n)
        Ml = M[s:t].clone().requires_grad_(True)
        x = lo.solve(lo.PSD(RowSharded(Ml)), b, alg=lo.CG(tol=1e-13))
        (x @ b).backward()
        res["own_rows_grad"] = rel(Ml.grad, Mr.grad[s:t])
        # kernel + noise: CG and SLQ with gradients w.r.t. lengthscale, noise and the points
        def nll(ls, noise, Xp, sharded):
            K = sharded_kernel(lo.RBF, Xp, lengthscale=ls) if sharded else lo.RBF(Xp, lengthscale=ls)
            Kn = lo.PSD(K + lo.ScalarMul(noise, n))
            return b @ lo.solve(Kn, b, alg=lo.CG(tol=1e-13)) + lo.logdet(Kn, alg=lo.SLQ(num_probes=4, steps=30, seed=2, grad_tol=1e-12))
        out = {}
        for sh in (True, False):
            ls = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
            nz = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
            Xp = X.clone().requires_grad_(True)
            val = nll(ls, nz, Xp, sh)
            val.backward()
            out[sh] = (val.detach(), ls.grad, nz.grad, Xp.grad)
        res["gp_val"] = abs(float(out[True][0] - out[False][0])) / abs(float(out[False][0]))
        res["gp_grad_ls"] = abs(float(out[True][1] - out[False][1])) / abs(float(out[False][1]))
        res["gp_grad_noise"] = abs(float(out[True][2] - out[False][2])) / abs(float(out[False][2]))
        res["gp_grad_X"] = rel(out[True][3], out[False][3])
        K = sharded_kernel(lo.RBF, X, lengthscale=0.8)
        res["kernel_local_shape"] = list(K.local.shape)
        try:
            RowSharded(lo.Dense(M[:3, : (2 if rank == 0 else 3)]))
            res["mismatch"] = "no error"
        except lo.ShapeError as e:
            res["mismatch"] = "ShapeError"
        with open(f"{path}.{rank}", "w") as f:
            json.dump(res, f)
        dist.destroy_process_group()

    if __name__ == "__main__":
        import torch.multiprocessing as mp
        world, port, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
        mp.spawn(worker, args=(world, port, path), nprocs=world, join=True)
""")


def test_torch_distributed_row_sharded(tmp_path):
    pytest.importorskip("torch")
    script = tmp_path / "worker.py"
    script.write_text(TORCH_WORKER)
    world, path = 3, str(tmp_path / "res")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(script), str(world), str(_free_port()), path], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    got = [json.load(open(f"{path}.{r}")) for r in range(world)]
    assert [g["rows"] for g in got] == [[0, 17], [17, 34], [34, 50]]
    for g in got:
        assert g["mv"] < TOL and g["rmv"] < TOL and g["dense"] == 0.0
        assert g["cg"] < 1e-10 and g["cg_grad"] < 1e-9 and g["own_rows_grad"] < 1e-9
        assert g["gp_val"] < 1e-10
        assert g["gp_grad_ls"] < 1e-9 and g["gp_grad_noise"] < 1e-9 and g["gp_grad_X"] < 1e-9
        assert g["mismatch"] == "ShapeError"
    assert [g["kernel_local_shape"] for g in got] == [[17, 50], [17, 50], [16, 50]]


def test_distributed_needs_init():
    torch = pytest.importorskip("torch")
    from linops.distributed import RowSharded

    with pytest.raises(RuntimeError, match="init_process_group"):
        RowSharded(lo.Dense(torch.eye(2, dtype=torch.float64)))
