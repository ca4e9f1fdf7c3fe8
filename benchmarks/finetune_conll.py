"""CoNLL-2003 NER: zhixing finetune vs transformers Trainer, same model / data / hyperparameters, same job.

    .venv/bin/python benchmarks/finetune_conll.py --train-sentences 3000 --epochs 2
    .venv/bin/python benchmarks/finetune_conll.py --random xlnet,bert --epochs 6 --lr 1e-3 --order zhixing

--random FAMILIES fine-tunes, instead of all-MiniLM-L6-v2, randomly initialised tiny models of those
families (2 layers, dim 128, 4 heads, FFN 512, seeded by --seed) with MiniLM's WordPiece tokenizer — in
the family's own layout (XLNet: `A [SEP] [CLS]`, left padding) — zhixing only: no English XLNet checkpoint
exists offline, so this shows what the architecture does from scratch next to the pretrained BERT.

Both sides label the first sub-token of each word (-100 elsewhere) and are scored with the same
entity-level F1 (zhixing.tasks.metrics.entity_scores, equal to seqeval's) on the test set.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import warnings

import torch
from finetune_common import DATA, emit, environment, hf_args, minilm_dir

warnings.filterwarnings("ignore")


def load(args):
    from zhixing.tasks.data import read_tagged

    train = read_tagged(DATA / "conll2003/train.txt")
    random.Random(args.seed).shuffle(train)
    test = read_tagged(DATA / "conll2003/test.txt")
    if args.test_sentences:
        test = test[:args.test_sentences]
    return train[:args.train_sentences], test


def random_model(family: str, seed: int) -> str:
    """A directory with a random tiny `family` model and MiniLM's tokenizer in the family's layout."""
    from zhixing.hub import load_tokenizer
    from zhixing.models import build_model
    from zhixing.tokenizers.layout import apply_layout

    tok = load_tokenizer(minilm_dir())
    torch.manual_seed(seed)
    model = build_model(f"{family}-tiny", vocab_size=tok.vocab_size, dim=128, num_layers=2, num_heads=4,
                        ffn_dim=512, max_seq_len=128, pad_token_id=tok.pad_id)
    apply_layout(tok, model.tokenizer_layout)
    out = tempfile.mkdtemp(prefix=f"zx-random-{family}-")
    model.save_pretrained(out)
    tok.save(out)
    return out


def run_zhixing(train, test, args, model: str | None = None) -> dict:
    from zhixing.tasks.finetune import finetune, finetune_config

    t = time.perf_counter()
    cfg = finetune_config("ner", model=model or minilm_dir(), max_seq_len=args.max_seq_len,
                         epochs=args.epochs, eval_every=args.epochs, warmup_ratio=0.1, scheme="iob2",
                         casing=False)  # transformers' BertForTokenClassification has no casing types
    out = tempfile.mkdtemp(prefix="zx-conll-")
    s = finetune(cfg, name="conll", train_examples=train, dev_examples=test, train_overrides=[
        f"out_dir={out}", f"lr={args.lr}", f"batch_size={args.batch_size}", f"seed={args.seed}",
        f"num_threads={args.threads}", "progress=false", "plots=false", "device=cpu", f"dtype={args.dtype}"])
    return {"impl": "zhixing", "f1": s["dev"]["f1"], "precision": s["dev"]["precision"],
            "recall": s["dev"]["recall"], "steps": s["step"], "wall_s": time.perf_counter() - t}


def run_hf(train, test, args) -> dict:
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
    )

    from zhixing.tasks.metrics import entity_scores
    from zhixing.tasks.ner import label_names

    t = time.perf_counter()
    names = label_names(train)
    index = {n: i for i, n in enumerate(names)}
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModelForTokenClassification.from_pretrained(minilm_dir(), num_labels=len(names))

    def encode(sents):
        enc = tok([s.tokens for s in sents], is_split_into_words=True, truncation=True,
                  max_length=args.max_seq_len)
        feats = []
        for i, s in enumerate(sents):
            words, prev, labels = enc.word_ids(i), None, []
            for w in words:  # first sub-token of each word carries its tag
                labels.append(-100 if w is None or w == prev else index.get(s.tags[w], 0))
                prev = w
            feats.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                          "token_type_ids": enc["token_type_ids"][i], "labels": labels})
        return feats, [enc.word_ids(i) for i in range(len(sents))]

    train_ds, _ = encode(train)
    test_ds, test_words = encode(test)
    steps = -(-len(train_ds) // args.batch_size) * args.epochs
    trainer = Trainer(model=model, args=hf_args(tempfile.mkdtemp(prefix="hf-conll-"), args.epochs, args.lr,
                                                args.batch_size, args.seed, int(0.1 * steps), args.dtype),
                      train_dataset=train_ds, data_collator=DataCollatorForTokenClassification(tok))
    trainer.train()
    pred = trainer.predict(test_ds).predictions.argmax(-1)
    tags = []
    for s, words, row in zip(test, test_words, pred):
        out, prev = ["O"] * len(s.tokens), None  # words cut by truncation stay "O"
        for j, w in enumerate(words):
            if w is not None and w != prev:
                out[w] = names[int(row[j])]
            prev = w
        tags.append(out)
    m = entity_scores([s.tags for s in test], tags)
    return {"impl": "hf", "f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
            "steps": trainer.state.global_step, "wall_s": time.perf_counter() - t}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train-sentences", type=int, default=3000)
    p.add_argument("--test-sentences", type=int, default=0, help="0 = the whole test set (3,453)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--order", default="zhixing,hf")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="train.dtype of both sides (auto: bf16 autocast where the CPU computes bf16)")
    p.add_argument("--random", default="", help="comma-separated families (xlnet, bert): random-init tiny "
                   "models with MiniLM's tokenizer instead of MiniLM (zhixing only)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train, test = load(args)
    env = environment(args.threads)
    if args.random:
        for family in args.random.split(","):
            r = run_zhixing(train, test, args, random_model(family, args.seed))
            emit({"bench": "finetune_conll", "device": "cpu", **vars(args), "model": f"random {family}-tiny",
                  "train_sentences": len(train), "test_sentences": len(test), **env, **r})
        return
    results = {}
    for impl in args.order.split(","):
        r = (run_zhixing if impl == "zhixing" else run_hf)(train, test, args)
        results[impl] = r
        # the counts used, after the arguments (--test-sentences 0 means all)
        emit({"bench": "finetune_conll", "device": "cpu", **vars(args), "train_sentences": len(train),
              "test_sentences": len(test), **env, **r})
    if len(results) == 2:
        z, h = results["zhixing"], results["hf"]
        emit({"bench": "finetune_conll", "ratio": "hf_wall / zhixing_wall",
              "speedup": h["wall_s"] / z["wall_s"], "f1_diff_points": 100 * (z["f1"] - h["f1"])})


if __name__ == "__main__":
    main()
