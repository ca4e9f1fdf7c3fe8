"""The original encoder–decoder Transformer (Vaswani et al. 2017).

    encoder:  m = Encoder(E[x]·sqrt(d) + PE)                 (bidirectional self-attention)
    decoder:  h = Decoder(E[y_<t]·sqrt(d) + PE, m)           (causal self-attention + cross-attention to m)
    p(y_t | y_<t, x) = softmax(h_t E^T)                       (output tied to the shared embedding)

Post-norm, sinusoidal positions and ReLU by default (the `transformer-*` presets); pre-norm and learned
positions are options. Trained with teacher forcing: the decoder reads the labels shifted right.
"""

from __future__ import annotations

import torch
from torch import nn

from zhixing.config import ModelConfig
from zhixing.models.base import Model, ModelOutput, check_length
from zhixing.models.heads import IGNORE, LMHead, lm_loss
from zhixing.nn.attention import Cache, build_mask
from zhixing.nn.layers import Block, make_norm
from zhixing.nn.position import sinusoidal_table


def shift_right(labels: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing: [start, y_1, ..., y_{T-1}], with -100 turned into pad."""
    out = labels.new_full(labels.shape, pad_id)
    out[:, 1:] = labels[:, :-1]
    out[:, 0] = start_id
    return out.masked_fill(out == IGNORE, pad_id)


class Transformer(Model):
    arch = "transformer"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = cfg = config
        self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.dim)  # shared by source, target and output
        self.pos_embed = nn.Embedding(cfg.max_seq_len, cfg.dim) if cfg.position == "learned" else None
        self.register_buffer("sinusoid", sinusoidal_table(cfg.max_seq_len, cfg.dim), persistent=False)
        self.scale = cfg.dim**0.5 if cfg.embed_scale else 1.0
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.decoder = nn.ModuleList(Block(cfg, cross_attention=True) for _ in range(cfg.num_layers))
        final = cfg.pre_norm and cfg.final_norm
        self.encoder_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps) if final else None
        self.decoder_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps) if final else None
        self.head = LMHead(cfg, self.tok_embed)
        self.init_weights()
        # with sqrt(dim) scaling, N(0, 1/dim) keeps the scaled embeddings at unit variance
        std = cfg.dim**-0.5 if cfg.embed_scale else cfg.initializer_range
        nn.init.normal_(self.tok_embed.weight, std=std)

    def new_cache(self, max_len: int | None = None) -> Cache:
        """The decoder's cache: a self-attention and a cross-attention slot per layer."""
        return Cache(self.config.num_layers, max_len, cross=True)

    def embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        check_length(offset + ids.size(1), self.config.max_seq_len)
        pos = torch.arange(offset, offset + ids.size(1), device=ids.device)
        p = self.pos_embed(pos) if self.pos_embed is not None else self.sinusoid[pos]
        return self.drop(self.tok_embed(ids) * self.scale + p.to(self.tok_embed.weight.dtype))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               output_attentions: bool = False) -> tuple[torch.Tensor, list]:
        """Source ids (batch, src) -> memory (batch, src, dim) and the encoder's attention weights."""
        x = self.embed(input_ids)
        mask, _ = build_mask(attention_mask, x.size(1), x.size(1), causal=False)
        weights = []
        for layer in self.encoder:
            x, w, _ = layer(x, mask, need_weights=output_attentions)
            weights.append(w)
        return (self.encoder_norm(x) if self.encoder_norm is not None else x), weights

    def forward(
        self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, memory: torch.Tensor | None = None, cache: Cache | None = None,
        output_attentions: bool = False, output_hidden_states: bool = False, last_only: bool = False,
    ) -> ModelOutput:
        """Source input_ids/attention_mask (batch, src); target decoder_input_ids (batch, tgt).

        labels (batch, tgt): the target; when decoder_input_ids is absent it is built by shifting
        labels right. memory: a precomputed encoder output (generation encodes once). cache: KV cache
        of the decoder (self-attention appended per step; cross-attention keys/values kept).
        decoder_attention_mask covers past + new target positions.
        """
        cfg = self.config
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_right(labels, cfg.decoder_start_token_id, cfg.pad_token_id)
        if decoder_input_ids is None:
            raise ValueError("give decoder_input_ids or labels")
        enc_attn = None
        if memory is None:
            if input_ids is None:
                raise ValueError("give input_ids (the source) or a precomputed encoder `memory`")
            memory, enc_attn = self.encode(input_ids, attention_mask, output_attentions)
        past = cache.length if cache is not None else 0
        y = self.embed(decoder_input_ids, offset=past)
        t = y.size(1)
        self_mask, causal = build_mask(decoder_attention_mask, t, past + t, causal=True)
        memory_mask, _ = build_mask(attention_mask, t, memory.size(1), causal=False)
        attentions, cross, hidden = list(enc_attn or []), [], [y]
        at = cache.write_at if cache is not None else 0
        for i, layer in enumerate(self.decoder):
            kv, cross_kv = (cache.layers[i], cache.cross[i]) if cache is not None else (None, None)
            y, w, cw = layer(y, self_mask, causal=causal, cache=kv, at=at, cross_cache=cross_kv,
                             memory=memory, memory_mask=memory_mask, need_weights=output_attentions)
            attentions.append(w)
            cross.append(cw)
            hidden.append(y)
        if cache is not None:
            cache.advance(t)
        if self.decoder_norm is not None:
            y = self.decoder_norm(y)
        logits = self.head(y[:, -1:] if last_only else y)
        return ModelOutput(
            last_hidden_state=y, logits=logits, encoder_last_hidden_state=memory,
            loss=lm_loss(logits, labels, shift=False) if labels is not None else None,
            attentions=attentions if output_attentions else None,
            cross_attentions=cross if output_attentions else None,
            hidden_states=hidden if output_hidden_states else None,
        )
