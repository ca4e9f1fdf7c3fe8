"""Pruning the fine-tuned SST-2 encoder: dev accuracy vs the share of attention heads / FFN neurons removed,
with and without a short recovery fine-tune; magnitude pruning during fine-tuning; a PNG of the curves.

    flock /tmp/zhixing-cpu.lock .venv/bin/python benchmarks/prune_sst2.py /tmp/zx-shared/runs/sst2-teacher \\
        --out /tmp/prune-runs --png docs/images/pruning_sst2.png

Protocol (one process, seed 0):
- importance (zhixing.compress.prune) on --samples training sentences (seeded shuffle of SST-2 train, so
  the dev set plays no part in choosing what goes), batches of 32, max_seq_len 64; computed ONCE on the
  unpruned model, so the model at fraction f drops the f least important heads (nested sets);
- heads: by gradient importance (Michel et al. 2019) and, as a control, in a seeded random order (each
  layer still keeps one head); FFN neurons: by gradient importance and by weight magnitude;
- accuracy: SST-2 dev (872 sentences), the task's own evaluation (`zhixing evaluate`'s);
- recovery: fine-tune each pruned model listed in --recover for --recover-steps steps (batch 32, lr 3e-5,
  10% warmup, linear decay, seed 0) on SST-2 train, then dev accuracy; fraction 0 is the control (the same
  extra fine-tune of the unpruned model);
- magnitude pruning: --magnitude sparsities, each a --recover-steps fine-tune of the unpruned model with
  `MagnitudePruning` (cubic schedule from step 0 to 80% of the steps, masks every 10 steps): dev accuracy,
  measured sparsity, dense safetensors size vs the computed bitmap + values size (`sparse_nbytes`);
- head- and FFN-pruned models (importance) at --save fractions are written under --out/models
  (heads-30, ffn-50, ...) for benchmarks/compression_table.py.
Prints one JSON object per measurement; --png draws accuracy vs fraction pruned.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time
import warnings
from pathlib import Path

import torch

DATA = Path(os.environ.get("ZHIXING_DATA", "/work/shared/data"))
warnings.filterwarnings("ignore")
# PRUNE_FRACTIONS=0,0.5 for a quick try
FRACTIONS = [float(x) for x in os.environ.get("PRUNE_FRACTIONS", "0,.1,.2,.3,.4,.5,.6,.7,.8,.9").split(",")]


def emit(rec: dict, out: Path) -> None:
    line = json.dumps({"bench": "prune_sst2", **rec})
    print(line, flush=True)
    with open(out / "prune_sst2.jsonl", "a", encoding="utf-8") as f:
        f.write(line + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the fine-tuned SST-2 run or model directory")
    p.add_argument("--out", default="/tmp/prune-runs")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--recover", default="0.5,0.9,0,0.3,0.7", help="head fractions to recover ('' = none)")
    p.add_argument("--recover-steps", type=int, default=200)
    p.add_argument("--magnitude", default="0.5,0.8", help="sparsities for magnitude pruning ('' = none)")
    p.add_argument("--save", default="0.3,0.5", help="head fractions whose models are saved")
    p.add_argument("--png", default="")
    p.add_argument("--skip-curves", action="store_true",
                   help="only recovery / magnitude pruning (the models of an earlier run's curves in --out)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from zhixing.compress import prune as P
    from zhixing.errors import ConfigError
    from zhixing.objectives import Classification
    from zhixing.tasks.data import collate
    from zhixing.tasks.finetune import finetune, load_task_run

    model, spec, cfg = load_task_run(args.model)
    tok, names = model.tokenizer, model.config.label_names
    train = spec.read(str(DATA / "sst2/train.tsv"), cfg)
    dev = spec.read(str(DATA / "sst2/dev.tsv"), cfg)
    sample = random.Random(0).sample(train, args.samples)
    feats = spec.encode_train(sample, tok, cfg, names)
    batches = [collate(feats[i:i + 32], tok.pad_id) for i in range(0, len(feats), 32)]

    def acc(m) -> float:
        return round(float(spec.evaluate(m, tok, dev, cfg)["accuracy"]), 4)

    recover = [float(x) for x in args.recover.split(",") if x]
    if not args.skip_curves:
        base_acc = acc(model)
        emit({"what": "teacher", "accuracy": base_acc, "params": model.num_parameters(),
              "heads": model.config.num_layers * model.config.num_heads, "ffn_neurons":
              model.config.num_layers * model.config.ffn_dim}, out)
        t = time.perf_counter()
        heads = P.head_importance(model, batches, Classification())
        t_heads = time.perf_counter() - t
        t = time.perf_counter()
        neurons = P.neuron_importance(model, batches, Classification())
        t_neurons = time.perf_counter() - t
        emit({"what": "importance", "samples": args.samples, "head_seconds": round(t_heads, 1),
              "neuron_seconds": round(t_neurons, 1), "head_importance": [[round(x, 4) for x in s.tolist()]
                                                                         for s in heads]}, out)
        rng = torch.Generator().manual_seed(0)
        random_heads = [torch.rand(len(s), generator=rng) for s in heads]
        magnitude = P.neuron_importance(model, method="magnitude")
        curves = {"heads (importance)": ("heads", heads), "heads (random order)": ("heads", random_heads),
                  "FFN neurons (importance)": ("neurons", neurons),
                  "FFN neurons (magnitude)": ("neurons", magnitude)}
        save = {float(x) for x in args.save.split(",") if x}
        for curve, (kind, scores) in curves.items():
            for f in FRACTIONS:
                m = copy.deepcopy(model)
                try:
                    chosen = P.select(scores, fraction=f, what=kind)
                except ConfigError as e:  # more than the one-per-layer rule allows (tiny models)
                    emit({"what": curve, "fraction": f, "skipped": str(e)}, out)
                    continue
                (P.prune_heads if kind == "heads" else P.prune_neurons)(m, chosen)
                a = acc(m)
                emit({"what": curve, "fraction": f, "removed": sum(map(len, chosen.values())), "accuracy": a,
                      "params": m.num_parameters(), "heads_per_layer": m.config.heads_per_layer,
                      "ffn_dims": m.config.ffn_dims}, out)
                prefix = {"heads (importance)": "heads", "FFN neurons (importance)": "ffn"}.get(curve)
                if prefix and (f in save or (prefix == "heads" and f in recover)):
                    d = out / "models" / f"{prefix}-{int(f * 100):02d}"
                    m.save_pretrained(d)
                    tok.save(d)

    steps = args.recover_steps
    train_args = [f"max_steps={steps}", "lr=3e-5", "batch_size=32", "seed=0", f"eval_interval={steps}",
                  f"out_dir={out / 'runs'}", "log_interval=50", "progress=false", "plots=false",
                  "overwrite=true"]
    for f in recover:
        t = time.perf_counter()
        saved = out / "models" / f"heads-{int(f * 100):02d}"  # written by the curves
        if f == 0 and not saved.is_dir():  # the control: the unpruned model
            model.save_pretrained(saved)
            tok.save(saved)
        s = finetune(spec.settings({**cfg.to_dict(), "model": str(saved), "warmup_ratio": 0.1}),
                     name=f"recover-heads-{int(f * 100):02d}", train_overrides=train_args,
                     train_examples=train, dev_examples=dev)
        a = round(float(s["dev"]["accuracy"]), 4)
        emit({"what": "heads (importance) + recovery", "fraction": f, "accuracy": a, "steps": steps,
              "seconds": round(time.perf_counter() - t, 1), "run": s["run_dir"]}, out)

    for target in [float(x) for x in args.magnitude.split(",") if x]:
        src = out / "models" / "unpruned"
        if not src.is_dir():
            model.save_pretrained(src)
            tok.save(src)
        cb = P.MagnitudePruning(target, start_step=0, end_step=int(0.8 * steps), every=10)
        t = time.perf_counter()
        s = finetune(spec.settings({**cfg.to_dict(), "model": str(src), "warmup_ratio": 0.1}),
                     name=f"magnitude-{int(target * 100)}", train_overrides=train_args, callbacks=[cb],
                     train_examples=train, dev_examples=dev)
        best = Path(s["run_dir"]) / "best"
        m, _, _ = load_task_run(best)
        emit({"what": "magnitude pruning", "target_sparsity": target, "sparsity": round(P.sparsity(m), 4),
              "accuracy": round(float(s["dev"]["accuracy"]), 4), "steps": steps,
              "safetensors_mb": round((best / "model.safetensors").stat().st_size / 1e6, 2),
              "sparse_mb": round(P.sparse_nbytes(m) / 1e6, 2),
              "dense_fp32_mb": round(sum(x.numel() * 4 for x in m.parameters()) / 1e6, 2),
              "seconds": round(time.perf_counter() - t, 1)}, out)

    if args.png:
        plot(out / "prune_sst2.jsonl", Path(args.png))


def plot(jsonl: Path, path: Path) -> None:
    """Accuracy vs fraction pruned, from the records so far (so a partial run still gives its curves)."""
    import matplotlib

    records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    base = next(r["accuracy"] for r in records if r["what"] == "teacher")
    samples = next(r["samples"] for r in records if r["what"] == "importance")
    results: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if "fraction" in r and "accuracy" in r:
            results.setdefault(r["what"], []).append((r["fraction"], r["accuracy"]))

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"heads (importance)": "o-", "heads (random order)": "o:",
              "heads (importance) + recovery": "s--", "FFN neurons (importance)": "^-",
              "FFN neurons (magnitude)": "^:"}
    for name, pts in results.items():
        ax.plot([f for f, _ in pts], [a for _, a in pts], styles.get(name, "-"), label=name)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.axhline(base, color="black", lw=0.8, ls="--", label=f"unpruned ({base:.3f})")
    ax.set_xlabel("fraction pruned (of all heads / of all FFN neurons)")
    ax.set_ylabel("SST-2 dev accuracy")
    ax.set_title(f"Pruning fine-tuned all-MiniLM-L6-v2 (importance on {samples} train sentences)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(json.dumps({"bench": "prune_sst2", "png": str(path)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
