"""The evidence behind zhixing finetune's defaults (docs/finetuning.md, "Defaults"): the dev / test score
of all-MiniLM-L6-v2 on a data set across learning rates, with the default epochs and early stopping.

    .venv/bin/python benchmarks/finetune_defaults.py --data hwu64 --lrs 5e-5,1e-4,2e-4,4e-4 --seeds 0

HWU64: the authors' fold-1 train.csv with a seeded 10% held out as dev, test.csv scored with the best dev
model. SST-2: train (optionally a seeded subset) / dev. CoNLL-2003 (`ner`, IOB2 entity F1): train / valid as
dev / test scored with the best dev model. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import warnings
from pathlib import Path

from finetune_common import DATA, emit, environment, minilm_dir

warnings.filterwarnings("ignore")


def split_hwu64(seed: int = 0):
    """(train, dev, test) TextExamples: 10% of train.csv held out as dev by a seeded shuffle."""
    from zhixing.tasks.data import read_table

    rows = read_table(DATA / "hwu64/train.csv", text_column="text", label_column="label")
    test = read_table(DATA / "hwu64/test.csv", text_column="text", label_column="label")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_dev = len(rows) // 10
    dev = [rows[i] for i in sorted(order[:n_dev])]
    train = [rows[i] for i in sorted(order[n_dev:])]
    return train, dev, test


def split_sst2(limit: int, seed: int = 0):
    from zhixing.tasks.data import read_table

    train = read_table(DATA / "sst2/train.tsv")
    if limit:
        random.Random(seed).shuffle(train)
        train = train[:limit]
    return train, read_table(DATA / "sst2/dev.tsv"), None


def split_conll(limit: int, seed: int = 0):
    from zhixing.tasks.data import read_tagged

    train = read_tagged(DATA / "conll2003/train.txt")
    if limit:  # a seeded subset, kept in file order (document context reads the neighbours in the list)
        keep = list(range(len(train)))
        random.Random(seed).shuffle(keep)
        train = [train[i] for i in sorted(keep[:limit])]
    return train, read_tagged(DATA / "conll2003/valid.txt"), read_tagged(DATA / "conll2003/test.txt")


SPLITS = {"hwu64": lambda limit: split_hwu64(), "sst2": split_sst2, "conll": split_conll}
TASK = {"hwu64": ("classify", "accuracy"), "sst2": ("classify", "accuracy"), "conll": ("ner", "f1")}


def main() -> None:
    from zhixing.tasks.finetune import finetune, finetune_config

    p = argparse.ArgumentParser()
    p.add_argument("--data", choices=sorted(SPLITS), default="hwu64")
    p.add_argument("--lrs", default="5e-5,1e-4,2e-4,4e-4", help="comma-separated; 'auto' = the default")
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=float, default=None, help="default: zhixing's default_epochs")
    p.add_argument("--limit", type=int, default=0, help="SST-2 / CoNLL: a seeded subset of train (0 = all)")
    p.add_argument("--max-seq-len", type=int, default=0, help="default: 64; CoNLL 128")
    p.add_argument("--context", type=int, default=0,
                   help="CoNLL: sub-tokens of document context on each side (ner's context setting)")
    p.add_argument("--casing", choices=("auto", "on", "off"), default="auto",
                   help="CoNLL: each sub-token's casing as its token type (ner's casing setting; auto = the "
                        "default: on for an uncased tokenizer)")
    p.add_argument("--pooling", default="", choices=("", "mean", "cls"),
                   help="SST-2 / HWU64: what the classifier reads, the mean of the token states or the "
                        "pooled [CLS] (classify's pooling setting; '' = the checkpoint's own: mean for "
                        "all-MiniLM-L6-v2)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="")
    args = p.parse_args()
    if args.limit and args.data == "hwu64":
        p.error("--limit takes a subset of SST-2 or CoNLL; HWU64 always runs in full")
    args.max_seq_len = args.max_seq_len or (128 if args.data == "conll" else 64)
    emit({"environment": environment(args.threads), "args": vars(args)})
    train, dev, test = SPLITS[args.data](args.limit)
    task, metric = TASK[args.data]
    out = args.out or tempfile.mkdtemp(prefix=f"zx-defaults-{args.data}-")
    casing = {"auto": None, "on": True, "off": False}[args.casing]
    ner = {"scheme": "iob2", "context": args.context, "casing": casing}
    classify = {"pooling": args.pooling} if args.pooling else {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for lr in args.lrs.split(","):
            t = time.perf_counter()
            cfg = finetune_config(task, model=minilm_dir(), max_seq_len=args.max_seq_len,
                                  **(ner if task == "ner" else classify),
                                  **({"epochs": args.epochs} if args.epochs else {}))
            overrides = [f"out_dir={out}", f"seed={seed}", f"num_threads={args.threads}", "progress=false",
                         "plots=false", "device=cpu", "overwrite=true"]
            if lr != "auto":
                overrides.append(f"lr={lr}")
            s = finetune(cfg, name=f"{args.data}-lr{lr}-seed{seed}", train_examples=train, dev_examples=dev,
                         test_examples=test, train_overrides=overrides)
            metrics = Path(s["run_dir"]) / "metrics.jsonl"
            evals = [round(r[metric], 4) for r in map(json.loads, metrics.read_text().splitlines())
                     if r.get("kind") == "eval" and metric in r]
            emit({"data": args.data, "lr": lr, "seed": seed, "metric": metric, "dev": s["dev"].get(metric),
                  "test": s.get("test", {}).get(metric), "steps": s["step"], "status": s["status"],
                  "best_step": s.get("best_step"), "defaults": s.get("defaults"), "advice": s.get("advice"),
                  "train": len(train), "wall_s": round(time.perf_counter() - t, 1), "run_dir": s["run_dir"],
                  "evals": evals})


if __name__ == "__main__":
    main()
