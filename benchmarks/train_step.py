"""Training-step throughput: forward + backward + AdamW step, zhixing vs transformers.

Both models hold identical weights (ours is converted from the transformers one with
zhixing.interop.from_hf) and see identical batches; the two alternate, round after round, after a
warm-up, and the median tokens/s of each is reported. zhixing's step is the one its Trainer takes,
which asks only for the loss: BERT's MLM head scores the labelled positions only, GPT's output layer and
cross-entropy run fused without materialising the logits (--full-logits: every position's logits, as
transformers computes them).
One JSON object per measurement, then a ratio line per (model, compile) pair.

    python benchmarks/train_step.py                       # CPU: GPT-2-style 6L/512, BERT-style 6L/512
    python benchmarks/train_step.py --floor               # + the fp32 floor: GEMMs + attention alone
    python benchmarks/train_step.py --device cuda --preset gpt2 --dtype bf16 --batch 16 --seq 1024 --compile

MFU (GPU only) uses nanoGPT's estimate: flops/token = 6N + 12·L·H·Q·T (N without position
embeddings), against the dense bf16 peak of an H100 SXM (989 TFLOP/s) unless --peak-tflops says otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zhixing.interop import from_hf  # noqa: E402
from zhixing.objectives import CausalLM, MaskedLM  # noqa: E402
from zhixing.train.loop import ObjectiveModule, resolve_dtype  # noqa: E402


def hf_model(kind: str, layers: int, dim: int, heads: int, seq: int, vocab: int):
    import transformers as T

    if kind == "gpt":
        cfg = T.GPT2Config(n_layer=layers, n_embd=dim, n_head=heads, n_positions=seq, vocab_size=vocab,
                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        return T.GPT2LMHeadModel(cfg)
    cfg = T.BertConfig(num_hidden_layers=layers, hidden_size=dim, num_attention_heads=heads,
                       intermediate_size=4 * dim, max_position_embeddings=max(seq, 512), vocab_size=vocab,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return T.BertForMaskedLM(cfg)


def batches(kind: str, n: int, batch: int, seq: int, vocab: int, device: str) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch, seq), generator=g)
        if kind == "gpt":
            b = {"input_ids": ids, "labels": ids}
        else:  # MLM: 15% of positions carry a label
            labels = torch.where(torch.rand(batch, seq, generator=g) < 0.15, ids, -100)
            b = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
        out.append({k: v.to(device) for k, v in b.items()})
    return out


def flops_per_token(model, layers: int, heads: int, head_dim: int, seq: int) -> float:
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    pos = next((m.weight.numel() for name, m in model.named_modules()
                if name.endswith(("wpe", "pos_embed"))), 0)
    return 6 * (n - pos) + 12 * layers * heads * head_dim * seq


class Runner:
    """One implementation's training step. With an `objective` (zhixing's Trainer path) the step is the
    Trainer's: the objective's summed losses through ObjectiveModule, divided by the target counts taken
    on the CPU batch; otherwise the model's own forward with labels (transformers' work)."""

    def __init__(self, name, model, data, args, objective=None):
        self.name, self.model, self.data, self.args = name, model, data, args
        # --dtype default: each side as its user gets it without asking — zhixing's Trainer resolves
        # train.dtype=auto (bf16 autocast on a GPU, or on a CPU that computes bf16 natively), a plain
        # transformers loop runs in fp32.
        if args.dtype == "default":
            self.bf16 = name != "hf" and resolve_dtype("auto", torch.device(args.device)) == torch.bfloat16
        else:
            self.bf16 = args.dtype == "bf16"
        fused = args.device == "cuda"
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, foreach=not fused)
        module = ObjectiveModule(model, objective) if objective is not None else model
        self.forward = torch.compile(module, mode=args.compile_mode) if args.compile else module
        self.counts = [objective.targets({k: v.cpu() for k, v in b.items()}) for b in data] \
            if objective is not None else None
        self.i = 0

    def loss(self, k: int):
        batch = self.data[k]
        if self.counts is None:
            return self.forward(**batch).loss
        return sum(s / n for s, n in zip(self.forward(batch), self.counts[k]))

    def step(self):
        k = self.i % len(self.data)
        self.i += 1
        with torch.autocast(self.args.device, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss(k)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss

    def timed(self, steps: int) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync()
        return time.perf_counter() - t0


def step_floor(model, kind: str, batch: int, seq: int, heads: int, reps: int = 3) -> dict[str, float]:
    """The least an fp32 training step of this architecture can cost here, whoever implements it: the
    matrix products of every linear layer (forward X·Wᵀ, backward dY·W and dYᵀ·X, at batch·seq rows)
    plus the attention kernel both sides call (SDPA forward + backward), timed alone. For BERT it counts
    the full-vocabulary MLM decoder, i.e. transformers' work. Norms, activations, the loss, the
    optimizer and framework overhead all come on top, so peer_step_ms / floor_ms bounds what any
    implementation doing the same arithmetic could gain over the peer."""
    import torch.nn.functional as F

    rows = batch * seq
    shapes = [(m.out_features, m.in_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    mats = [(torch.randn(rows, i), torch.randn(o, i), torch.randn(rows, o)) for o, i in shapes]
    dim = model.config.dim
    q, k, v = (torch.randn(batch, heads, seq, dim // heads, requires_grad=True) for _ in range(3))
    layers = model.config.num_layers

    def gemms():
        for x, w, dy in mats:
            x @ w.t(), dy @ w, dy.t() @ x

    def attention():
        for _ in range(layers):
            F.scaled_dot_product_attention(q, k, v, is_causal=kind == "gpt").sum().backward()

    def median(fn):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    with torch.no_grad():
        g = median(gemms)
    a = median(attention)
    flops = sum(6 * rows * o * i for o, i in shapes)
    return {"gemm_ms": g * 1e3, "attention_ms": a * 1e3, "floor_ms": (g + a) * 1e3,
            "gemm_gflops": flops / g / 1e9}


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run(kind: str, args) -> None:
    layers, dim, heads = args.layers, args.dim, args.heads
    seq, batch = args.seq or (256 if kind == "gpt" else 128), args.batch
    torch.manual_seed(0)
    ref = hf_model(kind, layers, dim, heads, seq, args.vocab).to(args.device)
    ours = from_hf(ref).to(args.device)
    ours.train(), ref.train()
    data = batches(kind, 4, batch, seq, args.vocab, args.device)
    # As zhixing's Trainer runs them (same loss): BERT's MLM head scores the labelled positions only;
    # GPT's output layer and cross-entropy run fused (fp32). --full-logits: the model's own forward.
    objective = None if args.full_logits else CausalLM() if kind == "gpt" else MaskedLM()
    pairs = (("zhixing", ours), ("hf", ref))
    runners = [Runner(name, m, data, args, objective if name == "zhixing" else None)
               for name, m in pairs if name in args.impls.split(",")]
    # Same weights, same batch -> same loss before any step (a guard that the race is fair).
    with torch.no_grad():
        a, b = Runner("check", ours, data, args, objective).loss(0).item(), ref(**data[0]).loss.item()
    assert abs(a - b) < 1e-3 * max(1.0, abs(b)), f"loss mismatch before timing: zhixing {a} vs hf {b}"
    times = {r.name: [] for r in runners}
    with kernels(args.sdpa):  # after the fp32 parity check: flash/cuDNN kernels take bf16 only
        for r in runners:
            for _ in range(args.warmup):
                r.step()
        for _ in range(args.rounds):
            for r in runners:
                times[r.name].append(r.timed(args.steps))
    fpt = flops_per_token(ours, layers, heads, dim // heads, seq)
    tokens = batch * seq * args.steps
    result = {}
    for r in runners:
        med = statistics.median(times[r.name])
        tps = tokens / med
        rec = {"bench": "train_step", "model": f"{kind}-{layers}L-{dim}", "impl": r.name,
               "device": device_name(args), "dtype": "bf16" if r.bf16 else "fp32",
               "compile": args.compile and (args.compile_mode or "default"),
               "sdpa": args.sdpa, "trainer_path": objective is not None and r.name == "zhixing",
               "batch": batch, "seq": seq, "vocab": args.vocab,
               "tokens_per_s": round(tps, 1), "step_ms": round(1000 * med / args.steps, 2),
               "rounds": [round(tokens / t, 1) for t in times[r.name]], "torch": torch.__version__}
        if args.device == "cuda":
            rec["mfu"] = round(tps * fpt / (args.peak_tflops * 1e12), 4)
        print(json.dumps(rec), flush=True)
        result[r.name] = tps
    if len(result) == 2:
        print(json.dumps({"bench": "train_step", "model": f"{kind}-{layers}L-{dim}", "compile": args.compile,
                          "ratio_zhixing_over_hf": round(result["zhixing"] / result["hf"], 3)}), flush=True)
    if args.device == "cpu" and args.floor:
        floor = step_floor(ours, kind, batch, seq, heads)
        rec = {"bench": "train_step", "model": f"{kind}-{layers}L-{dim}", "impl": "floor",
               **{k: round(v, 1) for k, v in floor.items()}}
        for name, tps in result.items():
            rec[f"{name}_step_over_floor"] = round(tokens / args.steps / tps * 1e3 / floor["floor_ms"], 3)
        print(json.dumps(rec), flush=True)


def kernels(choice: str):
    """Prefer one attention kernel (both implementations use SDPA, so both get it)."""
    from contextlib import nullcontext

    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION],
                "flash": [SDPBackend.FLASH_ATTENTION]}
    return sdpa_kernel(backends[choice]) if choice != "default" else nullcontext()


def device_name(args) -> str:
    if args.device == "cuda":
        return torch.cuda.get_device_name()
    import os

    return f"cpu x{os.cpu_count()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="gpt,bert", help="comma list of gpt,bert")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16", "default"], default="fp32",
                   help="autocast dtype of both; default: each side's default (zhixing: train.dtype=auto)")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--preset", choices=["gpt2"], help="GPT-2 124M shapes (12L / 768 / 12 heads)")
    p.add_argument("--seq", type=int, default=None, help="default: 256 (gpt), 128 (bert)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--sdpa", choices=["default", "cudnn", "flash"], default="default",
                   help="attention kernel preference (applies to both implementations)")
    p.add_argument("--full-logits", action="store_true",
                   help="zhixing returns every position's logits, as transformers does (default: the "
                        "Trainer's path: BERT's MLM head on labelled positions only, GPT: loss, no logits)")
    p.add_argument("--floor", action="store_true",
                   help="CPU: also time the step's matrix products and attention alone (the fp32 floor)")
    p.add_argument("--impls", default="zhixing,hf", help="which implementations to time")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    args = p.parse_args()
    if args.preset == "gpt2":
        args.layers, args.dim, args.heads = 12, 768, 12
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    for kind in args.models.split(","):
        run(kind, args)


if __name__ == "__main__":
    main()
