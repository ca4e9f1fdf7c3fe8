"""How fast an encoder learns to look at its neighbour: learned absolute positions vs rotary (issue #14).

    .venv/bin/python benchmarks/position_toy.py [--steps 300]

The toy: rows of 32 tokens from a vocabulary of 200 where each token follows from the one before it
(x_{i+1} = (7 x_i + 3) mod 195 + 5) and the first is random; 15% are masked and predicted (a masked LM). A
model that attends to position i-1 or i+1 solves it; one that attends uniformly cannot. Same seed, data
and optimiser (AdamW, lr 1e-3, batch 32) for a 2-layer, dim-128 BERT with a learned position table
(post-LN as BERT, and pre-LN), the same BERT with rotary positions, and a GPT (next token, for scale).
Prints one JSON line per model: the masked-LM loss of the last step (ln 195 = 5.27 is chance).
"""

from __future__ import annotations

import argparse
import json

import torch

VOCAB, LENGTH, BATCH = 200, 32, 32


def batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids with 15% masked to id 4, labels: the original ids there, -100 elsewhere)."""
    xs = [torch.randint(5, VOCAB, (BATCH, 1), generator=gen)]
    for _ in range(LENGTH - 1):
        xs.append((xs[-1] * 7 + 3) % (VOCAB - 5) + 5)
    x = torch.cat(xs, 1)
    masked = torch.rand(x.shape, generator=gen) < 0.15
    return x.masked_fill(masked, 4), torch.where(masked, x, torch.full_like(x, -100))


def train(name: str, steps: int, **overrides) -> dict:
    from zhixing.models import build_model

    torch.manual_seed(0)
    gpt = name == "gpt"
    model = (build_model("gpt-tiny", vocab_size=VOCAB, dim=128, num_layers=2, num_heads=4, dropout=0.0) if gpt
             else build_model("bert-tiny", head="mlm", num_layers=2, num_heads=4, max_seq_len=128,
                              vocab_size=VOCAB, dropout=0.0, **overrides))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        ids, labels = batch(gen)
        if gpt:  # the unmasked row, next-token loss
            ids = torch.where(labels == -100, ids, labels)
            labels = ids
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return {"model": name, "steps": steps, "final_loss": round(loss.item(), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name, overrides in [("bert, learned table, post-LN", {}),
                            ("bert, learned table, pre-LN", {"pre_norm": True, "final_norm": True}),
                            ("bert, rotary", {"position": "rotary"}), ("gpt", {})]:
        print(json.dumps(train(name, args.steps, **overrides)), flush=True)


if __name__ == "__main__":
    main()
