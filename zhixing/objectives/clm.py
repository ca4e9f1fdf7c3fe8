"""Causal language modelling (GPT): predict every next token.

    L = -1/N Σ_t log p(x_{t+1} | x_{≤t}),   p(· | x_{≤t}) = softmax(h_t W_outᵀ)

The output layer and the cross-entropy run fused (`heads.linear_cross_entropy`: the logits are turned
into their own gradient block by block while in cache, so the (tokens, vocab) log-probabilities and
their gradient never exist) when the states and the weights are fp32 outside autocast and not being
traced by torch.compile (which fuses the plain path itself); otherwise the plain head + cross-entropy.
Both give the same loss and gradients (tests/objectives).
"""

from __future__ import annotations

import torch
from torch import nn

from zhixing.errors import ConfigError
from zhixing.models.heads import IGNORE, linear_cross_entropy, lm_loss, shift_labels
from zhixing.objectives.base import Batch, Objective


def fusable(h: torch.Tensor, proj: nn.Linear) -> bool:
    """Whether the fused output layer + cross-entropy applies to states `h` and the output layer."""
    w = proj.weight
    return (h.dtype == w.dtype == torch.float32 and proj.bias is None
            and not torch.is_autocast_enabled(h.device.type) and not torch.compiler.is_compiling())


class CausalLM(Objective):
    """Next-token prediction for a model with `hidden(input_ids, attention_mask, position_ids)` and an
    LM head `head.proj` (zhixing's GPT). Batches: input_ids, labels (usually the inputs; -100 ignored),
    optionally attention_mask / position_ids; the shift by one happens here."""

    name = "clm"

    def check(self, model: nn.Module) -> None:
        head = getattr(model, "head", None)
        if not hasattr(model, "hidden") or not isinstance(getattr(head, "proj", None), nn.Linear):
            raise ConfigError(f"causal LM training needs a decoder with an LM head (a gpt-* preset with "
                              f"head lm); got {type(model).__name__} with head {model.config.head!r}")

    def targets(self, batch: Batch) -> tuple[float, ...]:
        labels = batch["labels"][:, 1:]  # position t predicts t + 1: the first label is never a target
        return (int((labels != IGNORE).sum()),)

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        h = model.hidden(batch["input_ids"], batch.get("attention_mask"), batch.get("position_ids"))
        labels = shift_labels(batch["labels"])
        proj = model.head.proj
        if fusable(h, proj):
            loss = linear_cross_entropy(h.reshape(-1, h.size(-1)), proj.weight, labels.reshape(-1),
                                        reduction="sum")
        else:
            loss = lm_loss(model.head(h), labels, shift=False, reduction="sum")
        return (loss,)


__all__ = ["CausalLM", "fusable"]
