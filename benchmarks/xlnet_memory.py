"""What Transformer-XL memory buys: held-out perplexity of a small causal XLNet evaluated in segments of
length L with and without memory, next to a vanilla GPT of the same size with context L.

    .venv/bin/python benchmarks/xlnet_memory.py --out docs/images/xlnet-memory.png

Data: tinyshakespeare, characters (the 65 of the text, sorted), the first 90% for training, the last 10%
held out — as nanoGPT's shakespeare_char. The training text is cut into `--batch` contiguous streams; step
s feeds every stream's s-th segment of `--train-len` characters, so consecutive steps see consecutive
text of the same stream. Both models see exactly these batches:

- XLNet, attn_type="uni" (causal: Transformer-XL), trained WITH memory: each step's forward gets the
  previous step's `mems` (the last mem_len = train-len layer inputs of every stream, no gradient) — the
  segment recurrence of Dai et al. 2019 §3.2. Loss: next-character cross-entropy on the content stream.
- GPT (GPT-2 blocks, learned absolute positions), context = train-len: each segment alone.

Both: same dim, layers, heads, FFN width, AdamW, schedule, steps, seed; dropout 0. Evaluation runs over
the held-out text cut into `--eval-batch` streams, in consecutive non-overlapping segments of L for each
L of `--lens`; every character is predicted exactly once, and the reported perplexity is
exp(mean cross-entropy per character). Modes: GPT (each segment alone = context L), XLNet without
memory (each segment alone), XLNet with memory mem_len = L and = 2L (the previous segments' states).
Prints one JSON line per (model, mode, L) and writes a PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from finetune_common import DATA, emit  # noqa: E402

from zhixing.models import build_model  # noqa: E402


def load_text() -> tuple[np.ndarray, np.ndarray, int]:
    text = (DATA / "tinyshakespeare/input.txt").read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:], len(chars)


def as_streams(ids: np.ndarray, batch: int) -> torch.Tensor:
    """(batch, n): `batch` contiguous pieces of the text, one per row."""
    n = len(ids) // batch
    return torch.from_numpy(ids[: n * batch].reshape(batch, n).copy())


def models(vocab: int, args) -> dict[str, torch.nn.Module]:
    size = dict(vocab_size=vocab, dim=args.dim, num_layers=args.layers, num_heads=args.heads,
                ffn_dim=4 * args.dim, dropout=0.0)
    torch.manual_seed(args.seed)
    xlnet = build_model("xlnet-tiny", **size, attn_type="uni", mem_len=args.train_len,
                        max_seq_len=max(args.lens + [args.train_len]), pad_token_id=0, bos_token_id=0,
                        eos_token_id=0, attn_dropout=0.0)
    torch.manual_seed(args.seed)
    gpt = build_model("gpt-tiny", **size, max_seq_len=args.train_len, bos_token_id=0, eos_token_id=0,
                      attn_dropout=0.0)
    return {"xlnet": xlnet, "gpt": gpt}


def logits_of(model, x, mems=None, use_mems=False):
    if model.config.arch == "xlnet":
        out = model(x, mems=mems, use_mems=use_mems)
        return out.logits, out.mems
    return model(x).logits, None


def train(name: str, model, data: torch.Tensor, args) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.1)
    L, steps = args.train_len, args.steps
    per_pass = (data.size(1) - 1) // L
    memory = name == "xlnet"
    mems, losses, t = None, [], time.perf_counter()
    model.train()
    for step in range(steps):
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = max(lr, args.lr / 10)
        i = (step % per_pass) * L
        if i == 0:
            mems = None  # a new pass over the streams: no previous segment
        x, y = data[:, i:i + L], data[:, i + 1:i + L + 1]
        logits, new_mems = logits_of(model, x, mems if memory else None, use_mems=memory)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        mems = new_mems
        losses.append(loss.item())
        if (step + 1) % 200 == 0:
            print(f"{name} step {step + 1}/{steps} loss {np.mean(losses[-200:]):.4f}", file=sys.stderr,
                  flush=True)
    return {"train_s": round(time.perf_counter() - t, 1),
            "final_train_loss": round(float(np.mean(losses[-100:])), 4)}


@torch.no_grad()
def evaluate(model, data: torch.Tensor, L: int, mem_len: int | None) -> dict:
    """Mean next-character cross-entropy over the held-out streams in segments of L; mem_len None = each
    segment alone, else the XLNet carries mems of that length from segment to segment."""
    model.eval()
    if mem_len is not None:
        model.config.mem_len = mem_len
    n = data.size(1) - 1
    total, count, mems, t = 0.0, 0, None, time.perf_counter()
    for i in range(0, n - L + 1, L):
        x, y = data[:, i:i + L], data[:, i + 1:i + L + 1]
        logits, mems = logits_of(model, x, mems, use_mems=mem_len is not None)
        total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
        count += y.numel()
    ce = total / count
    return {"ce": round(ce, 4), "ppl": round(math.exp(ce), 3), "bpc": round(ce / math.log(2), 4),
            "chars": count, "eval_s": round(time.perf_counter() - t, 1)}


def plot(rows: list[dict], out: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, style in (("GPT, context L", "s-"), ("XLNet, no memory", "o--"),
                         ("XLNet, memory L", "o-"), ("XLNet, memory 2L", "^-")):
        pts = sorted((r["L"], r["ppl"]) for r in rows if r["label"] == label)
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(args.lens, [str(x) for x in args.lens])
    ax.set_xlabel("segment length L (characters)")
    ax.set_ylabel("held-out perplexity per character")
    ax.set_title(f"tinyshakespeare, {args.layers} layers × dim {args.dim}, {args.steps} steps")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--train-len", type=int, default=64, help="training segment length (GPT's context)")
    p.add_argument("--lens", type=int, nargs="+", default=[16, 32, 64], help="evaluation segment lengths")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--eval-batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "docs/images/xlnet-memory.png"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if max(args.lens) > args.train_len:
        p.error("--lens must not exceed --train-len (GPT's context)")
    train_ids, val_ids, vocab = load_text()
    data, held = as_streams(train_ids, args.batch), as_streams(val_ids, args.eval_batch)
    rows = []
    for name, model in models(vocab, args).items():
        params = sum(q.numel() for q in model.parameters())
        info = train(name, model, data, args)
        emit({"bench": "xlnet_memory", "phase": "train", "model": name, "params": params, **info,
              "steps": args.steps, "batch": args.batch, "train_len": args.train_len, "seed": args.seed})
        for L in args.lens:
            modes = [("GPT, context L", None)] if name == "gpt" else \
                [("XLNet, no memory", None), ("XLNet, memory L", L), ("XLNet, memory 2L", 2 * L)]
            for label, mem in modes:
                r = {"bench": "xlnet_memory", "model": name, "label": label, "L": L, "mem_len": mem or 0,
                     **evaluate(model, held, L, mem)}
                emit(r)
                rows.append(r)
    for L in args.lens:  # the gains, as ratios of perplexities at the same L
        g = {r["label"]: r["ppl"] for r in rows if r["L"] == L}
        emit({"bench": "xlnet_memory", "L": L,
              "ppl_ratio_no_memory_over_memory_L": round(g["XLNet, no memory"] / g["XLNet, memory L"], 3),
              "ppl_ratio_gpt_over_xlnet_memory_L": round(g["GPT, context L"] / g["XLNet, memory L"], 3),
              "ppl_ratio_gpt_over_xlnet_memory_2L": round(g["GPT, context L"] / g["XLNet, memory 2L"], 3)})
    plot(rows, Path(args.out), args)
    print(json.dumps({"bench": "xlnet_memory", "png": args.out}))


if __name__ == "__main__":
    main()
