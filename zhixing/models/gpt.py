"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019), with the Llama-style
options (Touvron et al. 2023): rotary positions, RMSNorm, SwiGLU, grouped-query attention, untied head.

    h_0 = E_token[x] (+ E_position[i])
    h_l = h_{l-1} + Attn(norm(h_{l-1})) ...   (causal self-attention, pre-norm)
    p(x_{t+1} | x_{≤t}) = softmax(norm(h_L)_t W_out^T)

Trained by maximum likelihood: L = -Σ_t log p(x_{t+1} | x_{≤t}) (heads.lm_loss with shift=True; the
training objective, objectives/clm.py, fuses the output layer with the loss).

Sequence classification (head "seq_cls", as transformers' GPT2ForSequenceClassification): a decoder's
only state that has read the whole text is the last real token's, so the class scores are
W_score h_L[last] (no bias), last = the rightmost real token of each row. `seq_pooling="mean"` reads
the mean of the real tokens' states instead (no Hugging Face class has it: such a model does not export).
"""

from __future__ import annotations

import torch
from torch import nn

from zhixing.config import ModelConfig
from zhixing.models.base import Model, ModelOutput, check_length
from zhixing.models.heads import LMHead, classification_loss, lm_loss, mean_pool
from zhixing.nn.attention import Cache, build_mask
from zhixing.nn.layers import Block, make_norm
from zhixing.nn.position import RotaryEmbedding, sinusoidal_table


class GPT(Model):
    arch = "gpt"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = cfg = config
        self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_embed = nn.Embedding(cfg.max_seq_len, cfg.dim) if cfg.position == "learned" else None
        if cfg.position == "sinusoidal":
            self.register_buffer("sinusoid", sinusoidal_table(cfg.max_seq_len, cfg.dim), persistent=False)
        self.rope = None
        if cfg.position == "rotary":
            self.rope = RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg, layer=i) for i in range(cfg.num_layers))
        self.final_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps) if cfg.final_norm else None
        self.head = LMHead(cfg, self.tok_embed) if cfg.head == "lm" else None
        self.score = nn.Linear(cfg.dim, cfg.num_labels, bias=False) if cfg.head == "seq_cls" else None
        if cfg.head not in ("lm", "none", "seq_cls"):
            raise ValueError(f"GPT has no {cfg.head!r} head; its heads: lm, seq_cls, none")
        self.init_weights()
        # GPT-2: scale the init of the projections that write into the residual stream by 1/sqrt(2L),
        # so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.o.weight", "ffn.down.weight")):
                nn.init.normal_(p, mean=0.0, std=cfg.initializer_range / (2 * cfg.num_layers) ** 0.5)

    def new_cache(self, max_len: int | None = None) -> Cache:
        """An empty KV cache (one slot per layer); preallocated when `max_len` (prompt + new tokens) is
        given."""
        return Cache(self.config.num_layers, max_len)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
        cache: Cache | None = None, output_attentions: bool = False, output_hidden_states: bool = False,
        last_only: bool = False, token_type_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """input_ids (batch, seq) -> logits (batch, seq, vocab).

        attention_mask: (batch, past + seq), 1 for real tokens, covering cached positions too.
        position_ids: (batch, seq); default past..past+seq-1 (pass them for left-padded batches).
        labels: (batch, seq), usually the inputs themselves; shifted inside, -100 ignored.
        cache: a Cache (`new_cache`); each layer appends its new keys/values, then `cache.length` advances.
        last_only: compute logits for the last position only (decoding).
        token_type_ids: accepted so that the batches of every task fit; GPT has no segment embeddings.
        seq_cls head: logits (batch, num_labels) at each row's last real token; labels (batch,).
        """
        out = self._backbone(input_ids, attention_mask, position_ids, cache, output_attentions,
                             output_hidden_states)
        if self.score is not None:
            x = out.last_hidden_state
            if self.config.seq_pooling == "mean":  # every real token's state, averaged
                pooled = mean_pool(x, self.real_tokens(input_ids, attention_mask))
            else:
                last = self.last_token(input_ids, attention_mask)  # (batch,)
                pooled = x[torch.arange(x.size(0), device=x.device), last]
            out.logits = self.score(pooled)
            if labels is not None:
                out.loss = classification_loss(out.logits, labels)
            return out
        if self.head is None:
            return out
        x = out.last_hidden_state
        out.logits = self.head(x[:, -1:] if last_only else x)
        if labels is not None:
            out.loss = lm_loss(out.logits, labels, shift=True)
        return out

    def last_token(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(batch,) index of each row's rightmost real token: from the attention mask when given, else the
        rightmost token that is not pad_token_id (transformers' rule, left or right padding), else the last.
        """
        t = input_ids.size(1)
        idx = torch.arange(t, device=input_ids.device)
        return (idx * self.real_tokens(input_ids, attention_mask)).argmax(-1)

    def real_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(batch, seq) bool: the attention mask, else tokens that are not pad_token_id, else all."""
        t = input_ids.size(1)
        if attention_mask is not None:
            return attention_mask[:, -t:].bool()
        if self.config.pad_token_id is not None:
            return input_ids != self.config.pad_token_id
        return torch.ones_like(input_ids, dtype=torch.bool)

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The final (normed) hidden states (batch, seq, dim) that the LM head reads: what a training
        objective takes to apply the output layer its own way (objectives.clm fuses it with the loss)."""
        return self._backbone(input_ids, attention_mask, position_ids).last_hidden_state

    def _backbone(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  position_ids: torch.Tensor | None = None, cache: Cache | None = None,
                  output_attentions: bool = False, output_hidden_states: bool = False) -> ModelOutput:
        b, t = input_ids.shape
        past = cache.length if cache is not None else 0
        # a static cache (generation/engine.py, CUDA graphs) attends over all its max_len slots, with the
        # attention mask saying which are real
        k_len = cache.key_length(t) if cache is not None else t
        check_length(k_len, self.config.max_seq_len)
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=input_ids.device)[None].expand(b, t)
        x = self.tok_embed(input_ids)  # (b, t, dim)
        if self.pos_embed is not None:
            x = x + self.pos_embed(position_ids)
        elif self.rope is None and self.config.position == "sinusoidal":
            x = x + self.sinusoid[position_ids].to(x.dtype)
        x = self.drop(x)
        rope = self.rope(position_ids, x.dtype) if self.rope is not None else None
        mask, causal = build_mask(attention_mask, t, k_len, causal=True)
        at = cache.write_at if cache is not None else 0
        attentions, hidden = [], [x]
        for i, layer in enumerate(self.layers):
            kv = cache.layers[i] if cache is not None else None  # each layer its own cache slot
            x, w, _ = layer(x, mask, causal=causal, rope=rope, cache=kv, at=at,
                            need_weights=output_attentions)
            attentions.append(w)
            hidden.append(x)
        if cache is not None:
            cache.advance(t)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return ModelOutput(last_hidden_state=x, attentions=attentions if output_attentions else None,
                           hidden_states=hidden if output_hidden_states else None)
