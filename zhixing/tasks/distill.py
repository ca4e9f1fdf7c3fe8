"""Distillation runs: a fine-tuned teacher -> a smaller student, trained by the one loop.

    distill(DistillConfig(teacher="runs/sst2-teacher", student="layers=0,2,4", temperature=2, alpha=0.5),
            get_task("classify").settings({"train": ..., "dev": ...}))

The student is built from the teacher (`build_student`: a subset of its layers, every other layer, or a
narrower random model) or loaded from a directory; the objective is zhixing.objectives.Distillation,
scored on the dev set like fine-tuning, so the run is a fine-tuning run (task.json, best/, pipeline).
`teacher_cache=FILE` keeps the teacher's logits of the training set in a safetensors file (row i =
training feature i, with a fingerprint of the inputs and the teacher), computed once and reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zhixing.config import Config
from zhixing.errors import ConfigError, DataError
from zhixing.tasks.base import FinetuneConfig


@dataclass
class DistillConfig(Config):
    """Settings of `zhixing distill` beyond the task's (key=value)."""

    teacher: str = ""  # the fine-tuned teacher: a run or model directory
    # student: "layers=0,2,4" (teacher layers copied), "every-other", "dim=192,num_heads=4,num_layers=3"
    # (a narrower random model), or a model directory with the teacher's vocabulary
    student: str = "every-other"
    temperature: float = 2.0  # T of the soft targets (> 0)
    alpha: float = 0.5  # weight of the hard-label cross-entropy
    kd_weight: float = 1.0  # weight of T²·KL(teacher ‖ student)
    hidden_weight: float = 0.0  # hidden-state MSE through layer_map (TinyBERT; 0 = off)
    attn_weight: float = 0.0  # attention-map MSE through layer_map (TinyBERT; 0 = off)
    cos_weight: float = 0.0  # cosine loss on the last hidden states (DistilBERT; 0 = off)
    layer_map: str = ""  # teacher layer per student layer incl. embeddings, e.g. "0,2,4,6" ("" = uniform)
    teacher_cache: str = ""  # safetensors file of the teacher's training-set logits ("" = live teacher)

    def __post_init__(self) -> None:
        from zhixing.objectives.distill import check_temperature

        check_temperature(self.temperature)


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise ConfigError(f"{what}={text!r}: expected comma-separated integers, e.g. 0,2,4") from None


def build_student(teacher: Any, spec: str) -> Any:
    """The student a spec names (see DistillConfig.student)."""
    from zhixing.objectives.distill import every_other_layer, narrow_student, student_from_layers

    spec = spec.strip()
    if spec in ("every-other", "every_other"):
        return student_from_layers(teacher, every_other_layer(teacher.config.num_layers))
    if spec.startswith("layers="):
        return student_from_layers(teacher, _ints(spec[len("layers="):], "student layers"))
    if "=" in spec and not Path(spec).exists():
        fields = {}
        allowed = ("dim", "num_layers", "num_heads", "ffn_dim", "head_dim")
        for item in spec.split(","):
            key, _, value = item.partition("=")
            if key.strip() not in allowed:
                raise ConfigError(f"student={spec!r}: {key.strip()!r} is not a width setting; use layers="
                                  f"0,2,4, every-other, or {', '.join(allowed)} (e.g. dim=192,num_heads=4)")
            fields[key.strip()] = int(value)
        return narrow_student(teacher, **fields)
    from zhixing.hub import load

    if not Path(spec).exists():
        raise FileNotFoundError(f"student={spec!r}: no such model directory (or use layers=0,2,4, "
                                "every-other, dim=...)")
    student = load(spec)
    if student.tokenizer is None:
        student.tokenizer = teacher.tokenizer
    return student


def fingerprint(features: list[dict[str, Any]], teacher_dir: Path) -> str:
    """sha256 of the training inputs and the teacher's weights file: a cache is reused only for both."""
    h = hashlib.sha256()
    for f in features:
        h.update(json.dumps([f["input_ids"], f.get("token_type_ids")]).encode())
    weights = teacher_dir / "model.safetensors"
    st = weights.stat() if weights.is_file() else None
    h.update(f"{weights}:{st.st_size if st else 0}:{st.st_mtime_ns if st else 0}".encode())
    return h.hexdigest()


@torch.no_grad()
def teacher_logits(teacher: Any, features: list[dict[str, Any]], pad_id: int, batch_size: int = 128
                   ) -> torch.Tensor:
    """(n, classes) fp32 logits of the teacher for every feature, row i = features[i]."""
    from zhixing.tasks.data import forward_all

    rows = [{k: v for k, v in f.items() if k in ("input_ids", "token_type_ids")} for f in features]
    out = torch.zeros(len(rows), teacher.config.num_labels)
    for idx, _, res in forward_all(teacher, rows, batch_size, pad_id, description="teacher logits"):
        out[idx] = res.logits
    return out


def cached_teacher_logits(path: str | Path, teacher: Any, teacher_dir: Path, features: list[dict[str, Any]],
                          pad_id: int) -> tuple[torch.Tensor, bool]:
    """(logits, reused): the cache file's logits when its fingerprint matches, else computed and written."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from zhixing.io import atomic_write

    path = Path(path)
    key = fingerprint(features, teacher_dir)
    if path.is_file():
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                if meta.get("fingerprint") == key:
                    return f.get_tensor("logits"), True
        except Exception as e:  # not a safetensors file: say so rather than overwrite something else
            raise DataError(f"teacher_cache={path}: not a readable safetensors file ({e}); remove it or "
                            "name another file") from None
    logits = teacher_logits(teacher, features, pad_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file({"logits": logits.contiguous()}, str(tmp),
                                             metadata={"fingerprint": key, "rows": str(len(features))}))
    return logits, False


def distill(dcfg: DistillConfig, cfg: FinetuneConfig, *, name: str = "distill",
            train_overrides: list[str] | tuple = (), train_examples: list | None = None,
            dev_examples: list | None = None) -> dict[str, Any]:
    """Train a student of dcfg.teacher on cfg.train, selected on cfg.dev; return the run's summary
    (dev metrics of best/, parameters of student and teacher, the cache's use)."""
    import time

    from zhixing.hub import load, resolve
    from zhixing.objectives.distill import Distillation, check_vocab
    from zhixing.tasks import get_task
    from zhixing.tasks.finetune import finetune, loop_config

    task = get_task(cfg.task)
    if task.objective == "span" or task.head != "seq_cls":
        raise ConfigError(f"distill supports --task classify (sequence classification); got {cfg.task}")
    if not dcfg.teacher:
        raise ConfigError("distill needs teacher= (a fine-tuned run or model directory)")
    if dcfg.teacher_cache and (dcfg.hidden_weight or dcfg.attn_weight or dcfg.cos_weight):
        raise ConfigError("teacher_cache holds logits only; the intermediate losses (hidden_weight, "
                          "attn_weight, cos_weight) need the live teacher: drop one or the other")
    teacher = load(dcfg.teacher).eval()
    teacher_dir, _ = resolve(dcfg.teacher)
    if teacher.config.head != task.head:
        raise ConfigError(f"teacher={dcfg.teacher}: a {teacher.config.head!r} model; distilling for "
                          f"{cfg.task} needs a fine-tuned {task.head} teacher")
    seed = loop_config(train_overrides).seed
    torch.manual_seed(seed)  # a narrower student's random initial weights
    student = build_student(teacher, dcfg.student)
    check_vocab(student, teacher)
    layer_map = _ints(dcfg.layer_map, "layer_map") if dcfg.layer_map else None
    info: dict[str, Any] = {**dcfg.to_dict(), "teacher_parameters": teacher.num_parameters(),
                            "student_parameters": student.num_parameters()}

    def make_objective(feats: list[dict[str, Any]], evaluator, metric: str, weights):
        cached = None
        for i, f in enumerate(feats):
            f["index"] = i  # the row of its cached teacher logits
        if dcfg.teacher_cache:
            t = time.perf_counter()
            cached, reused = cached_teacher_logits(dcfg.teacher_cache, teacher, teacher_dir, feats,
                                                   student.tokenizer.pad_id)
            info.update(teacher_cache=dcfg.teacher_cache, cache_reused=reused,
                        cache_s=round(time.perf_counter() - t, 2))
        return Distillation(teacher, dcfg.temperature, dcfg.alpha, dcfg.kd_weight, dcfg.hidden_weight,
                            dcfg.attn_weight, dcfg.cos_weight, layer_map, cached,
                            weights=weights.tolist() if weights is not None else None,
                            evaluator=evaluator, metric=metric)

    summary = finetune(cfg, name=name, train_overrides=list(train_overrides), train_examples=train_examples,
                       dev_examples=dev_examples, model=student, make_objective=make_objective,
                       records={"distill.json": info})  # info is filled in by make_objective
    summary["distill"] = info
    return summary


@dataclass
class LMDistillConfig(Config):
    """Settings of `zhixing distill --task lm` beyond the loop's (key=value)."""

    teacher: str = ""  # a GPT run or model directory (with its tokenizer)
    student: str = "every-other"  # as DistillConfig.student
    corpus: str = ""  # text file, glob or built-in corpus name
    temperature: float = 2.0  # T of the soft targets (> 0)
    alpha: float = 0.5  # weight of the hard next-token cross-entropy
    kd_weight: float = 1.0  # weight of T²·KL(teacher ‖ student) per predicted token
    block_size: int = 64  # tokens per training window
    val_fraction: float = 0.1  # held-out share of the corpus (its tail), scored as the student's loss
    split: str = "tail"  # how the held-out part is chosen (data.prepare_shards: tail, hash, auto)
    cache_dir: str = "data/cache"  # where the corpus's token shards are kept

    def __post_init__(self) -> None:
        from zhixing.objectives.distill import check_temperature

        check_temperature(self.temperature)


def distill_lm(cfg: LMDistillConfig, *, name: str = "distill-lm", train_overrides: list[str] | tuple = ()
               ) -> dict[str, Any]:
    """Train a GPT student on cfg.corpus to match the teacher's next-token distributions; returns the
    run's summary (val_loss = the student's own held-out loss)."""
    from zhixing.data import CLMLoader, TokenShards, prepare_shards
    from zhixing.hub import load
    from zhixing.io import RunDir
    from zhixing.objectives.distill import CausalLMDistillation
    from zhixing.train.config import TrainConfig
    from zhixing.train.loop import Trainer

    if not cfg.teacher or not cfg.corpus:
        raise ConfigError("distill --task lm needs --teacher (a GPT run or model) and --corpus")
    teacher = load(cfg.teacher).eval()
    if teacher.config.head != "lm":
        raise ConfigError(f"teacher={cfg.teacher}: a {teacher.config.arch} with head "
                          f"{teacher.config.head!r}; LM distillation needs a language model (head lm)")
    tok = teacher.tokenizer
    if tok is None:
        raise ConfigError(f"teacher={cfg.teacher}: no tokenizer next to the model")
    if cfg.block_size > teacher.config.max_seq_len:
        raise ConfigError(f"block_size={cfg.block_size} exceeds the teacher's max_seq_len "
                          f"{teacher.config.max_seq_len}")
    train_cfg = TrainConfig.from_dict({"keep_last": 1, "tensorboard": False},
                                      source="distill defaults").override(train_overrides)
    torch.manual_seed(train_cfg.seed)
    student = build_student(teacher, cfg.student)
    tag = hashlib.sha256(f"{Path(cfg.corpus).resolve()}:{tok.vocab_size}:{cfg.teacher}".encode()).hexdigest()
    shards = prepare_shards(cfg.corpus, tok, Path(cfg.cache_dir) / f"distill-lm-{tag[:12]}",
                            val_fraction=cfg.val_fraction, split=cfg.split, progress=train_cfg.progress)
    train, val = TokenShards(shards, "train"), TokenShards(shards, "val")
    common = dict(block_size=cfg.block_size, batch_size=train_cfg.batch_size)
    objective = CausalLMDistillation(teacher, cfg.temperature, cfg.alpha, cfg.kd_weight)
    run = RunDir(Path(train_cfg.out_dir) / name, tokenizer=tok, records={"distill.json": cfg.to_dict()})
    summary = Trainer(student, objective, train_cfg, CLMLoader(train, seed=train_cfg.seed, **common),
                      CLMLoader(val, seed=train_cfg.seed, **common), run=run).fit()
    summary["distill"] = {"teacher_parameters": teacher.num_parameters(),
                          "student_parameters": student.num_parameters()}
    summary["run_dir"] = str(run.path)
    return summary


__all__ = ["DistillConfig", "LMDistillConfig", "distill", "distill_lm", "build_student", "teacher_logits",
           "cached_teacher_logits", "fingerprint"]
