"""Training configuration: `TrainConfig` (the loop), `DataConfig` (corpus -> batches) and `Recipe`, the
YAML file that names a whole run (model + data + train) and takes dotted `key=value` overrides.

    name: gpt-shakespeare-char
    model: {preset: gpt-mini, dropout: 0.2}      # a ModelConfig preset + field overrides
    data:  {corpus: tinyshakespeare, tokenizer_kind: char, block_size: 256}
    train: {max_steps: 5000, lr: 1.0e-3, batch_size: 64}

Unknown keys anywhere are errors naming the section, the key and the nearest valid one.
"""

from __future__ import annotations

import json
import os
import sysconfig
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zhixing.config import Config, ConfigError, ModelConfig, atomic_write_text, nearest


@dataclass
class TrainConfig(Config):
    """Everything the one training loop needs; a recipe's `train:` section."""

    # -- run ----------------------------------------------------------------------------------------
    out_dir: str = "runs"  # runs are written to <out_dir>/<name>/
    seed: int = 1337  # seeds model init, dropout and the data order
    device: str = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", "mps"
    dtype: typing.Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # autocast dtype (auto: bf16 on
    # cuda when supported, else float32); float16 adds a GradScaler
    compile: bool = False  # torch.compile the model (worth it on GPU for long runs)
    distributed: typing.Literal["auto", "ddp", "fsdp"] = "auto"  # under torchrun: auto = ddp
    num_threads: int = 0  # CPU intra-op threads (0 = torch's default, split between local ranks)
    # -- steps and batches --------------------------------------------------------------------------
    max_steps: int = 1000  # optimizer steps
    max_time: float = 0.0  # stop (and save) after this many seconds of training (0 = no limit)
    batch_size: int = 8  # sequences per micro-batch per process
    grad_accum_steps: int = 1  # micro-batches per optimizer step (global batch = batch x accum x world)
    # -- optimizer ----------------------------------------------------------------------------------
    lr: float = 3e-4  # peak learning rate
    min_lr: float = 0.0  # floor of the cosine / linear decay
    schedule: typing.Literal["cosine", "linear", "constant", "inverse_sqrt"] = "cosine"  # shape after warmup
    warmup_steps: int = 0  # linear warmup from 0 to lr
    decay_steps: int | None = None  # step at which the decay reaches min_lr (None = max_steps)
    weight_decay: float = 0.1  # AdamW decoupled decay, applied to matrices only (not norms, biases)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW epsilon
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)
    fused: bool | None = None  # fused AdamW kernel (None = on when the device supports it)
    # -- evaluation ---------------------------------------------------------------------------------
    eval_interval: int = 250  # evaluate every N steps (0 = only at the end)
    eval_batches: int = 20  # validation batches per evaluation
    early_stopping_patience: int = 0  # stop after N evaluations without improvement (0 = never)
    early_stopping_min_delta: float = 0.0  # an improvement must beat the best val loss by this much
    # -- checkpoints --------------------------------------------------------------------------------
    save_interval: int = 0  # checkpoint every N steps (0 = at eval_interval); always at the end
    keep_last: int = 2  # keep the newest K step checkpoints (best/ is kept apart)
    save_best: bool = True  # copy the model with the lowest val loss to best/
    # continue from the newest checkpoint of this run (exactly: data, RNG, LR); "auto": resume when the run
    # directory holds a checkpoint of this same run (same config), else start fresh (scheduler restarts)
    resume: bool | typing.Literal["auto"] = False
    overwrite: bool = False  # start afresh in a run directory that already holds checkpoints
    # -- logging ------------------------------------------------------------------------------------
    log_interval: int = 10  # read the loss back from the device every N steps (a sync; keep it sparse)
    progress: bool = True  # live progress bar (rank 0)
    tensorboard: bool = True  # write <run>/tb/ when the `tensorboard` package is installed
    plots: bool = True  # loss / LR curves as PNG at the end
    loggers: list[str] = field(default_factory=list)  # experiment trackers: wandb, mlflow (callbacks.py)

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum_steps", "eval_batches", "log_interval",
                     "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "max_time", "eps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("eval_interval", "save_interval", "warmup_steps", "early_stopping_patience"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.min_lr > self.lr:
            raise ConfigError(f"train.min_lr={self.min_lr} is above train.lr={self.lr}")
        if self.warmup_steps > self.max_steps:
            # A quick run (max_steps lowered on the command line) keeps the recipe's warmup: scale it down
            # to a tenth of the run instead of failing.
            scaled = self.max_steps // 10
            warnings.warn(f"train.warmup_steps={self.warmup_steps} exceeds train.max_steps={self.max_steps}; "
                          f"using warmup_steps={scaled} (a tenth of the run); set train.warmup_steps to "
                          "choose",
                          stacklevel=2)
            self.warmup_steps = scaled

    @property
    def checkpoint_interval(self) -> int:
        return self.save_interval or self.eval_interval


@dataclass
class DataConfig(Config):
    """Where the batches come from; a recipe's `data:` section."""

    corpus: str = "peoples-daily"  # built-in corpus name (zhixing.data) or a path (file, directory, glob)
    tokenizer: str | None = None  # a tokenizer directory to use; None = train one (cached in cache_dir)
    # when training one; words: Chinese characters + frequent jieba words (WoBERT)
    tokenizer_kind: typing.Literal["wordpiece", "bpe", "byte_bpe", "char", "words"] = "bpe"
    vocab_size: int = 8000  # when training one (char: an upper bound)
    chinese_words: str | None = None  # "jieba": word ids for Chinese whole-word masking
    cache_dir: str = "runs/.prepared"  # trained tokenizers + token shards, per corpus/kind/vocab
    val_fraction: float = 0.01  # share held out for validation
    split: typing.Literal["auto", "hash", "tail"] = "auto"  # hash: by document; tail: last tokens (nanoGPT)
    objective: typing.Literal["clm", "mlm", "rtd", "plm", "seq2seq", "sft"] = "clm"  # causal LM (GPT),
    # masked LM (BERT), replaced-token detection (ELECTRA generator + discriminator), permutation LM
    # (XLNet), sequence to sequence (translation: corpus = a directory of <split>.<lang> files, or
    # multi30k), or instruction tuning (sft: corpus = JSONL conversations, model.init = a trained GPT)
    block_size: int = 256  # tokens per training sequence (<= model.max_seq_len)
    mlm_probability: float = 0.15  # share of tokens masked (mlm, rtd)
    mask_ratio: float = 0.8  # of the masked tokens, the share replaced by [MASK] (BERT 0.8; ELECTRA 0.85)
    random_ratio: float = 0.1  # of the masked tokens, the share replaced by a random token (ELECTRA 0)
    disc_weight: float = 50.0  # rtd: λ, the weight of the discriminator's loss (ELECTRA: 50)
    plm_k: int = 6  # plm: predict the last 1/K of each factorisation order (XLNet: 6 or 7)
    plm_max_span: int = 5  # plm: longest span of words permuted as a unit
    whole_word: bool = False  # mask whole words (Chinese: jieba words) (mlm)
    nsp: bool = False  # next-sentence prediction pairs + token_type_ids (mlm; needs head "pretraining")
    # seq2seq (zhixing.tasks.translate): languages, splits, label smoothing, the evaluation's decoding
    source_lang: str = "de"  # <split>.<source_lang> holds the source side
    target_lang: str = "en"
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test_2016_flickr"  # scored with BLEU after training ("" = none)
    label_smoothing: float = 0.1  # ε: the share of each target's mass spread over the vocabulary
    average_last: int = 5  # average the weights of the last K checkpoints before the test (1 = off)
    num_beams: int = 5  # beam width of the test translation (1 = greedy)
    length_penalty: float = 1.0  # beam score / length**α
    val_bleu: bool = False  # also translate the val split greedily at each evaluation: <run>/val_bleu.jsonl
    # sft (zhixing.recipes.sft)
    chat_template: str | None = None  # a Jinja chat template file (default: the init tokenizer's, or plain)
    pack: bool = True  # several conversations per row of block_size tokens (block-diagonal attention)

    def __post_init__(self) -> None:
        if self.block_size < 2:
            raise ConfigError(f"data.block_size must be >= 2, got {self.block_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ConfigError(f"data.mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if self.nsp and self.objective != "mlm":
            raise ConfigError("data.nsp=true needs data.objective=mlm")
        if not (0 <= self.mask_ratio <= 1 and 0 <= self.random_ratio <= 1
                and self.mask_ratio + self.random_ratio <= 1):
            raise ConfigError(f"data.mask_ratio={self.mask_ratio} and data.random_ratio={self.random_ratio}: "
                              "each in [0, 1], their sum at most 1 (the rest keeps the original token)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"data.label_smoothing={self.label_smoothing}: expected a value in [0, 1)")
        if self.average_last < 1 or self.num_beams < 1:
            raise ConfigError("data.average_last and data.num_beams must be >= 1")
        if not self.disc_weight > 0:
            raise ConfigError(f"data.disc_weight={self.disc_weight}: expected a weight > 0 (ELECTRA uses 50)")


MODEL_KEYS = ("preset", "init", *ModelConfig.field_names())
# A recipe's `peft` section: continue pretraining `model.init` with LoRA adapters (zhixing.peft), the rest
# of the model frozen. The values are checked by zhixing.peft.LoRAConfig when the recipe is built.
PEFT_KEYS = ("method", "r", "alpha", "dropout", "targets")


@dataclass
class Recipe:
    """A whole run: its name, the model (a preset + overrides), the data and the loop settings."""

    name: str
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "gpt-tiny"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    peft: dict[str, Any] = field(default_factory=dict)  # {} or {"method": "lora", "r": 8, ...}
    source: str = "recipe"  # where it was read from (for error messages; not saved)

    @property
    def run_dir(self) -> Path:
        return Path(self.train.out_dir) / self.name

    def model_config(self, **fixed: Any) -> ModelConfig:
        """The ModelConfig: preset, then the recipe's overrides, then `fixed` (e.g. the tokenizer's vocab)."""
        spec = dict(self.model)
        preset = spec.pop("preset", None)
        init = spec.pop("init", None)
        if init is not None:  # continue from a trained model: its config, with the recipe's overrides
            if preset is not None:
                raise ConfigError(f"{self.source}: model.init and model.preset both given; the model is "
                                  "init's (drop model.preset)")
            return self._init_config(init, spec, fixed)
        for key, value in fixed.items():
            if key in spec and value is not None and spec[key] != value:
                raise ConfigError(
                    f"{self.source}: model.{key}={spec[key]} disagrees with the data ({key}={value}); "
                    f"remove model.{key} from the recipe (it is taken from the tokenizer)"
                )
            if value is not None:
                spec[key] = value
        try:
            if preset is None:
                return ModelConfig.from_dict(spec, source=f"{self.source}: model")
            return ModelConfig.from_preset(preset, **spec)
        except ConfigError as e:
            raise ConfigError(f"{self.source}: model: {e}") from None

    def _init_config(self, init: str, spec: dict[str, Any], fixed: dict[str, Any]) -> ModelConfig:
        from zhixing.hub import load, resolve

        try:
            directory, _ = resolve(init)
        except (FileNotFoundError, NotADirectoryError) as e:
            raise ConfigError(f"{self.source}: model.init={init!r}: {e}") from None
        data = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        base = ModelConfig.load(directory) if "arch" in data else load(directory).config  # else: HF
        for key, value in fixed.items():
            if value is not None and getattr(base, key) != value:
                raise ConfigError(f"{self.source}: model.init={init!r} has {key}={getattr(base, key)} but "
                                  f"the data gives {key}={value}; continue with the init model's own "
                                  "tokenizer (leave data.tokenizer unset)")
        try:
            return base.replace(**spec)
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{self.source}: model: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "model": dict(self.model), "data": self.data.to_dict(),
               "train": self.train.to_dict()}
        if self.peft:
            out["peft"] = dict(self.peft)
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the resolved recipe (every field, defaults included) so the run can be repeated."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        atomic_write_text(path, text)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "recipe") -> Recipe:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping with sections name/model/data/train")
        sections = ("name", "model", "data", "train", "peft")
        for key in data:
            if key not in sections:
                raise ConfigError(f"{source}: unknown section {key!r}{nearest(key, sections)}; "
                                  f"a recipe has {', '.join(sections)}")
        for key in ("model", "data", "train", "peft"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise ConfigError(f"{source}: section {key!r} must be a mapping, got {data[key]!r}")
        name = data.get("name") or Path(source).stem
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ConfigError(f"{source}: name must be a plain directory name, got {name!r}")
        model = dict(data.get("model") or {"preset": "gpt-tiny"})
        for key in model:
            if key not in MODEL_KEYS:
                raise ConfigError(f"{source}: unknown key model.{key}{nearest(key, MODEL_KEYS)}")
        try:
            data_cfg = DataConfig.from_dict(data.get("data") or {}, source=f"{source}: data")
            train_cfg = TrainConfig.from_dict(data.get("train") or {}, source=f"{source}: train")
        except ConfigError as e:  # a value check (__post_init__) names the field, not the file
            if str(e).startswith(str(source)):
                raise
            raise ConfigError(f"{source}: {e}") from None
        peft = dict(data.get("peft") or {})
        for key in peft:
            if key not in PEFT_KEYS:
                raise ConfigError(f"{source}: unknown key peft.{key}{nearest(key, PEFT_KEYS)}; the section "
                                  f"has {', '.join(PEFT_KEYS)}")
        if peft and peft.get("method", "lora") not in ("lora", "full"):
            raise ConfigError(f"{source}: peft.method={peft['method']!r}: a pretraining recipe continues "
                              "with lora (or full); soft prompts and prefixes are fine-tuning methods "
                              "(zhixing finetune method=...)")
        if peft.get("method") == "full":
            peft = {}
        elif peft:
            peft["method"] = "lora"
        recipe = cls(name=name, model=model, data=data_cfg, train=train_cfg, peft=peft, source=source)
        recipe.model_config()  # validate the model section now, not after the data is prepared
        return recipe

    @classmethod
    def load(cls, path: str | os.PathLike, overrides: typing.Sequence[str] = ()) -> Recipe:
        """Read a YAML recipe and apply `section.key=value` overrides (`train.lr=3e-4`, `name=foo`)."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            shipped = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
            hint = nearest(path.stem, shipped)
            raise ConfigError(f"{path}: recipe not found{hint}; shipped recipes: {', '.join(shipped)}")\
                from None
        except UnicodeDecodeError as e:
            line = path.read_bytes()[:e.start].count(b"\n") + 1
            raise ConfigError(f"{path}: line {line}: not UTF-8 text ({e.reason}); save the recipe as UTF-8")\
                from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
            problem = " ".join(str(getattr(e, "problem", None) or e).split())  # one line
            raise ConfigError(f"{path}:{where} not valid YAML ({problem})") from None
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping with sections name/model/data/train, found "
                              f"{type(raw).__name__}")
        return cls.from_dict(apply_overrides(raw or {}, overrides), source=str(path))


def apply_overrides(data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """`train.lr=3e-4` -> data["train"]["lr"] = 3e-4 (the value parsed as YAML: numbers, bools, null)."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.lr=3e-4")
        key, value = (s.strip() for s in item.split("=", 1))
        parts = key.split(".")
        if len(parts) == 1 and parts[0] == "name":
            data["name"] = value
            continue
        sections = {"model": MODEL_KEYS, "data": DataConfig.field_names(), "train": TrainConfig.field_names(),
                    "peft": PEFT_KEYS}
        if len(parts) != 2 or parts[0] not in sections:
            guess = nearest(key, [f"{s}.{k}" for s, keys in sections.items() for k in keys] + ["name"])
            raise ConfigError(f"override {item!r}: unknown key {key!r}{guess}; use section.key=value with "
                              "section model, data, train or peft")
        section, field_name = parts
        if field_name not in sections[section]:
            guess = nearest(key, [f"{section}.{k}" for k in sections[section]])
            raise ConfigError(f"override {item!r}: unknown key {key!r}{guess}")
        try:
            parsed = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            parsed = value
        data.setdefault(section, {})
        if data[section] is None:
            data[section] = {}
        data[section][field_name] = parsed
    return data


def recipes_dir() -> Path:
    """The shipped recipes: `configs/` next to the package in a checkout (or an editable install); after
    a wheel install, the copy that pyproject's data-files put under <prefix>/share/zhixing/configs."""
    checkout = Path(__file__).resolve().parents[2] / "configs"
    if checkout.is_dir():
        return checkout
    return Path(sysconfig.get_path("data")) / "share" / "zhixing" / "configs"

