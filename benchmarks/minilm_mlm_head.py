"""An English masked LM for prompts: all-MiniLM-L6-v2 ships no MLM head, so train only a fresh BERT MLM head
(dense + LayerNorm + output bias; the decoder is tied to the frozen token embeddings) on the frozen
encoder, on WikiText-2 valid, and measure masked-token accuracy on WikiText-2 test. `--unfreeze N` also
trains the top N encoder layers (the embeddings, and so the tied decoder, stay frozen); `--corpus mixed`
trains on general English beyond WikiText-2 valid (217k words): + the CoNLL-2003 train sentences (Reuters
news, 204k words) + Multi30k train.en (image captions, 29k sentences) — none of it movie reviews or
assistant commands, the few-shot tasks' domains.

    flock /tmp/zhixing-cpu.lock .venv/bin/python benchmarks/minilm_mlm_head.py --minutes 8 \\
        --out /tmp/prompts-runs/minilm-mlm

Masking as BERT: 15% of the tokens, of which 80% [MASK], 10% a random token, 10% unchanged; the loss on
the chosen 15%. Evaluation: 15% of the test tokens replaced by [MASK] (seeded), top-1 accuracy of the
original token at those positions. Prints JSON lines; saves the model (config.json, model.safetensors,
the tokenizer) to --out for benchmarks/fewshot.py.
"""

from __future__ import annotations

import argparse
import re
import time
import warnings

import torch
import torch.nn.functional as F
from finetune_common import DATA, emit, environment, minilm_dir

warnings.filterwarnings("ignore")


def wiki_lines(split: str) -> list[str]:
    out = []
    for line in (DATA / f"wikitext-2/{split}.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("="):
            continue
        line = re.sub(r" @(.)@ ", r"\1", line).replace("<unk>", "[UNK]")
        out.append(line)
    return out


def conll_sentences(path) -> list[str]:
    out, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                out.append(" ".join(words))
            words = []
        else:
            words.append(line.split()[0])
    return out


def corpus_lines(name: str) -> list[str]:
    lines = wiki_lines("valid")
    if name == "mixed":
        lines += conll_sentences(DATA / "conll2003/train.txt")
        lines += (DATA / "multi30k/train.en").read_text(encoding="utf-8").splitlines()
    return lines


def chunks(tok, lines: list[str], seq: int) -> torch.Tensor:
    ids = [i for enc in tok.encode_batch(lines, add_special_tokens=False) for i in enc.ids]
    n = len(ids) // (seq - 2)
    rows = torch.tensor(ids[: n * (seq - 2)]).view(n, seq - 2)
    return torch.cat([torch.full((n, 1), tok.cls_id), rows, torch.full((n, 1), tok.sep_id)], 1)


def mask_batch(x: torch.Tensor, tok, g: torch.Generator, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    special = (x == tok.cls_id) | (x == tok.sep_id) | (x == tok.unk_id)
    chosen = (torch.rand(x.shape, generator=g) < 0.15) & ~special
    labels = x.masked_fill(~chosen, -100)
    inp = x.clone()
    r = torch.rand(x.shape, generator=g)
    to_mask = chosen & ((r < 0.8) | (not train))
    inp[to_mask] = tok.mask_id
    if train:
        rand = chosen & (r >= 0.8) & (r < 0.9)
        inp[rand] = torch.randint(999, tok.vocab_size, x.shape, generator=g)[rand]
    return inp, labels


@torch.no_grad()
def accuracy(model, tok, data: torch.Tensor, batch: int) -> float:
    g = torch.Generator().manual_seed(0)
    hit = n = 0
    model.eval()
    for i in range(0, len(data), batch):
        inp, labels = mask_batch(data[i:i + batch], tok, g, train=False)
        keep = labels != -100
        h = model.hidden(inp)[keep]
        hit += int((model.mlm(h).argmax(-1) == labels[keep]).sum())
        n += int(keep.sum())
    return hit / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--out", default="/tmp/prompts-runs/minilm-mlm")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-rows", type=int, default=400)
    ap.add_argument("--unfreeze", type=int, default=0, help="also train the top N encoder layers")
    ap.add_argument("--layer-lr", type=float, default=1e-4, help="the unfrozen layers' learning rate")
    ap.add_argument("--corpus", choices=["valid", "mixed"], default="valid",
                    help="WikiText-2 valid, or mixed: + CoNLL-2003 train + Multi30k train.en")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from zhixing import hub

    model = hub.load(minilm_dir(), head="mlm")
    tok = hub.load_tokenizer(minilm_dir())
    n_layers = len(model.layers)
    top = tuple(f"layers.{i}." for i in range(n_layers - args.unfreeze, n_layers))
    for name, p in model.named_parameters():
        # the decoder is tied to the token embeddings: frozen with them
        p.requires_grad = (name.startswith("mlm.") and name != "mlm.decoder.weight") or name.startswith(top)
    trainable = [p for p in model.parameters() if p.requires_grad]
    train = chunks(tok, corpus_lines(args.corpus), args.seq)
    test = chunks(tok, wiki_lines("test"), args.seq)[: args.eval_rows]
    emit({"bench": "minilm_mlm_head", "env": environment(args.threads), "train_rows": len(train),
          "test_rows": len(test), "seq": args.seq, "corpus": args.corpus, "unfreeze": args.unfreeze,
          "trainable": sum(p.numel() for p in trainable)})
    before = accuracy(model, tok, test, 64)
    head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("mlm.")]
    layers = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("mlm.")]
    opt = torch.optim.AdamW([{"params": head, "lr": args.lr}, {"params": layers, "lr": args.layer_lr}],
                            weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    t0, step = time.time(), 0
    model.train()
    while time.time() - t0 < args.minutes * 60:
        idx = torch.randint(0, len(train), (args.batch,), generator=g)
        inp, labels = mask_batch(train[idx], tok, g, train=True)
        keep = labels != -100
        with torch.set_grad_enabled(args.unfreeze > 0):  # a frozen encoder: no graph through it
            h = model.hidden(inp)[keep]
        loss = F.cross_entropy(model.mlm(h), labels[keep])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            emit({"step": step, "loss": round(loss.item(), 4), "elapsed_s": round(time.time() - t0, 1)})
    train_s = time.time() - t0
    after = accuracy(model, tok, test, 64)
    model.eval().save_pretrained(args.out)
    tok.save(args.out)
    emit({"bench": "minilm_mlm_head", "steps": step, "batch": args.batch, "train_s": round(train_s, 1),
          "test_masked_acc_fresh_head": round(before, 4), "test_masked_acc": round(after, 4),
          "out": args.out})


if __name__ == "__main__":
    main()
