"""The history in one table: Kneser–Ney 2/3/4/5-gram vs a small GPT, same held-out text, same tokens.

Both sides read the token shards that `zhixing pretrain` prepared for the GPT run (its tokenizer, its
train/val split), so the held-out characters and the character vocabulary are identical:

- the n-gram trains on the shards' train split (`NgramModel.train_shards`: every document one sentence)
  and is scored on the val split; figures are per character, the </s> predictions left out;
- the GPT (the run's best checkpoint) is scored on every val token with the windows it was trained on
  (block_size tokens: each window predicts its tokens from 0..block_size-1 tokens of context), the
  end-of-document separators left out as targets. This is the quantity the run's val_loss estimates
  from `eval_batches` random windows, computed here over the whole val split.

Prints one JSON object per model and a Markdown table.

Usage: python benchmarks/ngram_perplexity.py --run runs/gpt-shakespeare-char-cpu [--orders 2 3 4 5]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np


def gpt_val_loss(run: Path, shards, block: int) -> dict:
    import torch

    import zhixing

    model = zhixing.load(run)
    ids = torch.from_numpy(np.asarray(shards.tokens, dtype=np.int64))
    sep = shards.separator_id
    total, count = 0.0, 0
    # windows x = ids[s-1 : s-1+block], y = ids[s : s+block]: every token from position 1 on is a target
    # exactly once; the first token of the split has no context and is not scored
    starts = list(range(1, len(ids), block))
    with torch.no_grad():
        for i in range(0, len(starts), 64):
            xs, ys = [], []
            for s in starts[i: i + 64]:
                y = ids[s: s + block]
                x = ids[s - 1: s - 1 + len(y)]
                if len(y) < block:  # pad the last window; padded targets are ignored
                    pad = block - len(y)
                    x = torch.cat([x, torch.zeros(pad, dtype=torch.long)])
                    y = torch.cat([y, torch.full((pad,), -100, dtype=torch.long)])
                xs.append(x)
                ys.append(y)
            x, y = torch.stack(xs), torch.stack(ys)
            if sep is not None:
                y = torch.where(y == sep, torch.full_like(y, -100), y)
            logits = model(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten(),
                                                     ignore_index=-100, reduction="sum")  # fmt: skip
            total += float(loss)
            count += int((y != -100).sum())
    return {"nats_per_char": total / count, "chars": count}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a `zhixing pretrain` run directory (char tokenizer)")
    ap.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4, 5])
    ap.add_argument("--shards", default=None, help="the run's shard directory (default: found in its cache)")
    ap.add_argument("--no-gpt", action="store_true")
    args = ap.parse_args()

    import yaml

    from zhixing.data import TokenShards
    from zhixing.ngram import NgramModel, perplexity_of_shards

    run = Path(args.run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    data = config["data"]
    if args.shards:
        shard_dir = Path(args.shards)
    else:  # the run's prepared shards: same corpus and tokenizer kind in its cache_dir
        cache = Path(data["cache_dir"])
        metas = [(p.parent, json.loads(p.read_text())) for p in cache.glob("*/shards/meta.json")]
        kind = data["tokenizer_kind"]
        shard_dir = next(d for d, m in sorted(metas, key=lambda dm: str(dm[0]))
                         if m["source"] == data["corpus"] and m["tokenizer"]["kind"] == kind)
    val = TokenShards(shard_dir, "val")
    rows = []
    common = {"corpus": data["corpus"], "shards": str(shard_dir), "val_tokens": len(val)}
    for order in args.orders:
        t0 = time.perf_counter()
        lm = NgramModel.train_shards(shard_dir, order, tokenizer=shard_dir.parent / "tokenizer")
        train_s = time.perf_counter() - t0
        res = perplexity_of_shards(lm, shard_dir, "val")
        row = {"model": f"KN {order}-gram", "nats_per_char": res["nats_per_token_no_eos"],
               "chars": res["tokens_no_eos"], "oov": res["oov"], "train_seconds": round(train_s, 2),
               "ngrams": sum(len(k) for k in lm.keys), "vocab": lm.V}  # fmt: skip
        rows.append(row)
        print(json.dumps({"bench": "ngram_perplexity", **common, **row}), flush=True)
    if not args.no_gpt:
        summary = json.loads((run / "summary.json").read_text())
        res = gpt_val_loss(run, val, int(data["block_size"]))
        row = {"model": f"GPT {summary['parameters'] / 1e6:.2f}M ({run.name}, {summary['step']} steps)",
               **res, "run_val_loss": summary["final_val_loss"], "train_seconds": summary["train_time_s"]}
        rows.append(row)
        print(json.dumps({"bench": "ngram_perplexity", **common, **row}), flush=True)
    print("\n| model | nats/char | perplexity/char | bits/char | train s |\n|---|---:|---:|---:|---:|")
    for r in rows:
        nats = r["nats_per_char"]
        print(f"| {r['model']} | {nats:.4f} | {math.exp(nats):.3f} | {nats / math.log(2):.3f} | "
              f"{r['train_seconds']} |")


if __name__ == "__main__":
    main()
