"""The encoder compression table: size, parameters, CPU latency and SST-2 dev accuracy per model.

    flock /tmp/zhixing-cpu.lock .venv/bin/python benchmarks/compression_table.py \\
        runs/sst2-teacher runs/student-l3 [--int8] [--label NAME ...] [--threads 2]

Each MODEL is a zhixing model directory or a fine-tuning run (its best/). With --int8 each is also
measured after dynamic int8 quantization of its linear layers (zhixing.quant.quantize: int8 weights with
per-channel scales, activations quantized per batch at run time).

Measured per model, all in this one process, on the same inputs:
  size_mb      bytes on disk of the saved weights / 1e6: model.safetensors; a quantized model saved by
               zhixing.quant.save (int8 weights + scales; before quant: its serialised state dict)
  parameters   stored tensor elements (a quantized linear counts its int8 weight elements)
  ms_b1        median latency of one forward at batch 1 over the first --latency-n dev sentences
  ms_b32       median latency of one forward at batch 32 (padded to the batch's longest) over the dev set
  accuracy     SST-2 dev accuracy (872 sentences), max_seq_len 64, as `zhixing evaluate` computes it
               (zhixing.tasks' classify evaluation: length-sorted batches of 64)
  accuracy_b32 the same from the batch-32 latency batches (dataset order, padded to each batch's longest):
               equal to `accuracy` for float models; a dynamically quantized model quantizes each batch's
               activations with the batch's own range, padding included, so its accuracy moves with the
               batching (the gap between the two columns is that effect)
Latency: --threads torch threads (default 2), --warmup forwards first, then medians. Models are timed
one after another, each after its own warm-up; the last line gives each row's speed-up vs the first row.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

DATA = Path(os.environ.get("ZHIXING_DATA", "/work/shared/data"))
warnings.filterwarnings("ignore")


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A dynamic-int8 copy of `model` (the float model is left as it is)."""
    from zhixing.quant import quantize

    return quantize(copy.deepcopy(model), method="dynamic-int8")


def size_mb(model: torch.nn.Module, directory: Path | None) -> float:
    """MB of the model's weights file: its model.safetensors, or a quantized model saved as zhixing.quant
    saves it (else its serialised state dict)."""
    if directory is not None and (directory / "model.safetensors").is_file():
        return (directory / "model.safetensors").stat().st_size / 1e6
    try:
        from zhixing.quant import save
    except ImportError:
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        return buf.tell() / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        save(model, tmp)
        return (Path(tmp) / "model.safetensors").stat().st_size / 1e6


def count_parameters(model: torch.nn.Module) -> int:
    """Parameters the model stands for (a quantized layer's int8 weights count as its parameters)."""
    try:
        from zhixing.quant.methods import num_parameters
    except ImportError:
        pass
    else:
        return num_parameters(model)
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
def task_accuracy(model, dev: list, max_seq_len: int) -> float:
    """SST-2 dev accuracy through the classify task's own evaluation (what `zhixing evaluate` reports)."""
    from zhixing.tasks import get_task
    from zhixing.tasks.finetune import finetune_config

    cfg = finetune_config("classify", max_seq_len=max_seq_len)
    return float(get_task("classify").evaluate(model, model.tokenizer, dev, cfg)["accuracy"])


@torch.inference_mode()
def accuracy(model, dev_batches: list[dict], labels: list[int]) -> float:
    pred = torch.cat([model(**b).logits.argmax(-1) for b in dev_batches])
    return float((pred == torch.tensor(labels)).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="model directories or fine-tuning runs")
    p.add_argument("--label", action="append", default=[], help="a row name per model (default: its path)")
    p.add_argument("--int8", action="store_true", help="also measure each model after dynamic int8")
    p.add_argument("--data", choices=["sst2", "chnsenticorp"], default="sst2",
                   help="sst2: its dev set; chnsenticorp: the test split of benchmarks/finetune_chinese.py")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--latency-n", type=int, default=200, help="dev sentences timed at batch 1")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--out", default="", help="also append the JSON lines to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from finetune_common import chnsenticorp_splits

    from zhixing.hub import load, resolve
    from zhixing.tasks.data import read_table

    dev = read_table(DATA / "sst2/dev.tsv") if args.data == "sst2" else chnsenticorp_splits()[2]
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
                   "accuracy": round(task_accuracy(m, dev, args.max_seq_len), 4),
                   "accuracy_b32": round(accuracy(m, b32, gold), 4), "threads": args.threads,
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
