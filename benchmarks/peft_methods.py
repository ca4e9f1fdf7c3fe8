"""Parameter-efficient fine-tuning on all-MiniLM-L6-v2: what each method trains and costs, and what it scores.
(Not named peft.py: a script of that name would shadow the `peft` package for scripts run from benchmarks/.)

    cd benchmarks
    flock /tmp/zhixing-cpu.lock ../.venv/bin/python peft_methods.py cost --threads 2 --rounds 3 \
        --steps 10
    flock /tmp/zhixing-cpu.lock ../.venv/bin/python peft_methods.py accuracy --limit 4000 --epochs 2 \
        --threads 2

`cost`: for full fine-tuning, LoRA (r 8, α 16, query+value), P-tuning v2 prefixes (20 per layer) and prompt
tuning (20 virtual tokens), each with the classification head (pooler + classifier) trained in full:
trainable parameters, AdamW state bytes (exp_avg + exp_avg_sq of the trained tensors) and the time of one
optimizer step (forward, backward, AdamW) on the same SST-2 batches (32 sentences, max_seq_len 64),
the methods interleaved round by round so that they see the same machine load; median per method.
`accuracy`: `zhixing.tasks.finetune` per method on SST-2 (train: all, or a seeded subset; dev: all 872),
each method at its default rate (METHOD_LR; full: default_lr), the method's default epochs or --epochs.
`--data chnsenticorp --model DIR`: the same on ChnSentiCorp (finetune_common.chnsenticorp_splits(0): 6,291
train / 686 dev / 788 test, the split the Chinese pretraining corpus leaves out) with our own encoder; the
test set scored with the dev-selected weights.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import warnings

import torch
from finetune_common import DATA, emit, environment, minilm_dir

warnings.filterwarnings("ignore")

METHODS = {
    "full": {},
    "lora": {"r": 8, "alpha": 16.0, "dropout": 0.1, "targets": ["query", "value"]},
    "prefix": {"tokens": 20},
    "prompt_tuning": {"tokens": 20},
}


def build(method: str):
    from zhixing.peft.runs import apply_method
    from zhixing.tasks.finetune import load_for_task

    torch.manual_seed(0)
    model = load_for_task(minilm_dir(), "seq_cls", ["0", "1"], 0.1)
    return apply_method(model, method, dict(METHODS[method])).train()


def batches(tokenizer, n: int, size: int = 32, max_len: int = 64, seed: int = 0):
    from zhixing.tasks.data import read_table

    rows = read_table(DATA / "sst2/train.tsv")
    random.Random(seed).shuffle(rows)
    out = []
    for i in range(n):
        chunk = rows[i * size:(i + 1) * size]
        enc = tokenizer.encode_batch([r.text for r in chunk], max_length=max_len, truncation=True,
                                     padding=True)
        out.append({"input_ids": torch.tensor([e.ids for e in enc]),
                    "attention_mask": torch.tensor([e.attention_mask for e in enc]),
                    "labels": torch.tensor([int(r.label) for r in chunk])})
    return out


def cost(args) -> None:
    torch.set_num_threads(args.threads)
    models = {m: build(m) for m in METHODS}
    data = batches(models["full"].tokenizer, args.steps)
    opts = {m: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                 weight_decay=0.01) for m, model in models.items()}
    times: dict[str, list[float]] = {m: [] for m in METHODS}

    def step(m: str, batch) -> None:
        loss = models[m](**batch).loss
        loss.backward()
        opts[m].step()
        opts[m].zero_grad(set_to_none=True)

    for m in METHODS:  # warm-up: allocations, first-call overheads
        step(m, data[0])
    for r in range(args.rounds):
        for m in (list(METHODS) if r % 2 == 0 else list(reversed(METHODS))):
            for batch in data:
                t = time.perf_counter()
                step(m, batch)
                times[m].append(time.perf_counter() - t)
    base = statistics.median(times["full"])
    for m, model in models.items():
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = model.num_parameters()
        state = sum(t.numel() * t.element_size() for s in opts[m].state.values() for t in s.values()
                    if torch.is_tensor(t) and t.dim() > 0)
        med = statistics.median(times[m])
        emit({"method": m, "settings": METHODS[m], "trainable": trainable, "total": total,
              "trainable_pct": round(100 * trainable / total, 3), "optimizer_state_bytes": state,
              "step_s_median": round(med, 4), "step_vs_full": round(med / base, 3),
              "steps_timed": len(times[m])})


def accuracy(args) -> None:
    from zhixing.tasks.data import read_table
    from zhixing.tasks.finetune import finetune, finetune_config

    test = None
    if args.data == "chnsenticorp":
        from finetune_common import chnsenticorp_splits

        train, dev, test = chnsenticorp_splits(0)
    else:
        train = read_table(DATA / "sst2/train.tsv")
        dev = read_table(DATA / "sst2/dev.tsv")[:args.limit_dev or None]
    if args.limit:
        random.Random(args.seed).shuffle(train)
        train = train[:args.limit]
    out = args.out or tempfile.mkdtemp(prefix="zx-peft-")
    for m in args.methods.split(","):
        s = METHODS[m]
        settings = {"method": m}
        if m == "lora":
            settings.update(lora_r=s["r"], lora_alpha=s["alpha"], lora_dropout=s["dropout"],
                            lora_targets=args.lora_targets or ",".join(s["targets"]))
        elif m != "full":
            settings["prompt_tokens"] = args.prompt_tokens or s["tokens"]
            if m == "prefix" and args.prefix_projection:
                settings["prefix_projection"] = args.prefix_projection
        if args.epochs:
            settings["epochs"] = args.epochs
        cfg = finetune_config("classify", model=args.model or minilm_dir(), max_seq_len=args.max_seq_len,
                              **settings)
        overrides = [f"out_dir={out}", f"seed={args.seed}", f"num_threads={args.threads}", "progress=false",
                     "plots=false", "device=cpu", "overwrite=true"]
        if m in args.lr_overrides:
            overrides.append(f"lr={args.lr_overrides[m]}")
        t = time.perf_counter()
        summary = finetune(cfg, name=f"{args.data}-{m}", train_examples=train, dev_examples=dev,
                           test_examples=test, train_overrides=overrides)
        emit({"data": args.data, "method": m, "settings": settings, "lr": args.lr_overrides.get(m),
              "dev_accuracy": summary["dev"].get("accuracy"),
              "test_accuracy": (summary.get("test") or {}).get("accuracy"),
              "best_step": summary["dev"].get("step"),
              "steps": summary["step"], "trainable": summary["trainable_parameters"],
              "total": summary["total_parameters"], "defaults": summary.get("defaults"),
              "train_examples": len(train), "seed": args.seed, "wall_s": round(time.perf_counter() - t, 1),
              "run_dir": summary["run_dir"]})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["cost", "accuracy"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", choices=["sst2", "chnsenticorp"], default="sst2", help="accuracy: the task")
    p.add_argument("--model", default="", help="accuracy: the encoder ('' = all-MiniLM-L6-v2)")
    p.add_argument("--max-seq-len", type=int, default=64, help="accuracy")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="cost: timed steps per method per round")
    p.add_argument("--limit", type=int, default=0, help="accuracy: a seeded subset of train (0 = all)")
    p.add_argument("--limit-dev", type=int, default=0, help="accuracy: first N dev sentences")
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="full,lora,prefix,prompt_tuning")
    p.add_argument("--lr", action="append", default=[], help="method=lr, e.g. --lr lora=1e-3")
    p.add_argument("--lora-targets", default="", help="accuracy: LoRA's targets ('' = query,value)")
    p.add_argument("--prompt-tokens", type=int, default=0, help="accuracy: prefix length / virtual tokens "
                   "(0 = 20)")
    p.add_argument("--prefix-projection", type=int, default=0, help="accuracy: the prefixes through Li & "
                   "Liang's MLP of this hidden width (0 = free prefixes, P-tuning v2)")
    p.add_argument("--out", default="")
    args = p.parse_args()
    args.lr_overrides = dict(x.split("=", 1) for x in args.lr)
    emit({"environment": environment(args.threads), "args": {k: v for k, v in vars(args).items()}})
    cost(args) if args.what == "cost" else accuracy(args)


if __name__ == "__main__":
    main()
