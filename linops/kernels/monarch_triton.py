"""Triton kernels for the Monarch product on row-major activations (the layer layout ``x @ M.T``).

Layout (as :class:`linops.operators.monarch.Monarch`): ``R`` (k, q, p), ``L`` (l, s, r), ``l r = k q``;
``x`` (N, d_in) is zero-padded to ``k p`` (never copied: the loads are masked) and the output is
cut to ``d_out`` (masked stores). With ``c = κ q + j`` the flat index of an intermediate value::

    Y1[n, c]          = Σ_a x[n, κ p + a] R[κ, j, a]               (kernel 1, one program per block and row tile)
    y[n, t l + λ]     = Σ_i L[λ, t, i] Y1[n, i l + λ]              (kernel 2: P1 in the loads, P2 in the stores)

Both steps, the input gradient (``L^T`` then ``R^T``) and the two core gradients are instances of
two generic kernels whose operands are *strided views* ``(n, block, element) -> address``:

* :func:`block_gemm`: ``out[n, b, o] = Σ_e in[n, b, e] W[b, o, e]`` (a grouped GEMM, one block per
  program, fp32 accumulation); the permutations P1 and P2 are strides of the views, so no permute
  or padding copy is ever made.
* :func:`block_wgrad`: ``G[b, o, e] = Σ_n A[n, b, o] B[n, b, e]`` (a batched GEMM reducing over the
  N rows, split over ``splits`` programs per block whose fp32 partial sums are added by torch).

A view is ``(tensor, s_b, s_e, m_b, m_e, lim)``: element ``(n, b, e)`` sits at
``n * tensor.stride(0) + b * s_b + e * s_e`` and exists when ``b m_b + e m_e < lim`` (the padding
mask; ``lim = 1, m_b = m_e = 0`` for none). Programs are numbered block-fastest, so the programs
of one row tile run together and the strided accesses of P1/P2 meet in L2.

Cost: ``2 N (k q p + l s r)`` flops per product; memory traffic ``x``, ``Y1`` twice and ``y`` once.
fp32 inputs use IEEE fp32 dots (the 1e-5 tolerance excludes tf32); bf16/fp16 inputs accumulate in fp32.
Under ``TRITON_INTERPRET=1`` (CPU) the kernels run with one small fixed configuration; on a GPU a
short autotuning list for Hopper picks the row tile, warps and stages.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

__all__ = ["View", "block_gemm", "block_wgrad", "INTERPRET"]

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


class View(NamedTuple):
    """A strided ``(n, block, element)`` view of a tensor whose dim 0 is the row ``n`` (module docstring)."""

    t: torch.Tensor
    s_b: int
    s_e: int
    m_b: int = 0
    m_e: int = 0
    lim: int = 1


def _p2(v: int) -> int:
    return max(16, triton.next_power_of_2(int(v)))


@triton.jit
def _block_gemm_kernel(
    IN, W, OUT, N, NBLK, K, O,
    s_in_n, s_in_b, s_in_e, m_in_b, m_in_e, lim_in,
    s_w_b, s_w_o, s_w_k,
    s_out_n, s_out_b, s_out_e, m_out_b, m_out_e, lim_out,
    BLOCK_N: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    blk = pid % NBLK  # block fastest: one row tile's programs run together (P1/P2 accesses share L2 lines)
    rest = pid // NBLK
    n_o = tl.cdiv(O, BLOCK_O)
    ot = rest % n_o
    nt = rest // n_o
    rn = (nt * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    ro = ot * BLOCK_O + tl.arange(0, BLOCK_O)
    blk64 = blk.to(tl.int64)
    acc = tl.zeros((BLOCK_N, BLOCK_O), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a_mask = (rn[:, None] < N) & (rk[None, :] < K) & (blk * m_in_b + rk[None, :] * m_in_e < lim_in)
        a = tl.load(IN + rn[:, None] * s_in_n + blk64 * s_in_b + rk[None, :] * s_in_e, mask=a_mask, other=0.0)
        w_mask = (rk[:, None] < K) & (ro[None, :] < O)
        w = tl.load(W + blk64 * s_w_b + rk[:, None] * s_w_k + ro[None, :] * s_w_o, mask=w_mask, other=0.0)
        if UPCAST:  # the CPU interpreter's dot misreads bf16: give it fp32 operands (the values are the same)
            a, w = a.to(tl.float32), w.to(tl.float32)
        acc = tl.dot(a, w, acc, input_precision=PRECISION)
    o_mask = (rn[:, None] < N) & (ro[None, :] < O) & (blk * m_out_b + ro[None, :] * m_out_e < lim_out)
    tl.store(OUT + rn[:, None] * s_out_n + blk64 * s_out_b + ro[None, :] * s_out_e,
             acc.to(OUT.dtype.element_ty), mask=o_mask)


@triton.jit
def _block_wgrad_kernel(
    A, B, G_OUT, N, NBLK, O, K, CHUNK,
    s_a_n, s_a_b, s_a_e, m_a_b, m_a_e, lim_a,
    s_b_n, s_b_b, s_b_e, m_b_b, m_b_e, lim_b,
    BLOCK_N: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    split = tl.program_id(1)
    blk = pid % NBLK
    rest = pid // NBLK
    n_k = tl.cdiv(K, BLOCK_K)
    kt = rest % n_k
    ot = rest // n_k
    ro = ot * BLOCK_O + tl.arange(0, BLOCK_O)
    rk = kt * BLOCK_K + tl.arange(0, BLOCK_K)
    blk64 = blk.to(tl.int64)
    a_col = (ro[None, :] < O) & (blk * m_a_b + ro[None, :] * m_a_e < lim_a)
    b_col = (rk[None, :] < K) & (blk * m_b_b + rk[None, :] * m_b_e < lim_b)
    acc = tl.zeros((BLOCK_O, BLOCK_K), dtype=tl.float32)
    n_start = split * CHUNK
    n_end = tl.minimum(n_start + CHUNK, N)
    for n0 in range(n_start, n_end, BLOCK_N):
        rn = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        rows = rn[:, None] < n_end
        a = tl.load(A + rn[:, None] * s_a_n + blk64 * s_a_b + ro[None, :] * s_a_e, mask=rows & a_col, other=0.0)
        b = tl.load(B + rn[:, None] * s_b_n + blk64 * s_b_b + rk[None, :] * s_b_e, mask=rows & b_col, other=0.0)
        if UPCAST:
            a, b = a.to(tl.float32), b.to(tl.float32)
        acc = tl.dot(tl.trans(a), b, acc, input_precision=PRECISION)
    g_off = ((split * NBLK + blk64) * O + ro[:, None]) * K + rk[None, :]
    tl.store(G_OUT + g_off, acc, mask=(ro[:, None] < O) & (rk[None, :] < K))


@triton.jit
def _block_gemm_grouped_kernel(
    IN, W, OUT, N, NBLK, K, O,
    s_in_n, s_in_b, s_in_e, m_in_b, m_in_e, lim_in,
    s_w_b, s_w_o, s_w_k,
    s_out_n, s_out_b, s_out_e, m_out_b, m_out_e, lim_out,
    BLOCK_N: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, G: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    # G consecutive blocks per program as one batched (3-D) dot: where consecutive blocks are adjacent
    # in memory (the P2 side: y[n, t l + λ], dy), the G values of one (n, t) are loaded/stored together
    pid = tl.program_id(0)
    n_g = tl.cdiv(NBLK, G)
    bg = pid % n_g
    rest = pid // n_g
    n_o = tl.cdiv(O, BLOCK_O)
    ot = rest % n_o
    nt = rest // n_o
    g3 = (bg * G + tl.arange(0, G))[:, None, None]
    n3 = (nt * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)[None, :, None]
    o3 = (ot * BLOCK_O + tl.arange(0, BLOCK_O))[None, None, :]
    g64 = g3.to(tl.int64)
    acc = tl.zeros((G, BLOCK_N, BLOCK_O), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        ka, kw = rk[None, None, :], rk[None, :, None]
        a_mask = (g3 < NBLK) & (n3 < N) & (ka < K) & (g3 * m_in_b + ka * m_in_e < lim_in)
        a = tl.load(IN + n3 * s_in_n + g64 * s_in_b + ka * s_in_e, mask=a_mask, other=0.0)
        w_mask = (g3 < NBLK) & (kw < K) & (o3 < O)
        w = tl.load(W + g64 * s_w_b + kw * s_w_k + o3 * s_w_o, mask=w_mask, other=0.0)
        if UPCAST:
            a, w = a.to(tl.float32), w.to(tl.float32)
        acc = tl.dot(a, w, acc, input_precision=PRECISION)
    o_mask = (g3 < NBLK) & (n3 < N) & (o3 < O) & (g3 * m_out_b + o3 * m_out_e < lim_out)
    tl.store(OUT + n3 * s_out_n + g64 * s_out_b + o3 * s_out_e, acc.to(OUT.dtype.element_ty), mask=o_mask)


@triton.jit
def _block_wgrad_grouped_kernel(
    A, B, G_OUT, N, NBLK, O, K, CHUNK,
    s_a_n, s_a_b, s_a_e, m_a_b, m_a_e, lim_a,
    s_b_n, s_b_b, s_b_e, m_b_b, m_b_e, lim_b,
    BLOCK_N: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, G: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    split = tl.program_id(1)
    n_g = tl.cdiv(NBLK, G)
    bg = pid % n_g
    rest = pid // n_g
    n_k = tl.cdiv(K, BLOCK_K)
    kt = rest % n_k
    ot = rest // n_k
    g3 = (bg * G + tl.arange(0, G))[:, None, None]
    g64 = g3.to(tl.int64)
    o3 = (ot * BLOCK_O + tl.arange(0, BLOCK_O))[None, None, :]
    k3 = (kt * BLOCK_K + tl.arange(0, BLOCK_K))[None, None, :]
    a_col = (g3 < NBLK) & (o3 < O) & (g3 * m_a_b + o3 * m_a_e < lim_a)
    b_col = (g3 < NBLK) & (k3 < K) & (g3 * m_b_b + k3 * m_b_e < lim_b)
    acc = tl.zeros((G, BLOCK_O, BLOCK_K), dtype=tl.float32)
    n_start = split * CHUNK
    n_end = tl.minimum(n_start + CHUNK, N)
    for n0 in range(n_start, n_end, BLOCK_N):
        n3 = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)[None, :, None]
        rows = n3 < n_end
        a = tl.load(A + n3 * s_a_n + g64 * s_a_b + o3 * s_a_e, mask=rows & a_col, other=0.0)
        b = tl.load(B + n3 * s_b_n + g64 * s_b_b + k3 * s_b_e, mask=rows & b_col, other=0.0)
        if UPCAST:
            a, b = a.to(tl.float32), b.to(tl.float32)
        acc = tl.dot(tl.permute(a, (0, 2, 1)), b, acc, input_precision=PRECISION)
    oo = (ot * BLOCK_O + tl.arange(0, BLOCK_O))[None, :, None]
    kk = (kt * BLOCK_K + tl.arange(0, BLOCK_K))[None, None, :]
    g_off = ((split * NBLK + g64) * O + oo) * K + kk
    tl.store(G_OUT + g_off, acc, mask=(g3 < NBLK) & (oo < O) & (kk < K))


def _configs(entries, group: bool):
    return [triton.Config({"BLOCK_N": bn, "G": g} if group else {"BLOCK_N": bn}, num_warps=w, num_stages=st)
            for bn, g, w, st in entries]


def _prune(limit: int, group: bool, wgrad: bool):
    """Drop configurations whose fp32 accumulator would pass ``limit`` values (register spills)."""

    def prune(configs, named_args, **kwargs):
        bo = kwargs.get("BLOCK_O", named_args.get("BLOCK_O", 64))
        bk = kwargs.get("BLOCK_K", named_args.get("BLOCK_K", 64))
        def size(c):
            g = c.kwargs.get("G", 1)
            return g * bo * (bk if wgrad else c.kwargs["BLOCK_N"])
        esize = named_args["IN" if "IN" in named_args else "A"].element_size()
        keep = [c for c in configs if size(c) <= limit
                and _smem_ok(c.kwargs.get("G", 1), c.kwargs["BLOCK_N"], bo, bk, esize, c.num_stages, wgrad)]
        return keep or [min(configs, key=size)]

    return prune


# (BLOCK_N, G, num_warps, num_stages): a short list for Hopper (132 SMs, 64K registers per SM), from the H100
# sweep of benchmarks/gpu_notes.md (d = 4096, bf16): the fastest of each kind first; configurations that spilled
# (a [4, 64, 64] fp32 accumulator on 4 warps: 10x slower) are left out
_GEMM = ((128, 1, 4, 2), (64, 1, 4, 2), (256, 1, 8, 2))
_GEMM_G = ((64, 8, 8, 1), (32, 16, 8, 1), (32, 8, 4, 1))
_WGRAD = ((256, 1, 8, 3), (128, 1, 8, 3), (128, 1, 4, 3))
_WGRAD_G = ((64, 8, 8, 2), (128, 4, 8, 2), (32, 16, 8, 2))
_KEY_G = ["N", "NBLK", "K", "O", "s_in_b", "s_in_e", "s_out_b", "s_out_e"]
_KEY_W = ["N", "NBLK", "K", "O", "s_a_b", "s_a_e", "s_b_b", "s_b_e"]


def _autotune(configs, key, prune):
    """``triton.autotune`` with a short timing per configuration (5 ms warm-up, 20 ms of repeats); a
    configuration out of shared memory or registers is skipped by triton."""
    def quick(fn, quantiles=None, **kw):
        return triton.testing.do_bench(fn, warmup=5, rep=20, quantiles=quantiles)

    try:
        return triton.autotune(configs, key=key, prune_configs_by={"early_config_prune": prune}, do_bench=quick)
    except TypeError:  # older triton: no do_bench argument
        return triton.autotune(configs, key=key, prune_configs_by={"early_config_prune": prune})


_block_gemm_tuned = _autotune(_configs(_GEMM, False), _KEY_G, _prune(256 * 64, False, False))(_block_gemm_kernel)
_block_gemm_grouped_tuned = _autotune(_configs(_GEMM_G, True), _KEY_G, _prune(32768, True, False))(
    _block_gemm_grouped_kernel)
_block_wgrad_tuned = _autotune(_configs(_WGRAD, False), _KEY_W, _prune(128 * 128, False, True))(_block_wgrad_kernel)
_block_wgrad_grouped_tuned = _autotune(_configs(_WGRAD_G, True), _KEY_W, _prune(32768, True, True))(
    _block_wgrad_grouped_kernel)

# GROUPED: use the grouped kernels on the P2 side (views whose consecutive blocks are adjacent in memory).
# FORCE: fixed configurations instead of autotuning, {"gemm" | "gemm_g" | "wgrad" | "wgrad_g": {"BLOCK_N": ...,
# "G": ..., "num_warps": ..., "num_stages": ...}} (benchmarks, checks); the interpreter always uses a small one.
GROUPED = True
FORCE: dict | None = None
_INTERP_CFG = {"BLOCK_N": 16, "num_warps": 4, "num_stages": 2}


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 or INTERPRET else "tf32"  # the flag only concerns fp32 operands


def _grouped(*views: View) -> bool:
    return GROUPED and any(abs(v.s_b) == 1 for v in views)


def _smem_ok(g: int, bn: int, bo: int, bk: int, esize: int, stages: int, wgrad: bool) -> bool:
    """Whether a tile's operand buffers fit in ~160 KB of shared memory (H100: 227 KB per block; Triton's
    own use was seen up to 1.3x this count)."""
    per_stage = g * bn * (bo + bk) if wgrad else g * bk * (bn + bo)
    return per_stage * esize * max(stages, 1) <= 160 * 1024


def _launch(plain, grouped, tuned, tuned_g, use_g: bool, nblk: int, rest: int, N: int, extra_grid, args, consts):
    def grid(meta):
        g = meta.get("G", 1)
        return (triton.cdiv(nblk, g) * rest * (triton.cdiv(N, meta["BLOCK_N"]) if extra_grid is None else 1),
                *(() if extra_grid is None else (extra_grid,)))

    wgrad = extra_grid is not None
    if INTERPRET or FORCE is not None:
        key = ("wgrad" if wgrad else "gemm") + ("_g" if use_g else "")
        cfg = dict(_INTERP_CFG if FORCE is None else FORCE.get(key, FORCE.get("gemm", _INTERP_CFG)))
        if use_g:
            cfg.setdefault("G", 4)
            if not _smem_ok(cfg["G"], cfg["BLOCK_N"], consts["BLOCK_O"], consts["BLOCK_K"], args[0].element_size(),
                            cfg.get("num_stages", 2), wgrad):
                use_g = False
                cfg = dict(_INTERP_CFG if FORCE is None else FORCE.get(key[:-2], FORCE.get("gemm", _INTERP_CFG)))
        if not use_g:
            cfg.pop("G", None)
        while cfg["BLOCK_N"] > 16 and not _smem_ok(cfg.get("G", 1), cfg["BLOCK_N"], consts["BLOCK_O"],
                                                   consts["BLOCK_K"], args[0].element_size(),
                                                   cfg.get("num_stages", 2), wgrad):
            cfg["BLOCK_N"] //= 2  # a forced configuration too large for these blocks: a shorter row tile
        (grouped if use_g else plain)[grid(cfg)](*args, **consts, **cfg)
    else:
        (tuned_g if use_g else tuned)[grid](*args, **consts)


def block_gemm(inp: View, W: torch.Tensor, w_strides: tuple[int, int, int], out: View, nblk: int, K: int, O: int,
               N: int) -> None:
    """``out[n, b, o] = Σ_e inp[n, b, e] W[b, o, e]`` for ``n < N, b < nblk, o < O, e < K`` (masked views).

    ``w_strides = (s_b, s_o, s_e)`` of ``W`` (a transposed block is a swap of two strides).
    Cost ``2 N nblk K O`` flops; one read of ``inp``, one write of ``out``.
    """
    bo, bk = min(_p2(O), 128), min(_p2(K), 128)
    args = (
        inp.t, W, out.t, N, nblk, K, O,
        inp.t.stride(0), inp.s_b, inp.s_e, inp.m_b, inp.m_e, inp.lim,
        *w_strides,
        out.t.stride(0), out.s_b, out.s_e, out.m_b, out.m_e, out.lim,
    )
    consts = {"BLOCK_O": bo, "BLOCK_K": bk, "PRECISION": _precision(inp.t.dtype), "UPCAST": INTERPRET}
    _launch(_block_gemm_kernel, _block_gemm_grouped_kernel, _block_gemm_tuned, _block_gemm_grouped_tuned,
            _grouped(inp, out), nblk, triton.cdiv(O, bo), N, None, args, consts)


def _splits(N: int, programs: int) -> int:
    """Row splits of a reduction over N: enough programs for ~2 waves of 132 SMs, >= 512 rows each."""
    want = max(1, -(-264 // max(programs, 1)))
    return max(1, min(want, N // 512 if N >= 512 else 1))


def block_wgrad(A: View, Bv: View, nblk: int, O: int, K: int, N: int) -> torch.Tensor:
    """``G[b, o, e] = Σ_{n < N} A[n, b, o] B[n, b, e]``, an fp32 tensor ``(nblk, O, K)``.

    Cost ``2 N nblk O K`` flops; one read of each operand (plus ``splits`` fp32 partials of G).
    """
    bo, bk = min(_p2(O), 128), min(_p2(K), 128)
    use_g = _grouped(A, Bv)
    tiles = triton.cdiv(O, bo) * triton.cdiv(K, bk)
    splits = 1 if INTERPRET else _splits(N, triton.cdiv(nblk, 4 if use_g else 1) * tiles)
    chunk = -(-N // splits)
    G = torch.empty((splits, nblk, O, K), dtype=torch.float32, device=A.t.device)
    args = (
        A.t, Bv.t, G, N, nblk, O, K, chunk,
        A.t.stride(0), A.s_b, A.s_e, A.m_b, A.m_e, A.lim,
        Bv.t.stride(0), Bv.s_b, Bv.s_e, Bv.m_b, Bv.m_e, Bv.lim,
    )
    consts = {"BLOCK_O": bo, "BLOCK_K": bk, "PRECISION": _precision(A.t.dtype), "UPCAST": INTERPRET}
    _launch(_block_wgrad_kernel, _block_wgrad_grouped_kernel, _block_wgrad_tuned, _block_wgrad_grouped_tuned,
            use_g, nblk, tiles, N, splits, args, consts)
    return G[0] if splits == 1 else G.sum(0)


# ------------------------------------------------------------------ the Monarch product and its gradients
def _x_view(x: torch.Tensor, p: int, d: int) -> View:  # (n, κ, a) -> x[n, κ p + a], a real column iff < d
    return View(x, p * x.stride(1), x.stride(1), p, 1, d)


def _y_view(y: torch.Tensor, l_: int, d: int) -> View:  # (n, λ, t) -> y[n, t l + λ], real iff t l + λ < d
    return View(y, y.stride(1), l_ * y.stride(1), 1, l_, d)


def _y1_in_r(y1: torch.Tensor, q: int) -> View:  # (n, κ, j) -> Y1[n, κ q + j]
    return View(y1, q * y1.stride(1), y1.stride(1))


def _y1_in_l(y1: torch.Tensor, l_: int) -> View:  # (n, λ, i) -> Y1[n, i l + λ]  (P1)
    return View(y1, y1.stride(1), l_ * y1.stride(1))


def _new_y1(N: int, width: int, like: torch.Tensor, cols: bool) -> torch.Tensor:
    """The intermediate (N, k q): row-major, or stored column-major (``cols``: every column's N values
    contiguous, so both kernels touch it coalesced along the rows)."""
    if cols:
        return torch.empty((width, N), dtype=like.dtype, device=like.device).t()
    return torch.empty((N, width), dtype=like.dtype, device=like.device)


def monarch_fwd(x: torch.Tensor, R: torch.Tensor, L: torch.Tensor, d_out: int, cols: bool = False):
    """``(y, Y1)`` with ``y = x @ M^T`` (N, d_out) and the intermediate ``Y1`` (N, k q) (saved for backward)."""
    (k, q, p), (l_, s, r) = R.shape, L.shape
    N, d_in = x.shape
    y1 = _new_y1(N, k * q, x, cols)
    y = torch.empty((N, d_out), dtype=x.dtype, device=x.device)
    block_gemm(_x_view(x, p, d_in), R, (R.stride(0), R.stride(1), R.stride(2)), _y1_in_r(y1, q), k, p, q, N)
    block_gemm(_y1_in_l(y1, l_), L, (L.stride(0), L.stride(1), L.stride(2)), _y_view(y, l_, d_out), l_, r, s, N)
    return y, y1


def monarch_bwd(dy: torch.Tensor, x: torch.Tensor, R: torch.Tensor, L: torch.Tensor, y1: torch.Tensor,
                cols: bool = False):
    """``(dx, dR, dL)`` of ``y = x @ M^T`` given ``dy`` (N, d_out) and the forward's ``Y1``.

    ``dZ[n, λ, i] = Σ_t dy[n, t l + λ] L[λ, t, i]`` (stored at Y1's P1 positions), ``dx`` = ``dZ`` through
    ``R^T``; ``dL[λ] = dY2[:, λ]^T Z[:, λ]``, ``dR[κ] = dY1[:, κ]^T x[:, κ]`` (reductions over N).
    """
    (k, q, p), (l_, s, r) = R.shape, L.shape
    N, d_in = x.shape
    d_out = dy.shape[1]
    dz = _new_y1(N, k * q, x, cols)
    dx = torch.empty((N, d_in), dtype=x.dtype, device=x.device)
    dyv = _y_view(dy, l_, d_out)
    block_gemm(dyv, L, (L.stride(0), L.stride(2), L.stride(1)), _y1_in_l(dz, l_), l_, s, r, N)
    block_gemm(_y1_in_r(dz, q), R, (R.stride(0), R.stride(2), R.stride(1)), _x_view(dx, p, d_in), k, q, p, N)
    dL = block_wgrad(dyv, _y1_in_l(y1, l_), l_, s, r, N).to(L.dtype)
    dR = block_wgrad(_y1_in_r(dz, q), _x_view(x, p, d_in), k, q, p, N).to(R.dtype)
    return dx, dR, dL
