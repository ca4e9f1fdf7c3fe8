"""The peer of the translation recipe: the same job as a plain PyTorch loop on `torch.nn.Transformer`.

Usage (after the zhixing run, so the tokenizer and the model size are the recipe's):
    zhixing pretrain --config configs/transformer-multi30k-de-en.yaml data.val_bleu=true
    python benchmarks/translation_baseline.py --config configs/transformer-multi30k-de-en.yaml

Same data (the recipe's joint BPE vocabulary, the same length-bucketed batches), same model size (dim,
layers, heads, FFN width, dropout, sinusoidal positions, tied embeddings scaled by sqrt(dim)), same loss
(label smoothing), optimiser (AdamW, the recipe's betas / weight decay / clipping) and schedule (warmup,
inverse square root), same number of steps, the same autocast dtype (`--dtype auto` follows the recipe's
`train.dtype=auto`). At each epoch the val split is translated greedily and scored with sacreBLEU;
`<out>/val_bleu.jsonl` holds {step, bleu, elapsed_s} like the recipe's, so the two curves give the wall time
each loop takes to reach the same BLEU.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn


class Baseline(nn.Module):
    def __init__(self, vocab: int, dim: int, layers: int, heads: int, ffn: int, dropout: float, pad: int,
                 max_len: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=pad)
        nn.init.normal_(self.embed.weight, std=dim**-0.5)
        position = torch.arange(max_len)[:, None]
        freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(position * freq), torch.cos(position * freq)
        self.register_buffer("pe", pe)
        self.drop = nn.Dropout(dropout)
        self.core = nn.Transformer(dim, heads, layers, layers, ffn, dropout, batch_first=True)
        self.scale, self.pad = dim**0.5, pad

    def emb(self, ids):
        return self.drop(self.embed(ids) * self.scale + self.pe[: ids.size(1)])

    def encode(self, src, src_pad):
        return self.core.encoder(self.emb(src), src_key_padding_mask=src_pad)

    def decode(self, tgt, memory, src_pad):
        causal = self.core.generate_square_subsequent_mask(tgt.size(1), device=tgt.device)
        h = self.core.decoder(self.emb(tgt), memory, tgt_mask=causal, tgt_is_causal=True,
                              memory_key_padding_mask=src_pad)
        return h @ self.embed.weight.t()

    def decode_last(self, tgt, memory, src_pad, inputs: list):
        """The logits of the last position only, in eval mode. nn.TransformerDecoder keeps no key/value
        cache, so each layer's inputs so far are kept in `inputs` (one tensor per layer, grown here) and
        only the newest position is run through the layers: the same result as `decode(...)[:, -1]` with
        O(t) work per step instead of O(t^2) (tests/benchmarks/test_translation_baseline.py)."""
        t = tgt.size(1)
        x = self.embed(tgt[:, -1:]) * self.scale + self.pe[t - 1: t]
        for i, layer in enumerate(self.core.decoder.layers):  # post-norm, as nn.Transformer's default
            inputs[i] = x if inputs[i] is None else torch.cat([inputs[i], x], dim=1)
            x = layer.norm1(x + layer.self_attn(x, inputs[i], inputs[i], need_weights=False)[0])
            x = layer.norm2(x + layer.multihead_attn(x, memory, memory, key_padding_mask=src_pad,
                                                     need_weights=False)[0])
            x = layer.norm3(x + layer.linear2(layer.activation(layer.linear1(x))))
        if self.core.decoder.norm is not None:
            x = self.core.decoder.norm(x)
        return (x @ self.embed.weight.t())[:, -1]


@torch.no_grad()
def greedy(model: Baseline, src, src_pad, bos: int, eos: int, max_new: int):
    model.eval()
    memory = model.encode(src, src_pad)
    out = torch.full((src.size(0), 1), bos, dtype=torch.long)
    done = torch.zeros(src.size(0), dtype=torch.bool)
    inputs = [None] * len(model.core.decoder.layers)
    for _ in range(max_new):
        nxt = model.decode_last(out, memory, src_pad, inputs).argmax(-1)
        nxt = nxt.masked_fill(done, eos)
        out = torch.cat([out, nxt[:, None]], dim=1)
        done |= nxt == eos
        if done.all():
            break
    model.train()
    return out[:, 1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="the zhixing recipe whose job this repeats")
    ap.add_argument("--out", default=None, help="default: runs/<recipe name>-torch")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                    help="autocast dtype of the training step; auto = the recipe's own rule (train.dtype="
                         "auto: bf16 on a CPU that computes it natively, zhixing.device.cpu_computes_bf16)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import sacrebleu

    from zhixing.device import cpu_computes_bf16
    from zhixing.recipes.translation import _pairs, prepare_tokenizer
    from zhixing.tasks.translate import ParallelLoader, encode_pairs
    from zhixing.train import distributed as D
    from zhixing.train.config import Recipe

    recipe = Recipe.load(args.config)
    bf16 = args.dtype == "bfloat16" or (args.dtype == "auto" and cpu_computes_bf16())
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)  # weights and AdamW stay fp32
    print(json.dumps({"bench": "translation_baseline", "dtype": "bfloat16" if bf16 else "float32",
                      "threads": torch.get_num_threads()}), flush=True)
    d, t, m = recipe.data, recipe.train, recipe.model_config()
    out = Path(args.out or f"runs/{recipe.name}-torch")
    out.mkdir(parents=True, exist_ok=True)
    train_pairs, val_pairs = _pairs(recipe, d.train_split), _pairs(recipe, d.val_split)
    tok = prepare_tokenizer(recipe, train_pairs, D.DistInfo(), progress=False)
    limit = min(d.block_size, m.max_seq_len)
    loader = ParallelLoader(encode_pairs(train_pairs, tok, limit), t.batch_size, tok.pad_id, tok.bos_id,
                            seed=t.seed)
    torch.manual_seed(t.seed)
    model = Baseline(tok.vocab_size, m.dim, m.num_layers, m.num_heads, m.ffn_dim, m.dropout, tok.pad_id,
                     m.max_seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps,
                            weight_decay=t.weight_decay)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=d.label_smoothing)
    val_src = [tok.encode(s, add_special_tokens=False).ids[:limit] for s, _ in val_pairs]
    log = open(out / "val_bleu.jsonl", "w", encoding="utf-8")
    start, eval_s, it = time.perf_counter(), 0.0, iter(loader)
    for step in range(1, t.max_steps + 1):
        lr = t.lr * min(step / max(t.warmup_steps, 1), math.sqrt(max(t.warmup_steps, 1) / step))
        for g in opt.param_groups:
            g["lr"] = max(lr, t.min_lr) if step > t.warmup_steps else lr
        batch = next(it)
        src_pad = batch["attention_mask"] == 0
        with autocast:
            memory = model.encode(batch["input_ids"], src_pad)
            logits = model.decode(batch["decoder_input_ids"], memory, src_pad)
        loss = loss_fn(logits.float().reshape(-1, logits.size(-1)), batch["labels"].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        if step % t.eval_interval == 0 or step == t.max_steps:
            began = time.perf_counter()
            # Sentences go by length, and a batch stops at 2x its longest source + 10 tokens (fairseq's
            # max_len_a / max_len_b rule): an untrained model never says eos.
            hyps = [""] * len(val_src)
            order = sorted(range(len(val_src)), key=lambda i: len(val_src[i]))
            for s in range(0, len(order), 128):
                rows = [val_src[i] for i in order[s: s + 128]]
                longest = max(map(len, rows))
                src = torch.full((len(rows), longest), tok.pad_id)
                for r, ids in enumerate(rows):
                    src[r, : len(ids)] = torch.tensor(ids)
                cap = min(limit - 1, 2 * longest + 10)
                decoded = greedy(model, src, src == tok.pad_id, tok.bos_id, tok.eos_id, cap)
                for i, row in zip(order[s: s + 128], decoded.tolist()):
                    row = row[: row.index(tok.eos_id)] if tok.eos_id in row else row
                    hyps[i] = tok.decode(row, skip_special_tokens=True).strip()
            bleu = sacrebleu.corpus_bleu(hyps, [[tgt for _, tgt in val_pairs]]).score
            record = {"step": step, "bleu": round(bleu, 2), "loss": round(loss.item(), 4),
                      "elapsed_s": round(began - start - eval_s, 1)}
            eval_s += time.perf_counter() - began
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(json.dumps({"bench": "translation_baseline", **record}), flush=True)


if __name__ == "__main__":
    main()
