"""Instruction tuning (issue #19 §2): one GPT taught several tasks as instructions, FLAN-style — each task
phrased by several templates — and queried through its chat format on held-out examples with held-out
templates; next to task-specific fine-tuning of the same base; what the number of templates changes.

Four Chinese tasks on the Chinese review GPT:
    zhixing pretrain --config configs/gpt-reviews-zh-cpu.yaml     # the base GPT (at most 10 CPU minutes)
    python benchmarks/instruction_tuning.py --base runs/gpt-reviews-zh-cpu --tasks hotel,category,waimai,ner \
        --templates 0,1,3,6 --classify --single ner
All seven tasks (adding English intents, English → German translation and Tang poems by title and form) on a
base pretrained here on a corpus that mixes all their languages (`--pretrain-base STEPS`):
    python benchmarks/instruction_tuning.py --pretrain-base 750 --per-task 2000 --epochs-of tokens \
        --templates 0,1,6 --classify --single ner,translate,poem --out runs/instruct-mix

The tasks, their templates, data and scores: benchmarks/instruction_tasks.py. Each task has 8 templates: the
first 6 are the training pool (a run with k templates phrases every training example with one of the first k,
drawn at random), the last 2 are never trained on ("held-out templates"). Template 0 is seen by every run
("seen template"). k = 0 is the base model itself, queried the same way.

A query is the chat rendering of one user message (the run's chat template, saved with its tokenizer:
"问：...\\n答："); the reply is greedy and cut at the first newline; an option task counts the option it
starts with (else the first option it contains; else invalid, which is wrong).

Task-specific fine-tuning (`--classify`): `zhixing.tasks.finetune` classify on the same base GPT (the
classifier reads the last token), one run per option task, on the same training texts, dev = 10% of them;
for the tasks with free replies (NER, translation, poems: no such head on a GPT) a single-task SFT with one
template (`--single`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from instruction_tasks import (
    HELD_OUT,
    KIND,
    LOADERS,
    METRIC,
    SEEN,
    TEMPLATES,
    answer,
    base_corpus,
    instruction,
    load_tasks,
    max_new_tokens,
    score,
)

# A Chinese transcript: the user's turn after 问：, the reply after 答：, one line each.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}问：{{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}答：{{ m['content'] }}\n"
    "{% else %}{{ raise_exception('unknown role ' ~ m['role']) }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}答：{% endif %}"
)


def write_sft_data(tasks: dict, k: int, path: Path, budget: int, seed: int) -> int:
    """JSONL conversations: every training example of every task, phrased by one of templates 0..k-1."""
    rng = random.Random(seed)
    lines = []
    for task, (train, _) in tasks.items():
        for text, label in train:
            lines.append({"messages": [
                {"role": "user", "content": instruction(task, rng.randrange(k), text, budget, label)},
                {"role": "assistant", "content": answer(task, label)}]})
    rng.shuffle(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return len(lines)


def evaluate(model_dir: str, tasks: dict, budget: int, batch: int = 64) -> dict:
    """Each task's score (instruction_tasks.score) under the seen template and each held-out template."""
    import torch

    from zhixing.generation.api import generate
    from zhixing.generation.chat import render
    from zhixing.hub import load

    model = load(model_dir).eval()
    tok = model.tokenizer
    out = {}
    for task, (_, test) in tasks.items():
        gold = [answer(task, label) for _, label in test]
        for template in (SEEN, *HELD_OUT):
            t = time.perf_counter()
            prompts = [render([{"role": "user", "content": instruction(task, template, text, budget, label)}],
                              CHAT_TEMPLATE, tokenizer=tok) for text, label in test]
            replies = []
            with torch.inference_mode():
                for s in range(0, len(prompts), batch):
                    longest = max(len(tok.encode(p, add_special_tokens=False).ids)
                                  for p in prompts[s:s + batch])
                    limit = max_new_tokens(task, gold[s:s + batch], model.config.max_seq_len - longest)
                    replies += generate(model, prompts[s:s + batch], tokenizer=tok, max_new_tokens=limit,
                                        do_sample=False, stop_strings=["\n"]).texts
            out[f"{task}/t{template}"] = {**score(task, replies, gold), "n": len(gold), "sample": replies[:3],
                                          "eval_s": round(time.perf_counter() - t, 1)}
    return out


def summarize(scores: dict) -> dict:
    """Means over tasks of their metrics (accuracy, F1, BLEU, form %: a plain average, as FLAN reports)."""
    names = sorted({key.split("/")[0] for key in scores}, key=list(TEMPLATES).index)
    seen = [scores[f"{t}/t{SEEN}"]["accuracy"] for t in names]
    held = [scores[f"{t}/t{h}"]["accuracy"] for t in names for h in HELD_OUT]
    per_task = {t: round(sum(scores[f"{t}/t{h}"]["accuracy"] for h in HELD_OUT) / len(HELD_OUT), 2)
                for t in names}
    return {"seen_template_mean": round(sum(seen) / len(seen), 2),
            "held_out_templates_mean": round(sum(held) / len(held), 2), "held_out_by_task": per_task}


def stopped_if_interrupted(summary: dict) -> dict:
    """A training stage that Ctrl-C / SIGTERM stopped saves its checkpoint and returns; the benchmark then
    ends too, rather than go on to the next stage with a half-trained model."""
    if summary.get("status") == "interrupted":
        sys.exit(f"interrupted at step {summary.get('step')}; the stage's checkpoint is saved")
    return summary


def packed_tokens(base: str, data: Path) -> int:
    """Tokens of the conversations in `data` as the SFT objective packs them (chat-rendered, the base's
    tokenizer, one end-of-text each)."""
    from zhixing.generation.chat import render
    from zhixing.hub import load

    tok = load(base).tokenizer
    lines = data.read_text(encoding="utf-8").splitlines()
    return sum(len(tok.encode(render(json.loads(x)["messages"], CHAT_TEMPLATE, tokenizer=tok),
                              add_special_tokens=False).ids) + 1 for x in lines)


def sft(args, tasks: dict, k: int, name: str = "") -> str:
    """Instruction-tune the base with k templates a task; returns the run directory."""
    from zhixing.recipes.pretrain import run_recipe
    from zhixing.train.config import Recipe

    root = Path(args.out)
    name = name or f"instruct-k{k}"
    data = root / f"data-{name}.jsonl"
    n = write_sft_data(tasks, k, data, args.budget, args.seed)
    template = root / "chat-zh.jinja"
    template.write_text(CHAT_TEMPLATE, encoding="utf-8")
    steps = args.epochs * n // args.batch_size
    if args.epochs_of == "tokens":
        steps = -(-args.epochs * packed_tokens(args.base, data) // (args.block_size * args.batch_size))
    recipe = Recipe.from_dict({
        "name": name,
        "model": {"init": args.base},
        "data": {"objective": "sft", "corpus": str(data), "chat_template": str(template),
                 "block_size": args.block_size, "val_fraction": 0.02},
        "train": {"max_steps": steps, "batch_size": args.batch_size, "lr": args.lr, "min_lr": args.lr / 10,
                  "warmup_steps": max(1, steps // 20), "beta2": 0.99, "weight_decay": 0.1,
                  "eval_interval": max(1, steps // 4), "eval_batches": 20, "log_interval": 50,
                  "seed": args.seed, "out_dir": str(root), "progress": False, "plots": False},
    }, source=f"instruction_tuning k={k}")
    t = time.perf_counter()
    summary = stopped_if_interrupted(run_recipe(recipe, progress=False))
    print(json.dumps({"bench": "instruction_tuning", "sft": name, "conversations": n, "steps": steps,
                      "train_s": round(time.perf_counter() - t, 1),
                      "val_loss": summary.get("best_val_loss", summary.get("val_loss"))}), flush=True)
    return str(root / name)


def classify(args, tasks: dict) -> dict:
    """Task-specific fine-tuning of the same base: one classifier per option task on the same training texts
    (their first `--budget` characters)."""
    from zhixing.tasks.data import TextExample
    from zhixing.tasks.finetune import finetune, finetune_config

    out = {}
    for task, (train, test) in tasks.items():
        if KIND[task] != "choice":
            continue
        examples = [TextExample(text[:args.budget], None, answer(task, label), f"{task}:{i}")
                    for i, (text, label) in enumerate(train)]
        n_dev = len(examples) // 10
        test_ex = [TextExample(text[:args.budget], None, answer(task, label), f"{task}-test:{i}")
                   for i, (text, label) in enumerate(test)]
        cfg = finetune_config("classify", model=args.base, warmup_ratio=0.1, max_seq_len=128,
                              epochs=args.epochs)
        t = time.perf_counter()
        s = finetune(cfg, name=f"classify-{task}", train_examples=examples[n_dev:],
                     dev_examples=examples[:n_dev], test_examples=test_ex,
                     train_overrides=[f"out_dir={args.out}", f"batch_size={args.batch_size}",
                                      f"seed={args.seed}", "progress=false", "plots=false", "device=cpu"])
        out[task] = {"test_accuracy": round(100 * s["test"]["accuracy"], 2),
                     "dev_accuracy": round(100 * s["dev"]["accuracy"], 2), "best_step": s["dev"]["step"],
                     "wall_s": round(time.perf_counter() - t, 1)}
        print(json.dumps({"bench": "instruction_tuning", "classify": task, **out[task]}), flush=True)
    return out


def pretrain_base(args) -> str:
    """A character GPT on instruction_tasks.base_corpus (every task's language; no test text), trained for
    `args.pretrain_base` steps of 16 × 256 tokens (the cosine schedule spans them); returns its run
    directory."""
    from zhixing.recipes.pretrain import run_recipe
    from zhixing.train.config import Recipe

    root = Path(args.out)
    corpus = root / "base-corpus.jsonl"
    n = base_corpus(corpus)
    recipe = Recipe.from_dict({
        "name": "base-mix",
        "model": {"preset": "gpt-tiny", "dim": 192, "num_layers": 4, "num_heads": 6, "max_seq_len": 256,
                  "dropout": 0.0},
        "data": {"corpus": str(corpus), "tokenizer_kind": "char", "vocab_size": 9000, "val_fraction": 0.01,
                 "block_size": 256},
        "train": {"max_steps": args.pretrain_base, "batch_size": 16, "lr": 2e-3,
                  "min_lr": 2e-4, "warmup_steps": 150, "beta2": 0.99, "weight_decay": 0.1,
                  "eval_interval": 500, "eval_batches": 40, "log_interval": 100, "seed": args.seed,
                  "out_dir": str(root), "progress": False, "plots": False},
    }, source="instruction_tuning --pretrain-base")
    t = time.perf_counter()
    summary = stopped_if_interrupted(run_recipe(recipe, progress=False))
    print(json.dumps({"bench": "instruction_tuning", "base": "base-mix", "documents": n,
                      "wall_s": round(time.perf_counter() - t, 1), "steps": summary.get("step"),
                      "val_loss": summary.get("best_val_loss", summary.get("val_loss"))}), flush=True)
    return str(root / "base-mix")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", help="the GPT run or model directory to instruction-tune")
    ap.add_argument("--pretrain-base", type=int, default=0, metavar="STEPS",
                    help="instead of --base: pretrain one on a corpus mixing every task's language first")
    ap.add_argument("--tasks", default=",".join(LOADERS), help=f"of {', '.join(LOADERS)}")
    ap.add_argument("--templates", default="0,1,3,6",
                    help="numbers of training templates a task (0 = the base model, not tuned)")
    ap.add_argument("--classify", action="store_true", help="also task-specific fine-tuning of the base")
    ap.add_argument("--single", default="", help="tasks to also SFT alone, one template (e.g. ner,translate)")
    ap.add_argument("--per-task", type=int, default=4000, help="training examples a task")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--epochs-of", choices=("conversations", "tokens"), default="conversations",
                    help="an epoch is conversations / batch size steps (one a row, the first run's rule) or "
                         "the packed tokens / (block size × batch size) steps")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--budget", type=int, default=110, help="characters of a user message, at most")
    ap.add_argument("--block-size", type=int, default=0, help="SFT rows (default: the base's context)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/instruct")
    ap.add_argument("--limit-test", type=int, default=0, help="score only the first N test examples a task")
    args = ap.parse_args()
    if bool(args.base) == bool(args.pretrain_base):
        ap.error("give exactly one of --base DIR and --pretrain-base STEPS")

    tasks = load_tasks([t for t in args.tasks.split(",") if t], args.per_task, args.seed)
    if args.limit_test:
        tasks = {t: (tr, te[:args.limit_test]) for t, (tr, te) in tasks.items()}
    print(json.dumps({"bench": "instruction_tuning", "train": {t: len(v[0]) for t, v in tasks.items()},
                      "test": {t: len(v[1]) for t, v in tasks.items()},
                      "metrics": {t: METRIC[KIND[t]] for t in tasks}}), flush=True)
    if args.pretrain_base:
        args.base = pretrain_base(args)
    if not args.block_size:
        from zhixing.hub import load

        args.block_size = load(args.base).config.max_seq_len
    results = {}
    for k in [int(x) for x in args.templates.split(",")]:
        model_dir = args.base if k == 0 else sft(args, tasks, k)
        t = time.perf_counter()
        scores = evaluate(model_dir, tasks, args.budget)
        results[k] = {**summarize(scores), "scores": scores, "eval_s": round(time.perf_counter() - t, 1)}
        print(json.dumps({"bench": "instruction_tuning", "templates": k, **results[k]}, ensure_ascii=False),
              flush=True)
    if args.classify:
        results["classify"] = classify(args, tasks)
    for task in filter(None, args.single.split(",")):
        if task not in tasks:
            ap.error(f"--single {task}: not one of --tasks")
        alone = {task: tasks[task]}
        scores = evaluate(sft(args, alone, 1, name=f"single-{task}"), alone, args.budget)
        results[f"single-{task}"] = {"scores": scores}
        print(json.dumps({"bench": "instruction_tuning", "single": task, "scores": scores},
                         ensure_ascii=False), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=1),
                                                 encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
