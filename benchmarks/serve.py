"""Serving throughput: continuous batching vs one request at a time vs transformers `generate` per request.

A small GPT (GPT-2-style, transformers' GPT2LMHeadModel converted to zhixing, so both peers hold the same
weights) is served by two `zhixing serve` subprocesses on 127.0.0.1, side by side — one with --max-batch 64
(continuous batching), one with --max-batch 1 (the same server, one request at a time) — and the two are
measured alternately, level by level. For 1, 8, 32
and 64 concurrent streaming clients (each sends --rounds requests one after the other: prompt of ~16
tokens, --max-tokens new tokens, greedy, ignore_eos so every request makes exactly that many), it
measures aggregate generated tokens/s, time to first token and request latency (p50 / p99).
The third peer is transformers' `generate` called per request, one at a time, in this process: its time
per request is measured on --hf-requests requests, and its figures at C clients follow from it (the same
throughput at every level; the k-th of C requests arriving together finishes after k requests' time).

    flock /tmp/zhixing-cpu.lock python benchmarks/serve.py              # ~3 minutes on 2 CPU cores

Prints one JSON object per measurement, then the ratio lines. Loopback only; every request and the whole
run are bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(directory: Path, layers: int, dim: int, heads: int, vocab: int):
    """A random GPT-2-style model with a byte-level BPE tokenizer, saved as a zhixing model directory;
    returns the transformers twin (same weights)."""
    import pydoc_data.topics

    import transformers

    from zhixing.interop import from_hf
    from zhixing.tokenizers import Tokenizer

    text = [t for t in pydoc_data.topics.topics.values()]
    tok = Tokenizer.train(
        iter(text),
        kind="byte_bpe",
        vocab_size=vocab,
        min_frequency=2,
        show_progress=False,
        special_tokens={"bos": "<s>", "eos": "</s>", "pad": "<pad>"},
    )
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=layers,
        n_embd=dim,
        n_head=heads,
        n_positions=512,
        vocab_size=tok.vocab_size,
        bos_token_id=tok.bos_id,
        eos_token_id=tok.eos_id,
    )
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    model = from_hf(hf)
    model.save_pretrained(directory)
    tok.save(directory)
    return hf, tok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_dir: Path, max_batch: int, max_tokens: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zhixing.cli",
                "serve",
                f"gpt={model_dir}",
                "--port",
                str(self.port),
                "--max-batch",
                str(max_batch),
                "--max-queue",
                "1024",
                "--max-tokens",
                str(max_tokens),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def __enter__(self):
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


async def one_request(client, url: str, prompt: list[int], max_tokens: int) -> dict:
    body = {
        "model": "gpt",
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    ttft, tokens, done = None, 0, False
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            return {"ok": False, "status": r.status_code}
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            chunk = json.loads(line[6:])
            if chunk.get("choices") and ttft is None and chunk["choices"][0]["text"]:
                ttft = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return {
        "ok": done and tokens == max_tokens,
        "ttft": ttft or (time.perf_counter() - t0),
        "latency": time.perf_counter() - t0,
        "tokens": tokens,
    }


async def load(
    url: str, clients: int, rounds: int, prompts: list[list[int]], max_tokens: int, timeout: float
) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def worker(c: int) -> list[dict]:
            out = []
            for r in range(rounds):
                try:
                    out.append(
                        await one_request(client, url, prompts[(c * rounds + r) % len(prompts)], max_tokens)
                    )
                except Exception as e:  # counted as a failure, never hidden
                    out.append({"ok": False, "error": repr(e)})
            return out

        t0 = time.perf_counter()
        results = [
            x
            for xs in await asyncio.wait_for(asyncio.gather(*(worker(c) for c in range(clients))), timeout)
            for x in xs
        ]
        wall = time.perf_counter() - t0
    return summarize(results, wall)


def summarize(results: list[dict], wall: float) -> dict:
    ok = [r for r in results if r["ok"]]
    lat = sorted(r["latency"] for r in ok) or [float("nan")]
    ttft = sorted(r["ttft"] for r in ok) or [float("nan")]

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

    return {
        "requests": len(results),
        "failed": len(results) - len(ok),
        "tokens_per_s": round(sum(r["tokens"] for r in ok) / wall, 1),
        "wall_s": round(wall, 2),
        "ttft_p50_ms": round(1000 * pct(ttft, 0.5), 1),
        "ttft_p99_ms": round(1000 * pct(ttft, 0.99), 1),
        "latency_p50_s": round(pct(lat, 0.5), 3),
        "latency_p99_s": round(pct(lat, 0.99), 3),
    }


@torch.no_grad()
def hf_per_request(hf, prompts: list[list[int]], max_tokens: int, n: int) -> list[float]:
    """Seconds of transformers generate for each of n requests, one at a time."""
    times = []
    for i in range(n):
        ids = torch.tensor([prompts[i % len(prompts)]])
        t0 = time.perf_counter()
        out = hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_tokens,
            min_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=0,
        )
        times.append(time.perf_counter() - t0)
        assert out.shape[1] - ids.shape[1] == max_tokens
    return times


def hf_serial(per_request: float, clients: int, max_tokens: int) -> dict:
    """transformers generate called per request, one at a time, when `clients` requests arrive together:
    its throughput is one request's at every level; the k-th request waits for the k-1 before it. Computed
    from the measured time per request (running 64 x 2 requests through it would take minutes)."""
    latencies = [per_request * (k + 1) for k in range(clients)]
    results = [{"ok": True, "latency": x, "ttft": x, "tokens": max_tokens} for x in latencies]
    return {**summarize(results, per_request * clients), "computed_from_s_per_request": round(per_request, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="1,8,32,64")
    ap.add_argument("--rounds", type=int, default=2, help="requests each client sends, one after another")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--timeout", type=float, default=600, help="seconds for one load level (all clients)")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--hf-requests", type=int, default=8, help="requests timed through transformers generate")
    args = ap.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "gpt"
        hf, tok = build(model_dir, args.layers, args.dim, args.heads, args.vocab)
        params = sum(p.numel() for p in hf.parameters())
        g = torch.Generator().manual_seed(0)
        prompts = [
            torch.randint(3, tok.vocab_size, (int(n),), generator=g).tolist()
            for n in torch.randint(8, 24, (256,), generator=g)
        ]
        common = {
            "bench": "serve",
            "device": "cpu",
            "params": params,
            "layers": args.layers,
            "dim": args.dim,
            "max_tokens": args.max_tokens,
            "rounds": args.rounds,
            "torch": torch.__version__,
        }
        rows: dict[tuple[str, int], dict] = {}
        # Both servers run side by side (an idle one only waits) and the peers alternate level by level,
        # so that the machine's drift (a shared CPU) hits them alike; transformers' time per request is
        # sampled between the levels too.
        hf_times: list[float] = []
        with (
            Server(model_dir, 64, args.max_tokens) as batched,
            Server(model_dir, 1, args.max_tokens) as single,
        ):
            servers = {"zhixing-batched": batched, "zhixing-one-at-a-time": single}
            for server in servers.values():
                asyncio.run(load(server.url, 2, 1, prompts, 8, args.timeout))  # warm-up
            if not args.skip_hf:
                hf_per_request(hf, prompts, 8, 2)  # warm-up
            for c in levels:
                for impl, server in servers.items():
                    row = asyncio.run(
                        load(server.url, c, args.rounds, prompts, args.max_tokens, args.timeout)
                    )
                    rows[impl, c] = row = {**common, "impl": impl, "clients": c, **row}
                    print(json.dumps(row), flush=True)
                if not args.skip_hf:
                    hf_times += hf_per_request(
                        hf, prompts, args.max_tokens, max(1, args.hf_requests // len(levels))
                    )
        if not args.skip_hf:
            per_request = statistics.median(hf_times)
            for c in levels:
                row = {
                    **common,
                    "impl": "transformers-generate",
                    "clients": c,
                    **hf_serial(per_request, c, args.max_tokens),
                }
                rows["transformers-generate", c] = row
                print(json.dumps(row), flush=True)
        for c in levels:
            b = rows["zhixing-batched", c]["tokens_per_s"]
            one = rows["zhixing-one-at-a-time", c]["tokens_per_s"]
            line = {"ratio": "batched/one-at-a-time", "clients": c, "value": round(b / one, 2)}
            print(json.dumps(line))
            if ("transformers-generate", c) in rows:
                hf_tps = rows["transformers-generate", c]["tokens_per_s"]
                print(
                    json.dumps(
                        {
                            "ratio": "batched/transformers-generate",
                            "clients": c,
                            "value": round(b / hf_tps, 2),
                        }
                    )
                )
        print(
            json.dumps(
                {
                    "failed_total": sum(r.get("failed", 0) for r in rows.values()),
                    "p50_ttft_batched_64_ms": rows.get(("zhixing-batched", 64), {}).get("ttft_p50_ms"),
                    "median_ratio": statistics.median(
                        rows["zhixing-batched", c]["tokens_per_s"]
                        / rows["zhixing-one-at-a-time", c]["tokens_per_s"]
                        for c in levels
                    ),
                }
            )
        )


if __name__ == "__main__":
    main()
