"""Pretraining compute of a BERT / RoBERTa / ELECTRA / XLNet run, counted from its weights (issue #14's
equal-FLOPs comparison).

    .venv/bin/python benchmarks/pretrain_flops.py runs/{bert,roberta,electra,xlnet}-zh-mix

Training FLOPs per token = 3 x forward (backward costs twice the forward), forward = 2 multiply-adds:

- every nn.Linear a token passes through: 6 · in · out — over every token for the encoder layers, the
  ELECTRA discriminator's replaced-token head and the generator's embedding projection; over the masked
  tokens only (`mlm_probability` of them) for the masked-LM heads, which zhixing runs on the masked
  positions alone; once per sequence (/ T) for the pooler and the NSP head;
- attention: 12 · T · width per layer (QKᵀ and the weighted sum of values, forward 4 · T · width);
- embedding lookups, norms, softmax and activations: not counted (not matmuls).

XLNet's permutation LM (`xlnet_flops_per_token`) runs two streams through the same weights: the content
stream over every token (q, k, v, o and the FFN), the query stream over the num_predict = round(text / K)
targets only (q, o and the FFN; it reads the content stream's keys and values); its attention adds the
position term (q + v)·R over the 2T distances of the table (forward 4 · T · width more per query row);
W_r projects the 2T distance encodings once per batch; the LM head runs on the targets only.

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


def xlnet_flops_per_token(cfg, seq_len: int, num_predict: int, batch_size: int) -> dict[str, float]:
    """{"total", "linear", "masked_heads", "attention"} per training token of XLNet's PLM (module doc)."""
    d, inner, f, layers = cfg.dim, cfg.num_heads * cfg.head_dim, cfg.ffn_dim, cfg.num_layers
    p = num_predict / seq_len  # query-stream rows per token
    content = 6.0 * (4 * d * inner + 2 * d * f)
    query = 6.0 * (2 * d * inner + 2 * d * f) * p
    distances = 6.0 * d * inner * 2 * seq_len / (seq_len * batch_size)  # W_r over 2T rows, once per batch
    # forward per query row: QKᵀ 2·T·d, (q + v)·Rᵀ over 2T distances 4·T·d, A·V 2·T·d; both streams
    attention = 3.0 * (2 + 4 + 2) * seq_len * inner * (1 + p)
    head = 6.0 * d * cfg.vocab_size * p
    linear = layers * (content + query + distances)
    return {"total": linear + head + layers * attention, "linear": linear, "masked_heads": head,
            "attention": layers * attention}


def run_flops(run: Path) -> dict:
    import yaml

    from zhixing.config import ModelConfig
    from zhixing.data.plm import default_num_predict
    from zhixing.models import build_model

    recipe = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    data = recipe.get("data", {})
    model = build_model(ModelConfig.load(run / "best"))
    seq_len, masked = int(data.get("block_size", 128)), float(data.get("mlm_probability", 0.15))
    if data.get("objective") == "plm":  # text = block - <sep> <cls>; PLMLoader's default num_predict
        num_predict = default_num_predict(seq_len - 2, int(data.get("plm_k", 6)))
        per_token = xlnet_flops_per_token(model.config, seq_len, num_predict,
                                          int(recipe.get("train", {}).get("batch_size", 32)))
    else:
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
