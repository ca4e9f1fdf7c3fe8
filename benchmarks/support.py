"""The customer-service assistant's figures (docs/applications.md, "Customer service"): one multi-task
MiniLM against three single-task ones.

    zhixing app support train configs/support/hwu64-minilm.yaml                       # runs/support-minilm
    zhixing app support train configs/support/hwu64-minilm.yaml tasks=intent name=support-intent
    ... tasks=slots name=support-slots;  ... tasks=sentiment name=support-sentiment
    .venv/bin/python benchmarks/support.py --run runs/support-minilm \
        --single runs/support-intent runs/support-slots runs/support-sentiment

One JSON line per run (`zhixing app support eval`'s figures: HWU64 test intent accuracy and slot F1, OOS
precision / recall, SST-2 dev accuracy, FAQ retrieval recall@1/5, latency per turn), a line timing the
encoders alone (the model forward per utterance, one at a time, median of --turns), and a final line with
the cost of three models against one: parameters, disk, forward latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
from finetune_common import emit, environment

warnings.filterwarnings("ignore")


def forward_ms(sm, texts: list[str]) -> float:
    """Median ms of one utterance through the encoder and its heads (analyze), after 5 warm-up calls."""
    for t in texts[:5]:
        sm.analyze(t)
    times = []
    for t in texts:
        start = time.perf_counter()
        sm.analyze(t)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def summary_of(run: str) -> dict:
    f = Path(run) / "summary.json"
    s = json.loads(f.read_text()) if f.is_file() else {}
    return {k: s.get(k) for k in ("train_time_s", "wall_time_s", "step", "best_step", "best_score") if k in s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the multi-task run directory")
    ap.add_argument("--single", nargs="*", default=[], help="single-task run directories (tasks=one head)")
    ap.add_argument("--turns", type=int, default=60, help="utterances timed per latency figure")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from zhixing.apps.support.data import read_hwu64
    from zhixing.apps.support.evaluate import evaluate_run, run_settings
    from zhixing.apps.support.model import SupportModel

    env = environment(args.threads)
    figures = evaluate_run(args.run, latency_turns=args.turns)
    emit(
        {
            "bench": "support",
            "impl": "zhixing-multitask",
            "device": "cpu",
            **figures,
            "training": summary_of(args.run),
            "settings": run_settings(args.run),
            **env,
        }
    )
    test = run_settings(args.run).get("hwu64_test")
    texts = [u.text for u in read_hwu64(test)][::7][: args.turns]
    multi = SupportModel.load(args.run)
    one = {
        "forward_ms": forward_ms(multi, texts),
        "parameters": multi.num_parameters()["total"],
        "disk_bytes": figures["disk_bytes"],
    }
    three = {"forward_ms": 0.0, "parameters": 0, "disk_bytes": 0}
    for run in args.single:
        single = evaluate_run(run, latency_turns=0)
        sm = SupportModel.load(run)
        task = single["tasks"][0]
        # a single-task model carries (untrained) heads of the others: count its body and its own head
        own = sm.num_parameters()["body"] + sm.num_parameters()[task]
        ms = forward_ms(sm, texts)
        emit(
            {
                "bench": "support",
                "impl": f"zhixing-single-{task}",
                "device": "cpu",
                **single,
                "forward_ms": ms,
                "own_parameters": own,
                "training": summary_of(run),
                "settings": run_settings(run),
                **env,
            }
        )
        three["forward_ms"] += ms
        three["parameters"] += own
        three["disk_bytes"] += single["disk_bytes"]
    emit(
        {
            "bench": "support-encoders",
            "impl": "zhixing",
            "device": "cpu",
            "turns": len(texts),
            "multitask_forward_ms": one["forward_ms"],
            **env,
        }
    )
    if len(args.single) == 3:
        emit(
            {
                "bench": "support-cost",
                "device": "cpu",
                "one_model": one,
                "three_models": three,
                "ratio_parameters": three["parameters"] / one["parameters"],
                "ratio_disk": three["disk_bytes"] / one["disk_bytes"],
                "ratio_forward_ms": three["forward_ms"] / one["forward_ms"],
            }
        )


if __name__ == "__main__":
    main()
