"""shakespeare_char on a CPU: zhixing's training loop against a plain transformers loop, and the full
`gpt-shakespeare-char-cpu` recipe against nanoGPT's CPU run.

    python benchmarks/shakespeare_char.py                 # throughput: zhixing vs transformers, alternating
    python benchmarks/shakespeare_char.py --only-full --full-runs 3 [--nanogpt DIR]
        # pairs of whole processes, alternating: `zhixing pretrain --config
        # configs/gpt-shakespeare-char-cpu.yaml` in a fresh directory next to nanoGPT's CPU run
        # (its train.py in DIR, else benchmarks/nanogpt_style.py)

Data as nanoGPT's shakespeare_char: the characters of tinyshakespeare sorted into a 65-id vocabulary,
the first 90% of the text for training and the last 10% for validation, batches of 12 random windows
of 64 characters drawn from one seeded generator — the same batches for both implementations.

Throughput compares the same GPT-2 architecture in both (4 layers, 4 heads, dim 128, context 64, biases,
tanh-GELU: what GPT2LMHeadModel can express), the same AdamW settings, the same batches, in the same
process, alternating rounds after a warm-up. Prints one JSON object per measurement and a final ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV0 = dict(os.environ)  # what the full runs' processes get: each chooses its own threading settings
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from zhixing.cli import set_process_defaults  # noqa: E402

set_process_defaults()  # the in-process throughput rounds: the zhixing command's policy, before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402

from zhixing.models import build_model  # noqa: E402
from zhixing.objectives import CausalLM  # noqa: E402
from zhixing.train import TrainConfig, Trainer, lr_at  # noqa: E402

BLOCK, BATCH, LAYERS, HEADS, DIM = 64, 12, 4, 4, 128


def load_text() -> tuple[np.ndarray, np.ndarray, int]:
    root = Path(os.environ.get("ZHIXING_DATA", ROOT.parent / "shared" / "data"))
    text = (root / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.int64)
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:], len(chars)


class CharBatches:
    """nanoGPT's get_batch as a loader with the zhixing.data contract (state = batches drawn)."""

    def __init__(self, data: np.ndarray, seed: int = 1337, batch: int = BATCH, block: int = BLOCK):
        self.data, self.seed, self.batch, self.block = torch.from_numpy(data), seed, batch, block
        self.pos = 0

    def get(self, k: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
        ix = torch.randint(len(self.data) - self.block, (self.batch,), generator=g)
        x = torch.stack([self.data[i: i + self.block] for i in ix.tolist()])
        return {"input_ids": x, "labels": x}

    def __iter__(self):
        while True:
            self.pos += 1
            yield self.get(self.pos - 1)

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos = state["pos"]

    def eval_batches(self, n: int) -> list[dict[str, torch.Tensor]]:
        return [self.get(10_000_000 + k) for k in range(n)]


def train_cfg(**kw) -> TrainConfig:
    base = dict(device="cpu", max_steps=2000, batch_size=BATCH, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                beta2=0.99, weight_decay=0.1, grad_clip=1.0, eval_interval=250, eval_batches=20,
                log_interval=10, progress=False, tensorboard=False, seed=1337)
    return TrainConfig(**{**base, **kw})


def zhixing_gpt(vocab: int, gpt2_arch: bool):
    torch.manual_seed(1337)
    extra = dict(activation="gelu_tanh", bias=True) if gpt2_arch else dict(activation="gelu", bias=False)
    return build_model("gpt-mini", vocab_size=vocab, dim=DIM, num_layers=LAYERS, num_heads=HEADS,
                       max_seq_len=BLOCK, dropout=0.0, **extra)


def hf_gpt(vocab: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1337)
    cfg = GPT2Config(vocab_size=vocab, n_positions=BLOCK, n_embd=DIM, n_layer=LAYERS, n_head=HEADS,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new",
                     bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = "sdpa"  # PyTorch's fused attention, as ours
    return GPT2LMHeadModel(cfg).train()


def hf_round(model, opt, batches: CharBatches, start: int, steps: int, warm: int) -> float:
    """A plain transformers loop (what a user writes by hand): tokens/s over steps after `warm`."""
    cfg = train_cfg(warmup_steps=0, decay_steps=2000)
    t0 = None
    for k in range(steps):
        if k == warm:
            t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(start + k, cfg)
        b = batches.get(start + k)
        loss = model(input_ids=b["input_ids"], labels=b["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (k + 1) % cfg.log_interval == 0:
            loss.item()  # the same logging cadence as ours
    return (steps - warm) * BATCH * BLOCK / (time.perf_counter() - t0)


def zhixing_round(model, batches: CharBatches, start: int, steps: int, warm: int) -> float:
    """zhixing's Trainer for `steps` steps (no evaluation, no run directory): tokens/s after `warm`."""
    batches.pos = start
    cfg = train_cfg(max_steps=start + steps, eval_interval=0, warmup_steps=0, decay_steps=2000)
    trainer = Trainer(model, CausalLM(), cfg, batches, None)
    trainer.step = start  # continue the schedule where the previous round stopped
    summary_t = {}
    orig = trainer._log_train

    def spy(log, loss_sum, n, lr, tok_s):
        summary_t[trainer.step] = time.perf_counter()
        orig(log, loss_sum, n, lr, tok_s)

    trainer._log_train = spy
    trainer.fit()
    first = start + warm
    return (start + steps - first) * BATCH * BLOCK / (summary_t[start + steps] - summary_t[first])


def throughput(rounds: int, steps: int, warm: int, hf_fused: bool = False) -> float:
    train, _, vocab = load_text()
    batches = CharBatches(train)
    ours = zhixing_gpt(vocab, gpt2_arch=True)
    theirs = hf_gpt(vocab)
    assert abs(ours.num_parameters() - sum(p.numel() for p in theirs.parameters())) < 10_000
    # A plain loop takes torch's default AdamW (a per-tensor loop on CPU); zhixing's Trainer uses the fused
    # kernel. --hf-fused gives the transformers loop the fused kernel too, leaving the model alone compared.
    opt = torch.optim.AdamW(theirs.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1,
                            fused=hf_fused or None)
    results = {"zhixing": [], "hf": []}
    start = 0
    for r in range(rounds):
        for impl in (("zhixing", "hf") if r % 2 == 0 else ("hf", "zhixing")):
            if impl == "zhixing":
                tps = zhixing_round(ours, batches, start, steps, warm)
            else:
                tps = hf_round(theirs, opt, batches, start, steps, warm)
            results[impl].append(tps)
            print(json.dumps({"bench": "shakespeare_char_throughput", "impl": impl, "device": "cpu",
                              "round": r, "tokens_per_s": round(tps, 1), "threads": torch.get_num_threads()}),
                  flush=True)
        start += steps
    ours_med, hf_med = statistics.median(results["zhixing"]), statistics.median(results["hf"])
    ratio = ours_med / hf_med
    print(json.dumps({"bench": "shakespeare_char_throughput", "ratio_zhixing_over_hf": round(ratio, 3),
                      "zhixing_tokens_per_s": round(ours_med, 1), "hf_tokens_per_s": round(hf_med, 1),
                      "hf_fused_adamw": hf_fused}),
          flush=True)
    return ratio


def timed_process(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run one command as its own process; its wall time from start to exit, and what it printed."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


def recipe_run(env: dict[str, str], overrides: list[str]) -> dict:
    """`zhixing pretrain --config configs/gpt-shakespeare-char-cpu.yaml` as a user runs it, in a fresh
    directory (so its wall time includes tokenizing the corpus and writing the shards)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "zhixing", "pretrain", "--config",
               str(ROOT / "configs" / "gpt-shakespeare-char-cpu.yaml"), "train.progress=false", *overrides]
        wall, _ = timed_process(cmd, Path(tmp), env)
        summary = json.loads((Path(tmp) / "runs" / "gpt-shakespeare-char-cpu" / "summary.json").read_text())
    out = {"bench": "shakespeare_char_cpu_full", "impl": "zhixing", "device": "cpu", "overrides": overrides,
           "steps": summary["step"], "val_loss": round(summary["final_val_loss"], 4),
           "dtype": summary.get("dtype"), "omp_wait_policy": summary.get("omp_wait_policy"),
           "train_s": round(summary["train_time_s"], 1),
           "wall_s": round(wall, 1)}
    print(json.dumps(out), flush=True)
    return out


def nanogpt_run(env: dict[str, str], nanogpt: str | None) -> dict:
    """The peer as its own process: nanoGPT's train.py with its README's CPU command when a nanoGPT checkout
    is given (its data/shakespeare_char/prepare.py must have run), else benchmarks/nanogpt_style.py."""
    if nanogpt:
        cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", "--device=cpu",
               "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64",
               "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
               "--lr_decay_iters=2000", "--dropout=0.0",
               "--out_dir=" + tempfile.mkdtemp()]
        wall, stdout = timed_process(cmd, Path(nanogpt), env)
        steps = [line for line in stdout.splitlines() if line.startswith("step ")]
        dts = [float(line.rsplit("time ", 1)[1].split("ms")[0]) for line in stdout.splitlines()
               if line.startswith("iter ")]
        out = {"impl": "nanogpt", "val_loss": float(steps[-1].rsplit("val loss ", 1)[1]),
               "median_iter_ms": round(statistics.median(dts), 2)}
    else:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "nanogpt_style.py")]
        wall, stdout = timed_process(cmd, ROOT, env)
        r = json.loads(stdout.strip().splitlines()[-1])
        out = {"impl": "nanogpt_style", "val_loss": r["val_loss"], "median_iter_ms": r["median_iter_ms"]}
    out = {"bench": "shakespeare_char_cpu_full", "device": "cpu", **out, "wall_s": round(wall, 1)}
    print(json.dumps(out), flush=True)
    return out


def full_runs(n: int, nanogpt: str | None, overrides: list[str]) -> None:
    """n pairs of whole processes — the recipe as shipped and the nanoGPT peer — the order alternating. Both
    get the environment this benchmark was started with (zhixing chooses its own OpenMP policy)."""
    env = dict(ENV0)
    ratios = []
    for k in range(n):
        order = ("zhixing", "peer") if k % 2 == 0 else ("peer", "zhixing")
        got = {}
        for impl in order:
            got[impl] = recipe_run(env, overrides) if impl == "zhixing" else nanogpt_run(env, nanogpt)
        ratios.append(got["peer"]["wall_s"] / got["zhixing"]["wall_s"])
    print(json.dumps({"bench": "shakespeare_char_cpu_full",
                      "wall_ratio_peer_over_zhixing": [round(r, 3) for r in ratios],
                      "median": round(statistics.median(ratios), 3)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=120, help="steps per round")
    ap.add_argument("--warm", type=int, default=20, help="untimed steps at the start of each round")
    ap.add_argument("--full", action="store_true",
                    help="+ full 2000-step runs: the gpt-shakespeare-char-cpu recipe next to nanoGPT's")
    ap.add_argument("--only-full", action="store_true")
    ap.add_argument("--full-runs", type=int, default=1, help="how many pairs of full runs")
    ap.add_argument("--nanogpt", metavar="DIR",
                    help="a nanoGPT checkout: time its train.py (else benchmarks/nanogpt_style.py)")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe overrides for the zhixing runs (e.g. train.dtype=float32)")
    ap.add_argument("--hf-fused", action="store_true", help="the transformers loop uses fused AdamW too")
    args = ap.parse_args()
    print(json.dumps({"bench": "env", "torch": torch.__version__, "python": platform.python_version(),
                      "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                      "loadavg": os.getloadavg()}), flush=True)
    if not args.only_full:
        throughput(args.rounds, args.steps, args.warm, args.hf_fused)
    if args.full or args.only_full:
        full_runs(args.full_runs, args.nanogpt, args.override)


if __name__ == "__main__":
    main()
