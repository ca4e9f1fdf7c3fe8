"""Fine-tuning: a pretrained encoder (or, to classify, a decoder) + a task head, trained by the one
training loop (zhixing.train).

    finetune(get_task("classify").settings({"model": "runs/bert", "train": "train.tsv", "dev": "dev.tsv"}))

The model is loaded with the task's head (a fresh one, announced, when the checkpoint has another);
the task's objective (zhixing.objectives.classification) trains it and scores the whole dev set each
`eval_every` epochs; the loop keeps the best model in `runs/<name>/best/` and may stop early on it.
`runs/<name>/task.json` records the task settings so `zhixing.pipeline` / `zhixing evaluate` /
`zhixing predict` can rebuild the inputs.
"""

from __future__ import annotations

import json
import math
import re
import typing
import warnings
from pathlib import Path
from typing import Any

from zhixing.errors import ConfigError
from zhixing.io import RunDir
from zhixing.tasks import TASKS, get_task
from zhixing.tasks.base import FinetuneConfig, Task

# Fine-tuning defaults of the loop (BERT's recipe: AdamW β2 0.999, weight decay 0.01, linear decay).
ENCODERS = ("bert", "electra")  # families whose heads fine-tuning can swap (seq_cls, token_cls, qa)
# Decoders classify at their last real token (GPT2ForSequenceClassification); no token or span heads.
DECODERS, DECODER_HEADS = ("gpt",), ("seq_cls",)

TRAIN_DEFAULTS = {"lr": 5e-5, "batch_size": 32, "schedule": "linear", "weight_decay": 0.01, "beta2": 0.999,
                  "eps": 1e-8, "grad_clip": 1.0, "log_interval": 10, "keep_last": 1, "tensorboard": False}


def load_for_task(path: str, head: str, labels: list[str] | None = None, dropout: float | None = None,
                  **config: Any):
    """A model with `head` (num_labels / label_names from `labels`) from a zhixing or HF directory or a
    run. Backbone weights are loaded; head tensors the checkpoint lacks are freshly initialised, and a
    warning says which. `config`: other ModelConfig fields to set (seq_pooling="mean")."""
    from zhixing.config import ModelConfig
    from zhixing.hub import load, load_tokenizer, resolve
    from zhixing.models import build_model
    from zhixing.models.base import read_safetensors

    extra: dict[str, Any] = {}
    if labels is not None:
        extra = {"num_labels": len(labels), "label_names": list(labels)}
    if dropout is not None:
        extra["dropout"] = dropout
        extra["classifier_dropout"] = dropout
    extra.update(config)
    directory, _ = resolve(path)
    data = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    if "arch" not in data:  # Hugging Face: from_hf adds (and announces) a fresh head itself
        return load(path, head=head, **extra)
    cfg = ModelConfig.load(directory)
    if cfg.arch not in ENCODERS and not (cfg.arch in DECODERS and head in DECODER_HEADS):
        raise ConfigError(f"{directory}: head {head!r} needs an encoder ({', '.join(ENCODERS)}); this is a "
                          f"{cfg.arch}" + (f", which fine-tunes with heads {', '.join(DECODER_HEADS)} "
                                           "(--task classify)" if cfg.arch in DECODERS else ""))
    same = cfg.head == head and all(getattr(cfg, k) == v for k, v in extra.items() if k != "dropout")
    if same:
        return load(path, **extra)
    tokenizer = load_tokenizer(path)
    state = read_safetensors(directory / "model.safetensors")
    if cfg.arch == "electra" and cfg.head == "pretraining":  # ELECTRA: fine-tune the discriminator
        state = {k.removeprefix("discriminator."): v for k, v in state.items()
                 if k.startswith("discriminator.")}
        cfg = cfg.replace(head="rtd")
    model = build_model(cfg.replace(head=head, **extra))
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    fresh = sorted(k for k in model.unique_state_dict() if k not in keep)
    backbone = [k for k in fresh if k.split(".")[0] not in ("classifier", "pooler", "score")]
    if backbone:
        raise ConfigError(f"{directory}: the checkpoint lacks backbone tensors {', '.join(backbone[:10])}")
    model.load_state_dict(keep, strict=False)
    if fresh:
        warnings.warn(f"{directory}: head {head!r} is not in the checkpoint (it has {cfg.head!r}); "
                      f"{len(fresh)} tensors are freshly initialised ({', '.join(fresh)}) — train them "
                      "before use", stacklevel=2)
    model.tokenizer = tokenizer
    return model.eval()


def layer_scale(num_layers: int, decay: float):
    """lr_scale(name) for layer-wise LR decay (Clark et al. 2020): head 1, layer l decay^(L-l),
    embeddings decay^(L+1)."""
    def scale(name: str) -> float:
        m = re.match(r"layers\.(\d+)\.", name)
        if m:
            return decay ** (num_layers - int(m.group(1)))
        if name.split(".")[0] in ("tok_embed", "pos_embed", "type_embed", "embed_norm"):
            return decay ** (num_layers + 1)
        return 1.0
    return scale


def finetune_config(task: str, **settings: Any) -> FinetuneConfig:
    """The settings of a fine-tuning run of `task`: its FinetuneConfig subclass, keys checked."""
    return get_task(task).settings(settings)


def objective_for(task: Task, cfg: FinetuneConfig, train_examples: list, labels: list[str] | None,
                  evaluator: typing.Callable[[Any], dict[str, float]]):
    """The task's training objective: class-weighted cross-entropy (class_weights) or span QA, scored by
    `evaluator` on the dev set and selecting best/ by cfg.metric (default: the task's metric)."""
    from zhixing.objectives import Classification, SpanQA

    metric = cfg.metric or task.metric
    if task.objective == "span":
        return SpanQA(evaluator=evaluator, metric=metric)
    weights = None
    spec = getattr(cfg, "class_weights", "")
    if spec and labels is not None:
        weights = task.class_weights(train_examples, labels) if spec == "balanced" else \
            [float(x) for x in spec.split(",")]
        if len(weights) != len(labels):
            raise ConfigError(f"class_weights has {len(weights)} values for {len(labels)} labels ({labels})")
    return Classification(weights, evaluator=evaluator, metric=metric)


def finetune(cfg: FinetuneConfig, *, name: str = "finetune", train_overrides: typing.Sequence[str] = (),
             train_examples: list | None = None, dev_examples: list | None = None,
             test_examples: list | None = None, callbacks: typing.Sequence[Any] = ()) -> dict[str, Any]:
    """Train cfg.task on cfg.train (or `train_examples`), select on dev; return the summary with the
    best model's dev (and test) metrics. `train_overrides` are TrainConfig `key=value` strings;
    `callbacks` go to the Trainer (e.g. zhixing.compress.prune.MagnitudePruning).
    Examples may be lists of the task's examples, `datasets.Dataset`s (columns as for Parquet files), or a
    `DatasetDict` as train_examples (its train split; dev from validation / dev / test unless given)."""
    import torch

    from zhixing.data import arrow
    from zhixing.tasks.data import TaskLoader
    from zhixing.train.config import TrainConfig
    from zhixing.train.loop import Trainer

    task = get_task(cfg.task)
    if arrow.is_dataset_dict(train_examples):  # a DatasetDict: its train split, and dev from it if not given
        splits = train_examples
        train_examples = arrow.split_of(splits, ("train",), "train_examples")
        if dev_examples is None and not cfg.dev:
            dev_examples = arrow.split_of(splits, ("validation", "dev", "test"), "dev examples")
    dev_examples = arrow.split_of(dev_examples, ("validation", "dev", "test"), "dev_examples") \
        if arrow.is_dataset_dict(dev_examples) else dev_examples

    def examples(given: Any, path: str) -> list:  # given ones get what `read` does to a file's
        if arrow.is_dataset(given):  # a datasets.Dataset: read like a Parquet file of the task's layout
            return task.read(given, cfg)
        return task.prepare(list(given), cfg) if given is not None else task.read(path, cfg)

    train_ex, dev_ex = examples(train_examples, cfg.train), examples(dev_examples, cfg.dev)
    if cfg.limit_train:
        train_ex = train_ex[:cfg.limit_train]
    if cfg.limit_dev:
        dev_ex = dev_ex[:cfg.limit_dev]
    labels = task.label_names(train_ex)
    if labels is not None:
        task.check_labels(dev_ex, labels, cfg.dev or "dev examples")
    train_cfg = TrainConfig.from_dict(TRAIN_DEFAULTS, source="finetune defaults").override(train_overrides)
    given = {item.split("=", 1)[0].strip() for item in train_overrides}
    torch.manual_seed(train_cfg.seed)  # the fresh head's initial weights
    pooling = getattr(cfg, "pooling", "")
    model = load_for_task(cfg.model, task.head, labels, cfg.dropout,
                          **({"seq_pooling": pooling} if pooling else {}))
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ConfigError(f"{cfg.model}: no tokenizer next to the model; fine-tuning needs its tokenizer")
    if cfg.max_seq_len > model.config.max_seq_len:
        raise ConfigError(f"max_seq_len={cfg.max_seq_len} exceeds the model's {model.config.max_seq_len}")
    feats = task.encode_train(train_ex, tokenizer, cfg, labels)
    loader = TaskLoader(feats, train_cfg.batch_size, tokenizer.pad_id, seed=train_cfg.seed)
    per_epoch = math.ceil(len(feats) / (train_cfg.batch_size * train_cfg.grad_accum_steps))
    steps = train_cfg.max_steps if "max_steps" in given else max(1, round(cfg.epochs * per_epoch))
    fill = {"max_steps": steps}
    if "warmup_steps" not in given:
        fill["warmup_steps"] = int(cfg.warmup_ratio * steps)
    if "eval_interval" not in given:
        fill["eval_interval"] = max(1, round(cfg.eval_every * per_epoch))
    train_cfg = train_cfg.replace(**fill)
    objective = objective_for(task, cfg, train_ex, labels,
                              lambda m: task.evaluate(m, tokenizer, dev_ex, cfg))
    run = RunDir(Path(train_cfg.out_dir) / name, tokenizer=tokenizer,
                 records={RunDir.TASK: cfg.to_dict()})
    lr_scale = layer_scale(model.config.num_layers, cfg.layer_decay) if cfg.layer_decay < 1 else None
    trainer = Trainer(model, objective, train_cfg, loader, run=run, lr_scale=lr_scale, callbacks=callbacks)
    summary = trainer.fit()
    best_json = run.best / "best.json"  # the dev metrics of best/, measured when it was saved
    if best_json.is_file():
        summary["dev"] = json.loads(best_json.read_text(encoding="utf-8"))
    else:
        summary["dev"] = {k: v for k, v in task.evaluate(model, tokenizer, dev_ex, cfg).items()
                          if v is not None}  # no best/ (train.save_best=false): the final model
    if test_examples is not None or cfg.test:
        test_ex = examples(test_examples, cfg.test)
        if labels is not None:
            task.check_labels(test_ex, labels, cfg.test or "test examples")
        best = load_run(run.path)[0].to(trainer.device)
        summary["test"] = {k: v for k, v in task.evaluate(best, tokenizer, test_ex, cfg).items()
                           if v is not None}
    summary.update(task=cfg.task, metric=objective.metric, run_dir=str(run.path),
                   train_examples=len(train_ex), train_features=len(feats), dev_examples=len(dev_ex))
    run.write_summary(summary)
    return summary


def read_settings(run: RunDir) -> FinetuneConfig | None:
    """The task settings a fine-tuning run recorded in task.json (None for a run without one). Files
    written before the settings were split per task hold every task's keys; the others' are skipped."""
    data = run.read_task()
    if data is None:
        return None
    task = get_task(str(data.get("task", "")))
    others = {k for t in TASKS.values() for k in t.config.field_names()} - set(task.config.field_names())
    return task.settings(data, source=str(run.task_file), ignore=others)


def load_task_run(path: str | Path, task: str | None = None) -> tuple[Any, Task, FinetuneConfig]:
    """(model, task, settings) of a fine-tuned run or model directory: the task from task.json, else
    `task`, else the one the model's head serves; settings from task.json or the task's defaults."""
    from zhixing.tasks import task_for_head

    model, cfg = load_run(path)
    if cfg is not None:
        if task is not None and task != cfg.task:
            raise ConfigError(f"{path} was fine-tuned for {cfg.task}, not {task}")
        return model, get_task(cfg.task), cfg
    spec = get_task(task) if task is not None else task_for_head(model.config.head)
    if spec is None:
        raise ConfigError(f"{path}: no task.json and head {model.config.head!r} is not a task head; "
                          "pass --task")
    return model, spec, spec.config(task=spec.name)


def load_run(path: str | Path) -> tuple[Any, FinetuneConfig | None]:
    """(model with tokenizer, the run's task settings or None) for a fine-tuning run or model dir."""
    from zhixing.hub import load

    model = load(path)
    run = RunDir.containing(path)
    return model, (read_settings(run) if run is not None else None)
