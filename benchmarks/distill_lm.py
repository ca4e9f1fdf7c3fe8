"""GPT language-model distillation on tinyshakespeare (characters): a 2-layer student's held-out loss,
distilled from a 4-layer teacher vs trained on the corpus alone for the same steps.

    flock /tmp/zhixing-cpu.lock .venv/bin/python benchmarks/distill_lm.py --out /tmp/distill-runs/lm

1. teacher: configs/gpt-shakespeare-char-cpu.yaml (4 layers x 128, 2000 steps; skipped if --teacher given)
2. four 2-layer students, each --steps steps with the recipe's optimizer settings, on the same shards
   (the corpus's last 10% held out, as the teacher's):
     scratch        random init, next-token cross-entropy only (kd_weight=0, alpha=1)
     distilled      random init, T²·KL(teacher ‖ student) + α·CE
     layers         teacher layers 0 and 2 copied, cross-entropy only
     layers+kd      teacher layers 0 and 2 copied, T²·KL + α·CE
The figure is each student's held-out cross-entropy (val_loss, nats/char) after the last step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def zhixing(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "zhixing.cli", *args], capture_output=True, text=True,
                         cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(res.stdout + res.stderr)
    return res.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/distill-runs/lm")
    p.add_argument("--teacher", default="", help="an existing teacher run (else trained here)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    out = Path(args.out)
    common = [f"train.out_dir={out}", "train.progress=false", "train.plots=false", "train.overwrite=true",
              f"train.num_threads={args.threads}"]
    teacher = args.teacher
    if not teacher:
        t = time.perf_counter()
        zhixing("pretrain", "--config", "configs/gpt-shakespeare-char-cpu.yaml", *common,
                f"data.cache_dir={out / 'cache'}", "name=gpt-teacher")
        teacher = str(out / "gpt-teacher")
        summary = json.loads((out / "gpt-teacher" / "summary.json").read_text())
        print(json.dumps({"bench": "distill_lm", "run": "teacher", "layers": 4,
                          "val_loss": summary.get("best_val_loss"),
                          "wall_s": round(time.perf_counter() - t, 1)}), flush=True)
    loop = [f"train.max_steps={args.steps}", "train.batch_size=12", "train.lr=1e-3", "train.min_lr=1e-4",
            "train.warmup_steps=100", "train.beta2=0.99", "train.weight_decay=0.1", "train.grad_clip=1.0",
            f"train.eval_interval={args.steps}", "train.eval_batches=50", "train.seed=0",
            "block_size=64", "val_fraction=0.1", "split=tail", f"cache_dir={out / 'cache'}"]
    kd = [f"temperature={args.temperature}", f"alpha={args.alpha}", "kd_weight=1"]
    ce = ["kd_weight=0", "alpha=1"]
    for name, student, loss in (("scratch", "num_layers=2", ce), ("distilled", "num_layers=2", kd),
                                ("layers", "layers=0,2", ce), ("layers+kd", "layers=0,2", kd)):
        t = time.perf_counter()
        zhixing("distill", "--task", "lm", "--teacher", teacher, "--student", student, "--corpus",
                "tinyshakespeare", *loss, *loop, *common, f"name=lm-{name.replace('+', '-')}")
        summary = json.loads((out / f"lm-{name.replace('+', '-')}" / "summary.json").read_text())
        print(json.dumps({"bench": "distill_lm", "run": name, "student": student, "loss": " ".join(loss),
                          "steps": summary["step"], "val_loss": summary.get("final_val_loss"),
                          "wall_s": round(time.perf_counter() - t, 1)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
