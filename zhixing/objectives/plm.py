"""Permutation language modelling (XLNet, Yang et al. 2019 §2.2–2.3): the objective.

For each sequence a factorisation order z is sampled and only its last tokens (partial prediction) are
predicted, each from the tokens before it in the order, through the query stream:

    L = -1/N Σ_sequences Σ_{t > c} log p(x_{z_t} | x_{z<t}),   p(· | ·) = softmax(W_E g_{z_t} + b)

N the number of predicted tokens. The batches (zhixing.data.plm.PLMLoader) carry perm_mask (who sees
whom), target_mapping (which positions the query stream predicts) and labels (their tokens, -100 for
padding rows); the loss is on the query stream only, and the output layer runs on the num_predict
query rows alone (about T/6 per sequence), never on the T content positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.errors import ConfigError
from zhixing.models.heads import IGNORE
from zhixing.objectives.base import Batch, Objective

INPUTS = ("input_ids", "attention_mask", "token_type_ids", "perm_mask", "target_mapping")


class PLM(Objective):
    """Permutation LM on an XLNet with the `lm` head. One loss part; metrics: loss, perplexity, accuracy
    of the predicted tokens."""

    name = "plm"

    def check(self, model: nn.Module) -> None:
        cfg = getattr(model, "config", None)
        if cfg is None or cfg.arch != "xlnet" or cfg.head != "lm":
            what = "a model without a config" if cfg is None else f"arch={cfg.arch!r}, head={cfg.head!r}"
            raise ConfigError(f"the plm objective trains an XLNet with the lm head (two-stream attention); "
                              f"got {what}; fix: model.preset=xlnet-tiny (or another xlnet-* preset)")

    def targets(self, batch: Batch) -> tuple[int, ...]:
        return (int((batch["labels"] != IGNORE).sum()),)

    def summed(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Σ cross-entropy, number of targets, number predicted right) over the batch's targets."""
        missing = [k for k in ("perm_mask", "target_mapping", "labels") if k not in batch]
        if missing:
            raise ValueError(f"a plm batch needs {missing} (see zhixing.data.plm.PLMLoader)")
        g = model.hidden(**{k: batch[k] for k in INPUTS if k in batch})  # (b, num_predict, dim): query stream
        logits = model.head(g).float()  # (b, num_predict, vocab)
        labels = batch["labels"]
        total = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")
        valid = labels != IGNORE
        correct = ((logits.argmax(dim=-1) == labels) & valid).sum()
        return total, valid.sum(), correct

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        # a sum over no target is a graph-connected 0, so a batch without targets still trains every part
        return (self.summed(model, batch)[0],)

    def eval_sums(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        total, n, correct = self.summed(model, batch)
        return torch.stack([total.detach().double(), n.double(), correct.double()])

    def eval_metrics(self, sums: list[float]) -> dict[str, float]:
        return {**super().eval_metrics(sums[:2]), "val_acc": sums[2] / sums[1]}  # loss, perplexity + accuracy


__all__ = ["PLM"]
