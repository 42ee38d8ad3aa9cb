"""Project one dense "trained-looking" matrix onto each structured family of linops and compare them.

    python examples/structured_matrices.py                       # d = 256, plot to structured_matrices.png
    python examples/structured_matrices.py --out spy.png --alpha 0.5
    LINOPS_EXAMPLE_SMALL=1 python examples/structured_matrices.py  # d = 64, plot to a temporary directory (CI)

The matrix: ``W = U diag(σ) V^T + noise`` with a power-law spectrum ``σ_k = k^(-α)`` (α = 1 by
default) and Haar-random orthogonal ``U``, ``V``, plus Gaussian noise of 1 % of ``||W||_F``.
The power law imitates the heavy-tailed spectra reported for trained layers; the random singular
vectors give no structure a head start from the basis (a trained layer's basis is arbitrary up to
permutations of its hidden units), so the table measures how well each family spends a parameter
budget on a generic matrix. The noise stands for the part that no structure can compress.

Each structure is fitted by its Frobenius-optimal (or TT-SVD) projection:

| structure | how | optimal? |
|---|---|---|
| low rank ``lo.LowRank`` | truncated SVD | yes (Eckart-Young) |
| Monarch ``lo.monarch_project`` | one SVD per (output, input) block pair | yes |
| BTT, ranks 1, 2, 4 ``lo.btt_project`` | truncated SVD per block pair | yes |
| Tensor-Train, 2 and 4 cores ``lo.tt_project`` | TT-SVD (sequential SVDs) | 2 cores: yes; 4: within sqrt(3) |
| Kronecker ``A ⊗ B`` (``nearest_kronecker`` below) | Van Loan-Pitsianis rearrangement + rank-1 SVD | yes |

Budgets: the reference is the parameter count of BTT rank 2, ``4 d^1.5`` (16,384 = d²/4 at
d = 256; 2,048 at d = 64). Low rank, Monarch (by its block count), and the Tensor-Trains get
the largest size within it; BTT ranks 1, 2, 4 sit at 0.5x, 1x, 2x; the Kronecker product
``2x2 ⊗ d/2 x d/2`` at about 1x (d = 256) or 0.5x (d = 64). So every row but two compares at
equal storage within 2x; the exceptions, printed for reference, are the dense matrix and the
balanced Kronecker product ``sqrt(d) x sqrt(d) ⊗ sqrt(d) x sqrt(d)`` (2 d parameters). The
"budget" column is the parameter count over the reference. FLOPs per input vector are printed
beside it and differ more than the storage does (a 2-core TT of rank r is a sum of r Kronecker
products, and costs r times one).

Checks (the script exits with status 1 if one fails; tolerances relative, float64):

* every operator's fast product agrees with its dense form: ``||W_s x - dense(W_s) x|| <= 1e-12 ||dense(W_s) x||``;
* every reported projection error equals the error recomputed from the dense forms (1e-10);
* low rank: the error equals the SVD tail ``sqrt(Σ_{k>r} σ_k²) / ||W||`` (1e-10);
* BTT: the error does not grow with the rank, and rank 1 equals the square Monarch (d a square);
* Kronecker: the error equals ``sqrt(1 - σ_1(R(W))² / ||W||²)`` and linops' 2-core TT-SVD of rank 1
  on the same grid (which is the same problem) (1e-10); TT: the error is at most the TT-SVD bound;
* projecting a random Monarch matrix recovers it: error <= 1e-12.

Spy plots: ``|entries|`` of each dense form on one log colour scale, in one PNG (``--out``);
matplotlib is imported lazily and the plot skipped, with a note, where it is missing.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np

import linops as lo

SMALL = os.environ.get("LINOPS_EXAMPLE_SMALL", "") not in ("", "0")
D = 64 if SMALL else 256
NOISE = 0.01  # noise Frobenius norm relative to the signal's
PRODUCT_TOL = 1e-12
MATCH_TOL = 1e-10
RECOVERY_TOL = 1e-12


# ------------------------------------------------------------------------------- the matrix
def haar_orthogonal(n: int, rng) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix (QR of a Gaussian, signs fixed)."""
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


def trained_looking(d: int, alpha: float, rng) -> np.ndarray:
    """U diag(k^-alpha) V^T plus NOISE (relative Frobenius) Gaussian noise (module docstring)."""
    sigma = np.arange(1, d + 1, dtype=float) ** -alpha
    W = (haar_orthogonal(d, rng) * sigma) @ haar_orthogonal(d, rng).T
    noise = rng.standard_normal((d, d))
    return W + NOISE * np.linalg.norm(W) / np.linalg.norm(noise) * noise


# ------------------------------------------------------------------------------- Kronecker
def nearest_kronecker(W: np.ndarray, m: tuple[int, int], n: tuple[int, int]) -> lo.Kronecker:
    """The Frobenius-nearest ``A ⊗ B`` to ``W`` (m1 m2, n1 n2), A (m1, n1), B (m2, n2).

    Van Loan and Pitsianis (1993): the rearrangement ``R(W)[(i1, j1), (i2, j2)] = W[i1 m2 + i2,
    j1 n2 + j2]`` maps ``A ⊗ B`` to the rank-1 matrix ``vec(A) vec(B)^T`` and preserves the
    Frobenius norm, so the best ``A ⊗ B`` is the top singular pair of ``R(W)``. O(d² min(m1 n1, m2 n2)).
    (linops has no function for it; ``lo.tt_project(W, 1, grid)`` solves the same problem and is
    used as the cross-check.)"""
    (m1, m2), (n1, n2) = m, n
    R = W.reshape(m1, m2, n1, n2).transpose(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)
    U, s, Vt = np.linalg.svd(R, full_matrices=False)
    A = math.sqrt(s[0]) * U[:, 0].reshape(m1, n1)
    B = math.sqrt(s[0]) * Vt[0].reshape(m2, n2)
    return lo.Kronecker(lo.Dense(A), lo.Dense(B))


def kronecker_flops(K: lo.Kronecker) -> int:
    """Flops of ``(A ⊗ B) x`` as linops applies it: ``A`` on the (n1, n2) reshaped ``x``, then ``B``
    (multiply-add = 2)."""
    (m1, n1), (m2, n2) = (f.shape for f in K.factors)
    return 2 * (m1 * n1 * n2 + m2 * n2 * m1)


# ------------------------------------------------------------------------------- the table
class Row:
    """One structure: its operator, counts, projection error (reported and recomputed)."""

    def __init__(self, name, op, params, flops, reported, W, seconds):
        self.name, self.op, self.params, self.flops, self.seconds = name, op, int(params), int(flops), seconds
        self.dense = np.asarray(op.to_dense())
        self.error = float(np.linalg.norm(self.dense - W) / np.linalg.norm(W))
        self.reported = float(reported)
        x = np.random.default_rng(1).standard_normal(W.shape[1])
        ref = self.dense @ x
        self.product = float(np.linalg.norm(op @ x - ref) / np.linalg.norm(ref))


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), best wall-clock seconds of 3 calls): the fits are small, and one call's
    time on a shared machine is mostly noise."""
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t)
    return out, best


def truncated_svd(W: np.ndarray, r: int) -> lo.LowRank:
    """The best rank-r approximation (Eckart-Young) as ``lo.LowRank(U_r Σ_r, V_r)``."""
    U, s, Vt = np.linalg.svd(W)
    return lo.LowRank(U[:, :r] * s[:r], Vt[:r].T)


def tt_params(d: int, cores: int, rank: int) -> int:
    """Parameters of ``lo.tt_project(W, rank, d=cores)`` for a d x d ``W``, without projecting: TT-SVD
    caps the k-th rank by the size of the k-th unfolding, ``(r_{k-1} m_k n_k) x (Π_{i>k} m_i n_i)``."""
    ns, ms = lo.tt_shapes(d, d, cores)
    sizes = [m * n for m, n in zip(ms, ns, strict=True)]
    ranks = [1]
    for k in range(cores - 1):
        ranks.append(min(rank, ranks[-1] * sizes[k], math.prod(sizes[k + 1 :])))
    ranks.append(1)
    return sum(ranks[k] * sizes[k] * ranks[k + 1] for k in range(cores))


def largest_tt_rank(d: int, cores: int, budget: int) -> int:
    """The largest uniform maximal rank whose TT stays within ``budget`` parameters (at least 1),
    stopping where the caps make a larger rank change nothing."""
    r = 1
    while tt_params(d, cores, r + 1) <= budget and tt_params(d, cores, r + 1) > tt_params(d, cores, r):
        r += 1
    return r


def rows_for(W: np.ndarray, budget: int) -> tuple[list[Row], dict]:
    d = W.shape[0]
    b = math.isqrt(d)
    rows, facts = [], {}
    sv = np.linalg.svd(W, compute_uv=False)
    nW = float(np.linalg.norm(W))

    rows.append(Row("dense", lo.Dense(W), d * d, 2 * d * d, 0.0, W, 0.0))

    # low rank: the truncated SVD at the largest rank within budget (2 d r parameters)
    r = budget // (2 * d)
    op, secs = timed(truncated_svd, W, r)
    rows.append(Row(f"low rank r={r}", op, 2 * d * r, 2 * r * 2 * d, 0.0, W, secs))
    rows[-1].reported = rows[-1].error  # nothing reported: the check is the Eckart-Young tail
    facts["eckart_young"] = (rows[-1], float(np.sqrt(np.sum(sv[r:] ** 2))) / nW)

    # Monarch: the paper's sqrt(d) blocks, and the block count that fills the budget (2 d² / k parameters)
    for k in sorted({b, max(1, 2 * d * d // budget)}, reverse=True):
        (M, err), secs = timed(lo.monarch_project, W, k)
        rows.append(Row(f"Monarch {k} blocks", M, M.num_params, M.flops(1), err, W, secs))
        if k == b and b * b == d:
            facts["monarch_sqrt"] = rows[-1]

    # BTT at ranks 1, 2, 4 (the rank sweep; 2 r d^1.5 parameters on a sqrt(d) grid)
    facts["btt"] = []
    for rank in (1, 2, 4):
        (B, err), secs = timed(lo.btt_project, W, rank)
        rows.append(Row(f"BTT rank {rank}", B, B.num_params, B.flops(1), err, W, secs))
        facts["btt"].append(rows[-1])

    # Tensor-Train with 2 and 4 cores, largest uniform maximal rank within budget
    facts["tt"] = []
    for cores in (2, 4):
        rank = largest_tt_rank(d, cores, budget)
        (T, err, bound), secs = timed(lo.tt_project, W, rank, d=cores, return_bound=True)
        rows.append(Row(f"TT {cores} cores r={max(T.ranks)}", T, T.num_params, T.flops(1), err, W, secs))
        facts["tt"].append((rows[-1], float(bound)))

    # Kronecker A ⊗ B: balanced (sqrt(d) x sqrt(d) factors) and about the budget (2x2 ⊗ d/2 x d/2)
    facts["kron"] = []
    for (m1, n1) in sorted({(b, b), (2, 2)}, reverse=True):
        m2, n2 = d // m1, d // n1
        K, secs = timed(nearest_kronecker, W, (m1, m2), (n1, n2))
        R = W.reshape(m1, m2, n1, n2).transpose(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)
        s1 = np.linalg.svd(R, compute_uv=False)[0]
        theory = math.sqrt(max(0.0, 1 - (s1 / nW) ** 2))
        rows.append(Row(f"Kronecker {m1}x{n1} ⊗ {m2}x{n2}", K, m1 * n1 + m2 * n2, kronecker_flops(K), theory, W, secs))
        _, tt_err = lo.tt_project(W, 1, grid=((n1, n2), (m1, m2)))
        facts["kron"].append((rows[-1], float(tt_err)))
    return rows, facts


def print_table(rows: list[Row], budget: int) -> None:
    print(f"{'structure':<26s} {'params':>8s} {'budget':>7s} {'FLOPs/vector':>13s} {'rel. Frob. error':>17s} "
          f"{'product check':>14s} {'fit time':>9s}")
    for row in rows:
        print(f"{row.name:<26s} {row.params:8d} {row.params / budget:7.2f} {row.flops:13d} {row.error:17.4f} "
              f"{row.product:14.1e} {row.seconds * 1e3:7.1f}ms")
    print(f"(budget: params / {budget}, the BTT rank-2 count; error ||W - W_s||_F / ||W||_F; product check "
          "||W_s x - dense(W_s) x|| / ||dense(W_s) x||\n for a Gaussian x; fit time: best of 3, informational)")


# ------------------------------------------------------------------------------- the checks
def run_checks(rows: list[Row], facts: dict) -> list[str]:
    fail = []

    def need(ok, what):
        if not ok:
            fail.append(what)

    for row in rows:
        need(row.product <= PRODUCT_TOL, f"{row.name}: product check {row.product:.1e} > {PRODUCT_TOL:g}")
        need(abs(row.error - row.reported) <= MATCH_TOL,
             f"{row.name}: reported error {row.reported:.12f} != recomputed {row.error:.12f}")
    row, tail = facts["eckart_young"]
    need(abs(row.error - tail) <= MATCH_TOL, f"low rank: error {row.error:.12f} != SVD tail {tail:.12f}")
    btt = [r.error for r in facts["btt"]]
    need(all(a >= b - MATCH_TOL for a, b in zip(btt, btt[1:], strict=False)), f"BTT errors grow with the rank: {btt}")
    if "monarch_sqrt" in facts:
        m = facts["monarch_sqrt"].error
        need(abs(m - btt[0]) <= MATCH_TOL, f"BTT rank 1 error {btt[0]:.12f} != square Monarch {m:.12f}")
    for row, bound in facts["tt"]:
        need(row.error <= bound * (1 + MATCH_TOL),
             f"{row.name}: error {row.error:.12f} above the TT-SVD bound {bound:.12f}")
    for row, tt_err in facts["kron"]:
        need(abs(row.error - tt_err) <= MATCH_TOL,
             f"{row.name}: Van Loan error {row.error:.12f} != 2-core TT-SVD rank 1 {tt_err:.12f}")
    return fail


def monarch_recovery(d: int, rng) -> tuple[float, float]:
    """Project the dense form of a random Monarch matrix; return (reported error, max entry difference / max entry)."""
    (k, q, p), (l_, s, r) = lo.monarch_shapes(d, d, math.isqrt(d))
    M = lo.Monarch(rng.standard_normal((k, q, p)), rng.standard_normal((l_, s, r)))
    dense = M.to_dense()
    P, err = lo.monarch_project(dense, math.isqrt(d))
    return float(err), float(np.max(np.abs(P.to_dense() - dense)) / np.max(np.abs(dense)))


# ------------------------------------------------------------------------------- the plot
def spy_plots(rows: list[Row], path: str, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm
    except ImportError:
        print("matplotlib not installed: no spy plots (pip install matplotlib)")
        return
    vmax = max(float(np.max(np.abs(row.dense))) for row in rows)
    norm = LogNorm(vmin=vmax * 1e-4, vmax=vmax)
    cols = 4
    nrows = -(-len(rows) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.0 * cols, 3.1 * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows, strict=False):  # more axes than rows: the rest stay off
        im = ax.imshow(np.maximum(np.abs(row.dense), vmax * 1e-4), norm=norm, cmap="magma", interpolation="nearest")
        ax.set_title(f"{row.name}\n{row.params} params, err {row.error:.3f}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.6, label="|entry| (log scale)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"spy plots: {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="PNG path for the spy plots (default structured_matrices.png; "
                        "a temporary directory under LINOPS_EXAMPLE_SMALL=1)")
    parser.add_argument("--alpha", type=float, default=1.0, help="power-law exponent of W's singular values")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = (os.path.join(tempfile.mkdtemp(prefix="linops_example_"), "structured_matrices.png") if SMALL
                    else "structured_matrices.png")
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    W = trained_looking(D, args.alpha, rng)
    budget = 4 * D * math.isqrt(D)  # BTT rank 2's parameter count (module docstring)
    print(f"W: {D} x {D}, singular values k^-{args.alpha:g} with random orthogonal factors, "
          f"{NOISE:.0%} noise (seed {args.seed})\n")
    rows, facts = rows_for(W, budget)
    print_table(rows, budget)
    fail = run_checks(rows, facts)

    err, diff = monarch_recovery(D, rng)
    ok = err <= RECOVERY_TOL and diff <= RECOVERY_TOL
    if not ok:
        fail.append(f"Monarch recovery: error {err:.1e}, max difference {diff:.1e} > {RECOVERY_TOL:g}")
    print(f"\nrandom Monarch ({math.isqrt(D)} blocks) projected back: reported error {err:.1e}, "
          f"max |entry difference| / max |entry| {diff:.1e}  {'ok' if ok else 'FAIL'}")
    spy_plots(rows, args.out, f"|W_s| for W {D}x{D} (σ_k = k^-{args.alpha:g}, random factors)")
    print(f"({time.perf_counter() - t0:.1f} s)")
    if fail:
        print(f"\n{len(fail)} check(s) FAILED:\n  " + "\n  ".join(fail))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
