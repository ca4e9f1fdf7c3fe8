"""Task heads: what turns hidden states into logits, and the loss that trains them.

Each head maps the backbone's states to logits; `head_loss` computes the matching objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.config import ModelConfig
from zhixing.nn.layers import _ACTIVATIONS, make_norm

IGNORE = -100  # label value that takes no part in a loss (padding, non-first sub-tokens, unmasked tokens)


class LMHead(nn.Module):
    """Next-token logits = h W_E^T (tied to the token embedding) or a separate matrix."""

    def __init__(self, cfg: ModelConfig, embedding: nn.Embedding):
        super().__init__()
        self.proj = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.proj.weight = embedding.weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h)


class MLMHead(nn.Module):
    """BERT's masked-LM head: transform (dense, activation, LayerNorm), then the tied decoder + bias."""

    def __init__(self, cfg: ModelConfig, embedding: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(cfg.dim, cfg.dim)
        self.act = _ACTIVATIONS["gelu" if cfg.activation == "swiglu" else cfg.activation]
        self.norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        self.decoder = nn.Linear(cfg.dim, cfg.vocab_size)
        if cfg.tie_embeddings:
            self.decoder.weight = embedding.weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act(self.dense(h))))


class ClassifierHead(nn.Module):
    """Dropout + linear: on the pooled [CLS] (sequence classification, NSP) or every token (tagging),
    2 outputs per token for span QA (start, end)."""

    def __init__(self, dim: int, num_labels: int, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(h))


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> torch.Tensor:
    """Mean cross-entropy over labelled tokens: -1/N Σ log p(x_t | context).

    shift=True (causal LM): logits at t predict labels at t+1, so labels may simply be the inputs.
    The labels are shifted, not the logits: slicing (batch, seq, vocab) logits would copy the largest
    tensor of the step.
    """
    if shift:
        labels = torch.cat([labels[:, 1:], labels.new_full((labels.size(0), 1), IGNORE)], dim=1)
    flat = logits.reshape(-1, logits.size(-1)).float()
    return F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classes; mean squared error when there is one output (regression)."""
    if logits.size(-1) == 1:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    flat = logits.reshape(-1, logits.size(-1)).float()
    return F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE)


def span_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Extractive QA: mean of the start and end cross-entropies. labels: (batch, 2) = (start, end);
    positions outside the sequence are clamped to it and then ignored, as in BERT's SQuAD code."""
    seq = logits.size(1)
    start, end = labels[:, 0].clamp(0, seq), labels[:, 1].clamp(0, seq)
    s = F.cross_entropy(logits[..., 0].float(), start, ignore_index=seq)
    e = F.cross_entropy(logits[..., 1].float(), end, ignore_index=seq)
    return (s + e) / 2
