"""Cloze classification with a masked LM or an ELECTRA discriminator: zero-shot scoring, prompt-based
fine-tuning through the one Trainer, and PET's ensemble of patterns.

The equations are in zhixing/objectives/prompt.py (the objective that scores and trains); this module
turns examples into its batches: per example G inputs — one per distinct verbalizer word length (masked
LM: the template with L [MASK]s), or one per word (discriminator: the template filled with the word).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from zhixing.errors import ConfigError, DataError
from zhixing.objectives.prompt import SCORERS, PromptClassification, WordTable, word_table
from zhixing.prompts.template import Template, Verbalizer
from zhixing.tasks.data import TaskLoader, TextExample
from zhixing.tasks.metrics import classification_metrics
from zhixing.train.config import TrainConfig


def collate(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad prompt features (G inputs each) to (batch, G, longest) ids / mask / types and (batch, G, L)
    positions; labels (batch,) when present."""
    b, g = len(features), len(features[0]["input_ids"])
    t = max(len(ids) for f in features for ids in f["input_ids"])
    width = max(len(p) for f in features for p in f["positions"])
    ids = np.full((b, g, t), pad_id, dtype=np.int64)
    mask = np.zeros((b, g, t), dtype=np.int64)
    pos = np.zeros((b, g, width), dtype=np.int64)
    for i, f in enumerate(features):
        for j, (x, p) in enumerate(zip(f["input_ids"], f["positions"])):
            ids[i, j, :len(x)] = x
            mask[i, j, :len(x)] = 1
            pos[i, j, :len(p)] = p
    out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
           "token_type_ids": torch.zeros((b, g, t), dtype=torch.long), "positions": torch.from_numpy(pos)}
    if "labels" in features[0]:
        out["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
    return out


class PromptLoader(TaskLoader):
    """TaskLoader (endless seeded batches, exact resume) over prompt features."""

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate(features, self.pad_id)


class ClozeClassifier:
    """A template + verbalizer read through a model's pretrained head.

    scorer: "mlm" (a masked LM: BERT head "mlm"/"pretraining", ELECTRA generator), "rtd" (an ELECTRA
    discriminator), or "auto" (rtd when the model has one). An ELECTRA pretraining pair is read through
    its discriminator ("rtd"/"auto") or its generator ("mlm"). triggers: token ids for the [T]s.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, template: str | Template,
                 verbalizer: Verbalizer | dict, scorer: str = "auto", max_len: int = 128,
                 triggers: Sequence[int] | None = None):
        if hasattr(model, "discriminator"):  # an ELECTRA pretraining pair: its discriminator, or generator
            model = model.generator if scorer == "mlm" else model.discriminator
        self.model, self.tokenizer, self.max_len = model, tokenizer, max_len
        self.template = template if isinstance(template, Template) else Template(template)
        self.verbalizer = verbalizer if isinstance(verbalizer, Verbalizer) else Verbalizer(verbalizer)
        if scorer == "auto":
            scorer = "rtd" if getattr(model, "rtd", None) is not None else "mlm"
        if scorer not in SCORERS:
            raise ConfigError(f"scorer {scorer!r}: expected auto, {', '.join(SCORERS)}")
        self.scorer = scorer
        if tokenizer.pad_id is None:
            raise ConfigError("the tokenizer has no padding token; prompts need one to batch inputs")
        if scorer == "mlm" and tokenizer.mask_id is None:
            raise ConfigError("the tokenizer has no [MASK] token; a masked-LM prompt needs one")
        n = self.template.num_triggers
        filler = tokenizer.mask_id if tokenizer.mask_id is not None else tokenizer.unk_id
        self.triggers = list(triggers) if triggers is not None else [filler] * n
        self.entries = self.verbalizer.pieces(tokenizer)  # [(label, word, pieces)]
        if scorer == "mlm":
            self.lengths = sorted({len(p) for _, _, p in self.entries})
            groups = [self.lengths.index(len(p)) for _, _, p in self.entries]
        else:
            groups = list(range(len(self.entries)))
        self.words: WordTable = word_table([p for _, _, p in self.entries], [y for y, _, _ in self.entries],
                                           len(self.verbalizer.labels), groups)
        self.labels = self.verbalizer.labels
        PromptClassification(self.words, scorer).check(model)  # the model has the head the scorer reads

    # -- features ----------------------------------------------------------------------------------

    def slots(self) -> list[list[int]]:
        """What fills {mask} in each of an example's G inputs."""
        if self.scorer == "mlm":
            return [[self.tokenizer.mask_id] * n for n in self.lengths]
        return [p for _, _, p in self.entries]

    def features(self, examples: Sequence[TextExample], labeled: bool = True) -> list[dict[str, Any]]:
        index = {n: i for i, n in enumerate(self.labels)}
        slots = self.slots()
        feats = []
        for e in examples:
            encs = [self.template.encode(self.tokenizer, e.text, e.pair, s, self.triggers, self.max_len)
                    for s in slots]
            f: dict[str, Any] = {"input_ids": [x.ids for x in encs], "positions": [x.slot for x in encs],
                                 "triggers": [x.triggers for x in encs]}
            if labeled:
                if e.label not in index:
                    raise DataError(f"{e.where or 'example'}: label {e.label!r} has no verbalizer words; "
                                    f"the verbalizer covers {', '.join(map(repr, self.labels))}")
                f["labels"] = index[e.label]
            feats.append(f)
        return feats

    def loader(self, examples: Sequence[TextExample], batch_size: int, seed: int = 0,
               shuffle: bool = True) -> PromptLoader:
        return PromptLoader(self.features(examples), batch_size, self.tokenizer.pad_id, seed, shuffle)

    # -- scoring -----------------------------------------------------------------------------------

    @torch.no_grad()
    def scores(self, examples: Sequence[TextExample], batch_size: int = 32) -> torch.Tensor:
        """(n, num_labels) label scores s(y | x) (mean log-probabilities of the label words)."""
        model = self.model
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        feats = self.features(examples, labeled=False)
        out = []
        for i in range(0, len(feats), batch_size):
            batch = collate(feats[i:i + batch_size], self.tokenizer.pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            out.append(SCORERS[self.scorer](model, batch, self.words).float().cpu())
        model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    def log_probs(self, examples: Sequence[TextExample], batch_size: int = 32) -> torch.Tensor:
        """(n, num_labels) log p(y | x) = log_softmax_y s(y | x)."""
        return self.scores(examples, batch_size).log_softmax(-1)

    def predict(self, examples: Sequence[TextExample]) -> list[str]:
        return [self.labels[i] for i in self.scores(examples).argmax(-1).tolist()]

    def evaluate(self, examples: Sequence[TextExample], batch_size: int = 32) -> dict[str, float]:
        """accuracy and macro-F1 on labelled examples."""
        return metrics_of(self.labels, self.log_probs(examples, batch_size), examples)

    # -- prompt-based fine-tuning --------------------------------------------------------------------

    def finetune(self, train: Sequence[TextExample], dev: Sequence[TextExample] | None = None,
                 config: TrainConfig | None = None, run: str | None = None, **overrides: Any
                 ) -> dict[str, Any]:
        """Prompt-based fine-tuning (cross-entropy over the label words' scores) with the Trainer; with a
        dev set the weights of the best dev accuracy (first reached) are kept. `run`: a run directory
        (metrics.jsonl, checkpoints, best/) as for any Trainer run. Returns the summary plus "best_dev"
        metrics."""
        from zhixing.train import Trainer

        cfg = config or TrainConfig(progress=False, tensorboard=False, plots=False, device="cpu")
        if overrides:
            cfg = cfg.replace(**overrides)
        best = KeepBest(lambda _model: self.evaluate(dev, cfg.batch_size))
        objective = PromptClassification(self.words, self.scorer, best if dev else None)
        loader = self.loader(train, cfg.batch_size, cfg.seed)
        summary = Trainer(self.model, objective, cfg, loader, run=run).fit()
        best.restore(self.model)
        return {**summary, "best_dev": best.metrics}


class KeepBest:
    """A Trainer evaluator that keeps (in memory) the weights of the best dev accuracy, the first reached;
    `restore(model)` loads them back (when any evaluation ran) and puts the model in eval mode."""

    def __init__(self, evaluate: Callable[[nn.Module], dict[str, float]]):
        self.evaluate = evaluate
        self.accuracy, self.state, self.metrics = -math.inf, None, None

    def __call__(self, model: nn.Module) -> dict[str, float]:
        m = self.evaluate(model)
        if m["accuracy"] > self.accuracy:
            self.accuracy, self.metrics = m["accuracy"], m
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return m

    def restore(self, model: nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)
        model.eval()


def metrics_of(labels: Sequence[str], log_probs: torch.Tensor, examples: Sequence[TextExample]
               ) -> dict[str, float]:
    pred = [labels[i] for i in log_probs.argmax(-1).tolist()]
    return classification_metrics([e.label for e in examples], pred)


def ensemble(classifiers: Sequence[ClozeClassifier], examples: Sequence[TextExample],
             weights: Sequence[float] | None = None) -> torch.Tensor:
    """PET's ensemble of patterns: log p(y | x) ∝ Σ_k w_k log p_k(y | x) (w = 1 by default; PET weighs by
    each pattern's training accuracy). All classifiers must share the labels. (n, num_labels)."""
    if not classifiers:
        raise ConfigError("ensemble: no classifiers given")
    labels = classifiers[0].labels
    for c in classifiers[1:]:
        if c.labels != labels:
            raise ConfigError(f"ensemble: patterns disagree on the labels: {labels} vs {c.labels}")
    w = list(weights) if weights is not None else [1.0] * len(classifiers)
    total = sum(wk * c.log_probs(examples) for wk, c in zip(w, classifiers))
    return (total / sum(w)).log_softmax(-1)


__all__ = ["ClozeClassifier", "KeepBest", "PromptLoader", "collate", "ensemble", "metrics_of"]
