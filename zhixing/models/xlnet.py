"""XLNet (Yang et al. 2019): a Transformer-XL encoder (Dai et al. 2019) trained by permutation LM.

Relative positional attention (Transformer-XL §3.3, XLNet §2.5). Keys are the memory of the previous
segment followed by the current segment (k_len = mem_len + q_len). Query i and key j at distance
Δ = i - j score

    A(i, j) = (q_i + u)·k_j                 content: what j says
            + (q_i + v)·W_r R_Δ             position: how far j is; R_Δ = [sin(Δω), cos(Δω)], |Δ| ≤ clamp_len
            + (q_i + s)·e_{[seg_i ≠ seg_j]}  segment: e_0 in the same segment, e_1 in another
    a_i = Σ_j softmax_j(A(i, j) / √d) v_j,   u, v, s learned per head

R is computed once for the distances k_len, k_len - 1, ..., -q_len + 1 (`relative_positions`); the
(q_len, k_len) matrix of distances is then read from it by the *relative shift*: row i, column j takes
entry q_len - i + j of the table (the distance mem_len + i - j).

Two-stream attention (§2.3). Each position has a content state h (h⁰ = the word embedding) and a
query state g (g⁰ = w, the learned `mask_emb`); with z the factorisation order and z_t this position,

    h_{z_t}^l = Attn(Q = h_{z_t}^{l-1}, KV = h_{z≤t}^{l-1})     sees its own token and what precedes it
    g_{z_t}^l = Attn(Q = g_{z_t}^{l-1}, KV = h_{z<t}^{l-1})     sees what precedes it, not its own token

Both streams share every weight; `perm_mask` (batch, seq, seq) says who may not see whom (1 = blocked),
the content stream always sees itself, and `target_mapping` (batch, num_predict, seq, one-hot rows)
says which positions the query stream predicts. p(x_{z_t} | x_{z<t}) = softmax(W_E g_{z_t}^L + b).

Segment recurrence (Transformer-XL §3.2): each layer's input states of a segment are kept (detached, the
last `mem_len` of them) and put before the keys of the next segment: `mems` in, `ModelOutput.mems` out.

Blocks are post-norm: h = LN(h + Attn(h)), h = LN(h + FFN(h)), the same for g.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.config import ConfigError, ModelConfig
from zhixing.models.base import Model, ModelOutput
from zhixing.models.heads import ClassifierHead, classification_loss, lm_loss, span_loss
from zhixing.nn.layers import FeedForward, make_norm

HEADS = ("none", "lm", "seq_cls", "token_cls", "qa")


def relative_positions(q_len: int, k_len: int, dim: int, attn_type: str, clamp_len: int | None,
                       device: torch.device | None = None) -> torch.Tensor:
    """Sinusoids of the relative distances k_len, k_len - 1, ..., down to -q_len + 1 ("bi") or 0 ("uni",
    where no query looks ahead): (P, dim) with sines in the first half, cosines in the second,
    ω_i = 10000^(-2i/dim). Distances beyond ±clamp_len share the encoding of ±clamp_len."""
    end = -q_len if attn_type == "bi" else -1
    dist = torch.arange(k_len, end, -1, device=device, dtype=torch.float32)  # (P,)
    if clamp_len is not None:
        dist = dist.clamp(-clamp_len, clamp_len)
    inv_freq = 1.0 / 10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    angle = dist[:, None] * inv_freq[None, :]  # (P, dim/2)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


@dataclass
class Frame:
    """What every layer needs to know about the current segment; built once per forward.

    Masks are bool (batch, rows, k_len), True where a query may NOT look; None when nothing is blocked.
    """

    q_len: int
    r: torch.Tensor  # (P, dim): encodings of the distances (relative_positions)
    h_pos: torch.Tensor  # (q_len,): each content query's position in the segment
    h_blocked: torch.Tensor | None  # (b, q_len, k_len)
    h_seg: torch.Tensor | None  # (b, q_len, k_len): True where query and key are in different segments
    g_pos: torch.Tensor | None = None  # (b, num_predict): the position each query-stream row predicts
    g_blocked: torch.Tensor | None = None  # (b, num_predict, k_len)
    g_seg: torch.Tensor | None = None
    g_used: torch.Tensor | None = None  # (b, num_predict, 1): 0 for an all-zero (padding) target row


class RelativeAttention(nn.Module):
    """Multi-head attention with Transformer-XL's content, position and segment terms (module docstring)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n, d = cfg.num_heads, cfg.head_dim
        self.num_heads, self.head_dim, self.impl = n, d, cfg.attn_impl
        self.q, self.k, self.v = (nn.Linear(cfg.dim, n * d, bias=False) for _ in range(3))
        self.r = nn.Linear(cfg.dim, n * d, bias=False)  # W_r: the distance encodings' keys
        self.o = nn.Linear(n * d, cfg.dim, bias=False)
        self.content_bias = nn.Parameter(torch.zeros(n, d))  # u
        self.position_bias = nn.Parameter(torch.zeros(n, d))  # v
        self.segment_bias = nn.Parameter(torch.zeros(n, d))  # s
        self.segment_embed = nn.Parameter(torch.zeros(2, n, d))  # e_0 (same segment), e_1 (different)
        self.dropout = cfg.attn_dropout

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, len, heads * d) -> (batch, heads, len, d)."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(self, h: torch.Tensor, g: torch.Tensor | None, mem: torch.Tensor | None, frame: Frame,
                need_weights: bool = False):
        """Both streams against the keys of [mem; h]. Returns (out_h, out_g, weights_h, weights_g),
        outputs projected back to (batch, rows, dim)."""
        cat = h if mem is None else torch.cat([mem.to(h.dtype), h], dim=1)  # (b, k_len, dim)
        k, v = self.heads(self.k(cat)), self.heads(self.v(cat))  # (b, n, k_len, d)
        r = self.heads(self.r(frame.r.to(h.dtype))[None])[0]  # (n, P, d)
        out_h, w_h = self.attend(h, frame.h_pos, k, v, r, frame.q_len, frame.h_blocked, frame.h_seg,
                                 need_weights)
        out_g = w_g = None
        if g is not None:
            out_g, w_g = self.attend(g, frame.g_pos, k, v, r, frame.q_len, frame.g_blocked, frame.g_seg,
                                     need_weights)
            out_g = self.o(out_g * frame.g_used.to(out_g.dtype))  # a padding row of target_mapping reads 0
        return self.o(out_h), out_g, w_h, w_g

    def attend(self, x, pos, k, v, r, q_len, blocked, seg, need_weights):
        """x: (b, m, dim) queries sitting at positions `pos` ((m,) or (b, m)) of the segment;
        k, v: (b, n, k_len, d); r: (n, P, d). Returns ((b, m, n * d), weights (b, n, m, k_len) or None)."""
        b, m, _ = x.shape
        k_len, P = k.size(2), r.size(1)
        q = self.heads(self.q(x))  # (b, n, m, d)
        scale = self.head_dim ** -0.5
        # position term for every distance in the table, then the relative shift: query at position i
        # reads column j from entry q_len - i + j. Under "uni" the future columns fall off the table's
        # end; they are masked, so clamping their index is harmless.
        by_distance = (q + self.position_bias[:, None]) @ r.transpose(-1, -2)  # (b, n, m, P)
        idx = (q_len - pos[..., None] + torch.arange(k_len, device=x.device)).clamp(max=P - 1)
        idx = (idx[None, None] if idx.dim() == 2 else idx[:, None]).expand(b, self.num_heads, m, k_len)
        bias = by_distance.gather(-1, idx)  # (b, n, m, k_len)
        if seg is not None:  # segment term: (q + s)·e_0 or (q + s)·e_1
            both = torch.einsum("bnmd,snd->bnms", q + self.segment_bias[:, None], self.segment_embed)
            bias = bias + torch.where(seg[:, None], both[..., 1:], both[..., :1])
        if blocked is not None:
            # The most negative finite value, not -inf: a query that may look nowhere (a padding row)
            # then spreads evenly instead of producing NaN, as in the original code.
            bias = bias.masked_fill(blocked[:, None], torch.finfo(bias.dtype).min / 2)
        dropout = self.dropout if self.training else 0.0
        if self.impl == "sdpa" and not need_weights:
            # content term (q + u)·k inside the fused kernel, position + segment + mask as its bias
            out = F.scaled_dot_product_attention(q + self.content_bias[:, None], k, v, attn_mask=bias * scale,
                                                 dropout_p=dropout, scale=scale)
            weights = None
        else:
            scores = ((q + self.content_bias[:, None]) @ k.transpose(-1, -2) + bias) * scale
            weights = scores.float().softmax(dim=-1).to(q.dtype)  # (b, n, m, k_len)
            out = F.dropout(weights, dropout) @ v
        return out.transpose(1, 2).flatten(2), weights


class XLNetLayer(nn.Module):
    """Post-norm block on both streams: x = LN(x + Attn(x)); x = LN(x + FFN(x)). Same weights for h and g."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = RelativeAttention(cfg)
        self.attn_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        self.ffn = FeedForward(cfg.dim, cfg.ffn_dim, cfg.activation, bias=True)
        self.ffn_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        # XLNet drops out inside the FFN as well (after the activation), so FeedForward's parts are used
        return self.ffn_norm(x + self.drop(self.ffn.down(self.drop(self.ffn.act(self.ffn.up(x))))))

    def forward(self, h, g, mem, frame: Frame, need_weights: bool = False):
        a_h, a_g, w_h, w_g = self.attn(h, g, mem, frame, need_weights)
        h = self.feed_forward(self.attn_norm(h + self.drop(a_h)))
        if g is not None:
            g = self.feed_forward(self.attn_norm(g + self.drop(a_g)))
        return h, g, w_h, w_g


class XLNet(Model):
    """XLNet backbone with one of the heads lm, seq_cls, token_cls, qa or none (see the module docstring).

    Heads: `head` is the LM output layer, logits = h W_Eᵀ + b (tied to the word embedding, with its own
    bias, as XLNetLMHeadModel); seq_cls summarises the sequence by its LAST token (XLNet's <cls> sits at
    the end): logits = W_c dropout(tanh(W_s h_last + b_s)) + b_c; token_cls and qa are one linear layer
    on every token ((batch, seq, labels) and (batch, seq, 2) start/end scores).
    """

    arch = "xlnet"
    tokenizer_layout = "xlnet"  # A <sep> B <sep> <cls>, <cls> type 2, left padding (type 3)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = cfg = config
        check_config(cfg)
        self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.mask_emb = nn.Parameter(torch.zeros(cfg.dim))  # w: the query stream's input
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(XLNetLayer(cfg) for _ in range(cfg.num_layers))
        self.head = None
        if cfg.head == "lm":
            self.head = nn.Linear(cfg.dim, cfg.vocab_size)
            if cfg.tie_embeddings:
                self.head.weight = self.tok_embed.weight
        self.summary = nn.Linear(cfg.dim, cfg.dim) if cfg.head == "seq_cls" else None
        out = {"seq_cls": cfg.num_labels, "token_cls": cfg.num_labels, "qa": 2}.get(cfg.head)
        # only the sequence summary has a dropout of its own (HF's summary_last_dropout)
        drop = cfg.classifier_dropout if cfg.head == "seq_cls" else 0.0
        self.classifier = ClassifierHead(cfg.dim, out, drop) if out else None
        self.init_weights()

    def init_weights(self) -> None:
        super().init_weights()
        for name, p in self.named_parameters():  # the bare parameters: N(0, initializer_range) as well
            if name.endswith(("_bias", "segment_embed", "mask_emb")):
                nn.init.normal_(p, mean=0.0, std=self.config.initializer_range)

    # -- the two streams ------------------------------------------------------------------------------

    def frame(self, input_ids, attention_mask, token_type_ids, perm_mask, target_mapping, mlen: int) -> Frame:
        """Masks, segment matrix and distance encodings of one segment (see Frame)."""
        b, q_len = input_ids.shape
        k_len, device = mlen + q_len, input_ids.device
        blocked = None  # (b, q_len, k_len): memory is always visible, so masks get mlen False columns
        if self.config.attn_type == "uni":  # query i sees keys up to its own position mlen + i
            blocked = torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(mlen + 1)[None]
        if attention_mask is not None:
            pad = F.pad(attention_mask == 0, (mlen, 0), value=False)[:, None, :]  # (b, 1, k_len)
            blocked = pad if blocked is None else blocked | pad
        if perm_mask is not None:
            perm = F.pad(perm_mask > 0, (mlen, 0), value=False)  # (b, q_len, k_len)
            blocked = perm if blocked is None else blocked | perm
        h_blocked = None
        if blocked is not None:
            blocked = blocked.expand(b, q_len, k_len)
            itself = F.pad(torch.eye(q_len, dtype=torch.bool, device=device), (mlen, 0), value=False)
            h_blocked = blocked & ~itself  # the content stream always sees its own token
        seg = None
        if token_type_ids is not None:  # memory counts as segment 0, as in the original code
            keys = F.pad(token_type_ids, (mlen, 0), value=0)
            seg = token_type_ids[:, :, None] != keys[:, None, :]  # (b, q_len, k_len)
        r = relative_positions(q_len, k_len, self.config.dim, self.config.attn_type, self.config.clamp_len,
                               device)
        f = Frame(q_len, self.drop(r), torch.arange(q_len, device=device), h_blocked, seg)
        if target_mapping is not None:
            # each query-stream row predicts one position: it attends as if it stood there, through that
            # position's row of the (non-self-exempt) mask and segment matrix
            f.g_pos = target_mapping.argmax(dim=-1)  # (b, m)
            f.g_used = (target_mapping.sum(dim=-1, keepdim=True) > 0)
            rows = f.g_pos[..., None].expand(-1, -1, k_len)
            f.g_blocked = None if blocked is None else blocked.gather(1, rows)
            f.g_seg = None if seg is None else seg.gather(1, rows)
        return f

    def streams(self, input_ids, attention_mask=None, token_type_ids=None, perm_mask=None,
                target_mapping=None, mems=None, use_mems=False, need_weights=False, need_hidden=False):
        """The backbone, both streams through every layer: (states of the head stream after the final
        dropout, new mems or None, per-layer attention weights, per-layer states). Arguments: `forward`."""
        self.check_inputs(input_ids, attention_mask, token_type_ids, perm_mask, target_mapping, mems)
        mlen = mems[0].size(1) if mems is not None else 0
        f = self.frame(input_ids, attention_mask, token_type_ids, perm_mask, target_mapping, mlen)
        h = self.drop(self.tok_embed(input_ids))  # (b, q_len, dim): content stream
        g = None
        if target_mapping is not None:  # (b, num_predict, dim): query stream, starting from w
            g = self.drop(self.mask_emb.to(h.dtype).expand(*target_mapping.shape[:2], -1))
        new_mems, weights, states = [], [], [g if g is not None else h]
        for i, layer in enumerate(self.layers):
            mem = mems[i] if mems is not None else None
            if use_mems:  # this layer's input, kept for the next segment: the last mem_len states
                new_mems.append(self.remember(h, mem))
            h, g, w_h, w_g = layer(h, g, mem, f, need_weights)
            weights.append(w_g if g is not None else w_h)
            if need_hidden:
                states.append(g if g is not None else h)
        out = self.drop(g if g is not None else h)
        return out, new_mems if use_mems else None, weights, states

    def remember(self, h: torch.Tensor, mem: torch.Tensor | None) -> torch.Tensor:
        cat = h if mem is None else torch.cat([mem.to(h.dtype), h], dim=1)
        keep = cat.size(1) if self.config.mem_len is None else min(self.config.mem_len, cat.size(1))
        return cat[:, cat.size(1) - keep:].detach()

    def hidden(self, input_ids, attention_mask=None, token_type_ids=None, perm_mask=None, target_mapping=None,
               mems=None) -> torch.Tensor:
        """Final states of the stream the heads read: the query stream (batch, num_predict, dim) when
        `target_mapping` is given, else the content stream (batch, seq, dim). Objectives apply `head`."""
        return self.streams(input_ids, attention_mask, token_type_ids, perm_mask, target_mapping, mems)[0]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, perm_mask: torch.Tensor | None = None,
        target_mapping: torch.Tensor | None = None, mems: list[torch.Tensor] | None = None,
        use_mems: bool = False, labels: torch.Tensor | None = None, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """input_ids (batch, seq); attention_mask (batch, seq), 1 = real (XLNet pads on the left);
        token_type_ids (batch, seq): any ids, only equal / different matters (XLNet: 0 = A, 1 = B, 2 = <cls>).

        perm_mask (batch, seq, seq): 1 where position i may not see position j (the factorisation order).
        target_mapping (batch, num_predict, seq): one-hot rows, the positions the query stream predicts;
            all-zero rows are padding. With it, `last_hidden_state` and lm logits are the query stream's
            (batch, num_predict, ...), without it the content stream's (batch, seq, ...).
        mems: per layer (batch, mem, dim), the `mems` of the previous segment's output.
        use_mems: return this segment's `mems` (the last mem_len layer inputs, detached) for the next one.
        labels by head: lm (batch, num_predict) or (batch, seq), -100 ignored, not shifted; seq_cls
            (batch,); token_cls (batch, seq); qa (batch, 2) start/end.
        attentions / hidden_states (when asked) are those of the stream `last_hidden_state` holds.
        """
        x, new_mems, weights, states = self.streams(
            input_ids, attention_mask, token_type_ids, perm_mask, target_mapping, mems, use_mems,
            need_weights=output_attentions, need_hidden=output_hidden_states)
        out = ModelOutput(last_hidden_state=x, mems=new_mems,
                          attentions=weights if output_attentions else None,
                          hidden_states=states if output_hidden_states else None)
        head = self.config.head
        if self.head is not None:
            out.logits = self.head(x)  # (b, rows, vocab)
            if labels is not None:
                out.loss = lm_loss(out.logits, labels, shift=False)
        elif self.classifier is not None:
            feats = torch.tanh(self.summary(x[:, -1])) if head == "seq_cls" else x  # last token: <cls>
            out.logits = self.classifier(feats)
            if labels is not None:
                out.loss = (span_loss if head == "qa" else classification_loss)(out.logits, labels)
        return out

    # -- checks ---------------------------------------------------------------------------------------

    def check_inputs(self, input_ids, attention_mask, token_type_ids, perm_mask, target_mapping, mems):
        """Shapes and lengths, one line naming the argument. Values of target_mapping are checked too,
        except under torch.compile (the check reads the tensor)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}")
        b, q_len = input_ids.shape
        limit = self.config.max_seq_len
        if q_len > limit:
            raise ValueError(f"input has {q_len} positions but the model's max_seq_len is {limit}; split "
                             f"longer text into segments of at most {limit} and pass each segment's mems to "
                             "the next (use_mems=True)")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and tuple(t.shape) != (b, q_len):
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected (batch, seq) = {(b, q_len)}")
        if perm_mask is not None and tuple(perm_mask.shape) != (b, q_len, q_len):
            raise ValueError(f"perm_mask has shape {tuple(perm_mask.shape)}, expected (batch, seq, seq) = "
                             f"{(b, q_len, q_len)}")
        if target_mapping is not None:
            tm = target_mapping
            if tm.dim() != 3 or tm.size(0) != b or tm.size(2) != q_len or tm.size(1) == 0:
                raise ValueError(f"target_mapping has shape {tuple(tm.shape)}, expected (batch, num_predict, "
                                 f"seq) = ({b}, num_predict >= 1, {q_len})")
            if not torch.compiler.is_compiling():
                if bool(((tm != 0) & (tm != 1)).any()) or bool((tm.sum(dim=-1) > 1).any()):
                    raise ValueError("target_mapping rows must be one-hot (one query position per "
                                     "prediction) or all zero (padding)")
                if not bool(tm.any()):
                    raise ValueError("target_mapping selects no query positions (every row is zero); "
                                     "give each prediction a one-hot row")
        if mems is not None:
            layers, dim = self.config.num_layers, self.config.dim
            if len(mems) != layers:
                raise ValueError(f"mems has {len(mems)} tensors, expected one per layer ({layers})")
            bad = [tuple(m.shape) for m in mems
                   if m.dim() != 3 or m.size(0) != b or m.size(2) != dim or m.size(1) != mems[0].size(1)]
            if bad:
                raise ValueError(f"mems must be (batch, mem, dim) = ({b}, mem, {dim}) for every "
                                 f"layer, got {bad[0]}")


def check_config(cfg: ModelConfig) -> None:
    """Settings XLNet cannot honour are errors, not silently ignored."""
    bad = []
    if cfg.head not in HEADS:
        bad.append(f"head={cfg.head!r} (XLNet heads: {', '.join(HEADS)})")
    if cfg.pre_norm:
        bad.append("pre_norm=True (XLNet blocks are post-norm; set pre_norm=False as the xlnet presets do)")
    if cfg.activation == "swiglu":
        bad.append("activation='swiglu' (XLNet's FFN is ungated: gelu, gelu_tanh, relu or silu)")
    if cfg.num_kv_heads != cfg.num_heads:
        bad.append(f"num_kv_heads={cfg.num_kv_heads} (XLNet has no grouped-query attention)")
    if bad:
        raise ConfigError(f"arch=xlnet: unsupported setting(s): {'; '.join(bad)}")


__all__ = ["XLNet", "relative_positions"]
