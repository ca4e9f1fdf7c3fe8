"""SST-2 distillation: students of a fine-tuned teacher, each next to a control trained without the teacher.

    flock /tmp/zhixing-cpu.lock .venv/bin/python benchmarks/distill_sst2.py --teacher runs/sst2-teacher \\
        --out /tmp/distill-runs --train-examples 20000 --students 0,2,4 0,3

For each student (teacher layers to copy, e.g. 0,2,4):
  distilled  zhixing.tasks.distill: T²·KL(teacher ‖ student) + α·CE, the teacher's logits cached once
  control    the same initial student fine-tuned on the same rows with the hard labels only
Same rows (the first N of a seeded shuffle of SST-2 train), epochs, lr, batch, seed, max_seq_len 64; one
dev evaluation after the last step (the run's best/ is that model). --cache-speedup also times one epoch
on --speedup-examples rows with the live teacher against the cached logits. Prints one JSON line per run;
the runs' best/ directories go into benchmarks/compression_table.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
import warnings
from pathlib import Path

from finetune_common import DATA, environment

warnings.filterwarnings("ignore")


def subset_file(out: Path, n: int, seed: int) -> Path:
    """The first n rows of a seeded shuffle of SST-2 train, as a TSV (all rows when n = 0)."""
    with open(DATA / "sst2/train.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, rows = rows[0], rows[1:]
    random.Random(seed).shuffle(rows)
    rows = rows[:n] if n else rows
    path = out / f"sst2-train-{len(rows)}-seed{seed}.tsv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(header)
        w.writerows(rows)
    return path


def emit(rec: dict) -> None:
    print(json.dumps(rec), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", default="/tmp/distill-runs")
    p.add_argument("--train-examples", type=int, default=20000)
    p.add_argument("--students", nargs="+", default=["0,2,4", "0,3"], help="teacher layers per student")
    p.add_argument("--widths", nargs="*", default=[], help="narrower students, e.g. dim=192,num_heads=6")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-control", action="store_true")
    p.add_argument("--cache-speedup", action="store_true")
    p.add_argument("--speedup-examples", type=int, default=3000)
    args = p.parse_args()

    from zhixing.hub import load
    from zhixing.tasks.distill import DistillConfig, build_student, distill
    from zhixing.tasks.finetune import finetune, finetune_config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = subset_file(out, args.train_examples, args.seed)
    dev = DATA / "sst2/dev.tsv"
    loop = [f"out_dir={out}", f"lr={args.lr}", "batch_size=32", f"seed={args.seed}",
            f"num_threads={args.threads}", "progress=false", "plots=false", "device=cpu", "overwrite=true"]
    emit({"bench": "distill_sst2", "env": environment(args.threads), "train_file": str(train),
          "args": vars(args)})

    def settings(**kw):
        return finetune_config("classify", model=args.teacher, train=str(train), dev=str(dev), max_seq_len=64,
                               epochs=args.epochs, eval_every=args.epochs, **kw)

    cache = out / f"teacher-logits-{train.stem}.safetensors"
    specs = [f"layers={s}" for s in args.students] + list(args.widths)
    for spec in specs:
        tag = (spec.replace("layers=", "l").replace(",", "") if spec.startswith("layers=")
               else "w" + "-".join(item.split("=")[1] for item in spec.split(",")))  # w192-6-2
        dcfg = DistillConfig(teacher=args.teacher, student=spec, temperature=args.temperature,
                             alpha=args.alpha, teacher_cache=str(cache))
        t = time.perf_counter()
        s = distill(dcfg, settings(), name=f"kd-{tag}", train_overrides=loop)
        emit({"bench": "distill_sst2", "run": f"kd-{tag}", "student": spec, "kind": "distilled",
              "accuracy": s["dev"]["accuracy"], "wall_s": round(time.perf_counter() - t, 1),
              "train_time_s": s["train_time_s"], "steps": s["step"], **s["distill"],
              "model_dir": str(out / f"kd-{tag}" / "best")})
        if args.no_control:
            continue
        import torch

        torch.manual_seed(args.seed)  # the same initial student as the distilled run's
        student = build_student(load(args.teacher), spec)
        t = time.perf_counter()
        s = finetune(settings(), name=f"ft-{tag}", train_overrides=loop, model=student)
        emit({"bench": "distill_sst2", "run": f"ft-{tag}", "student": spec, "kind": "control (hard labels)",
              "accuracy": s["dev"]["accuracy"], "wall_s": round(time.perf_counter() - t, 1),
              "train_time_s": s["train_time_s"], "steps": s["step"],
              "model_dir": str(out / f"ft-{tag}" / "best")})

    if args.cache_speedup:  # one epoch on the same rows: live teacher vs cached logits (cache prebuilt)
        small = subset_file(out, args.speedup_examples, args.seed + 1)
        small_cache = out / f"teacher-logits-{small.stem}.safetensors"
        times = {}
        for mode in ("live", "cached"):  # the cached run builds the cache first (cache_s, outside the loop)
            dcfg = DistillConfig(teacher=args.teacher, student=f"layers={args.students[0]}",
                                 temperature=args.temperature, alpha=args.alpha,
                                 teacher_cache="" if mode == "live" else str(small_cache))
            cfg = finetune_config("classify", model=args.teacher, train=str(small), dev=str(dev),
                                  max_seq_len=64, epochs=1, eval_every=1, limit_dev=64)
            s = distill(dcfg, cfg, name=f"speed-{mode}", train_overrides=loop)
            times[mode] = s["train_time_s"]
            emit({"bench": "distill_sst2", "run": f"speed-{mode}", "examples": args.speedup_examples,
                  "train_time_s": s["train_time_s"], "cache_s": s["distill"].get("cache_s")})
        emit({"bench": "distill_sst2", "cache_speedup_per_epoch": round(times["live"] / times["cached"], 2),
              "live_s": times["live"], "cached_s": times["cached"]})


if __name__ == "__main__":
    sys.exit(main())
