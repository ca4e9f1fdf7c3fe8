"""A same-job control for the `gpt-shakespeare-char-cpu` full run: nanoGPT's CPU run, rewritten here.

nanoGPT's own train.py is not part of this project; this module repeats what nanoGPT's README runs on a CPU
(`train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 --log_interval=1
--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
--dropout=0.0`) so that both can be timed side by side on one machine. It is our rewrite from nanoGPT's
description, not its code, and runs as its own process (`python benchmarks/nanogpt_style.py`) with the
environment it is given, as nanoGPT does — in particular no OpenMP wait policy of zhixing's (an earlier
version ran inside the benchmark's process, under zhixing's PASSIVE policy, and so ran slower than nanoGPT
itself: issue #23). Its median iteration matches the issue's measurement of nanoGPT's (45 ms) on a quiet
machine (benchmarks/RESULTS.md).

- model: GPT-2 blocks (pre-LayerNorm without biases, one QKV projection, PyTorch's fused causal attention,
  exact GELU, no biases anywhere), learned positions, the output layer tied to the token embedding;
  weights N(0, 0.02), the two residual output projections N(0, 0.02/sqrt(2·layers));
- data: nanoGPT's prepare.py in effect (sorted characters, first 90% to train.bin, uint16) and its loader:
  a fresh np.memmap per batch, 12 random windows of 65 characters copied to int64 (64 inputs, 64 shifted
  targets), the next batch fetched between the forward and the backward pass;
- loop: AdamW (betas 0.9/0.99, weight decay 0.1 on matrices only; torch's default implementation, as
  nanoGPT asks for the fused kernel on CUDA only), linear warmup over 100 iterations then cosine to 1e-4,
  gradient clipping at 1.0, the loss read back and printed every iteration (log_interval=1), an evaluation
  of train and val over 20 batches each every 250 iterations *including iteration 0*, a checkpoint (model +
  optimizer) whenever val improves, iterations 0..2000 inclusive (2001 steps; the last evaluation, at
  iteration 2000, is the reported loss).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim, bias=False)
        self.c_attn = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_proj = nn.Linear(dim, dim, bias=False)
        self.ln_2 = nn.LayerNorm(dim, bias=False)
        self.c_fc = nn.Linear(dim, 4 * dim, bias=False)
        self.mlp_proj = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, block: int, layers: int, heads: int, dim: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(block, dim)
        self.h = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim, bias=False)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def lr_at(it: int, lr: float = 1e-3, min_lr: float = 1e-4, warmup: int = 100, decay: int = 2000) -> float:
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * (it - warmup) / (decay - warmup))) * (lr - min_lr)


def prepare(text: str, out: Path) -> int:
    """nanoGPT's data/shakespeare_char/prepare.py, in effect: sorted characters as ids, the first 90% of the
    text to train.bin and the rest to val.bin (uint16). Returns the vocabulary size."""
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n = int(0.9 * len(ids))
    ids[:n].tofile(out / "train.bin")
    ids[n:].tofile(out / "val.bin")
    return len(chars)


def run(data_dir: Path, vocab: int, *, block: int = 64, batch: int = 12, layers: int = 4, heads: int = 4,
        dim: int = 128, max_iters: int = 2000, eval_interval: int = 250, eval_iters: int = 20,
        seed: int = 1337, quiet: bool = False) -> dict:
    """The whole run; returns the last evaluation's losses, the wall time of the loop and the median time
    of an iteration without evaluation (nanoGPT's `dt` of the iterations it prints)."""
    torch.manual_seed(seed)

    def get_batch(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        # a fresh memmap per batch and a per-window copy to int64, as nanoGPT's poor man's loader does
        d = np.memmap(data_dir / f"{split}.bin", dtype=np.uint16, mode="r")
        ix = torch.randint(len(d) - block, (batch,))
        x = torch.stack([torch.from_numpy(d[i: i + block].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(d[i + 1: i + 1 + block].astype(np.int64)) for i in ix])
        return x, y

    model = TinyGPT(vocab, block, layers, heads, dim)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))

    @torch.no_grad()
    def estimate_loss() -> dict[str, float]:
        model.eval()
        out = {split: float(np.mean([model(*get_batch(split)).item() for _ in range(eval_iters)]))
               for split in ("train", "val")}
        model.train()
        return out

    best, losses, it, dts = float("inf"), {}, 0, []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        x, y = get_batch("train")
        t0 = time.perf_counter()
        while True:
            for g in opt.param_groups:
                g["lr"] = lr_at(it, decay=max_iters)
            evaluated = it % eval_interval == 0
            if evaluated:
                losses = estimate_loss()
                if not quiet:
                    print(f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                if losses["val"] < best:
                    best = losses["val"]
                    if it > 0:
                        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iter": it},
                                   Path(tmp) / "ckpt.pt")
            loss = model(x, y)
            x, y = get_batch("train")  # the next batch, fetched before the backward pass
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            t1 = time.perf_counter()
            dt, t0 = t1 - t0, t1
            lossf = loss.item()  # log_interval=1: read and printed every iteration
            if not quiet:
                print(f"iter {it}: loss {lossf:.4f}, time {dt * 1000:.2f}ms")
            if not evaluated:
                dts.append(dt)
            it += 1
            if it > max_iters:
                break
        wall = time.perf_counter() - start
    return {"val_loss": losses["val"], "train_loss": losses["train"], "best_val_loss": best,
            "steps": it, "wall_s": wall, "median_iter_ms": 1000 * float(np.median(dts))}


def main() -> None:
    """`python benchmarks/nanogpt_style.py`: the run as its own process, with the environment it is given
    (nanoGPT sets no OpenMP policy), printing nanoGPT's per-iteration lines and a final JSON object."""
    import argparse
    import json
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("ZHIXING_DATA", str(Path(__file__).resolve().parents[2]
                                                                        / "shared" / "data")))
    ap.add_argument("--max-iters", type=int, default=2000)
    ap.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    args = ap.parse_args()
    text = (Path(args.data) / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        vocab = prepare(text, Path(tmp))  # nanoGPT's prepare.py runs once, before train.py: not timed
        r = run(Path(tmp), vocab, max_iters=args.max_iters, quiet=args.quiet)
    print(json.dumps({"bench": "shakespeare_char_cpu_full", "impl": "nanogpt_style", "device": "cpu",
                      "threads": torch.get_num_threads(),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                      **{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}}), flush=True)


if __name__ == "__main__":
    main()
