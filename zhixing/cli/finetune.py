"""`zhixing finetune`, `zhixing evaluate RUN --data FILE`, `zhixing predict RUN --input FILE|TEXT`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

EPILOG = """\b
Examples:
  zhixing finetune --task classify --model MODEL_DIR --train sst2/train.tsv --dev sst2/dev.tsv \\
      epochs=2 max_seq_len=64 train.lr=5e-5 name=sst2
  zhixing finetune --task ner --model runs/bert --train conll2003/train.txt --dev conll2003/valid.txt \\
      --test conll2003/test.txt scheme=bioes layer_decay=0.9
  zhixing finetune --task qa --model runs/bert --train cmrc2018_trial.json --dev cmrc2018_dev.json \\
      max_seq_len=384 doc_stride=128
\b
Keys: task settings (epochs, max_seq_len, layer_decay, class_weights, metric, scheme, doc_stride, ...),
train.* (the loop: lr, batch_size, warmup_steps, early_stopping_patience, seed, device, ...) and name=.
"""




def split_overrides(task: str, items: tuple[str, ...]) -> tuple[dict[str, str], list[str], str | None]:
    """key=value items -> (task settings, train.* overrides without the prefix, name)."""
    from zhixing.config import nearest
    from zhixing.tasks import get_task
    from zhixing.train.config import TrainConfig

    keys = [k for k in get_task(task).config.field_names() if k != "task"]
    settings, train, name = {}, [], None
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected key=value, e.g. epochs=2 or train.lr=3e-5")
        key, value = (s.strip() for s in item.split("=", 1))
        if key == "name":
            name = value
        elif key.startswith("train."):
            if key[6:] not in TrainConfig.field_names():
                train_keys = [f"train.{k}" for k in TrainConfig.field_names()]
                raise click.ClickException(f"unknown key {key!r}{nearest(key, train_keys)}")
            train.append(f"{key[6:]}={value}")
        elif key in keys:
            settings[key] = value
        else:
            hint = (f" (did you mean 'train.{key}'?)" if key in TrainConfig.field_names()
                    else nearest(key, keys))
            raise click.ClickException(f"unknown key {key!r}{hint}; task {task} takes {', '.join(keys)}; "
                                       "loop keys take the prefix train.")
    return settings, train, name


TASK_NAMES = ["classify", "ner", "qa"]  # zhixing.tasks.TASKS, listed here so --help needs no import


@click.command("finetune", epilog=EPILOG)
@click.option("--task", type=click.Choice(TASK_NAMES), required=True)
@click.option("--model", required=True, help="Pretrained model: zhixing / Hugging Face directory or run.")
@click.option("--train", "train_file", required=True, help="Training file.")
@click.option("--dev", "dev_file", required=True, help="Development file (model selection).")
@click.option("--test", "test_file", default="", help="Optional test file, scored with the best model.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def finetune_cmd(task: str, model: str, train_file: str, dev_file: str, test_file: str,
                 overrides: tuple[str, ...]) -> None:
    """Fine-tune an encoder for classification, NER or extractive QA with the training loop.

    Writes runs/<name>/ (best/ holds the best dev model, task.json the task settings) and prints the
    dev (and test) metrics of the best model.
    """
    from zhixing.tasks import get_task
    from zhixing.tasks.finetune import finetune

    settings, train, name = split_overrides(task, overrides)
    fields = {**settings, "model": model, "train": train_file, "dev": dev_file, "test": test_file}
    cfg = get_task(task).settings(fields, source="finetune")
    summary = finetune(cfg, name=name or f"finetune-{task}", train_overrides=train)
    for split in ("dev", "test"):
        if split in summary:
            text = ", ".join(f"{k} {v:.4f}" for k, v in summary[split].items() if isinstance(v, float))
            click.echo(f"{split}: {text}")
    click.echo(f"run: {summary['run_dir']}")


@click.command("evaluate")
@click.argument("run")
@click.option("--data", required=True, help="A labelled file in the task's format.")
@click.option("--task", type=click.Choice(TASK_NAMES), default=None,
              help="Needed only for a model directory without task.json.")
def evaluate_cmd(run: str, data: str, task: str | None) -> None:
    """Score a fine-tuned RUN on a labelled file; prints the metrics as JSON."""
    from zhixing.tasks.finetune import load_task_run

    model, spec, cfg = load_task_run(run, task)
    examples = spec.read(data, cfg)
    if model.config.label_names:
        spec.check_labels(examples, model.config.label_names, data)
    metrics = spec.evaluate(model, model.tokenizer, examples, cfg)
    click.echo(json.dumps({k: v for k, v in metrics.items() if v is not None}, ensure_ascii=False))


@click.command("predict")
@click.argument("run")
@click.option("--input", "source", required=True,
              help="A file (one text per line; JSONL with question/context for qa) or a text.")
@click.option("--task", type=click.Choice(TASK_NAMES), default=None)
def predict_cmd(run: str, source: str, task: str | None) -> None:
    """Predict with a fine-tuned RUN; writes one JSON object per input line to stdout (JSONL)."""
    from zhixing.tasks.finetune import load_task_run
    from zhixing.tasks.pipeline import Pipeline

    def inputs(kind: str) -> list:
        path = Path(source)
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else [source]
        lines = [x for x in lines if x.strip()]
        if kind != "qa":
            return [json.loads(x)["text"] if x.lstrip().startswith("{") else x for x in lines]
        out = []
        for i, x in enumerate(lines, 1):
            try:
                obj = json.loads(x)
            except json.JSONDecodeError:
                raise click.ClickException(f"{source}:{i}: qa input is one JSON object per line with "
                                           "question and context") from None
            out.append(obj)
        return out

    _, spec, _ = load_task_run(run, task)
    pipe = Pipeline(spec.name, run)
    items = inputs(spec.name)
    for item, res in zip(items, pipe(items)):
        if isinstance(res, dict):
            res = {k: v for k, v in res.items() if k != "n_best"}
        sys.stdout.write(json.dumps({"input": item, "output": res}, ensure_ascii=False) + "\n")
