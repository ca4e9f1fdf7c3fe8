"""Sequence-to-sequence training (translation): the decoder predicts the target given the source.

    L = -1/N Σ_t [(1 - ε) log p(y_t | y_<t, x) + ε/V Σ_v log p(v | y_<t, x)]

teacher forcing (the decoder reads the target shifted right, zhixing.models.transformer.shift_right) and
label smoothing ε (Szegedy et al. 2016; Vaswani et al. 2017 use ε = 0.1): part of every target's mass
is spread uniformly over the vocabulary, which costs perplexity and buys BLEU. Evaluation reports the
unsmoothed loss (val_loss, val_ppl: comparable across ε) and the token accuracy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.errors import ConfigError, TrainingError
from zhixing.models.heads import IGNORE
from zhixing.objectives.base import Batch, Objective


class Seq2Seq(Objective):
    """Label-smoothed cross-entropy of an encoder–decoder. Batches: input_ids, attention_mask (source),
    labels (target + eos, -100 past its end)."""

    name = "seq2seq"

    def __init__(self, label_smoothing: float = 0.1):
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def check(self, model: nn.Module) -> None:
        if getattr(model.config, "arch", None) != "transformer":
            raise ConfigError(f"sequence-to-sequence training needs an encoder–decoder (a transformer-* "
                              f"preset); got arch {model.config.arch!r}")

    def targets(self, batch: Batch) -> tuple[float, ...]:
        return (int((batch["labels"] != IGNORE).sum()),)

    def _logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        out = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                    labels=None, decoder_input_ids=batch["decoder_input_ids"])
        return out.logits.float()

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        logits = self._logits(model, batch)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch["labels"].reshape(-1),
                               ignore_index=IGNORE, reduction="sum", label_smoothing=self.label_smoothing)
        return (loss,)

    def eval_sums(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        logits = self._logits(model, batch)
        labels = batch["labels"]
        keep = labels != IGNORE
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE,
                              reduction="sum")
        correct = ((logits.argmax(-1) == labels) & keep).sum()
        return torch.stack([nll.double(), keep.sum().double(), correct.double()])

    def eval_metrics(self, sums: list[float]) -> dict[str, float]:
        if sums[1] == 0:
            raise TrainingError("the validation batches hold no target tokens")
        loss = sums[0] / sums[1]
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)),
                "val_token_accuracy": sums[2] / sums[1]}


__all__ = ["Seq2Seq"]
