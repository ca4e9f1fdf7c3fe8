"""The `Task` protocol: what a fine-tuning task declares, so fine-tuning, evaluation, prediction, the
pipelines and the command line work for every task the same way.

A task is one module (classify.py, ner.py, qa.py) ending in `TASK = Task(...)`: its name, its head,
its settings (a `FinetuneConfig` subclass with the task's own fields), its dev metric and direction,
and the functions that read its files, encode its examples, score and predict. `zhixing.tasks.TASKS`
is the registry; adding a task is a new module plus a line there (docs/architecture.md).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zhixing.config import Config, nearest
from zhixing.errors import ConfigError


@dataclass
class FinetuneConfig(Config):
    """What every fine-tuning run needs beyond the loop's TrainConfig (`zhixing finetune ... key=value`);
    each task's settings class adds its own fields."""

    task: str = "classify"  # the task (zhixing.tasks.TASKS): its head, metric and data format
    model: str = ""  # pretrained model: zhixing / Hugging Face directory or run directory
    train: str = ""  # training file
    dev: str = ""  # development file (model selection, early stopping)
    test: str = ""  # optional test file, scored once with the best model
    max_seq_len: int = 128  # tokens per input (truncation; QA: window length)
    epochs: float | None = None  # passes over the data (sets train.max_steps); None: by the data's size

    eval_every: float = 1.0  # evaluate on dev every this many epochs
    eval_batch_size: int = 64  # sequences per evaluation batch
    warmup_ratio: float = 0.1  # share of steps with linear warmup (sets train.warmup_steps unless given)
    layer_decay: float = 1.0  # layer-wise LR decay: layer l of L gets lr · decay^(L - l) (1 = off)
    dropout: float | None = None  # override the model's dropout (None = keep)
    metric: str = ""  # dev metric for best/ and early stopping ("" = the task's: accuracy / f1)
    limit_train: int = 0  # use the first N training examples (0 = all)
    limit_dev: int = 0  # use the first N dev examples (0 = all)
    seeds: int = 1  # train with seeds 0 … seeds-1 (runs <name>-seed<k>), report mean ± std, name the best
    # Parameter-efficient methods (zhixing.peft; command-line keys lora.r, prefix.tokens, ...: PEFT_KEYS)
    method: str = "full"  # full | lora | prompt_tuning | ptuning | prefix
    lora_r: int = 8  # LoRA rank
    lora_alpha: float = 16.0  # LoRA scale numerator: updates are scaled by alpha / r
    lora_dropout: float = 0.1  # dropout on the LoRA input (Hu et al.'s GLUE setting)
    lora_targets: str = ""  # layers to adapt: query,value (default for encoders), qkv (decoders), all-linear
    prompt_tokens: int = 20  # virtual tokens (prompt_tuning, ptuning) or prefix length (prefix)
    ptuning_encoder: str = "mlp"  # P-tuning's prompt encoder: mlp | lstm
    prefix_projection: int = 0  # prefix: hidden width of Li & Liang's MLP reparameterisation (0 = none)

    def __post_init__(self) -> None:
        if self.max_seq_len < 8:
            raise ConfigError(f"max_seq_len must be >= 8, got {self.max_seq_len}")
        if (self.epochs is not None and self.epochs <= 0) or self.eval_every <= 0:
            raise ConfigError("epochs and eval_every must be > 0")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        methods = ("full", "lora", "prompt_tuning", "ptuning", "prefix")
        if self.method not in methods:
            raise ConfigError(f"method={self.method!r}: expected one of {', '.join(methods)}")

    def method_settings(self) -> dict[str, Any]:
        """The settings of the parameter-efficient method (zhixing.peft.runs.apply_method)."""
        if self.method == "lora":
            targets = [t.strip() for t in self.lora_targets.split(",") if t.strip()]
            return {"r": self.lora_r, "alpha": self.lora_alpha, "dropout": self.lora_dropout,
                    "targets": targets}
        if self.method == "ptuning":
            return {"tokens": self.prompt_tokens, "encoder": self.ptuning_encoder}
        if self.method == "prefix" and self.prefix_projection:
            return {"tokens": self.prompt_tokens, "projection": self.prefix_projection}
        return {"tokens": self.prompt_tokens}


# Command-line names of the method settings (`zhixing finetune ... method=lora lora.r=8`) -> fields.
PEFT_KEYS = {"lora.r": "lora_r", "lora.alpha": "lora_alpha", "lora.dropout": "lora_dropout",
             "lora.targets": "lora_targets", "prompt_tuning.tokens": "prompt_tokens",
             "ptuning.tokens": "prompt_tokens", "prefix.tokens": "prompt_tokens",
             "ptuning.encoder": "ptuning_encoder", "prefix.projection": "prefix_projection"}


@dataclass
class WeightedConfig(FinetuneConfig):
    """Settings of a task whose classes may be weighted in the loss (classify, ner)."""

    class_weights: str = ""  # "" (none), "balanced", or comma-separated weights, one per label


POOLINGS = ("", "mean", "cls", "last")


@dataclass
class PooledConfig(WeightedConfig):
    """Settings of a task whose head reads one vector of the whole text (classify, relation)."""

    # what the head reads: "mean" of the real tokens' states (BERT and GPT), "cls" the pooled [CLS]
    # (BERT), "last" real token (GPT, as transformers); "" = the checkpoint's own: a sentence-transformers
    # encoder's mean pooling (modules.json), else the pooled [CLS] / the last token
    pooling: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling={self.pooling!r}: expected one of {', '.join(map(repr, POOLINGS))}")


def pooling_settings(cfg: Any) -> dict[str, Any]:
    """The ModelConfig field of cfg.pooling; left empty, the checkpoint's own — "mean" for a
    sentence-transformers encoder trained with mean pooling, the sentence embedding it was trained to
    produce, whose [CLS] pooler never was trained for it (SST-2, three seeds: benchmarks/RESULTS.md)."""
    from zhixing.hub import resolve, sentence_transformers_settings

    pooling = cfg.pooling
    if not pooling and cfg.model:
        directory, _ = resolve(cfg.model)
        pooling = "mean" if sentence_transformers_settings(directory).get("pooling") == "mean" else ""
    if pooling == "cls":  # an encoder's seq_cls head reads its pooler unless told to average
        pooling = "last"
    return {"seq_pooling": pooling} if pooling else {}


def settle_pooling(cfg: Any, model: Any) -> Any:
    """cfg with the pooling the loaded model's head reads recorded ("mean" when it averages). A pooling
    asked for that the architecture does not have, or that a model passed in was not built with, is an
    error, not silently another; the checkpoint's own (pooling left empty) on an architecture without it
    (ELECTRA, XLNet read their own summary) leaves the head its own."""
    arch, name = model.config.arch, cfg.model or "the model"
    reads = {"gpt": ("mean", "last"), "bert": ("mean", "cls")}.get(arch, ())
    averages = getattr(model.config, "seq_pooling", "") == "mean"
    if not cfg.pooling:
        if averages and "mean" not in reads:  # a sentence-transformers checkpoint's mean: the head's own
            model.config = model.config.replace(seq_pooling="last")
            return cfg
        return cfg.replace(pooling="mean") if averages else cfg
    if cfg.pooling not in reads:
        can = " or ".join(map(repr, reads)) if reads else "only its own (leave pooling empty)"
        raise ConfigError(f"pooling={cfg.pooling!r}: {name} is a {arch}, whose classifier reads {can}")
    actual = "mean" if averages else reads[-1]
    if cfg.pooling != actual:  # a model object given to fine-tuning, built with another head
        raise ConfigError(f"pooling={cfg.pooling!r}, but the model given reads {actual!r}; load it with "
                          f"the pooling wanted (seq_pooling) or leave pooling empty")
    return cfg


def _identity(examples: list, cfg: Any) -> list:
    return examples


def _no_labels(examples: Sequence[Any]) -> None:
    return None


def _any_labels(examples: Sequence[Any], names: Sequence[str], source: str) -> None:
    return None


@dataclass(frozen=True)
class Task:
    """One fine-tuning task. Examples are the task's own type (TextExample, TaggedSentence, QAExample);
    features are dicts of lists that zhixing.tasks.data.collate pads into batches.

    read(path, cfg, labeled=True) -> examples           a file in the task's format
    prepare(examples, cfg) -> examples                   examples given directly get what `read` does
    label_names(examples) -> names | None                the label set of the training examples
    check_labels(examples, names, source)                DataError naming labels the head cannot output
    encode_train(examples, tokenizer, cfg, names) -> features
    evaluate(model, tokenizer, examples, cfg) -> metrics     the whole dev/test set
    predict(model, tokenizer, inputs, cfg) -> outputs        raw inputs (see `inputs`)
    inputs(items) -> inputs                               user inputs (strings, pairs, dicts) -> predict's
    class_weights(examples, names) -> weights | None     "balanced" weights (tasks with WeightedConfig)
    model_settings(cfg) -> ModelConfig fields             what the head needs beyond labels (or None)
    adapt(cfg, model) -> cfg                              settings that depend on the loaded model, settled
                                                          (the model made ready for them), or None
    """

    name: str
    head: str  # the model head the task trains (seq_cls, token_cls, qa)
    metric: str  # the dev metric that selects best/ by default
    config: type[FinetuneConfig]
    read: Callable[..., list]
    encode_train: Callable[..., list[dict[str, Any]]]
    evaluate: Callable[..., dict[str, float | None]]
    predict: Callable[..., list]
    inputs: Callable[[Sequence[Any]], list]
    prepare: Callable[[list, Any], list] = _identity
    label_names: Callable[[Sequence[Any]], list[str] | None] = _no_labels
    check_labels: Callable[[Sequence[Any], Sequence[str], str], None] = _any_labels
    class_weights: Callable[[Sequence[Any], Sequence[str]], list[float]] | None = None
    # ModelConfig fields the task's head needs, from its settings (relation: the entity-marker ids)
    model_settings: Callable[[Any], dict[str, Any]] | None = None
    # settings that depend on the loaded model (NER: casing on for an uncased tokenizer), and the model
    # prepared for them (NER: its token-type table grown); the settled cfg is what the run records
    adapt: Callable[[Any, Any], Any] | None = None
    objective: str = "classification"  # the loss: "classification" (classes, -100 ignored) or "span"

    def settings(self, data: dict[str, Any], source: str = "task settings",
                 ignore: typing.Iterable[str] = ()) -> FinetuneConfig:
        """The task's settings from a dict; keys of other tasks are errors naming this task's keys."""
        data = {**data, "task": self.name}
        own = self.config.field_names()
        for key in data:
            if key not in own and key not in ignore:
                listed = ", ".join(k for k in own if k != "task")
                raise ConfigError(f"{source}: {key!r} is not a setting of task {self.name}"
                                  f"{nearest(key, own)}; its settings: {listed}")
        return self.config.from_dict(data, source=source, ignore=ignore)

    def greater_is_better(self, metric: str) -> bool:
        return "loss" not in metric


__all__ = ["Task", "FinetuneConfig", "WeightedConfig", "PooledConfig", "POOLINGS", "pooling_settings",
           "settle_pooling"]
