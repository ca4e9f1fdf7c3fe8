"""Masked language modelling (BERT, RoBERTa), optionally with next-sentence prediction.

    L_MLM = -1/N Σ_{t ∈ masked} log p(x_t | x̃),     L_NSP = -1/P Σ_pairs log p(IsNext | [CLS] A [SEP] B)

The MLM head runs on the masked positions only (~15% of the tokens): the same loss and accuracy for
~1/0.15 less head work than scoring every position. The two losses are two parts, each a mean over its
own targets (masked tokens, sentence pairs) across the whole step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.errors import ConfigError, TrainingError
from zhixing.models.heads import IGNORE
from zhixing.objectives.base import Batch, Objective


class MaskedLM(Objective):
    """MLM (+ NSP when `nsp=True`) for a model with `hidden(...)`, an `mlm` head, and for NSP `pool` +
    `nsp` (zhixing's Bert with head "mlm" or "pretraining"). Batches: input_ids (masked), labels (the
    original ids at masked positions, -100 elsewhere), attention_mask, token_type_ids, and for NSP
    next_sentence_label."""

    name = "mlm"

    def __init__(self, nsp: bool = False):
        self.nsp = nsp
        self.parts = ("mlm", "nsp") if nsp else ("mlm",)

    def __repr__(self) -> str:
        return f"MaskedLM(nsp={self.nsp})"

    def check(self, model: nn.Module) -> None:
        if getattr(model, "mlm", None) is None or not hasattr(model, "hidden"):
            raise ConfigError(f"masked LM training needs an encoder with an MLM head (head mlm or "
                              f"pretraining); got {type(model).__name__} with head {model.config.head!r}")
        if self.nsp and getattr(model, "nsp", None) is None:
            raise ConfigError("next-sentence prediction needs head pretraining (model.head=pretraining)")

    def targets(self, batch: Batch) -> tuple[float, ...]:
        n = int((batch["labels"] != IGNORE).sum())
        if not self.nsp:
            return (n,)
        return n, int((batch["next_sentence_label"] != IGNORE).sum())

    def _scores(self, model: nn.Module, batch: Batch):
        labels = batch["labels"]
        h = model.hidden(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"),
                         batch.get("position_ids"))
        keep = labels != IGNORE
        logits = model.mlm(h[keep])  # (n_masked, vocab), rows in the order of labels[keep]
        nsp_logits = model.nsp(model.pool(h)) if self.nsp else None
        return logits, labels[keep], nsp_logits

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        logits, target, nsp_logits = self._scores(model, batch)
        mlm = F.cross_entropy(logits.float(), target, reduction="sum")
        if not self.nsp:
            return (mlm,)
        nsp = F.cross_entropy(nsp_logits.float(), batch["next_sentence_label"], ignore_index=IGNORE,
                              reduction="sum")
        return mlm, nsp

    def eval_sums(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """[Σ MLM loss, masked tokens, correct predictions, Σ NSP loss, pairs, correct NSP]."""
        logits, target, nsp_logits = self._scores(model, batch)
        sums = torch.zeros(6, dtype=torch.float64, device=logits.device)
        sums[0] = F.cross_entropy(logits.float(), target, reduction="sum").double()
        sums[1] = target.numel()
        sums[2] = (logits.argmax(-1) == target).sum()
        if self.nsp:
            nsl = batch["next_sentence_label"]
            sums[3] = F.cross_entropy(nsp_logits.float(), nsl, ignore_index=IGNORE, reduction="sum").double()
            sums[4] = (nsl != IGNORE).sum()
            sums[5] = (nsp_logits.argmax(-1) == nsl).sum()
        return sums

    def eval_metrics(self, sums: list[float]) -> dict[str, float]:
        if sums[1] == 0:
            raise TrainingError("the validation batches hold no masked tokens; check data.val_fraction")
        loss = sums[0] / sums[1]
        out = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)), "mlm_accuracy": sums[2] / sums[1]}
        if sums[4]:
            out["nsp_loss"] = sums[3] / sums[4]
            out["nsp_accuracy"] = sums[5] / sums[4]
            out["val_loss"] = loss + out["nsp_loss"]  # the pretraining objective: MLM + NSP
        return out


__all__ = ["MaskedLM"]
