"""Prompt-based classification (PET, Schick & Schütze 2021; LM-BFF, Gao et al. 2021): the class is read
from a pretrained head at a template's slots instead of from a new classifier.

Masked LM (`PromptMLM`). A template turns x into x' with L [MASK]s; a verbalizer maps label y to words
v ∈ V(y), word v to pieces (v_1..v_L). With the MLM head's log-probabilities at the masks,

    s(v | x) = 1/L Σ_i log p([MASK]_i = v_i | x')           (PET's mean over a word's pieces)
    s(y | x) = 1/|V(y)| Σ_{v ∈ V(y)} s(v | x)
    p(y | x) = softmax_y s(y | x),      L = -log p(y* | x)      (prompt-based fine-tuning)

A word of L pieces is scored on a copy of the template with exactly L masks, so words of different
lengths are read from different inputs: a batch holds G inputs per example, one per distinct length.

ELECTRA discriminator (`PromptRTD`; Xia et al. 2022, "Prompting ELECTRA"). The template is filled with
each word v in turn; D_t is the discriminator's "replaced" logit at the word's pieces, and

    s(v | x) = 1/L Σ_i log σ(-D_{t_i}(x'_v))                  (log-probability that the word is original)

with s(y | x), p(y | x) and the loss as above. Both read the model through `hidden` and the head's
module on the few scored positions only (the MLM head's vocabulary projection on 1-3 positions per
input, not on the whole sequence).

Batches (built by zhixing.prompts): input_ids / attention_mask / token_type_ids (batch, G, seq),
positions (batch, G, L_max) — the slots read in each input — and labels (batch,). `words`: a `WordTable`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.errors import ConfigError
from zhixing.objectives.base import Batch, Objective


@dataclass
class WordTable:
    """The verbalizer as tensors. pieces (W, L_max): each word's token ids, -1 after its end; group (W,):
    the input (of the batch's G per example) the word is read from; label (W,): its class index."""

    pieces: torch.Tensor
    group: torch.Tensor
    label: torch.Tensor
    num_labels: int

    def label_matrix(self, device: torch.device) -> torch.Tensor:
        """(num_labels, W): row y averages the scores of y's words."""
        m = F.one_hot(self.label, self.num_labels).T.float()
        return (m / m.sum(1, keepdim=True).clamp(min=1)).to(device)


def _flat(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int, int]:
    ids = batch["input_ids"]
    b, g, t = ids.shape
    types = batch.get("token_type_ids")
    return (ids.reshape(b * g, t), batch["attention_mask"].reshape(b * g, t),
            None if types is None else types.reshape(b * g, t), b, g)


def _slot_states(model: nn.Module, batch: Batch) -> torch.Tensor:
    """(batch, G, L_max, dim): the final hidden states at each input's scored positions."""
    ids, mask, types, b, g = _flat(batch)
    h = model.hidden(ids, mask, types)  # (b·g, seq, dim)
    pos = batch["positions"].reshape(b * g, -1)  # (b·g, L_max)
    states = h.gather(1, pos[..., None].expand(-1, -1, h.size(-1)))
    return states.reshape(b, g, pos.size(1), h.size(-1))


def mlm_label_scores(model: nn.Module, batch: Batch, words: WordTable) -> torch.Tensor:
    """(batch, num_labels) s(y | x) from a masked LM's head (`model.mlm`); see the module docstring."""
    states = _slot_states(model, batch)  # (b, G, L, dim)
    logp = model.mlm(states).float().log_softmax(-1)  # (b, G, L, vocab)
    pieces = words.pieces.to(logp.device)
    valid = (pieces >= 0).float()  # (W, L)
    w, width = pieces.shape
    group = words.group.to(logp.device)[:, None].expand(w, width)
    slot = torch.arange(width, device=logp.device)[None].expand(w, width)
    lp = logp[:, group, slot, pieces.clamp(min=0)]  # (b, W, L): log p(piece i of word w at its mask i)
    word_scores = (lp * valid).sum(-1) / valid.sum(-1)  # (b, W)
    return word_scores @ words.label_matrix(logp.device).T


def rtd_label_scores(model: nn.Module, batch: Batch, words: WordTable) -> torch.Tensor:
    """(batch, num_labels) s(y | x) from an ELECTRA discriminator (`model.rtd`): input w of each example
    is the template filled with word w (G = W), `positions` its pieces."""
    states = _slot_states(model, batch)  # (b, W, L, dim)
    logit_replaced = model.rtd(states).float()  # (b, W, L)
    valid = (words.pieces.to(states.device) >= 0).float()  # (W, L)
    word_scores = (F.logsigmoid(-logit_replaced) * valid).sum(-1) / valid.sum(-1)  # (b, W)
    return word_scores @ words.label_matrix(states.device).T


SCORERS: dict[str, Callable[[nn.Module, Batch, WordTable], torch.Tensor]] = {
    "mlm": mlm_label_scores, "rtd": rtd_label_scores}


class PromptClassification(Objective):
    """Cross-entropy over the label scores s(y | x) read at a template's slots (`scorer` "mlm": the
    masked-LM head, "rtd": the ELECTRA discriminator). `evaluator(model) -> metrics` scores a dev set."""

    name = "prompt"

    def __init__(self, words: WordTable, scorer: str = "mlm",
                 evaluator: Callable[[nn.Module], dict[str, float]] | None = None, metric: str = "accuracy"):
        if scorer not in SCORERS:
            raise ConfigError(f"prompt scorer {scorer!r}: expected one of {', '.join(SCORERS)}")
        self.words, self.scorer, self.evaluator = words, scorer, evaluator
        self.metric = metric if evaluator is not None else "val_loss"
        self.greater_is_better = "loss" not in self.metric

    def check(self, model: nn.Module) -> None:
        head = self.scorer  # the module the scorer reads: model.mlm / model.rtd
        if getattr(model, head, None) is None:
            raise ConfigError(f"prompt scorer {self.scorer!r} needs a model with a {head!r} head "
                              f"(head={head}); the model has head={model.config.head!r}")

    def scores(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return SCORERS[self.scorer](model, batch, self.words)

    def targets(self, batch: Batch) -> tuple[float, ...]:
        return (batch["labels"].size(0),)

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        return (F.cross_entropy(self.scores(model, batch), batch["labels"], reduction="sum"),)

    def evaluate(self, model: nn.Module) -> dict[str, float] | None:
        return dict(self.evaluator(model)) if self.evaluator is not None else None


def word_table(pieces: Sequence[Sequence[int]], labels: Sequence[int], num_labels: int,
               groups: Sequence[int]) -> WordTable:
    """A WordTable from per-word piece ids, label indices and input groups."""
    width = max(len(p) for p in pieces)
    t = torch.full((len(pieces), width), -1, dtype=torch.long)
    for i, p in enumerate(pieces):
        t[i, :len(p)] = torch.tensor(list(p))
    return WordTable(t, torch.tensor(list(groups)), torch.tensor(list(labels)), num_labels)


__all__ = ["WordTable", "PromptClassification", "mlm_label_scores", "rtd_label_scores", "word_table",
           "SCORERS"]
