"""SST-2: zhixing finetune vs transformers Trainer, same model / data / hyperparameters, same job.

    .venv/bin/python benchmarks/finetune_sst2.py --train-examples 4000 --epochs 2

Prints one JSON line per implementation (dev accuracy, wall-clock) and a final comparison line.
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
import warnings

import torch
from finetune_common import DATA, emit, environment, hf_args, minilm_dir

warnings.filterwarnings("ignore")


def subset(n: int, seed: int):
    """The first-n of a seeded shuffle of SST-2 train (the same rows for both sides)."""
    with open(DATA / "sst2/train.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def run_zhixing(rows, args) -> dict:
    from zhixing.tasks.data import TextExample, read_table
    from zhixing.tasks.finetune import finetune, finetune_config

    t = time.perf_counter()
    train = [TextExample(s.strip(), None, lab, f"train:{i}") for i, (s, lab) in enumerate(rows)]
    dev = read_table(DATA / "sst2/dev.tsv")
    cfg = finetune_config("classify", model=minilm_dir(), max_seq_len=args.max_seq_len,
                         epochs=args.epochs, eval_every=args.epochs, warmup_ratio=0.1,
                         pooling="cls")  # the head of transformers' BertForSequenceClassification
    out = tempfile.mkdtemp(prefix="zx-sst2-")
    s = finetune(cfg, name="sst2", train_examples=train, dev_examples=dev, train_overrides=[
        f"out_dir={out}", f"lr={args.lr}", f"batch_size={args.batch_size}", f"seed={args.seed}",
        f"num_threads={args.threads}", "progress=false", "plots=false", "device=cpu", f"dtype={args.dtype}"])
    return {"impl": "zhixing", "accuracy": s["dev"]["accuracy"], "steps": s["step"], "dtype": s.get("dtype"),
            "wall_s": time.perf_counter() - t, "run_dir": s["run_dir"]}


def run_hf(rows, args) -> dict:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
    )

    t = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)

    def encode(pairs):
        enc = tok([s.strip() for s, _ in pairs], truncation=True, max_length=args.max_seq_len)
        return [{"input_ids": i, "token_type_ids": ty, "attention_mask": m, "labels": int(lab)}
                for i, ty, m, (_, lab) in zip(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"],
                                              pairs)]

    with open(DATA / "sst2/dev.tsv", encoding="utf-8") as f:
        dev_rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    train_ds, dev_ds = encode(rows), encode(dev_rows)
    steps = -(-len(train_ds) // args.batch_size) * args.epochs
    trainer = Trainer(model=model, args=hf_args(tempfile.mkdtemp(prefix="hf-sst2-"), args.epochs, args.lr,
                                                args.batch_size, args.seed, int(0.1 * steps), args.dtype),
                      train_dataset=train_ds, data_collator=DataCollatorWithPadding(tok))
    trainer.train()
    pred = trainer.predict(dev_ds)
    acc = float((pred.predictions.argmax(-1) == pred.label_ids).mean())
    return {"impl": "hf", "accuracy": acc, "steps": trainer.state.global_step,
            "wall_s": time.perf_counter() - t}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train-examples", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--order", default="zhixing,hf")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="train.dtype of both sides (auto: bf16 autocast where the CPU computes bf16)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = subset(args.train_examples, args.seed)
    env = environment(args.threads)
    results = {}
    for impl in args.order.split(","):
        r = (run_zhixing if impl == "zhixing" else run_hf)(rows, args)
        results[impl] = r
        emit({"bench": "finetune_sst2", "device": "cpu", "train_examples": len(rows), "dev_examples": 872,
              **vars(args), **env, **r})
    if len(results) == 2:
        z, h = results["zhixing"], results["hf"]
        emit({"bench": "finetune_sst2", "ratio": "hf_wall / zhixing_wall",
              "speedup": h["wall_s"] / z["wall_s"],
              "accuracy_diff_points": 100 * (z["accuracy"] - h["accuracy"])})


if __name__ == "__main__":
    main()
