"""Generation speed: zhixing `generate` vs transformers `generate`, same weights, same settings.

Prompt of 32 tokens -> 128 new tokens (no eos, so both produce exactly 128), batch 1 and 8, greedy
and top-p sampling. Per peer: time to first token (prefill + one token, measured as a generate call
with max_new_tokens=1) and decode speed ((total - TTFT) over the remaining 127 steps).
Peers alternate after a warm-up; each figure is the median of --reps runs.

    python benchmarks/generate.py                       # CPU: GPT-2-style, 6 layers, dim 512
    python benchmarks/generate.py --device cuda         # GPU: GPT-2 124M in bf16, + bandwidth floor

Prints one JSON object per measurement, then ratio lines (zhixing speed-up over transformers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zhixing.generation import generate  # noqa: E402
from zhixing.interop import from_hf  # noqa: E402

# HBM bandwidth from the data sheets (bytes/s), for the memory-bandwidth floor of a decode step
HBM = {"H100": 3.35e12, "H200": 4.8e12}


def build(size: str, dtype: torch.dtype, device: str):
    import transformers

    torch.manual_seed(0)
    layers, dim, heads = (6, 512, 8) if size == "small" else (12, 768, 12)  # "gpt2" = GPT-2 124M
    cfg = transformers.GPT2Config(n_layer=layers, n_embd=dim, n_head=heads, n_positions=1024,
                                  vocab_size=50257)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    ours = from_hf(hf).to(device=device, dtype=dtype).eval()
    hf = hf.to(device=device, dtype=dtype)
    return hf, ours


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def runners(hf, ours, ids: torch.Tensor, mode: str, new: int, graph: bool):
    sample = dict(do_sample=True, top_p=0.9) if mode == "top_p" else dict(do_sample=False)

    def hf_run(n: int):
        extra = dict(top_k=None, temperature=None, top_p=0.9 if mode == "top_p" else None)
        return hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                           pad_token_id=0, eos_token_id=None, **{**sample, **extra})

    def zx_run(n: int):
        return generate(ours, ids, max_new_tokens=n, eos_token_ids=[], pad_token_id=0, cuda_graph=graph,
                        **sample)

    return {"hf": hf_run, "zhixing": zx_run}


def measure(impls: dict, device: str, new: int, reps: int) -> dict[str, dict[str, float]]:
    for run in impls.values():  # warm-up (allocator, kernels, CUDA graph capture)
        run(new)
        run(1)
    times: dict[str, dict[str, list[float]]] = {k: {"total": [], "ttft": []} for k in impls}
    for _ in range(reps):
        for name, run in impls.items():  # alternate the peers so that machine noise hits both
            times[name]["ttft"].append(timed(lambda r=run: r(1), device))
            times[name]["total"].append(timed(lambda r=run: r(new), device))
    out = {}
    for name, t in times.items():
        total, ttft = statistics.median(t["total"]), statistics.median(t["ttft"])
        per_token = (total - ttft) / (new - 1)
        out[name] = {"total_s": total, "ttft_ms": ttft * 1e3, "ms_per_token": per_token * 1e3}
    return out


def bandwidth_floor(model, device: str) -> dict[str, float]:
    """Weight bytes / HBM bandwidth: no decode step can be faster than reading every weight once."""
    weight_bytes = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    name = torch.cuda.get_device_name(device)
    spec = next((bw for key, bw in HBM.items() if key in name), None)
    x = torch.empty(1 << 30, dtype=torch.uint8, device=device)  # measured: a 1 GiB device copy
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    dt = min(timed(lambda: y.copy_(x), device) for _ in range(10))
    measured = 2 * x.numel() / dt  # bytes read + written
    out = {"weight_bytes": weight_bytes, "measured_bw": measured,
           "floor_ms_measured": weight_bytes / measured * 1e3}
    if spec:
        out |= {"spec_bw": spec, "floor_ms_spec": weight_bytes / spec * 1e3}
    return out


def cpu_floor(model, reps: int = 20) -> dict[str, float]:
    """The least a batch-1 fp32 decode step can cost here: the matrix-vector products with every weight
    matrix of the model (each read once; the tied embedding once, as the output layer), timed alone.
    Whatever else an implementation does comes on top; the ratio of a peer's ms/token to this floor is
    the most any implementation with the same weights and arithmetic could beat it by."""
    mats = [p for p in {id(p): p for p in model.parameters()}.values() if p.dim() == 2]
    xs = [torch.randn(1, w.size(1)) for w in mats]
    weight_bytes = sum(w.numel() * w.element_size() for w in mats)

    def step():
        for w, x in zip(mats, xs):
            torch.nn.functional.linear(x, w)

    with torch.no_grad():
        for _ in range(3):
            step()
        dt = sorted(timed(step, "cpu") for _ in range(reps))[reps // 2]
    return {"weight_bytes": weight_bytes, "floor_ms_gemv": dt * 1e3, "gemv_bw": weight_bytes / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", choices=["small", "gpt2"], default=None, help="small: 6 layers / dim 512")
    ap.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--modes", nargs="+", default=["greedy", "top_p"])
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    size = args.size or ("gpt2" if gpu else "small")
    dtype = getattr(torch, args.dtype or ("bfloat16" if gpu else "float32"))
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    hf, ours = build(size, dtype, args.device)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip() or "unknown"
    device_name = torch.cuda.get_device_name(args.device) if gpu else "cpu"
    common = dict(bench="generate", device=device_name, model=size, dtype=str(dtype).split(".")[-1],
                  prompt=args.prompt, new=args.new, torch=torch.__version__,
                  transformers=transformers.__version__, commit=commit, threads=torch.get_num_threads())
    ratios = []
    for batch in args.batch:
        ids = torch.randint(100, 50000, (batch, args.prompt), generator=torch.Generator().manual_seed(batch))
        ids = ids.to(args.device)
        for mode in args.modes:
            impls = runners(hf, ours, ids, mode, args.new, graph=True)
            if gpu:  # our eager decode too, to show what the CUDA graph buys
                impls["zhixing-eager"] = runners(hf, ours, ids, mode, args.new, graph=False)["zhixing"]
            res = measure(impls, args.device, args.new, args.reps)
            for name, r in res.items():
                row = dict(common, impl=name, batch=batch, mode=mode)
                row.update({k: round(v, 4) for k, v in r.items()})
                row["tokens_per_s"] = round(batch * 1e3 / r["ms_per_token"], 1)
                print(json.dumps(row), flush=True)
            ratios.append((batch, mode, res["hf"]["ms_per_token"] / res["zhixing"]["ms_per_token"],
                           res["hf"]["ttft_ms"] / res["zhixing"]["ttft_ms"]))
    floor = bandwidth_floor(ours, args.device) if gpu else cpu_floor(ours)
    print(json.dumps(dict(common, impl="bandwidth-floor", **floor)), flush=True)
    for batch, mode, decode, ttft in ratios:
        print(f"ratio batch={batch} {mode}: zhixing decode {decode:.2f}x faster than transformers, "
              f"time to first token {ttft:.2f}x")


if __name__ == "__main__":
    main()
