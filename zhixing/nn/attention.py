"""Multi-head and grouped-query attention, the explicit reference form and the fused fast path,
attention masks, and the key/value cache used for incremental decoding.

Scaled dot-product attention (Vaswani et al. 2017, eq. 1):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

where M is 0 where a query may look and -inf where it may not (padding, the future).
Multi-head attention runs h of these in parallel on learned projections and concatenates them:

    MultiHead(X) = Concat(head_1..head_h) W^O,   head_i = Attention(X W_i^Q, X W_i^K, X W_i^V)

Grouped-query attention (Ainslie et al. 2023) lets groups of query heads share one key/value head.

Head gates (Michel et al. 2019): with `Attention.head_mask` = ξ set, head_i is multiplied by ξ_i before W^O,
so ∂L/∂ξ_i measures what head i contributes and ξ_i = 0 silences it; `keep_heads` removes heads for good.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.nn.position import apply_rotary


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
    causal: bool = False, dropout: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(QK^T/sqrt(d_k)) V, written out; returns (output, weights).

    q: (batch, heads, q_len, d); k, v: (batch, kv_heads, k_len, d) with heads % kv_heads == 0;
    mask: bool, broadcastable to (batch, heads, q_len, k_len), True where attention is allowed.
    """
    if k.size(1) != q.size(1):  # grouped-query: query head h reads key/value head h // group
        group = q.size(1) // k.size(1)
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (b, h, q, k)
    if causal:
        q_len, k_len = scores.shape[-2:]
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=q.device).triu(k_len - q_len + 1)
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    out = F.dropout(weights, p=dropout) @ v if dropout > 0 else weights @ v
    return out, weights


def scaled_dot_product(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
    causal: bool = False, dropout: float = 0.0,
) -> torch.Tensor:
    """The fused fast path (flash / memory-efficient kernels); same contract as attention_reference."""
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal and mask is None,
        enable_gqa=k.size(1) != q.size(1),
    )


def build_mask(
    attention_mask: torch.Tensor | None, q_len: int, k_len: int, causal: bool
) -> tuple[torch.Tensor | None, bool]:
    """Turn a (batch, k_len) keep-mask (1 = real token) into what the attention kernels take.

    A (batch, q_len, k_len) keep-matrix is taken as is (combined with the causal triangle): e.g. the
    block-diagonal mask of several examples packed into one sequence, none attending to another.

    Returns (mask, causal): mask is None or bool (batch, 1, q_len, k_len); causal=True means "let the
    kernel apply the causal triangle itself", which only holds when there is no explicit mask and
    queries and keys are the same positions. With a cache, the q_len new queries sit at the end of the
    k_len keys, so query i may see keys up to k_len - q_len + i.
    """
    if attention_mask is None:
        if not causal or q_len == 1:
            return None, False
        if q_len == k_len:
            return None, True
    device = attention_mask.device if attention_mask is not None else None
    mask = torch.ones(1, 1, q_len, k_len, dtype=torch.bool, device=device)
    if causal:
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)[None, None]
    if attention_mask is not None:
        if attention_mask.size(-1) != k_len:
            raise ValueError(f"attention_mask covers {attention_mask.size(-1)} positions, expected {k_len}")
        if attention_mask.dim() == 3:  # (batch, q_len, k_len): which key each query may see
            if attention_mask.size(1) != q_len:
                raise ValueError(f"a 3-d attention_mask must be (batch, {q_len}, {k_len}), got "
                                 f"{tuple(attention_mask.shape)}")
            mask = mask & attention_mask.bool()[:, None]
        else:
            mask = mask & attention_mask.bool()[:, None, None, :]
        # A query with nothing to look at (a left pad under a causal mask) would give NaN; let it look
        # at every key instead. Its output is never used.
        mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask, False


class Packing:
    """Padding removed: the real tokens of a (batch, seq) batch as one (n_real, ...) tensor.

    Everything in a Transformer layer except attention works token by token, so the projections,
    the feed-forward network and the norms run on the n_real tokens only; attention alone goes back
    to (batch, seq) to meet the mask. With short sentences padded to the longest of the batch (two
    thirds of SST-2's batch positions are padding) this removes most of the work, and the real
    tokens' outputs are those of the padded computation.
    """

    def __init__(self, index: torch.Tensor, batch: int, seq: int):
        self.index, self.batch, self.seq = index, batch, seq

    @classmethod
    def of(cls, attention_mask: torch.Tensor | None, min_saving: float = 0.1) -> Packing | None:
        """A packing of the mask's real tokens, or None when it would save < `min_saving` of the tokens
        (or under torch.compile, where the data-dependent size would break the graph)."""
        if attention_mask is None or torch.compiler.is_compiling():
            return None
        real = attention_mask.reshape(-1).bool()
        index = real.nonzero().squeeze(1)
        if index.numel() > (1 - min_saving) * real.numel():
            return None
        return cls(index, *attention_mask.shape)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq, ...) -> (n_real, ...)."""
        return x.reshape(self.batch * self.seq, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(n_real, ...) -> (batch, seq, ...), zeros at the padding."""
        full = x.new_zeros(self.batch * self.seq, *x.shape[1:]).index_copy(0, self.index, x)
        return full.view(self.batch, self.seq, *x.shape[1:])


class KVCache:
    """Keys and values of the past positions of ONE attention layer, so decoding computes each token once.

    With `max_len` the buffers are allocated once at that size (no per-step growth); without it they
    grow by doubling. `update(k, v, at)` writes the new positions and returns every key/value the new
    queries may see:

    - `at` an int (the number of positions already stored): writes positions at..at+t-1 and returns
      the first at+t positions;
    - `at` a LongTensor of write positions (static shapes, what a CUDA graph replays): writes there
      and returns the whole preallocated buffers; the caller's attention mask hides unwritten slots.

    A cross-attention layer's cache holds the encoder's keys/values (`k`, `v`), computed once.
    """

    def __init__(self, max_len: int | None = None):
        self.max_len = max_len
        self.k: torch.Tensor | None = None  # (batch, kv_heads, capacity, head_dim)
        self.v: torch.Tensor | None = None

    def update(self, k: torch.Tensor, v: torch.Tensor, at: int | torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (batch, kv_heads, t, d) at `at`; return the keys/values visible to the queries."""
        if isinstance(at, torch.Tensor):
            if self.k is None:
                raise ValueError("static KV cache: fill the buffers (a prefill) before writing at positions")
            self.k.index_copy_(2, at, k)
            self.v.index_copy_(2, at, v)
            return self.k, self.v
        end = at + k.size(2)
        if self.k is None or end > self.k.size(2):
            if self.max_len is not None and end > self.max_len:
                raise ValueError(f"KV cache holds {self.max_len} positions; {end} were asked for")
            capacity = self.max_len or max(end, 2 * (self.k.size(2) if self.k is not None else 0), 16)
            shape = (k.size(0), k.size(1), capacity, k.size(3))
            # zeros, not empty: a static cache attends over unwritten slots (masked, weight 0), and
            # 0 * garbage would still be NaN when the garbage is NaN or inf
            new_k, new_v = k.new_zeros(shape), v.new_zeros(shape)
            if self.k is not None:
                new_k[:, :, :at] = self.k[:, :, :at]
                new_v[:, :, :at] = self.v[:, :, :at]
            self.k, self.v = new_k, new_v
        self.k[:, :, at:end] = k
        self.v[:, :, at:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search): row i becomes old row index[i]."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


class Cache:
    """A model's decoding state: one `KVCache` per self-attention layer (and per cross-attention layer
    of an encoder–decoder), and how many positions they hold.

    The model hands layer i its own `layers[i]` and the write position `write_at`: `length` (dynamic),
    or the LongTensor `positions` when a generation engine switched the cache to static shapes.
    """

    def __init__(self, num_layers: int, max_len: int | None = None, cross: bool = False):
        self.max_len = max_len
        self.length = 0
        self.positions: torch.Tensor | None = None
        self.layers = [KVCache(max_len) for _ in range(num_layers)]
        self.cross = [KVCache() for _ in range(num_layers)] if cross else None

    @property
    def static(self) -> bool:
        return self.positions is not None

    @property
    def write_at(self) -> int | torch.Tensor:
        return self.positions if self.positions is not None else self.length

    def key_length(self, t: int) -> int:
        """Keys the t new queries attend over: all max_len slots when static, else past + t."""
        return self.max_len if self.static else self.length + t

    def advance(self, t: int) -> None:
        self.length += t

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        """Select batch rows (beam search) in every layer; cross=False leaves the cross-attention keys
        (the same for every beam of one source) as they are."""
        for c in self.layers + (self.cross or [] if cross else []):
            c.reorder(index)


class Attention(nn.Module):
    """Multi-head / grouped-query attention, self or cross.

    Self-attention projects q, k, v with one fused matrix (one GEMM instead of three); cross-attention
    projects q from the decoder stream and k, v (fused) from the encoder output `memory`.
    """

    def __init__(
        self, dim: int, num_heads: int, num_kv_heads: int | None = None, head_dim: int | None = None,
        bias: bool = True, dropout: float = 0.0, cross: bool = False, impl: str = "sdpa",
    ):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = head_dim or dim // num_heads
        self.dropout = dropout
        self.cross = cross
        self.impl = impl
        q_out, kv_out = num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if cross:
            self.q = nn.Linear(dim, q_out, bias=bias)
            self.kv = nn.Linear(dim, 2 * kv_out, bias=bias)
        else:
            self.qkv = nn.Linear(dim, q_out + 2 * kv_out, bias=bias)
        self.o = nn.Linear(q_out, dim, bias=bias)
        # Prefix tuning (zhixing.peft.prompt): a module returning extra keys and values, each
        # (kv_heads, n, head_dim), that every query may attend to; None (the default) costs one test.
        self.prefix: nn.Module | None = None
        # ξ (heads,): a gate per head multiplied into its output (head importance, masking); None = none,
        # and the forward is exactly the ungated one. Not a parameter or buffer: never trained or saved.
        self.head_mask: torch.Tensor | None = None

    def keep_heads(self, keep: list[int]) -> None:
        """Remove every head not in `keep` (indices into the current heads): its rows of W^Q, W^K, W^V and
        its columns of W^O go, so the layer is smaller and faster and equals the gated layer with those
        heads' ξ = 0 (the bias of W^O stays: it was never a head's). Self-attention with one key/value
        head per query head only."""
        h, d = self.num_heads, self.head_dim
        if self.cross or self.num_kv_heads != h:
            raise ValueError("keep_heads: only self-attention with num_kv_heads == num_heads can drop heads")
        if not keep or len(set(keep)) != len(keep) or not all(0 <= i < h for i in keep):
            raise ValueError(f"keep_heads: expected 1..{h} distinct head indices in [0, {h}), got {keep}")
        keep = sorted(keep)
        cols = torch.tensor([i * d + j for i in keep for j in range(d)], device=self.o.weight.device)
        rows = torch.cat([cols + part * h * d for part in range(3)])  # q | k | v blocks of the fused qkv
        self.qkv = slice_linear(self.qkv, rows, dim=0)
        self.o = slice_linear(self.o, cols, dim=1)
        self.num_heads = self.num_kv_heads = len(keep)
        self.head_mask = None

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, causal: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None, cache: KVCache | None = None,
        at: int | torch.Tensor = 0, memory: torch.Tensor | None = None, need_weights: bool = False,
        packing: Packing | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (batch, seq, dim) -> (batch, seq, dim), and the weights (batch, heads, seq, k_len) if asked.

        cache: this layer's KVCache; self-attention writes the new keys/values at `at` (see KVCache),
        cross-attention computes the encoder's keys/values once and keeps them there.
        With `packing` (self-attention only), x is (n_real, dim) and so is the output.
        """
        if packing is not None and (self.cross or cache is not None):
            raise ValueError("packed (padding-free) input is for self-attention without a cache")
        h, kvh, d = self.num_heads, self.num_kv_heads, self.head_dim
        if self.cross:
            b, t, _ = x.shape
            q = self.q(x).view(b, t, h, d).transpose(1, 2)
            if cache is not None and cache.k is not None:
                k, v = cache.k, cache.v
            else:
                if memory is None:
                    raise ValueError("cross-attention needs the encoder output `memory`")
                k, v = self.kv(memory).view(b, -1, 2, kvh, d).permute(2, 0, 3, 1, 4)  # 2 x (b, kvh, s, d)
                if cache is not None:
                    cache.k, cache.v = k, v
        else:
            qkv = self.qkv(x)
            if packing is not None:
                qkv = packing.unpack(qkv)  # back to (batch, seq, ...) to meet the mask
            b, t = qkv.shape[:2]
            q, k, v = qkv.view(b, t, h + 2 * kvh, d).transpose(1, 2).split([h, kvh, kvh], dim=1)
            if rope is not None:
                q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
            if cache is not None:
                k, v = cache.update(k, v, at)
            if self.prefix is not None:
                k, v, mask, causal = self._add_prefix(k, v, mask, causal, t)
        out, weights = self._attend(q, k, v, mask, causal, need_weights)
        if self.head_mask is not None:  # (b, h, t, d) * ξ_h
            out = out * self.head_mask.to(out.dtype).view(1, h, 1, 1)
        out = out.transpose(1, 2).reshape(b, t, h * d)  # concatenate the heads
        if packing is not None:
            out = packing.pack(out)
        return self.o(out), weights

    def _add_prefix(self, k, v, mask, causal: bool, t: int):
        """Keys/values with the prefix in front, and the mask widened to let every query see it (an
        explicit mask then: the kernels' own causal triangle assumes as many keys as queries)."""
        pk, pv = self.prefix()
        b, n = k.size(0), pk.size(1)
        k = torch.cat([pk.to(k.dtype)[None].expand(b, -1, -1, -1), k], dim=2)
        v = torch.cat([pv.to(v.dtype)[None].expand(b, -1, -1, -1), v], dim=2)
        k_len = k.size(2) - n
        if mask is None and causal:
            mask = torch.ones(t, k_len, dtype=torch.bool, device=k.device).tril(k_len - t)[None, None]
        if mask is not None:
            mask = F.pad(mask, (n, 0), value=True)
        return k, v, mask, False

    def _attend(self, q, k, v, mask, causal: bool, need_weights: bool):
        p = self.dropout if self.training else 0.0
        if need_weights or self.impl == "eager":
            return attention_reference(q, k, v, mask, causal, p)
        return scaled_dot_product(q, k, v, mask, causal, p), None


def slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of `linear` keeping the output rows (dim=0) or input columns (dim=1) listed in `index`."""
    weight = linear.weight.detach().index_select(dim, index)
    out = nn.Linear(weight.size(1), weight.size(0), bias=linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if linear.bias is not None:
            out.bias.copy_(linear.bias.detach().index_select(0, index) if dim == 0 else linear.bias.detach())
    out.train(linear.training)
    return out
