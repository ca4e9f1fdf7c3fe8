"""Knowledge representation learning figures: train one model (TransE / RotatE / ComplEx) on FB15k-237 or
WN18RR with zhixing.apps.kg.embed, pick the step with the best filtered MRR on (a slice of) valid, and
report filtered MRR / Hits@1/3/10 on test (both directions), with the settings and the CPU wall time.

Prints the training records (stderr) and one JSON object (stdout) with everything needed to quote it:
dataset, settings, steps, wall times, threads, torch version, commit, date. The run directory
(safetensors + JSON) is written to --out.

Usage:
  python benchmarks/kg_embed.py --data ../shared/data/kg/WN18RR --out runs/kge-wn18rr-rotate \\
      model=rotate dim=100 negatives=128 batch_size=512 lr=0.002 gamma=6 alpha=0.5 max_time=600 \\
      steps=100000 eval_every=200 eval_valid=500
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from zhixing.apps.kg.embed import EmbedConfig, train
from zhixing.apps.kg.kge_data import load_kg

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="directory with train.txt / valid.txt / test.txt")
    parser.add_argument("--out", default=None, help="run directory to write (default: none)")
    parser.add_argument("settings", nargs="*", help="EmbedConfig key=value overrides")
    args = parser.parse_args()
    config = EmbedConfig().override(args.settings)
    started = time.perf_counter()
    data = load_kg(args.data)
    read_s = time.perf_counter() - started

    def log(record: dict) -> None:
        print(json.dumps(record), file=sys.stderr, flush=True)

    result = train(data, config, args.out, log=log)
    wall = time.perf_counter() - started
    test = result.summary.get("test", {})
    print(
        json.dumps(
            {
                "bench": "kg_embed",
                "impl": "zhixing",
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "dataset": Path(args.data).name,
                **config.to_dict(),
                "steps_done": result.summary["steps"],
                "best_step": result.summary["best_step"],
                "stopped_by": result.summary["stopped_by"],
                "valid_mrr": result.summary.get("valid_mrr"),
                "test_triples": test.get("count", 0) // 2,
                **{f"test_{k}": v for k, v in test.items() if k != "count"},
                "train_s": result.summary["train_s"],
                "valid_eval_s": result.summary["valid_eval_s"],
                "test_eval_s": result.summary.get("test_eval_s"),
                "read_s": round(read_s, 2),
                "wall_s": round(wall, 2),
                "steps_per_s": result.summary["steps_per_s"],
                "torch": torch.__version__,
                "commit": commit(),
                "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "out": args.out,
                "cpu_count": os.cpu_count(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
