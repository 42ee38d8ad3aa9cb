"""A small scaling experiment with structured layers: dense vs Monarch vs BTT vs low rank vs
BTT-MoE, trained at several widths with muP, final held-out loss plotted against training FLOPs.

    python examples/structured_scaling.py                 # default size (about 8 min on 2 shared cores)
    LINOPS_EXAMPLE_SMALL=1 python examples/structured_scaling.py   # tiny CI size (< 60 s), temp dir

What it shows, and why. Structured layers (Monarch, BTT, low rank, BTT mixtures of experts) spend
fewer FLOPs per token than a dense layer of the same width, so at equal training compute a model
built from them can be wider. Whether that buys a lower loss is an empirical question, answered
here at toy scale by a curve per structure: final held-out loss against total training FLOPs, one
point per width. Every run sees the same data, in the same order, for the same number of tokens.

The second question is muP transfer (:mod:`linops.nn.mup`): with the structure-aware init and
Adam learning rates of :func:`linops.nn.param_groups` (``base_width=64``), the best base learning
rate found at width 64 should stay best at width 512. The example sweeps a grid of base learning
rates at both widths for the structures in ``--sweep``, prints the best of each and whether they
agree within one grid step, and trains every other width at the width-64 optimum (the transfer
in use). Nothing is tuned to the outcome: the grid, the seed and the budget are fixed up front.

Data: a character-level next-byte model of the Python standard library's own source text
(top-level ``*.py`` files under ``os.path.dirname(os.__file__)``, sorted; every tenth file is held
out), so the example needs no download. Model: the previous ``context`` bytes, embedded and
concatenated, go through an input layer ``context*embed -> w`` and ``depth`` residual blocks
``h + gelu(W LN(h))`` with ``W`` ``w x w``; every one of these layers has the structure under
test; the read-out ``LN -> w x vocab`` is dense, zero-initialised, with learning rate
``base_lr * 64 / w`` (muP's output rule; 64 is the base width). The loss is in nats per byte.

FLOPs: per token, a multiply-add counts 2; a layer's forward cost is its ``flops()`` (routers and
gates included for BTT-MoE) and a training step costs 3x the forward (backward = 2x forward); the
norms, activations, embedding look-up and softmax are not counted (O(w) per token: a few percent here).

Outputs: ``benchmarks/results/structured_scaling.md`` (settings, machine, every run) and
``benchmarks/results/structured_scaling.png`` (loss vs FLOPs; the learning-rate sweeps).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

import linops.nn as lnn
from linops.nn.moe import BTTMoE, aux_loss

SMALL = os.environ.get("LINOPS_EXAMPLE_SMALL") == "1"
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Settings:
    """Everything a run depends on (written into the results file)."""

    data_bytes: int        # bytes of source text read (train + held out)
    context: int           # bytes of context per prediction
    embed: int             # embedding size per byte (input layer: context * embed -> width)
    depth: int             # residual hidden blocks (w x w each)
    batch: int             # tokens per step
    steps: int             # optimizer steps (same for every run: same token budget)
    eval_tokens: int       # held-out positions scored at the end
    widths: dict           # structure -> widths of the scaling runs
    lrs: tuple             # base-learning-rate grid (factor 2 apart)
    sweep: tuple           # structures whose grid is swept at every sweep width
    sweep_widths: tuple    # (base width, large width)
    warmup: int = 20       # linear warm-up steps, then cosine decay to 10%
    seed: int = 0

    @property
    def base_width(self) -> int:
        """muP's base width: the width at which the base learning rate is tuned (the first sweep width)."""
        return self.sweep_widths[0]


def default_settings() -> Settings:
    if SMALL:
        return Settings(data_bytes=300_000, context=8, embed=8, depth=1, batch=64, steps=30, eval_tokens=2048,
                        widths={k: (16, 64) for k in STRUCTURES}, lrs=(1.6e-2, 6.4e-2),
                        sweep=("dense", "monarch"), sweep_widths=(16, 64), warmup=5)
    # the grid is centred on a 200-step pilot at width 64 (dense and Monarch were best at 0.03-0.06)
    four = (64, 128, 256, 512)
    return Settings(data_bytes=3_000_000, context=16, embed=16, depth=2, batch=256, steps=300, eval_tokens=10_000,
                    widths={"dense": four, "low_rank": four, "monarch": (*four, 1024), "btt2": four, "btt_moe": four},
                    lrs=(8e-3, 1.6e-2, 3.2e-2, 6.4e-2, 1.28e-1), sweep=("dense", "monarch"), sweep_widths=(64, 512))


# ------------------------------------------------------------------------------ structures
def _structured(structure):
    return lambda d_in, d_out: lnn.StructuredLinear(d_in, d_out, structure)


#: name -> (label, layer factory (d_in, d_out) -> module)
STRUCTURES = {
    "dense": ("dense", _structured(lnn.Dense())),
    "low_rank": ("low rank (r = d/4)", _structured(lnn.LowRank(0.25))),
    "monarch": ("Monarch (sqrt d blocks)", _structured(lnn.Monarch())),
    "btt2": ("BTT rank 2", _structured(lnn.BTT(2))),
    "btt_moe": ("BTT-MoE (8 experts, top 2)", lambda d_in, d_out: BTTMoE(d_in, d_out, experts=8, top_k=2)),
}


def layer_flops(m: torch.nn.Module) -> int:
    """Forward flops per token of one linear layer (bias included)."""
    if isinstance(m, BTTMoE):
        return m.flops_per_token()
    if isinstance(m, lnn.StructuredLinear):
        return m.flops()
    if isinstance(m, torch.nn.Linear):
        return 2 * m.in_features * m.out_features + (m.out_features if m.bias is not None else 0)
    raise TypeError(f"layer_flops: not a linear layer: {type(m).__name__}")


# ------------------------------------------------------------------------------ data
class Corpus:
    """Byte streams of the standard library's top-level sources: train and held out (every tenth file)."""

    def __init__(self, max_bytes: int):
        files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
        train, held, total = [], [], 0
        for i, f in enumerate(files):
            b = Path(f).read_bytes()
            (held if i % 10 == 9 else train).append(b)
            total += len(b)
            if total >= max_bytes:
                break
        tr = np.frombuffer(b"\n".join(train), np.uint8)
        he = np.frombuffer(b"\n".join(held), np.uint8)
        present = np.unique(tr)
        table = np.full(256, len(present), np.int64)  # bytes absent from the training text -> one "unknown" id
        table[present] = np.arange(len(present))
        self.vocab = len(present) + 1
        self.train, self.held = torch.from_numpy(table[tr]), torch.from_numpy(table[he])
        self.files, self.nbytes = i + 1, total

    @staticmethod
    def windows(stream: torch.Tensor, pos: torch.Tensor, context: int):
        """Contexts (n, context) ending before ``pos`` and the targets ``stream[pos]``."""
        return stream[pos[:, None] - context + torch.arange(context)], stream[pos]


# ------------------------------------------------------------------------------ model
class CharModel(torch.nn.Module):
    """Embed ``context`` bytes -> input layer -> ``depth`` blocks ``h + gelu(W LN(h))`` -> LN -> dense read-out."""

    def __init__(self, vocab: int, width: int, make_layer, context: int, embed: int, depth: int):
        super().__init__()
        self.width = width
        self.embed = torch.nn.Embedding(vocab, embed)
        self.inp = make_layer(context * embed, width)
        self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(width) for _ in range(depth))
        self.hidden = torch.nn.ModuleList(make_layer(width, width) for _ in range(depth))
        self.out_norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, vocab)
        with torch.no_grad():  # muP read-out: zero init (its learning rate scales as 1/width, see param_groups)
            self.head.weight.zero_()
            self.head.bias.zero_()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.inp(self.embed(idx).flatten(1))
        for norm, layer in zip(self.norms, self.hidden, strict=True):
            h = h + torch.nn.functional.gelu(layer(norm(h)))
        return self.head(self.out_norm(h))

    def linear_layers(self):
        return [self.inp, *self.hidden, self.head]

    def flops_per_token(self) -> int:
        """Forward flops per token of the linear layers."""
        return sum(layer_flops(m) for m in self.linear_layers())


def mup_param_groups(model: CharModel, base_lr: float, base_width: int) -> list[dict]:
    """:func:`linops.nn.param_groups` for the structured layers (StructuredLinear and BTT-MoE cores);
    ``base_lr * base_width / width`` for the read-out weight; ``base_lr`` for the rest (embedding,
    norms, biases, routers)."""
    groups = lnn.param_groups(model, base_lr, base_width=base_width)
    rest = groups.pop()["params"] if groups and groups[-1]["name"] == "other" else []
    special = {id(model.head.weight): base_width / model.width}
    for p in rest:
        if id(p) in special:
            groups.append({"params": [p], "lr": base_lr * special[id(p)], "weight_decay": 0.0})
    groups.append({"params": [p for p in rest if id(p) not in special], "lr": base_lr, "weight_decay": 0.0})
    return groups


# ------------------------------------------------------------------------------ training
@torch.no_grad()
def held_out_loss(model: CharModel, corpus: Corpus, S: Settings) -> float:
    g = torch.Generator().manual_seed(1)
    pos = torch.randint(S.context, len(corpus.held), (S.eval_tokens,), generator=g)
    total = 0.0
    for chunk in pos.split(4096):
        x, y = Corpus.windows(corpus.held, chunk, S.context)
        total += float(torch.nn.functional.cross_entropy(model(x), y, reduction="sum"))
    return total / S.eval_tokens


def train(corpus: Corpus, S: Settings, structure: str, width: int, lr: float) -> dict:
    """One run; returns its numbers (``held_out`` is ``inf`` if the loss diverged)."""
    torch.manual_seed(S.seed)
    model = CharModel(corpus.vocab, width, STRUCTURES[structure][1], S.context, S.embed, S.depth)
    opt = torch.optim.AdamW(mup_param_groups(model, lr, S.base_width), betas=(0.9, 0.99))

    def schedule(step):
        if step < S.warmup:
            return (step + 1) / S.warmup
        t = (step - S.warmup) / max(1, S.steps - S.warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    g = torch.Generator().manual_seed(S.seed + 1)  # the same batches for every run
    t0, recent, diverged = time.perf_counter(), [], False
    for _ in range(S.steps):
        pos = torch.randint(S.context, len(corpus.train), (S.batch,), generator=g)
        x, y = Corpus.windows(corpus.train, pos, S.context)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if not math.isfinite(float(loss.detach())):
            diverged = True
            break
        recent = (recent + [float(loss.detach())])[-50:]
        opt.zero_grad(set_to_none=True)
        (loss + aux_loss(model)).backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    fwd = model.flops_per_token()
    held = math.inf if diverged else held_out_loss(model, corpus, S)
    if not math.isfinite(held):
        diverged = True
    return {"structure": structure, "width": width, "lr": lr, "held_out": held,
            "train": float(np.mean(recent)) if recent and not diverged else math.inf, "diverged": diverged,
            "params": sum(p.numel() for p in model.parameters()), "fwd_flops": fwd,
            "train_flops": 3 * fwd * S.batch * S.steps, "seconds": seconds}


# ------------------------------------------------------------------------------ the experiment
def experiment(corpus: Corpus, S: Settings) -> dict:
    """The width-``base`` sweep of every structure, the large-width sweep of ``S.sweep``, then
    every structure's widths at its base-width optimum. Identical runs are trained once."""
    runs: dict = {}
    base, big = S.sweep_widths

    def run(structure, width, lr):
        key = (structure, width, lr)
        if key not in runs:
            r = runs[key] = train(corpus, S, structure, width, lr)
            print(f"  {structure:9s} w={width:5d} lr={lr:.2e}  held-out {r['held_out']:.4f}  train {r['train']:.4f}"
                  f"  {r['train_flops']:.2e} FLOPs  {r['seconds']:5.1f} s", flush=True)
        return runs[key]

    def best_lr(structure, width):
        losses = [run(structure, width, lr)["held_out"] for lr in S.lrs]
        return S.lrs[int(np.argmin(losses))]

    print(f"learning-rate sweep at width {base} (every structure)")
    best = {st: best_lr(st, base) for st in S.widths}
    print(f"learning-rate sweep at width {big} ({', '.join(S.sweep)})")
    transfer = {}
    for st in S.sweep:
        b = best_lr(st, big)
        i, j = S.lrs.index(best[st]), S.lrs.index(b)
        edge = any(k in (0, len(S.lrs) - 1) for k in (i, j))
        transfer[st] = {"base": best[st], "big": b, "steps": abs(i - j), "agrees": abs(i - j) <= 1, "edge": edge}
        print(f"  muP transfer, {st}: best base LR {best[st]:.2e} at width {base}, {b:.2e} at width {big}: "
              f"{abs(i - j)} grid step(s) apart -> {'agrees' if abs(i - j) <= 1 else 'DOES NOT agree'} within one step"
              + (" (a best LR on the edge of the grid)" if edge else ""), flush=True)
    print("scaling runs (each structure at its width-%d learning rate)" % base)
    scaling = [run(st, w, best[st]) for st, ws in S.widths.items() for w in ws]
    return {"runs": runs, "best": best, "transfer": transfer, "scaling": scaling}


# ------------------------------------------------------------------------------ report
def _fmt_loss(v: float) -> str:
    return "diverged" if not math.isfinite(v) else f"{v:.4f}"


def _table(columns, rows) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def machine_lines(wall_s: float) -> list[str]:
    import linops

    cpu = "unknown"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return [f"- **date**: {time.strftime('%Y-%m-%d %H:%M')}", f"- **cpu**: {cpu} ({os.cpu_count()} cores, shared)",
            f"- **python**: {platform.python_version()}; torch {torch.__version__}; numpy {np.__version__}; "
            f"linops {linops.__version__}",
            f"- **threads**: torch.set_num_threads(1); load average at the end (1/5/15 min): {load}",
            f"- **wall time of the whole run**: {wall_s / 60:.1f} min"]


def matched_rows(res: dict) -> list[list]:
    """For each dense run's training FLOPs, every structure's lowest held-out loss at or below them."""
    dense = sorted((r for r in res["scaling"] if r["structure"] == "dense"), key=lambda r: r["train_flops"])
    rows = []
    for d in dense:
        row = [f"{d['train_flops']:.2e} (dense w={d['width']})"]
        for st in STRUCTURES:
            ok = [r for r in res["scaling"] if r["structure"] == st and r["train_flops"] <= d["train_flops"]]
            if st not in {r["structure"] for r in res["scaling"]}:
                continue
            b = min(ok, key=lambda r: r["held_out"]) if ok else None
            row.append("—" if b is None else f"{_fmt_loss(b['held_out'])} (w={b['width']})")
        rows.append(row)
    return rows


def report_md(res: dict, S: Settings, corpus: Corpus, wall_s: float) -> str:
    base, big = S.sweep_widths
    present = [st for st in STRUCTURES if st in S.widths]
    lines = ["# Structured layers: a scaling experiment", "",
             "Written by `python examples/structured_scaling.py` (default size); the README section "
             "\"Structured layers: a scaling experiment\" discusses it.", "", "## Machine", "",
             *machine_lines(wall_s), "", "## Settings", "",
             f"- **data**: the first {corpus.files} top-level `*.py` files of this Python's standard library "
             f"(sorted), every tenth held out: {len(corpus.train):,} training bytes, {len(corpus.held):,} "
             f"held-out bytes, vocabulary {corpus.vocab} (byte values seen in training + 1 unknown)",
             f"- **model**: {S.context} bytes of context, embedded in {S.embed} each -> input layer "
             f"{S.context * S.embed} x w -> {S.depth} residual blocks `h + gelu(W LN(h))` (W: w x w) -> "
             "LN -> dense read-out (zero init); every layer but the read-out has the structure under test",
             f"- **training**: AdamW (betas 0.9, 0.99, no weight decay), {S.steps} steps of {S.batch} tokens "
             f"({S.steps * S.batch:,} tokens per run, the same batches for every run), {S.warmup} warm-up steps then "
             f"cosine decay to 10%, seed {S.seed}; muP learning rates from `linops.nn.param_groups(model, lr, "
             f"base_width={base})` read-out weight `lr * {base} / w`",
             f"- **learning-rate grid** (base LR, factor 2): {', '.join(f'{v:g}' for v in S.lrs)}; swept at width "
             f"{base} for every structure and at width {big} for {', '.join(S.sweep)}; the scaling runs use each "
             f"structure's width-{base} optimum",
             "- **FLOPs**: 3 x forward flops of the linear layers (`flops()` of each layer, routers included) x "
             "tokens; held-out loss in nats per byte on "
             f"{S.eval_tokens:,} fixed held-out positions", "",
             f"## muP transfer: best base learning rate at width {base} and at width {big}", ""]
    rows = []
    for st, t in res["transfer"].items():
        lb, lg = res["runs"][(st, base, t["base"])]["held_out"], res["runs"][(st, big, t["big"])]["held_out"]
        rows.append([STRUCTURES[st][0], f"{t['base']:g} ({_fmt_loss(lb)})", f"{t['big']:g} ({_fmt_loss(lg)})",
                     t["steps"], ("yes" if t["agrees"] else "**no**") + (" (best on the grid's edge)" if t["edge"] else "")])
    lines += [_table(["structure", f"best LR at w={base} (loss)", f"best LR at w={big} (loss)", "grid steps apart",
                      "agrees within one step"], rows), ""]
    lines += ["## Learning-rate sweeps (held-out loss; best per row in bold)", ""]
    rows = []
    for st in present:
        for w in (base, big):
            losses = [res["runs"].get((st, w, lr), {}).get("held_out") for lr in S.lrs]
            if any(v is None for v in losses):
                continue
            b = int(np.argmin(losses))
            rows.append([STRUCTURES[st][0], w] + [f"**{_fmt_loss(v)}**" if k == b else _fmt_loss(v)
                                                  for k, v in enumerate(losses)])
    lines += [_table(["structure", "width"] + [f"lr {v:g}" for v in S.lrs], rows), ""]
    lines += [f"## Scaling runs (each structure at its width-{base} learning rate)", ""]
    rows = [[STRUCTURES[r["structure"]][0], r["width"], f"{r['lr']:g}", f"{r['params']:,}", f"{r['fwd_flops'] / 1e6:.3f}",
             f"{r['train_flops']:.2e}", _fmt_loss(r["held_out"]), _fmt_loss(r["train"]), f"{r['seconds']:.0f}"]
            for r in res["scaling"]]
    lines += [_table(["structure", "width", "base LR", "parameters", "forward MFLOP/token", "training FLOPs",
                      "held-out loss", "train loss (last 50 steps)", "time (s)"], rows), ""]
    lines += ["## Matched FLOPs: each structure's best held-out loss within a dense run's training FLOPs", ""]
    lines += [_table(["training FLOPs at most"] + [STRUCTURES[st][0] for st in present], matched_rows(res)), ""]
    return "\n".join(lines)


def plot(res: dict, S: Settings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for st in STRUCTURES:
        rs = sorted((r for r in res["scaling"] if r["structure"] == st and math.isfinite(r["held_out"])),
                    key=lambda r: r["width"])
        if not rs:
            continue
        ax1.plot([r["train_flops"] for r in rs], [r["held_out"] for r in rs], "o-", label=STRUCTURES[st][0])
        for r in rs:
            ax1.annotate(str(r["width"]), (r["train_flops"], r["held_out"]), fontsize=7, xytext=(3, 3),
                         textcoords="offset points")
    ax1.set_xscale("log")
    ax1.set_xlabel("training FLOPs (linear layers, 3 x forward)")
    ax1.set_ylabel("held-out loss (nats / byte)")
    ax1.set_title(f"loss vs compute ({S.steps * S.batch:,} tokens per run; labels: width)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    base, big = S.sweep_widths
    for k, st in enumerate(S.sweep):
        for w, style in ((base, "--"), (big, "-")):
            losses = [res["runs"][(st, w, lr)]["held_out"] for lr in S.lrs]
            ok = [(lr, v) for lr, v in zip(S.lrs, losses, strict=True) if math.isfinite(v)]
            if ok:
                ax2.plot([t[0] for t in ok], [t[1] for t in ok], style, marker="o", color=f"C{k}", label=f"{STRUCTURES[st][0]}, w={w}")
                b = min(ok, key=lambda t: t[1])
                ax2.plot(*b, "*", color=f"C{k}", markersize=14)
    ax2.set_xscale("log")
    ax2.set_xticks(S.lrs, [f"{v:g}" for v in S.lrs])
    ax2.minorticks_off()
    ax2.set_xlabel("base learning rate (muP, base width %d)" % base)
    ax2.set_ylabel("held-out loss (nats / byte)")
    ax2.set_title("muP transfer: learning-rate sweeps (star: best)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for structured_scaling.{md,png} (default: benchmarks/results; a temporary "
                         "folder under LINOPS_EXAMPLE_SMALL=1)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (overrides the size's default)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    S = default_settings()
    if args.steps is not None:
        if args.steps < 1:
            ap.error(f"--steps must be >= 1, got {args.steps}")
        S = replace(S, steps=args.steps, warmup=min(S.warmup, max(1, args.steps // 10)))
    out = args.out or (Path(tempfile.mkdtemp(prefix="structured_scaling_")) if SMALL else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    corpus = Corpus(S.data_bytes)
    print(f"data: {corpus.files} files, {len(corpus.train):,} training / {len(corpus.held):,} held-out bytes, "
          f"vocabulary {corpus.vocab}; {S.steps} steps x {S.batch} tokens per run")
    res = experiment(corpus, S)
    wall = time.perf_counter() - t0
    (out / "structured_scaling.md").write_text(report_md(res, S, corpus, wall))
    plot(res, S, out / "structured_scaling.png")
    print(f"wrote {out / 'structured_scaling.md'} and {out / 'structured_scaling.png'} ({wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
