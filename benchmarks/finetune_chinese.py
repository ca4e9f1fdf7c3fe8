"""Chinese fine-tuning with a People's Daily BERT (or ELECTRA, XLNet): ChnSentiCorp, MSRA NER, CMRC 2018.

    .venv/bin/python benchmarks/finetune_chinese.py --model runs/bert-peoples-daily-tiny/best
    .venv/bin/python benchmarks/finetune_chinese.py --model runs/xlnet-peoples-daily-tiny/best --random-init

--random-init fine-tunes the control: the same architecture and tokenizer as --model with fresh random
weights (seeded by --seed), saved to a temporary directory first.

The pretrained model comes from `zhixing pretrain --config configs/bert-peoples-daily-tiny.yaml`
(or any BERT directory with its tokenizer). Splits, all deterministic (`holdout_split`: a hash of each
item, independent of file order):

- ChnSentiCorp (`ChnSentiCorp_htl_all.csv`, 7,766 hotel reviews, one of them empty and dropped; not the
  9.6k/1.2k/1.2k ERNIE split, which is not available here): 10% test, 10% of the rest dev, the rest train.
- MSRA NER: train on the first --msra-train sentences of a seeded shuffle of `msra_train_bio.txt`,
  select on 1,000 other training sentences, score the full `msra_test_bio.txt` (3,442 sentences).
- CMRC 2018 (its train split is not available here): train on `trial` + half of the `dev` articles,
  score the other half once, with the final model (split by article, so no context is on both sides;
  no model selection); CMRC's EM / F1.

One JSON line per task: the test metrics of the dev-selected model, steps and wall-clock.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import warnings

import torch
from finetune_common import DATA, chnsenticorp_splits, emit, environment

warnings.filterwarnings("ignore")


def run(task: str, name: str, train, dev, test, args, **cfg_fields) -> dict:
    from zhixing.tasks.finetune import finetune, finetune_config

    t = time.perf_counter()
    cfg = finetune_config(task, model=args.model, warmup_ratio=0.1, limit_train=args.limit,
                         limit_dev=args.limit, dropout=args.dropout, layer_decay=args.layer_decay,
                         **cfg_fields)
    s = finetune(cfg, name=name, train_examples=train, dev_examples=dev, test_examples=test, train_overrides=[
        f"out_dir={args.out}", f"lr={args.lr}", f"batch_size={args.batch_size}", f"seed={args.seed}",
        f"num_threads={args.threads}", "progress=false", "plots=false", "device=cpu"])
    scored = test if test is not None else dev  # None: no model selection, the final model on dev
    return {"task": name, "train": len(train), "dev": len(dev), "test_size": len(scored),
            "test": s["test"] if test is not None else s["dev"],
            "dev_best": s["dev"], "steps": s["step"], "wall_s": round(time.perf_counter() - t, 1),
            "run_dir": s["run_dir"]}


def chnsenticorp(args) -> dict:
    train, dev, test = chnsenticorp_splits(args.split_seed)
    random.Random(args.split_seed).shuffle(train)  # the file is sorted by label; --limit takes a mixed prefix
    record = run("classify", "chnsenticorp", train, dev, test, args, max_seq_len=args.max_seq_len,
                 epochs=args.epochs, text_column="review")
    if args.transfer:
        record["transfer_scores"] = transfer(f"{record['run_dir']}/best", args.transfer, args)
    return record


def transfer(model_dir: str, path: str, args) -> dict:
    """Domain transfer: the hotel-review classifier scored on other domains' held-out reviews
    (`zh_corpus.py`'s transfer-test.jsonl): accuracy per domain and their unweighted mean."""
    import json
    from collections import defaultdict

    from zhixing.tasks.classify import predict
    from zhixing.tasks.data import TextExample
    from zhixing.tasks.finetune import load_run

    by_domain: dict[str, list] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            r = json.loads(line)
            by_domain[r["domain"]].append(TextExample(r["text"], None, str(r["label"]), f"{path}:{i}"))
    model, cfg = load_run(model_dir)
    model.eval()
    scores = {}
    for domain, examples in sorted(by_domain.items()):
        with torch.no_grad():
            pred = predict(model, model.tokenizer, examples, cfg)
        right = sum(p["label"] == e.label for p, e in zip(pred, examples))
        scores[domain] = round(100 * right / len(examples), 2)
    scores["mean"] = round(sum(scores.values()) / len(scores), 2)
    return scores


def msra(args) -> dict:
    from zhixing.tasks.data import read_tagged

    sents = read_tagged(DATA / "msra-ner/msra_train_bio.txt")
    random.Random(args.split_seed).shuffle(sents)
    train, dev = sents[:args.msra_train], sents[args.msra_train:args.msra_train + 1000]
    test = read_tagged(DATA / "msra-ner/msra_test_bio.txt")
    return run("ner", "msra-ner", train, dev, test, args, max_seq_len=args.max_seq_len, epochs=args.epochs,
               scheme="iob2")


def cmrc(args) -> dict:
    from zhixing.tasks.data import holdout_split, read_squad

    trial = read_squad(DATA / "cmrc2018/cmrc2018_trial.json")
    dev = read_squad(DATA / "cmrc2018/cmrc2018_dev.json")
    half_train, held = holdout_split(dev, 0.5, seed=args.split_seed, key=lambda e: e.context)
    train = trial + half_train
    # No model selection: one evaluation of the final model on the held-out half.
    return run("qa", "cmrc2018", train, held, None, args, max_seq_len=args.max_seq_len,
               epochs=args.qa_epochs, eval_every=args.qa_epochs, doc_stride=args.doc_stride, max_query_len=32,
               qa_metric="cmrc")


def random_twin(path: str, seed: int, out: str) -> str:
    """A directory with the model at `path`'s config and tokenizer and freshly initialised weights."""
    from pathlib import Path

    from zhixing.config import ModelConfig
    from zhixing.hub import load_tokenizer, resolve
    from zhixing.models import build_model

    directory, _ = resolve(path)
    torch.manual_seed(seed)
    model = build_model(ModelConfig.load(directory))
    twin = Path(out) / "random-init"
    model.save_pretrained(twin)
    load_tokenizer(path).save(twin)
    return str(twin)


TASKS = {"chnsenticorp": chnsenticorp, "msra": msra, "cmrc": cmrc}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="runs/bert-peoples-daily-tiny/best")
    p.add_argument("--tasks", default="chnsenticorp,msra,cmrc")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--qa-epochs", type=float, default=3)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dropout", type=float, default=0.1, help="fine-tuning dropout, whatever the model was "
                   "pretrained with (the zh-mix recipes pretrain without)")
    p.add_argument("--layer-decay", type=float, default=1.0, help="layer-wise lr decay: layer l of L trains "
                   "at lr * decay^(L - l) (ELECTRA's fine-tuning recipe; 1 = off)")
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--doc-stride", type=int, default=64)
    p.add_argument("--msra-train", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0, help="seeds the data splits, apart from --seed (the "
                   "training's): zh_corpus.py's corpus holds split 0's training texts; another split would "
                   "put scored texts into it")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="")
    p.add_argument("--limit", type=int, default=0, help="first N train/dev examples only (a smoke run)")
    p.add_argument("--transfer", default="", help="after chnsenticorp, score its classifier on the other "
                   "domains of this file (zh_corpus.py's runs/zh-corpus/transfer-test.jsonl)")
    p.add_argument("--random-init", action="store_true", help="the control: --model's architecture and "
                   "tokenizer with random weights")
    args = p.parse_args()
    args.out = args.out or tempfile.mkdtemp(prefix="zx-zh-")
    if args.random_init:
        args.pretrained, args.model = args.model, random_twin(args.model, args.seed, args.out)
    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    for name in args.tasks.split(","):
        emit({"bench": "finetune_chinese", **vars(args), **env, **TASKS[name](args)})


if __name__ == "__main__":
    main()
