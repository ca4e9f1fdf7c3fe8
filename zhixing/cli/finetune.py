"""`zhixing finetune`, `zhixing evaluate RUN --data FILE`, `zhixing predict RUN --input FILE|--text TEXT`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from zhixing.cli import exit_if_interrupted

EPILOG = """\b
Examples:
  zhixing finetune --task classify --model MODEL_DIR --train sst2/train.tsv --dev sst2/dev.tsv \\
      epochs=2 max_seq_len=64 train.lr=5e-5 name=sst2
  zhixing finetune --task ner --model runs/bert --train conll2003/train.txt --dev conll2003/valid.txt \\
      --test conll2003/test.txt scheme=bioes layer_decay=0.9
  zhixing finetune --task qa --model runs/bert --train cmrc2018_trial.json --dev cmrc2018_dev.json \\
      max_seq_len=384 doc_stride=128
  zhixing finetune --task classify --model MODEL_DIR --train train.tsv --dev dev.tsv \\
      method=lora lora.r=8 lora.alpha=16 lora.targets=query,value       (or method=prefix prefix.tokens=20)
\b
Keys: task settings (epochs, max_seq_len, layer_decay, class_weights, metric, scheme, doc_stride, ...),
train.* (the loop: lr, batch_size, warmup_steps, early_stopping_patience, seed, device, ...) and name=.
  Parameter-efficient: method=full|lora|prompt_tuning|ptuning|prefix, lora.r, lora.alpha, lora.dropout,
  lora.targets, prompt_tuning.tokens / ptuning.tokens / prefix.tokens, ptuning.encoder=mlp|lstm
  Finding hyperparameters: --find-lr (range test), seeds=3 (mean ± std),
  --search --trials 20 search.lr=1e-5:3e-4:log search.batch_size=16,32 search.epochs=2:5:int
"""




def train_item(key: str, value: str) -> str:
    """`train.KEY`=value -> the loop override "KEY=value"; an unknown KEY is an error naming the nearest."""
    from zhixing.config import nearest
    from zhixing.train.config import TrainConfig

    if key[6:] not in TrainConfig.field_names():
        train_keys = [f"train.{k}" for k in TrainConfig.field_names()]
        raise click.ClickException(f"unknown key {key!r}{nearest(key, train_keys)}")
    return f"{key[6:]}={value}"


def split_overrides(task: str, items: tuple[str, ...]
                    ) -> tuple[dict[str, str], list[str], str | None, dict[str, str]]:
    """key=value items -> (task settings, train.* overrides without the prefix, name, search.* space)."""
    from zhixing.config import nearest
    from zhixing.tasks import get_task
    from zhixing.tasks.base import PEFT_KEYS
    from zhixing.train.config import TrainConfig

    keys = [k for k in get_task(task).config.field_names() if k != "task"]
    settings, train, name, space = {}, [], None, {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected key=value, e.g. epochs=2 or train.lr=3e-5")
        key, value = (s.strip() for s in item.split("=", 1))
        key = PEFT_KEYS.get(key, key)  # lora.r=8 -> lora_r
        if key == "name":
            name = value
        elif key.startswith("search."):
            space[key[7:]] = value  # checked by zhixing.tasks.search.parse_space
        elif key.startswith("train."):
            train.append(train_item(key, value))
        elif key in keys:
            settings[key] = value
        else:
            hint = (f" (did you mean 'train.{key}'?)" if key in TrainConfig.field_names()
                    else nearest(key, keys))
            raise click.ClickException(f"unknown key {key!r}{hint}; task {task} takes {', '.join(keys)}; "
                                       "loop keys take the prefix train.")
    return settings, train, name, space


def find_lr_options(f):
    """--find-lr, --find-lr-steps and --find-lr-range: the range test's flags (finetune and pretrain)."""
    options = [
        click.option("--find-lr", is_flag=True,
                     help="Run the learning-rate range test instead of training: writes "
                          "runs/<name>/lr_find.png and prints the suggested train.lr."),
        click.option("--find-lr-steps", default=200, show_default=True, help="Steps of the range test."),
        click.option("--find-lr-range", default="1e-7:1", show_default=True, metavar="START:END",
                     help="The rates the range test sweeps (exponentially)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def parse_range(text: str) -> tuple[float, float]:
    """--find-lr-range START:END -> (start, end)."""
    try:
        start, end = (float(x) for x in text.split(":"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected START:END, e.g. 1e-7:1",
                                 param_hint="--find-lr-range") from None
    return start, end


def echo_lr_find(result, out) -> None:
    """The range test's outcome in a few lines (shared by finetune and pretrain)."""
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.suggestion is not None:
        click.echo(f"suggested lr: {result.suggestion:.2e} (steepest descent of the smoothed loss)")
    if result.lr_at_min is not None:
        click.echo(f"lowest loss at lr {result.lr_at_min:.2e} (its tenth: {result.lr_at_min / 10:.2e})")
    stop = "stopped when the loss diverged" if result.stopped_early else "swept the whole range"
    click.echo(f"{len(result.lrs)} steps, {stop}; curve: {out / 'lr_find.png'}")


def echo_search(report: dict) -> None:
    """The search's table, one trial a line, and the best trial."""
    metric = report["metric"]
    for row in report["trials"]:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row["params"].items())
        value = row[metric]
        shown = f"{value:.4f}" if isinstance(value, float) else "-"
        click.echo(f"trial {row['trial']:>3}  {row['state']:<8}  {metric} {shown}  {params}")
    if "best_trial" in report:
        click.echo(f"best: trial {report['best_trial']} ({metric} {report['best_value']:.4f}); "
                   f"run: {report['best_run']}")


TASK_NAMES = ["classify", "ner", "qa", "relation"]  # zhixing.tasks.TASKS, here so --help needs no import


@click.command("finetune", epilog=EPILOG)
@click.option("--task", type=click.Choice(TASK_NAMES), required=True)
@click.option("--model", required=True, help="Pretrained model: zhixing / Hugging Face directory or run.")
@click.option("--train", "train_file", required=True, help="Training file.")
@click.option("--dev", "dev_file", required=True, help="Development file (model selection).")
@click.option("--test", "test_file", default="", help="Optional test file, scored with the best model.")
@find_lr_options
@click.option("--search", "do_search", is_flag=True,
              help="Hyperparameter search with Optuna over search.KEY=SPEC items (default: lr, batch_size, "
                   "epochs); resumable: run the same command again to continue.")
@click.option("--trials", default=20, show_default=True, help="Trials of --search.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def finetune_cmd(task: str, model: str, train_file: str, dev_file: str, test_file: str, find_lr: bool,
                 find_lr_steps: int, find_lr_range: str, do_search: bool, trials: int,
                 overrides: tuple[str, ...]) -> None:
    """Fine-tune an encoder for classification, NER or extractive QA with the training loop.

    Writes runs/<name>/ (best/ holds the best dev model, task.json the task settings) and prints the
    dev (and test) metrics of the best model; with seeds=N, N runs <name>-seed<k> and their mean ± std.
    """
    from zhixing.tasks import get_task
    from zhixing.tasks.finetune import finetune

    settings, train, name, space = split_overrides(task, overrides)
    if space and not do_search:
        raise click.UsageError(f"search.{next(iter(space))}=... needs --search")
    fields = {**settings, "model": model, "train": train_file, "dev": dev_file, "test": test_file}
    cfg = get_task(task).settings(fields, source="finetune")
    name = name or f"finetune-{task}"
    if find_lr:
        from zhixing.tasks.finetune import find_lr as run_find_lr

        start, end = parse_range(find_lr_range)
        result, out = run_find_lr(cfg, name=name, train_overrides=train, start_lr=start, end_lr=end,
                                  steps=find_lr_steps)
        echo_lr_find(result, out)
        return
    if do_search:
        from zhixing.tasks.search import search

        report = search(cfg, space=space or None, trials=trials, name=name, train_overrides=train)
        echo_search(report)
        return
    summary = finetune(cfg, name=name, train_overrides=train)
    exit_if_interrupted(summary)
    if "runs" in summary:  # seeds=N
        for split in ("dev", "test"):
            if split in summary:
                s = summary[split]
                values = ", ".join(f"{v:.4f}" for v in s["values"])
                click.echo(f"{split} {summary['metric']}: {s['mean']:.4f} ± {s['std']:.4f} "
                           f"over {len(s['values'])} seeds ({values})")
        click.echo(f"best run: {summary['best_run']}")
        return
    chosen = summary.get("defaults") or {}
    if chosen:
        parts = [f"lr {chosen['lr']:.1e}" if "lr" in chosen else "",
                 f"{chosen['epochs']:g} epochs" if "epochs" in chosen else "",
                 f"early stopping after {chosen['early_stopping_patience']} evaluations without gain"
                 if "early_stopping_patience" in chosen else "",
                 f"{chosen['pooling']} pooling" if "pooling" in chosen else "",
                 f"casing types {'on' if chosen['casing'] else 'off'}" if "casing" in chosen else "",
                 f"rotary positions extended to {chosen['positions']}" if "positions" in chosen else ""]
        click.echo("defaults for this model and data (docs/finetuning.md, Defaults): "
                   + ", ".join(p for p in parts if p))
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


JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


def read_inputs(path: Path, task: str) -> tuple[list, str]:
    """The inputs of `predict --input FILE` and how they were read: plain text, one input per line, or
    (a .jsonl file; always for qa) one JSON object per line with "text" (qa: "question" and "context").
    Errors name the file and line."""
    from zhixing.data.corpora import read_lines
    from zhixing.errors import DataError

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (to predict on a text itself, pass --text TEXT)")
    as_json = task == "qa" or path.suffix.lower() in JSON_SUFFIXES
    need = ("question", "context") if task == "qa" else ("text",)
    items: list = []
    for i, line in read_lines(path, error=DataError):
        if not line.strip():
            continue
        if not as_json:
            items.append(line)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{i}: not valid JSON ({e.msg}); this file holds one JSON object per "
                            f"line with {' and '.join(need)}") from None
        missing = [k for k in need if not isinstance(obj, dict) or not isinstance(obj.get(k), str)]
        if missing:
            names = " and ".join(repr(k) for k in need)
            found = "missing or not a string" if isinstance(obj, dict) else \
                f"not an object but {type(obj).__name__}"
            raise DataError(f"{path}:{i}: expected a JSON object with a string {names}; {found}: "
                            f"{', '.join(missing)}")
        items.append(obj if task in ("qa", "relation") else obj["text"])  # relation: spans beside the text
    if not items:
        raise DataError(f"{path}: no inputs (the file holds only blank lines)")
    kind = "JSON lines" if as_json else "plain text, one input per line"
    return items, kind


@click.command("predict")
@click.argument("run")
@click.option("--input", "input_file", default=None, metavar="FILE",
              help="A file that must exist: one text per line, or JSON lines (.jsonl) with text (qa: "
                   "question and context, always JSON lines).")
@click.option("--text", "texts", multiple=True, metavar="TEXT",
              help="A text to predict on (repeatable); for qa a JSON object with question and context.")
@click.option("--task", type=click.Choice(TASK_NAMES), default=None)
def predict_cmd(run: str, input_file: str | None, texts: tuple[str, ...], task: str | None) -> None:
    """Predict with a fine-tuned RUN; writes one JSON object per input to stdout (JSONL).

    The inputs are given explicitly: --input FILE (read as a file, never as text) or --text TEXT.
    """
    from zhixing.tasks.finetune import load_task_run
    from zhixing.tasks.pipeline import Pipeline

    if (input_file is None) == (not texts):
        raise click.UsageError("pass either --input FILE or --text TEXT (one or more), not both")
    _, spec, _ = load_task_run(run, task)
    if input_file is not None:
        items, kind = read_inputs(Path(input_file), spec.name)
        click.echo(f"read {len(items)} input(s) from {input_file} ({kind})", err=True)
    elif spec.name == "qa":
        items = []
        for text in texts:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                obj = None
            keys = ("question", "context")
            if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in keys):
                raise click.BadParameter("for qa, --text is a JSON object with question and context, e.g. "
                                         '\'{"question": "...", "context": "..."}\'', param_hint="--text")
            items.append(obj)
    else:
        items = list(texts)
    pipe = Pipeline(spec.name, run)
    for item, res in zip(items, pipe(items)):
        if isinstance(res, dict):
            res = {k: v for k, v in res.items() if k != "n_best"}
        sys.stdout.write(json.dumps({"input": item, "output": res}, ensure_ascii=False) + "\n")
