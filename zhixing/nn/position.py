"""Positional encodings: sinusoidal (Vaswani et al. 2017), rotary (Su et al. 2021).

Learned absolute positions are a plain `nn.Embedding` in the models.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """The fixed encoding of "Attention is all you need" (§3.5), shape (num_positions, dim):

        PE(pos, 2i)   = sin(pos / 10000^(2i/dim))
        PE(pos, 2i+1) = cos(pos / 10000^(2i/dim))

    Even columns hold the sines and odd columns the cosines, as in the paper.
    """
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    table = torch.zeros(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq[: dim // 2])
    return table.float()


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE): rotate each (x_i, x_{i+d/2}) pair of q and k by pos·θ_i,

        θ_i = theta^(-2i/d),   RoPE(x)_pos = x ⊙ cos(pos·θ) + rotate_half(x) ⊙ sin(pos·θ)

    so that q·k depends on positions only through their difference. The half-split pairing
    (not interleaved) is the one Llama checkpoints in Hugging Face format use.
    """

    def __init__(self, head_dim: int, max_seq_len: int, theta: float = 10000.0):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        cos, sin = self._table(max_seq_len)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _table(self, max_seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.head_dim
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        freqs = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # (T, d/2)
        emb = torch.cat([freqs, freqs], dim=-1)  # (T, d)
        return emb.cos(), emb.sin()

    def extend(self, max_seq_len: int) -> None:
        """Angles for positions up to `max_seq_len` (no weights: the first rows are unchanged)."""
        if max_seq_len > self.cos.size(0):
            device = self.cos.device
            self.cos, self.sin = (t.to(device) for t in self._table(max_seq_len))

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for `position_ids` (batch, seq), each (batch, 1, seq, head_dim)."""
        return self.cos[position_ids].unsqueeze(1).to(dtype), self.sin[position_ids].unsqueeze(1).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (batch, heads, seq, head_dim) by the angles whose cos/sin are given."""
    return x * cos + rotate_half(x) * sin
