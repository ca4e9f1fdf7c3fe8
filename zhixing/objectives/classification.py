"""Fine-tuning objectives: classification of sequences or tokens, and extractive QA spans.

    classification:  L = Σ_i w_{y_i} · (-log p(y_i | x)) / Σ_i w_{y_i}     (w = 1 without class weights)
    span QA:         L = 1/B Σ_b (-log p_start(s_b) - log p_end(e_b)) / 2

Labels -100 take no part (padding, a word's non-first sub-tokens in NER). With class weights the target
mass of a batch is Σ w_{y_i}, so an accumulated step is the weighted mean over the whole step, as one
large batch would give. The model is called as a whole (`model(input_ids, ...)` -> logits): these heads
are small, there is nothing to fuse.

Evaluation: the task (zhixing.tasks) scores its whole dev set — accuracy, entity F1, span F1 — through
`evaluator(model) -> metrics`; `metric` / `greater_is_better` say which of them selects best/.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from zhixing.errors import ConfigError
from zhixing.models.heads import IGNORE, classification_loss, span_loss
from zhixing.objectives.base import Batch, Objective

INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def _logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(**{k: batch[k] for k in INPUTS if k in batch}).logits


class _Evaluated(Objective):
    """An objective whose metrics come from a whole-dev-set evaluator (or the loop's summed losses)."""

    def __init__(self, evaluator: Callable[[nn.Module], dict[str, float]] | None = None,
                 metric: str = "val_loss", greater_is_better: bool | None = None):
        self.evaluator = evaluator
        self.metric = metric
        self.greater_is_better = "loss" not in metric if greater_is_better is None else greater_is_better

    def evaluate(self, model: nn.Module) -> dict[str, float] | None:
        return dict(self.evaluator(model)) if self.evaluator is not None else None


class Classification(_Evaluated):
    """Cross-entropy over classes of a `seq_cls` head (labels (batch,)) or a `token_cls` head (labels
    (batch, seq), -100 ignored); mean squared error for a one-output (regression) head.
    `weights`: one weight per class (class-weighted cross-entropy)."""

    name = "classification"

    def __init__(self, weights: Sequence[float] | None = None, **kw):
        super().__init__(**kw)
        self.weights = torch.tensor(list(weights), dtype=torch.float32) if weights is not None else None

    def check(self, model: nn.Module) -> None:
        if model.config.head not in ("seq_cls", "token_cls"):
            raise ConfigError(f"classification needs a seq_cls or token_cls head; the model has "
                              f"{model.config.head!r}")
        if self.weights is not None and len(self.weights) != model.config.num_labels:
            raise ConfigError(f"class weights: {len(self.weights)} values for {model.config.num_labels} "
                              "labels; give one weight per label")

    def targets(self, batch: Batch) -> tuple[float, ...]:
        labels = batch["labels"]
        keep = labels != IGNORE
        if self.weights is None:
            return (int(keep.sum()),)
        return (float(self.weights[labels[keep]].sum()),)

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        logits = _logits(model, batch)
        w = self.weights.to(logits.device) if self.weights is not None else None
        return (classification_loss(logits, batch["labels"], reduction="sum", weight=w),)


class SpanQA(_Evaluated):
    """Extractive QA: start/end cross-entropy of a `qa` head; labels (batch, 2) = (start, end)."""

    name = "span_qa"

    def check(self, model: nn.Module) -> None:
        if model.config.head != "qa":
            raise ConfigError(f"span QA needs a qa head; the model has {model.config.head!r}")

    def targets(self, batch: Batch) -> tuple[float, ...]:
        return (batch["labels"].size(0),)

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        return (span_loss(_logits(model, batch), batch["labels"], reduction="sum"),)


__all__ = ["Classification", "SpanQA"]
