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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhixing.errors import ConfigError
from zhixing.io import RunDir
from zhixing.tasks import TASKS, get_task
from zhixing.tasks.base import FinetuneConfig, Task

# families whose heads fine-tuning can swap (seq_cls, token_cls, qa); the task encoders place their special
# tokens and padding as each one's tokenizer says (tokenizers/layout.py: XLNet's <cls> last, left padding)
ENCODERS = ("bert", "electra", "xlnet")
# Decoders classify at their last real token (GPT2ForSequenceClassification); no token or span heads.
DECODERS, DECODER_HEADS = ("gpt",), ("seq_cls",)
HEAD_MODULES = ("classifier", "pooler", "score", "summary")  # task-head tensors (XLNet's sequence summary)

# Fine-tuning defaults of the loop (BERT's recipe: AdamW β2 0.999, weight decay 0.01, linear decay); the
# rate, the epochs and early stopping are chosen per model and data set (default_lr, default_epochs).
TRAIN_DEFAULTS = {"batch_size": 32, "schedule": "linear", "weight_decay": 0.01, "beta2": 0.999,
                  "eps": 1e-8, "grad_clip": 1.0, "log_interval": 10, "keep_last": 1, "tensorboard": False}


def loop_config(train_overrides: typing.Sequence[str] = ()):
    """The TrainConfig of a fine-tuning run: TRAIN_DEFAULTS with the `key=value` overrides applied."""
    from zhixing.train.config import TrainConfig

    return TrainConfig.from_dict(TRAIN_DEFAULTS, source="finetune defaults").override(train_overrides)


def default_lr(width: int) -> float:
    """The default fine-tuning rate of a model `width` wide: BERT-base's 5e-5 at width 768, scaled as
    1 / width (narrow models need larger steps: ELECTRA's recipe uses 3e-4 at 256, 1e-4 at 768 with
    layer decay; Turc et al. 2019 find 1e-4 and above best for BERT-mini/-tiny), within [1e-5, 5e-4].
    Evidence on our data sets: docs/finetuning.md, "Defaults"."""
    return float(min(5e-4, max(1e-5, 5e-5 * 768 / max(1, width))))


def default_epochs(steps_per_epoch: int) -> int:
    """The default number of epochs: enough for about TARGET_STEPS optimizer steps, at least 2 and at
    most 10 (a small data set needs more passes; SST-2's 67k sentences need 2, HWU64's 9k intents 6)."""
    return int(min(10, max(2, math.ceil(TARGET_STEPS / max(1, steps_per_epoch)))))


# Default rates of the parameter-efficient methods, from their papers' GLUE settings: LoRA 5e-4 (Hu et al.,
# RoBERTa-base), prefixes 1e-2 (P-tuning v2), soft prompts 1e-2; only the adapters and the head train.
METHOD_LR = {"lora": 5e-4, "prefix": 1e-2, "ptuning": 1e-2, "prompt_tuning": 1e-2}
TARGET_STEPS = 1500  # optimizer steps the default epochs aim for
DEFAULT_PATIENCE = 3  # evaluations without improvement before early stopping, when a dev set is given


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
    backbone = [k for k in fresh if k.split(".")[0] not in HEAD_MODULES]
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


@dataclass
class FinetuneJob:
    """Everything a fine-tuning run is made of, built and checked but not yet trained: `finetune` fits
    it, `find_lr` runs the learning-rate range test on it."""
    task: Task
    cfg: FinetuneConfig
    trainer: Any
    run: RunDir
    tokenizer: Any
    labels: list[str] | None
    train_ex: list
    dev_ex: list
    feats: list
    examples: typing.Callable[[Any, str], list]  # (given examples or None, path) -> the task's examples
    chosen: dict[str, Any]  # defaults chosen from the model's and the data's size (lr, epochs, patience)


def build_job(cfg: FinetuneConfig, *, name: str = "finetune", train_overrides: typing.Sequence[str] = (),
              train_examples: list | None = None, dev_examples: list | None = None,
              callbacks: typing.Sequence[Any] = (), model: Any = None,
              make_objective: typing.Callable[..., Any] | None = None,
              records: dict[str, Any] | None = None) -> FinetuneJob:
    """Read and encode the data, load the model with the task's head, and build the Trainer (with
    `callbacks`: zhixing.train.callbacks.Callback objects). `model`: train this model (with its tokenizer
    and the task's head) instead of loading cfg.model; `make_objective(features, evaluator, metric,
    class_weights)`: the objective instead of the task's (distillation: zhixing.tasks.distill); `records`:
    more files for the run directory."""
    import torch

    from zhixing.data import arrow
    from zhixing.tasks.data import TaskLoader
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
    train_cfg = loop_config(train_overrides)
    given = {item.split("=", 1)[0].strip() for item in train_overrides}
    torch.manual_seed(train_cfg.seed)  # the fresh head's initial weights
    if model is None:
        more = task.model_settings(cfg) if task.model_settings is not None else {}
        model = load_for_task(cfg.model, task.head, labels, cfg.dropout, **more)
    elif labels is not None and model.config.label_names and list(model.config.label_names) != labels:
        raise ConfigError(f"the model's labels {model.config.label_names} differ from the training data's "
                          f"{labels}")
    chosen: dict[str, Any] = {}  # the defaults that depend on the model and the data (docs: "Defaults")
    if task.adapt is not None:  # settings left to the model (ner casing, classify pooling), settled
        settled = task.adapt(cfg, model)
        chosen.update({k: v for k, v in vars(settled).items() if vars(cfg).get(k) != v})
        cfg = settled
    more_records: dict[str, Any] = dict(records or {})
    if cfg.method != "full":  # a parameter-efficient method: frozen model + adapters, the head trained
        from zhixing.peft.runs import ADAPTER_RECORD, apply_method, record

        apply_method(model, cfg.method, cfg.method_settings())
        more_records[ADAPTER_RECORD] = record(model, cfg.model)
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ConfigError(f"{cfg.model}: no tokenizer next to the model; fine-tuning needs its tokenizer")
    from zhixing.peft.prompt import positions_taken

    taken = positions_taken(model)  # virtual tokens / prefix positions before the input
    if model.extend_positions(cfg.max_seq_len + taken):  # rotary positions: no table to outgrow
        chosen["positions"] = model.config.max_seq_len  # saved with the model's config
    model.require_positions(cfg.max_seq_len)
    if cfg.max_seq_len + taken > model.config.max_seq_len:
        fits = model.config.max_seq_len - taken
        raise ConfigError(f"max_seq_len={cfg.max_seq_len} + {cfg.method}.tokens={taken} exceeds "
                          f"the model's {model.config.max_seq_len} positions (the input's positions start "
                          f"after the virtual tokens); set max_seq_len={fits} or fewer tokens")
    feats = task.encode_train(train_ex, tokenizer, cfg, labels)
    loader = TaskLoader(feats, train_cfg.batch_size, tokenizer.layout, seed=train_cfg.seed)
    per_epoch = math.ceil(len(feats) / (train_cfg.batch_size * train_cfg.grad_accum_steps))
    if cfg.epochs is None:
        cfg = cfg.replace(epochs=float(default_epochs(per_epoch)))
        chosen["epochs"] = cfg.epochs
    steps = train_cfg.max_steps if "max_steps" in given else max(1, round(cfg.epochs * per_epoch))
    fill: dict[str, Any] = {"max_steps": steps}
    if "lr" not in given:
        fill["lr"] = chosen["lr"] = METHOD_LR.get(cfg.method) or default_lr(model.config.dim)
    if "early_stopping_patience" not in given and dev_ex:
        fill["early_stopping_patience"] = chosen["early_stopping_patience"] = DEFAULT_PATIENCE
    if "warmup_steps" not in given:
        fill["warmup_steps"] = int(cfg.warmup_ratio * steps)
    if "eval_interval" not in given:
        fill["eval_interval"] = max(1, round(cfg.eval_every * per_epoch))
    train_cfg = train_cfg.replace(**fill)
    objective = objective_for(task, cfg, train_ex, labels,
                              lambda m: task.evaluate(m, tokenizer, dev_ex, cfg))
    if make_objective is not None:
        objective = make_objective(feats, objective.evaluator, objective.metric,
                                   getattr(objective, "weights", None))
    run = RunDir(Path(train_cfg.out_dir) / name, tokenizer=tokenizer,
                 records={RunDir.TASK: cfg.to_dict(), **more_records})
    lr_scale = layer_scale(model.config.num_layers, cfg.layer_decay) if cfg.layer_decay < 1 else None
    trainer = Trainer(model, objective, train_cfg, loader, run=run, lr_scale=lr_scale, callbacks=callbacks)
    return FinetuneJob(task, cfg, trainer, run, tokenizer, labels, train_ex, dev_ex, feats, examples, chosen)


def finetune(cfg: FinetuneConfig, *, name: str = "finetune", train_overrides: typing.Sequence[str] = (),
             train_examples: list | None = None, dev_examples: list | None = None,
             test_examples: list | None = None, callbacks: typing.Sequence[Any] = (),
             **extra: Any) -> dict[str, Any]:
    """Train cfg.task on cfg.train (or `train_examples`), select on dev; return the summary with the
    best model's dev (and test) metrics. `train_overrides` are TrainConfig `key=value` strings.
    Examples may be lists of the task's examples, `datasets.Dataset`s (columns as for Parquet files), or a
    `DatasetDict` as train_examples (its train split; dev from validation / dev / test unless given).
    callbacks: zhixing.train.callbacks.Callback objects the loop calls; `extra`: model=, make_objective=,
    records= as `build_job` takes them. With cfg.seeds > 1 it runs `finetune_seeds` and returns its report
    (mean ± std, the best run). A run that Ctrl-C / SIGTERM interrupts returns at once with status
    "interrupted" (its checkpoint saved; no dev or test scores, no further seeds)."""
    if cfg.seeds > 1:
        return finetune_seeds(cfg, name=name, train_overrides=train_overrides, train_examples=train_examples,
                              dev_examples=dev_examples, test_examples=test_examples, callbacks=callbacks,
                              **extra)
    job = build_job(cfg, name=name, train_overrides=train_overrides, train_examples=train_examples,
                    dev_examples=dev_examples, callbacks=callbacks, **extra)
    task, run, trainer, tokenizer, cfg = job.task, job.run, job.trainer, job.tokenizer, job.cfg
    summary = trainer.fit()
    if summary.get("status") == "interrupted":  # Ctrl-C / SIGTERM: the step is saved; no test, no next seed
        summary.update(task=cfg.task, run_dir=str(run.path))
        return summary
    best_json = run.best / "best.json"  # the dev metrics of best/, measured when it was saved
    if best_json.is_file():
        summary["dev"] = json.loads(best_json.read_text(encoding="utf-8"))
    else:
        summary["dev"] = {k: v for k, v in task.evaluate(trainer.raw, tokenizer, job.dev_ex, cfg).items()
                          if v is not None}  # no best/ (train.save_best=false): the final model
    if test_examples is not None or cfg.test:
        test_ex = job.examples(test_examples, cfg.test)
        if job.labels is not None:
            task.check_labels(test_ex, job.labels, cfg.test or "test examples")
        best = load_run(run.path)[0].to(trainer.device)
        summary["test"] = {k: v for k, v in task.evaluate(best, tokenizer, test_ex, cfg).items()
                           if v is not None}
    trainable = sum(p.numel() for p in trainer.raw.parameters() if p.requires_grad)
    summary.update(method=cfg.method, trainable_parameters=trainable,
                   total_parameters=trainer.raw.num_parameters())
    summary.update(task=cfg.task, metric=trainer.objective.metric, run_dir=str(run.path), defaults=job.chosen,
                   train_examples=len(job.train_ex), train_features=len(job.feats),
                   dev_examples=len(job.dev_ex))
    advice = still_improving(trainer.history, trainer.objective)
    if advice:
        summary["advice"] = advice
        warnings.warn(f"{run.path}: {advice}", stacklevel=2)
    run.write_summary(summary)
    return summary


def still_improving(history: list[dict[str, Any]], objective: Any, min_gain: float = 1e-3) -> str | None:
    """Advice when the dev metric was still rising at the last evaluation (the best one, and better than
    the one before by more than `min_gain`): the run stopped before it converged."""
    key = objective.metric
    values = [r[key] for r in history if r.get("kind") == "eval" and isinstance(r.get(key), (int, float))]
    if len(values) < 2:
        return None
    last, before = values[-1], values[-2]
    sign = 1 if objective.greater_is_better else -1
    if sign * (last - before) > min_gain and all(sign * (last - v) >= 0 for v in values):
        return (f"stopped while still improving: dev {key} rose from {before:.4g} to {last:.4g} at the last "
                "evaluation; more epochs or a higher lr may help")
    return None


def find_lr(cfg: FinetuneConfig, *, name: str = "finetune", train_overrides: typing.Sequence[str] = (),
            train_examples: list | None = None, start_lr: float = 1e-7, end_lr: float = 1.0,
            steps: int = 200) -> tuple[Any, Path]:
    """The learning-rate range test on this fine-tuning job (the same model, head, data, batch size and
    parameter groups): (LRFindResult, the directory holding lr_find.png / lr_find.json). Nothing is
    trained; the run directory receives only the two files."""
    from zhixing.train.lr_find import lr_range_test

    job = build_job(cfg, name=name, train_overrides=train_overrides, train_examples=train_examples,
                    dev_examples=[])  # the test trains only: no dev set is read
    result = lr_range_test(job.trainer, start_lr=start_lr, end_lr=end_lr, steps=steps)
    result.save(job.run.path, title=f"{cfg.task} {Path(cfg.model).name}")
    return result, job.run.path


def finetune_seeds(cfg: FinetuneConfig, *, name: str = "finetune", train_overrides: typing.Sequence[str] = (),
                   **examples: Any) -> dict[str, Any]:
    """`finetune` with seeds 0 … cfg.seeds−1 (train.seed=k; runs <name>-seed<k>): the metric's mean ± std
    over the seeds on dev (and test) and the best run by dev metric, also written to
    <out_dir>/<name>-seeds.json. A train.seed given is replaced by the seeds' own."""
    import statistics

    from zhixing.io import atomic_write_text

    base = [o for o in train_overrides if o.split("=", 1)[0].strip() != "seed"]
    one = cfg.replace(seeds=1)
    seeds = cfg.seeds
    runs = []
    for k in range(seeds):
        runs.append(finetune(one, name=f"{name}-seed{k}", train_overrides=[*base, f"seed={k}"], **examples))
        if runs[-1].get("status") == "interrupted":
            return runs[-1]
    metric = runs[0]["metric"]
    greater = get_task(cfg.task).greater_is_better(metric)
    best = (max if greater else min)(runs, key=lambda r: r["dev"].get(metric, float("-inf")))
    report: dict[str, Any] = {"task": cfg.task, "metric": metric, "seeds": list(range(seeds)),
                              "runs": [r["run_dir"] for r in runs], "best_run": best["run_dir"]}
    for split in ("dev", "test"):
        vals = [r[split][metric] for r in runs if split in r and metric in r[split]]
        if vals:
            report[split] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1
                             else 0.0, "values": vals}
    out = loop_config(base).out_dir
    atomic_write_text(Path(out) / f"{name}-seeds.json", json.dumps(report, indent=1) + "\n")
    return report


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
    if task is not None:
        spec = get_task(task)
    elif getattr(model.config, "entity_markers", None):  # a seq_cls head that reads entity markers
        spec = get_task("relation")
    else:
        spec = task_for_head(model.config.head)
    if spec is None:
        raise ConfigError(f"{path}: no task.json and head {model.config.head!r} is not a task head; "
                          "pass --task")
    return model, spec, spec.config(task=spec.name)


def merge_run(run: str | Path, out: str | Path) -> Path:
    """Write a LoRA run's model with its updates folded into the weights (a plain model: no adapter, no
    reference to the base) to `out`, with the tokenizer and the run's task.json. Soft prompts cannot be
    folded into weights: a ConfigError."""
    from zhixing.hub import load
    from zhixing.io import atomic_write_json, staged_dir
    from zhixing.peft import remove_lora

    model = load(run)
    if getattr(model, "lora_config", None) is None:
        what = "soft prompts, which live outside the weights" if getattr(model, "prompt_config", None) \
            else "no adapter"
        raise ConfigError(f"{run}: merge folds LoRA updates into the weights; this run has {what}")
    remove_lora(model)
    model.saved_keys = None
    source = RunDir.containing(run)
    task = source.read_task() if source is not None else None
    with staged_dir(out) as tmp:
        model.save_pretrained(tmp)
        if model.tokenizer is not None:
            model.tokenizer.save(tmp)
        if task is not None:
            atomic_write_json(tmp / RunDir.TASK, task)
    return Path(out)


def load_run(path: str | Path) -> tuple[Any, FinetuneConfig | None]:
    """(model with tokenizer, the run's task settings or None) for a fine-tuning run or model dir."""
    from zhixing.hub import load

    model = load(path)
    run = RunDir.containing(path)
    return model, (read_settings(run) if run is not None else None)
