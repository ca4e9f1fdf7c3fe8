"""The gpt-shakespeare-char-cpu training step on a CPU: OpenMP wait policies and precision / compile variants.

    python benchmarks/cpu_step.py --variants fp32,bf16,compile,compile-bf16     # one process, alternating
    python benchmarks/cpu_step.py --policies PASSIVE,spin2000,default,ACTIVE    # one process per policy

The step is the Trainer's (the CausalLM objective's summed loss through the model, backward, gradient
clipping, fused AdamW) on the recipe's model (4 layers, 4 heads, dim 128, context 64, batch 12, vocabulary
65). Variants alternate in rounds of `--steps` steps after a warm-up (which includes compiling); the ratio
is the median over rounds of the fp32 time over the variant's. A policy is an environment set before torch
starts: PASSIVE / ACTIVE (`OMP_WAIT_POLICY`), spinN (`GOMP_SPINCOUNT=N`, libgomp), default (neither).
One JSON object per measurement (issue #23; benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def policy_env(name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if name in ("PASSIVE", "ACTIVE"):
        env["OMP_WAIT_POLICY"] = name
    elif name.startswith("spin"):
        env["GOMP_SPINCOUNT"] = name.removeprefix("spin")
    elif name != "default":
        raise SystemExit(f"--policies: unknown {name!r}; use PASSIVE, ACTIVE, default or spinN")
    return env


def variants(names: list[str], rounds: int, steps: int) -> dict[str, float]:
    import torch

    sys.path.insert(0, str(ROOT))
    from zhixing.models import build_model
    from zhixing.objectives import CausalLM
    from zhixing.train import TrainConfig, build_optimizer

    x = torch.randint(0, 65, (12, 64), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": x, "labels": x}
    runners = {}
    for name in names:
        torch.manual_seed(0)
        model = build_model("gpt-mini", vocab_size=65, dim=128, num_layers=4, num_heads=4, max_seq_len=64,
                            activation="gelu", bias=False, dropout=0.0)
        objective = CausalLM()
        opt = build_optimizer(model, TrainConfig(lr=1e-3, weight_decay=0.1, beta2=0.99, device="cpu"),
                              torch.device("cpu"))
        forward = (lambda m, o: (lambda b: o.losses(m, b)))(model, objective)
        if "compile" in name:
            forward = torch.compile(forward)
        bf16 = "bf16" in name
        counts = objective.targets(batch)

        def step(model=model, opt=opt, forward=forward, bf16=bf16, counts=counts):
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with ctx:
                sums = forward(batch)
            loss = sum(s / max(n, 1) for s, n in zip(sums, counts))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()

        t0 = time.perf_counter()
        for _ in range(5):
            step()
        warm = round(time.perf_counter() - t0, 2)
        print(json.dumps({"bench": "cpu_step", "variant": name, "warmup_s": warm}), flush=True)
        runners[name] = step
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for name, step in runners.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - t0) / steps * 1000)
    base = names[0]
    out = {}
    for name in names:
        ratio = statistics.median(b / t for b, t in zip(times[base], times[name]))
        out[name] = statistics.median(times[name])
        print(json.dumps({"bench": "cpu_step", "variant": name, "step_ms": round(out[name], 2),
                          f"speed_vs_{base}": round(ratio, 3),
                          "rounds_ms": [round(t, 2) for t in times[name]],
                          "threads": torch.get_num_threads(),
                          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                          "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"), "loadavg": os.getloadavg()}),
              flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="fp32,bf16,compile,compile-bf16")
    ap.add_argument("--policies", help="time the fp32 step once per policy, each in its own process")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20, help="steps per round")
    args = ap.parse_args()
    if args.policies:
        for name in args.policies.split(","):
            cmd = [sys.executable, __file__, "--variants", "fp32", "--rounds", str(args.rounds), "--steps",
                   str(args.steps)]
            done = subprocess.run(cmd, env=policy_env(name), capture_output=True, text=True, check=True)
            rec = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps({"bench": "cpu_step_policy", "policy": name, "step_ms": rec["step_ms"],
                              "rounds_ms": rec["rounds_ms"]}), flush=True)
        return
    variants(args.variants.split(","), args.rounds, args.steps)


if __name__ == "__main__":
    main()
