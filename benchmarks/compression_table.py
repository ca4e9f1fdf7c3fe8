"""The encoder compression table: size, parameters, CPU latency and SST-2 dev accuracy per model.

    flock /tmp/zhixing-cpu.lock .venv/bin/python benchmarks/compression_table.py \\
        runs/sst2-teacher runs/student-l3 [--int8] [--label NAME ...] [--threads 2]

Each MODEL is a zhixing model directory or a fine-tuning run (its best/). With --int8 each is also
measured after dynamic int8 quantization of its linear layers (zhixing.quant.quantize when present, else
PyTorch's `quantize_dynamic`: int8 weights, activations quantized per batch at run time).

Measured per model, all in this one process, on the same inputs:
  size_mb      bytes on disk of the saved weights (model.safetensors; a quantized model: its state dict
               serialised, weights int8 + scales) / 1e6
  parameters   stored tensor elements (a quantized linear counts its int8 weight elements)
  ms_b1        median latency of one forward at batch 1 over the first --latency-n dev sentences
  ms_b32       median latency of one forward at batch 32 (padded to the batch's longest) over the dev set
  accuracy     SST-2 dev accuracy (872 sentences), max_seq_len 64
Latency: --threads torch threads (default 2), --warmup forwards first, then medians. Models are timed
one after another, each after its own warm-up; the last line gives each row's speed-up vs the first row.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

DATA = Path(os.environ.get("ZHIXING_DATA", "/work/shared/data"))
warnings.filterwarnings("ignore")


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    try:
        from zhixing.quant import quantize  # the quant work of issue #17, when merged
    except ImportError:
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return quantize(model, method="dynamic-int8")


def size_mb(model: torch.nn.Module, directory: Path | None) -> float:
    if directory is not None and (directory / "model.safetensors").is_file():
        return (directory / "model.safetensors").stat().st_size / 1e6
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 1e6


def count_parameters(model: torch.nn.Module) -> int:
    total = 0
    for t in model.state_dict().values():
        if isinstance(t, torch.Tensor):
            total += t.numel()
        elif isinstance(t, tuple):  # packed quantized linear params: (weight, bias)
            total += sum(x.numel() for x in t if isinstance(x, torch.Tensor))
    return total


def batches(tokenizer, texts: list[str], size: int, max_len: int):
    from zhixing.tasks.classify import encode
    from zhixing.tasks.data import TextExample, collate

    feats = encode([TextExample(t, None, None) for t in texts], tokenizer, max_len)
    out = []
    for i in range(0, len(feats), size):
        b = collate(feats[i:i + size], tokenizer.pad_id)
        out.append({k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    return out


@torch.inference_mode()
def latency_ms(model, batch_list: list[dict], warmup: int) -> float:
    for b in batch_list[:warmup]:
        model(**b)
    times = []
    for b in batch_list:
        t = time.perf_counter()
        model(**b)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


@torch.inference_mode()
def accuracy(model, dev_batches: list[dict], labels: list[int]) -> float:
    pred = torch.cat([model(**b).logits.argmax(-1) for b in dev_batches])
    return float((pred == torch.tensor(labels)).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="model directories or fine-tuning runs")
    p.add_argument("--label", action="append", default=[], help="a row name per model (default: its path)")
    p.add_argument("--int8", action="store_true", help="also measure each model after dynamic int8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--latency-n", type=int, default=200, help="dev sentences timed at batch 1")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--out", default="", help="also append the JSON lines to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from zhixing.hub import load, resolve
    from zhixing.tasks.data import read_table

    dev = read_table(DATA / "sst2/dev.tsv")
    texts = [e.text for e in dev]
    rows = []
    labels = args.label + [None] * (len(args.models) - len(args.label))
    for path, label in zip(args.models, labels):
        model = load(path).eval()
        directory, _ = resolve(path)
        tok = model.tokenizer
        names = model.config.label_names or [str(i) for i in range(model.config.num_labels)]
        gold = [names.index(e.label) for e in dev]
        b1 = batches(tok, texts[:args.latency_n], 1, args.max_seq_len)
        b32 = batches(tok, texts, 32, args.max_seq_len)
        variants = [("fp32", model, directory)]
        if args.int8:
            variants.append(("int8", quantize_int8(model), None))
        for kind, m, d in variants:
            name = label or Path(path).name
            rec = {"bench": "compression_table", "model": name if kind == "fp32" else f"{name} + int8",
                   "path": str(path), "weights": kind, "layers": model.config.num_layers,
                   "dim": model.config.dim, "size_mb": round(size_mb(m, d), 2),
                   "parameters": count_parameters(m),
                   "ms_b1": round(latency_ms(m, b1, args.warmup), 3),
                   "ms_b32": round(latency_ms(m, b32, min(args.warmup, 3)), 2),
                   "accuracy": round(accuracy(m, b32, gold), 4), "threads": args.threads,
                   "torch": torch.__version__}
            rows.append(rec)
            line = json.dumps(rec)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
    base = rows[0]
    ratios = {r["model"]: {"speedup_b1": round(base["ms_b1"] / r["ms_b1"], 2),
                           "speedup_b32": round(base["ms_b32"] / r["ms_b32"], 2),
                           "size_ratio": round(r["size_mb"] / base["size_mb"], 3),
                           "accuracy_of_base": round(r["accuracy"] / base["accuracy"], 4)} for r in rows}
    print(json.dumps({"bench": "compression_table", "vs": base["model"], "ratios": ratios}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
