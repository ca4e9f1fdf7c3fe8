"""Feed-forward networks, normalisation layers and the Transformer block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.config import ModelConfig
from zhixing.nn.attention import Attention, KVCache, Packing, slice_linear


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * g — LayerNorm without centring.

    Computed in fp32 whatever the input dtype, as Llama does.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).to(x.dtype)


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    return RMSNorm(dim, eps) if kind == "rmsnorm" else nn.LayerNorm(dim, eps=eps)


_ACTIVATIONS = {
    "gelu": F.gelu,  # exact erf form (BERT)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's approximation
    "relu": F.relu,  # the original Transformer
    "silu": F.silu,
}


class FeedForward(nn.Module):
    """Position-wise FFN. Plain: W2 act(W1 x + b1) + b2.  SwiGLU (Shazeer 2020): W2 (silu(W1 x) ⊙ W3 x),
    with W1 (gate) and W3 (up) fused into one matrix `up` of twice the width."""

    def __init__(self, dim: int, ffn_dim: int, activation: str = "gelu", bias: bool = True):
        super().__init__()
        if activation != "swiglu" and activation not in _ACTIVATIONS:
            raise ValueError(f"activation {activation!r} unknown; choose from {[*_ACTIVATIONS, 'swiglu']}")
        self.gated = activation == "swiglu"
        self.act = F.silu if self.gated else _ACTIVATIONS[activation]
        self.up = nn.Linear(dim, 2 * ffn_dim if self.gated else ffn_dim, bias=bias)
        self.down = nn.Linear(ffn_dim, dim, bias=bias)
        # a gate per hidden neuron (ffn_dim,), multiplied into the activations before W2 (neuron importance,
        # masking); None = none. Not a parameter or buffer: never trained or saved.
        self.neuron_mask: torch.Tensor | None = None

    @property
    def ffn_dim(self) -> int:
        return self.down.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.up(x).chunk(2, dim=-1)
            h = self.act(gate) * up
        else:
            h = self.act(self.up(x))
        if self.neuron_mask is not None:
            h = h * self.neuron_mask.to(h.dtype)
        return self.down(h)

    def keep_neurons(self, keep: list[int]) -> None:
        """Remove every hidden neuron not in `keep`: its row of W1 (and W3) and its column of W2 go, so
        the FFN equals the gated one with those neurons' gates at 0 (b2 stays)."""
        n = self.ffn_dim
        if not keep or len(set(keep)) != len(keep) or not all(0 <= i < n for i in keep):
            raise ValueError(f"keep_neurons: expected 1..{n} distinct neuron indices in [0, {n}), got "
                             f"{len(keep)} indices")
        cols = torch.tensor(sorted(keep), device=self.down.weight.device)
        rows = torch.cat([cols, cols + n]) if self.gated else cols  # gate | up halves of the fused matrix
        self.up = slice_linear(self.up, rows, dim=0)
        self.down = slice_linear(self.down, cols, dim=1)
        self.neuron_mask = None


class Block(nn.Module):
    """One Transformer layer: self-attention, optional cross-attention, feed-forward, each a residual.

    pre-norm (GPT-2, Llama):   x = x + f(norm(x))
    post-norm (BERT, Vaswani): x = norm(x + f(x))
    """

    def __init__(self, cfg: ModelConfig, cross_attention: bool = False, layer: int = 0):
        super().__init__()
        self.pre_norm = cfg.pre_norm
        # `layer` picks this block's widths when pruning left layers with different ones (heads_per_layer,
        # ffn_dims); a pruned layer keeps one key/value head per query head
        heads = cfg.layer_heads(layer)
        kv_heads = heads if cfg.heads_per_layer else cfg.num_kv_heads

        def attention(cross: bool) -> Attention:
            return Attention(cfg.dim, heads, kv_heads, cfg.head_dim, cfg.bias,
                             cfg.attn_dropout, cross=cross, impl=cfg.attn_impl)

        self.attn = attention(False)
        self.attn_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        self.cross_attn = attention(True) if cross_attention else None
        self.cross_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps) if cross_attention else None
        self.ffn = FeedForward(cfg.dim, cfg.layer_ffn_dim(layer), cfg.activation, cfg.bias)
        self.ffn_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, causal: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None, cache: KVCache | None = None,
        at: int | torch.Tensor = 0, cross_cache: KVCache | None = None, memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None, need_weights: bool = False, packing: Packing | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x: (batch, seq, dim) -> (x, self-attention weights, cross-attention weights).

        cache / cross_cache: this layer's KV caches (self- and cross-attention), `at` the write position.
        With `packing`, x is the (n_real, dim) real tokens (see `Packing`); no cross-attention then.
        """
        self_kw = dict(causal=causal, rope=rope, packing=packing, cache=cache, at=at,
                       need_weights=need_weights)
        cross_kw = dict(memory=memory, cache=cross_cache, need_weights=need_weights)
        cross_w = None
        if self.pre_norm:
            a, w = self.attn(self.attn_norm(x), mask, **self_kw)
            x = x + self.drop(a)
            if self.cross_attn is not None:
                c, cross_w = self.cross_attn(self.cross_norm(x), memory_mask, **cross_kw)
                x = x + self.drop(c)
            x = x + self.drop(self.ffn(self.ffn_norm(x)))
        else:
            a, w = self.attn(x, mask, **self_kw)
            x = self.attn_norm(x + self.drop(a))
            if self.cross_attn is not None:
                c, cross_w = self.cross_attn(x, memory_mask, **cross_kw)
                x = self.cross_norm(x + self.drop(c))
            x = self.ffn_norm(x + self.drop(self.ffn(x)))
        return x, w, cross_w


def run_encoder(layers: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor | None,
                attention_mask: torch.Tensor | None, final_norm: nn.Module | None = None,
                need_weights: bool = False, keep_hidden: bool = False,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, list[torch.Tensor | None], list[torch.Tensor]]:
    """A stack of bidirectional blocks over embedded x (batch, seq, dim), with the token-wise work on the
    real tokens only when the batch has padding (`Packing`; states at padding come back as 0). `rope`: the
    (cos, sin) of rotary positions (RoFormer-style encoders), applied to q and k in every layer.

    Returns (final states (batch, seq, dim), per-layer attention weights (None unless need_weights),
    [x, each layer's output] when keep_hidden else [x])."""
    attentions, hidden = [], [x]
    packing = Packing.of(attention_mask)
    if packing is not None:
        x = packing.pack(x)
    for layer in layers:
        x, w, _ = layer(x, mask, need_weights=need_weights, packing=packing, rope=rope)
        attentions.append(w)
        if keep_hidden:
            hidden.append(x if packing is None else packing.unpack(x))
    if final_norm is not None:
        x = final_norm(x)
    return (x if packing is None else packing.unpack(x)), attentions, hidden
