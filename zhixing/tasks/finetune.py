"""Fine-tuning: a pretrained encoder + a task head, trained by the one training loop (zhixing.train).

    finetune(FinetuneConfig(task="classify", model="runs/bert", train="train.tsv", dev="dev.tsv"))

The model is loaded with the task's head (a fresh one, announced, when the checkpoint has another);
the Trainer evaluates the task metric on the whole dev set each `eval_every` epochs, keeps the best
model in `runs/<name>/best/` and may stop early on it. `runs/<name>/task.json` records the task
settings so `zhixing.pipeline` / `zhixing evaluate` / `zhixing predict` can rebuild the inputs.
"""

from __future__ import annotations

import json
import math
import re
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from zhixing.config import Config, ConfigError
from zhixing.io import RunDir, atomic_write_text

TASK_FILE = "task.json"


@dataclass
class FinetuneConfig(Config):
    """What a fine-tuning run needs beyond the loop's TrainConfig (`zhixing finetune ... key=value`)."""

    task: typing.Literal["classify", "ner", "qa"] = "classify"  # the head and metric
    model: str = ""  # pretrained model: zhixing / Hugging Face directory or run directory
    train: str = ""  # training file
    dev: str = ""  # development file (model selection, early stopping)
    test: str = ""  # optional test file, scored once with the best model
    max_seq_len: int = 128  # tokens per input (truncation; QA: window length)
    epochs: float = 3.0  # passes over the training data (sets train.max_steps unless given)
    eval_every: float = 1.0  # evaluate on dev every this many epochs
    eval_batch_size: int = 64  # sequences per evaluation batch
    warmup_ratio: float = 0.1  # share of steps with linear warmup (sets train.warmup_steps unless given)
    layer_decay: float = 1.0  # layer-wise LR decay: layer l of L gets lr · decay^(L - l) (1 = off)
    dropout: float | None = None  # override the model's dropout (None = keep)
    class_weights: str = ""  # classify/ner: "" (none), "balanced", or comma-separated weights per label
    metric: str = ""  # dev metric for best/ and early stopping ("" = accuracy / f1 / f1)
    limit_train: int = 0  # use the first N training examples (0 = all)
    limit_dev: int = 0  # use the first N dev examples (0 = all)
    # classify
    text_column: str = ""  # column with the text ("" = sentence/text/review/... whichever exists)
    pair_column: str = ""  # column with the second text of a pair ("" = none / sentence2)
    label_column: str = "label"  # column with the label
    # ner
    scheme: typing.Literal["iob1", "iob2", "bioes"] = "iob2"  # tag scheme the model is trained in
    token_column: int = 0  # column of the token in CoNLL files
    tag_column: int = -1  # column of the tag (last by default)
    # qa
    doc_stride: int = 128  # tokens between the starts of two windows over a long context
    max_query_len: int = 64  # question tokens kept
    max_answer_len: int = 30  # longest answer span considered (tokens)
    n_best: int = 20  # start/end candidates per window in span decoding
    qa_metric: typing.Literal["auto", "squad", "cmrc"] = "auto"  # auto: cmrc when contexts are Chinese

    def __post_init__(self) -> None:
        if self.max_seq_len < 8:
            raise ConfigError(f"max_seq_len must be >= 8, got {self.max_seq_len}")
        if self.epochs <= 0 or self.eval_every <= 0:
            raise ConfigError("epochs and eval_every must be > 0")
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"layer_decay must be in (0, 1], got {self.layer_decay}")


# Fine-tuning defaults of the loop (BERT's recipe: AdamW β2 0.999, weight decay 0.01, linear decay).
TRAIN_DEFAULTS = {"lr": 5e-5, "batch_size": 32, "schedule": "linear", "weight_decay": 0.01, "beta2": 0.999,
                  "eps": 1e-8, "grad_clip": 1.0, "log_interval": 10, "keep_last": 1, "tensorboard": False}


def task_module(task: str) -> ModuleType:
    from zhixing.tasks import classify, ner, qa

    mods = {"classify": classify, "ner": ner, "qa": qa}
    if task not in mods:
        raise ConfigError(f"unknown task {task!r}; use classify, ner or qa")
    return mods[task]


def load_for_task(path: str, head: str, labels: list[str] | None = None, dropout: float | None = None):
    """A model with `head` (num_labels / label_names from `labels`) from a zhixing or HF directory or a
    run. Backbone weights are loaded; head tensors the checkpoint lacks are freshly initialised, and a
    warning says which."""
    import zhixing
    from zhixing.config import ModelConfig
    from zhixing.hub import resolve
    from zhixing.models import build_model
    from zhixing.models.base import read_safetensors

    extra: dict[str, Any] = {}
    if labels is not None:
        extra = {"num_labels": len(labels), "label_names": list(labels)}
    if dropout is not None:
        extra["dropout"] = dropout
        extra["classifier_dropout"] = dropout
    directory, _ = resolve(path)
    data = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    if "arch" not in data:  # Hugging Face: from_hf adds (and announces) a fresh head itself
        return zhixing.load(path, head=head, **extra)
    cfg = ModelConfig.load(directory)
    if cfg.arch != "bert":
        raise ConfigError(f"{directory}: fine-tuning heads need a BERT-family encoder; this is a {cfg.arch}")
    same = cfg.head == head and all(getattr(cfg, k) == v for k, v in extra.items() if k != "dropout")
    if same:
        return zhixing.load(path, **extra)
    tokenizer = zhixing.load_tokenizer(path)
    model = build_model(cfg.replace(head=head, **extra))
    own, state = model.state_dict(), read_safetensors(directory / "model.safetensors")
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    fresh = sorted(k for k in model.unique_state_dict() if k not in keep)
    backbone = [k for k in fresh if k.split(".")[0] not in ("classifier", "pooler")]
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


def weighted_loss(weights: list[float]):
    """loss_fn for the Trainer: class-weighted cross-entropy (ignored labels -100 left out)."""
    import torch
    import torch.nn.functional as F

    w = torch.tensor(weights, dtype=torch.float32)

    def loss_fn(out: Any, batch: dict) -> Any:
        logits = out.logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch["labels"].reshape(-1),
                               weight=w.to(logits.device), ignore_index=-100)
    return loss_fn


def finetune(cfg: FinetuneConfig, *, name: str = "finetune", train_overrides: typing.Sequence[str] = (),
             train_examples: list | None = None, dev_examples: list | None = None,
             test_examples: list | None = None) -> dict[str, Any]:
    """Train cfg.task on cfg.train (or `train_examples`), select on dev; return the summary with the
    best model's dev (and test) metrics. `train_overrides` are TrainConfig `key=value` strings."""
    import torch

    from zhixing.tasks.data import TaskLoader
    from zhixing.train.config import TrainConfig
    from zhixing.train.loop import Trainer

    mod = task_module(cfg.task)
    train_ex = train_examples if train_examples is not None else mod.read(cfg.train, cfg)
    dev_ex = dev_examples if dev_examples is not None else mod.read(cfg.dev, cfg)
    if hasattr(mod, "prepare"):  # examples passed in directly get the same treatment as read ones
        train_ex, dev_ex = mod.prepare(list(train_ex), cfg), mod.prepare(list(dev_ex), cfg)
    if cfg.limit_train:
        train_ex = train_ex[:cfg.limit_train]
    if cfg.limit_dev:
        dev_ex = dev_ex[:cfg.limit_dev]
    labels = mod.label_names(train_ex) if cfg.task != "qa" else None
    if labels is not None:
        mod.check_labels(dev_ex, labels, cfg.dev or "dev examples")
    train_cfg = TrainConfig.from_dict(TRAIN_DEFAULTS, source="finetune defaults").override(train_overrides)
    given = {item.split("=", 1)[0].strip() for item in train_overrides}
    torch.manual_seed(train_cfg.seed)  # the fresh head's initial weights
    model = load_for_task(cfg.model, mod.HEAD, labels, cfg.dropout)
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ConfigError(f"{cfg.model}: no tokenizer next to the model; fine-tuning needs its tokenizer")
    if cfg.max_seq_len > model.config.max_seq_len:
        raise ConfigError(f"max_seq_len={cfg.max_seq_len} exceeds the model's {model.config.max_seq_len}")
    feats = mod.encode_train(train_ex, tokenizer, cfg, labels) if hasattr(mod, "encode_train") else \
        mod.encode(train_ex, tokenizer, cfg.max_seq_len, labels)
    loader = TaskLoader(feats, train_cfg.batch_size, tokenizer.pad_id, seed=train_cfg.seed)
    per_epoch = math.ceil(len(feats) / (train_cfg.batch_size * train_cfg.grad_accum_steps))
    steps = train_cfg.max_steps if "max_steps" in given else max(1, round(cfg.epochs * per_epoch))
    fill = {"max_steps": steps}
    if "warmup_steps" not in given:
        fill["warmup_steps"] = int(cfg.warmup_ratio * steps)
    if "eval_interval" not in given:
        fill["eval_interval"] = max(1, round(cfg.eval_every * per_epoch))
    train_cfg = train_cfg.replace(**fill)
    metric = cfg.metric or mod.METRIC
    evaluator = lambda m: {k: v for k, v in mod.evaluate(m, tokenizer, dev_ex, cfg).items()  # noqa: E731
                           if v is not None}
    loss_fn = None
    if cfg.class_weights and labels is not None:
        weights = mod.class_weights(train_ex, labels) if cfg.class_weights == "balanced" else \
            [float(x) for x in cfg.class_weights.split(",")]
        if len(weights) != len(labels):
            raise ConfigError(f"class_weights has {len(weights)} values for {len(labels)} labels ({labels})")
        loss_fn = weighted_loss(weights)
    run_dir = Path(train_cfg.out_dir) / name
    # val_data is the train loader only to switch evaluation on: the evaluator scores the whole dev set.
    trainer = Trainer(model, train_cfg, loader, loader, run_dir=run_dir, tokenizer=tokenizer,
                      evaluator=evaluator, best_metric=metric, greater_is_better="loss" not in metric,
                      loss_fn=loss_fn,
                      lr_scale=layer_scale(model.config.num_layers, cfg.layer_decay) if cfg.layer_decay < 1
                      else None)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / TASK_FILE, json.dumps(cfg.to_dict(), indent=2, ensure_ascii=False) + "\n")
    summary = trainer.fit()
    best_json = run_dir / "best" / "best.json"  # the dev metrics of best/, measured when it was saved
    if best_json.is_file():
        summary["dev"] = json.loads(best_json.read_text(encoding="utf-8"))
    else:
        summary["dev"] = {k: v for k, v in mod.evaluate(model, tokenizer, dev_ex, cfg).items()
                          if v is not None}  # no best/ (train.save_best=false): the final model
    test_ex = test_examples if test_examples is not None else (mod.read(cfg.test, cfg) if cfg.test else None)
    if test_ex is not None:
        if hasattr(mod, "prepare"):
            test_ex = mod.prepare(list(test_ex), cfg)
        if labels is not None:
            mod.check_labels(test_ex, labels, cfg.test or "test examples")
        best = load_run(run_dir)[0].to(trainer.device)
        summary["test"] = {k: v for k, v in mod.evaluate(best, tokenizer, test_ex, cfg).items()
                           if v is not None}
    summary.update(task=cfg.task, metric=metric, run_dir=str(run_dir), train_examples=len(train_ex),
                   train_features=len(feats), dev_examples=len(dev_ex))
    RunDir(run_dir).write_summary(summary)
    return summary


def load_run(path: str | Path) -> tuple[Any, FinetuneConfig | None]:
    """(model with tokenizer, the run's FinetuneConfig or None) for a fine-tuning run or model dir."""
    import zhixing

    model = zhixing.load(path)
    path = Path(path)
    for d in (path, path.parent, path.parent.parent):
        if (d / TASK_FILE).is_file():
            data = json.loads((d / TASK_FILE).read_text(encoding="utf-8"))
            return model, FinetuneConfig.from_dict(data, source=str(d / TASK_FILE))
    return model, None
