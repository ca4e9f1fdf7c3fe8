"""Pretraining compute of a BERT / RoBERTa / ELECTRA run, counted from its weights (issue #14's equal-FLOPs
comparison).

    .venv/bin/python benchmarks/pretrain_flops.py runs/bert-zh-mix runs/roberta-zh-mix runs/electra-zh-mix

Training FLOPs per token = 3 x forward (backward costs twice the forward), forward = 2 multiply-adds:

- every nn.Linear a token passes through: 6 · in · out — over every token for the encoder layers, the
  ELECTRA discriminator's replaced-token head and the generator's embedding projection; over the masked
  tokens only (`mlm_probability` of them) for the masked-LM heads, which zhixing runs on the masked
  positions alone; once per sequence (/ T) for the pooler and the NSP head;
- attention: 12 · T · width per layer (QKᵀ and the weighted sum of values, forward 4 · T · width);
- embedding lookups, norms, softmax and activations: not counted (not matmuls).

Prints one JSON line per run: FLOPs per token, tokens trained (from summary.json) and their product.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

MASKED_ONLY = (".mlm.", "mlm.")  # masked-LM heads: run on the masked positions only
PER_SEQUENCE = ("pooler", "nsp.")  # the [CLS] pooler and NSP head: one position per sequence


def flops_per_token(model: torch.nn.Module, seq_len: int, mlm_probability: float) -> dict[str, float]:
    """{"total", and the parts "linear", "masked_heads", "attention"} in FLOPs per training token."""
    linear = masked = attention = 0.0
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        f = 6.0 * mod.in_features * mod.out_features
        if any(name.startswith(p) or p in name for p in MASKED_ONLY):
            masked += f * mlm_probability
        elif any(name.startswith(p) or f".{p}" in name for p in PER_SEQUENCE):
            linear += f / seq_len
        else:
            linear += f
        if name.endswith("attn.qkv"):
            attention += 12.0 * seq_len * mod.out_features / 3
    return {"total": linear + masked + attention, "linear": linear, "masked_heads": masked,
            "attention": attention}


def run_flops(run: Path) -> dict:
    import yaml

    from zhixing.config import ModelConfig
    from zhixing.models import build_model

    recipe = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    data = recipe.get("data", {})
    model = build_model(ModelConfig.load(run / "best"))
    seq_len, masked = int(data.get("block_size", 128)), float(data.get("mlm_probability", 0.15))
    per_token = flops_per_token(model, seq_len, masked)
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    return {"run": str(run), "objective": data.get("objective"), "parameters": summary.get("parameters"),
            "steps": summary["step"], "tokens": summary["tokens"],
            "flops_per_token": round(per_token["total"]),
            "parts": {k: round(v) for k, v in per_token.items()},
            "flops": float(f"{per_token['total'] * summary['tokens']:.4g}"),
            "train_time_s": summary.get("train_time_s")}


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps(run_flops(Path(arg)), ensure_ascii=False), flush=True)
