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


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Causal LM: position t is scored against the token at t + 1; the last position gets no target.
    The labels are shifted, not the logits: slicing (batch, seq, vocab) logits would copy the largest
    tensor of the step."""
    return torch.cat([labels[:, 1:], labels.new_full((labels.size(0), 1), IGNORE)], dim=1)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, shift: bool, reduction: str = "mean") -> torch.Tensor:
    """Mean cross-entropy over labelled tokens: -1/N Σ log p(x_t | context) (reduction="sum": no 1/N).

    shift=True (causal LM): logits at t predict labels at t+1, so labels may simply be the inputs.
    """
    if shift:
        labels = shift_labels(labels)
    flat = logits.reshape(-1, logits.size(-1)).float()
    return F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE, reduction=reduction)


class _LinearCrossEntropy(torch.autograd.Function):
    """Σ_i -log softmax(h_i Wᵀ)[y_i] over rows with y_i != IGNORE (divided by their number N for the
    mean), with its gradient.

    With p = softmax(z), z = h Wᵀ:  ∂L/∂z_i = (p_i - onehot(y_i)) / N  (no / N for the sum),
    ∂L/∂h = (∂L/∂z) W,
    ∂L/∂W = (∂L/∂z)ᵀ h. The forward computes z with one matrix product, then walks it a cache-sized
    block of rows at a time, turning each block in place into ∂L/∂z while it is in cache; backward is
    the two matrix products. Of the (rows, vocab) tensors a plain cross-entropy makes — logits,
    log-probabilities, their gradient, a zero-filled one-hot gradient — one buffer remains.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, block: int,
                chunk: int, mean: bool) -> torch.Tensor:
        rows, vocab = h.size(0), weight.size(0)
        valid = labels != IGNORE
        n = valid.sum() if mean else torch.ones((), dtype=torch.long, device=h.device)
        safe = labels.clamp(min=0)[:, None]  # ignored rows point anywhere; their terms are zeroed
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad = torch.empty(rows, vocab, dtype=h.dtype, device=h.device) if need_grad else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        # Without a gradient the logits are made `chunk` rows at a time (bounded memory); with one, in
        # a single product (each extra product re-reads all of W) into the gradient's buffer.
        step = rows if need_grad else chunk
        for c in range(0, rows, step):
            logits = grad[c:c + step] if need_grad else torch.empty(min(step, rows - c), vocab, dtype=h.dtype,
                                                                    device=h.device)
            torch.mm(h[c:c + step], weight.t(), out=logits)
            for s in range(0, logits.size(0), block):
                z, keep, y = logits[s:s + block], valid[c + s:c + s + block, None], safe[c + s:c + s + block]
                target = z.gather(1, y)
                top = z.amax(dim=1, keepdim=True)
                sumexp = z.sub_(top).exp_().sum(dim=1, keepdim=True)
                total += ((top + sumexp.log() - target) * keep).sum()  # log-sum-exp minus the target logit
                if need_grad:
                    z.div_(sumexp).scatter_add_(1, y, -keep.to(z.dtype))  # softmax minus one-hot
                    z.mul_(keep / n)
        ctx.save_for_backward(h, weight, grad)
        return total / n

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        h, weight, grad = ctx.saved_tensors
        dh = grad @ weight * grad_loss if ctx.needs_input_grad[0] else None
        dw = grad.t() @ (h * grad_loss) if ctx.needs_input_grad[1] else None
        return dh, dw, None, None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         block_elements: int = 1 << 21, chunk_elements: int = 1 << 25,
                         reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the logits h Wᵀ (no bias) against labels, equal to
    `F.cross_entropy(h @ W.T, labels, ignore_index=-100, reduction=reduction)` ("mean" or "sum";
    the sum over no labelled row is 0) but without the extra (rows, vocab) tensors
    and passes of a plain one (see _LinearCrossEntropy): what a large-vocabulary output layer spends
    outside its matrix products. h: (rows, dim) float32, weight: (vocab, dim) float32, labels: (rows,).
    Blocks of about `block_elements` logits (8 MB) are processed while in cache; without gradients the
    logits are made in chunks of about `chunk_elements` (128 MB)."""
    if h.dtype != torch.float32 or weight.dtype != torch.float32:
        raise ValueError(f"linear_cross_entropy takes float32 inputs, got {h.dtype} and {weight.dtype}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    vocab = weight.size(0)
    return _LinearCrossEntropy.apply(h, weight, labels, max(1, block_elements // vocab),
                                     max(1, chunk_elements // vocab), reduction == "mean")


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, seq, dim), (batch, seq) 0/1 -> (batch, dim): the mean of the real tokens' states
    (sentence-transformers' mean pooling; a row without real tokens gives 0)."""
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean",
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy for classes (optionally class-weighted: Σ w_y ℓ / Σ w_y for the mean); mean squared
    error when there is one output (regression). Labels -100 take no part."""
    if logits.size(-1) == 1:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float(), reduction=reduction)
    flat = logits.reshape(-1, logits.size(-1)).float()
    return F.cross_entropy(flat, labels.reshape(-1), weight=weight, ignore_index=IGNORE, reduction=reduction)


def span_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Extractive QA: mean of the start and end cross-entropies. labels: (batch, 2) = (start, end);
    positions outside the sequence are clamped to it and then ignored, as in BERT's SQuAD code."""
    seq = logits.size(1)
    start, end = labels[:, 0].clamp(0, seq), labels[:, 1].clamp(0, seq)
    s = F.cross_entropy(logits[..., 0].float(), start, ignore_index=seq, reduction=reduction)
    e = F.cross_entropy(logits[..., 1].float(), end, ignore_index=seq, reduction=reduction)
    return (s + e) / 2
