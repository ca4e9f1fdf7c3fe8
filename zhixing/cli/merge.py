"""`zhixing merge RUN --out DIR`: a LoRA run's adapter folded into its base model, written as a plain
model."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("merge")
@click.argument("run")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the merged model (config.json + model.safetensors + tokenizer).")
def merge_cmd(run: str, out: Path) -> None:
    """Fold a LoRA run's updates into the weights (W + (alpha/r) B A) and write a plain zhixing model.

    \b
    zhixing finetune --task classify --model MODEL --train train.tsv method=lora name=sst2-lora
    zhixing merge runs/sst2-lora --out models/sst2-merged
    zhixing predict models/sst2-merged --text "a fine film"

    The task settings (task.json) go along, so pipelines and `predict` treat it as the run.
    """
    from zhixing.tasks.finetune import merge_run

    path = merge_run(run, out)
    click.echo(f"merged model written to {path}")
