"""BERT (Devlin et al. 2019) and RoBERTa (Liu et al. 2019): a post-LN Transformer encoder.

    h_0 = LayerNorm(E_token[x] + E_position[i] + E_segment[s])
    h_l = Block(h_{l-1})                       (bidirectional self-attention, post-norm)
    pooled = tanh(W_p h_L[CLS] + b_p)

Pretraining objectives (heads.py): masked LM, -Σ_{masked t} log p(x_t | x_masked), and next-sentence
prediction on `pooled`. RoBERTa is this model with positions offset past the padding id and no
segment types; it drops NSP.

`seq_pooling="mean"` (seq_cls only) classifies the average of the real tokens' top states instead of the
pooled [CLS], with no pooler: the sentence embedding a sentence-transformers checkpoint (all-MiniLM-L6-v2)
was trained to produce, where its [CLS] state and pooler never were. transformers' BERT has no such head,
so these do not export to it.

`position="rotary"` replaces the absolute table by rotary positions in every layer's q and k (RoFormer,
Su et al. 2021: q_i·k_j then depends on i - j only), for models trained here; transformers' BERT has no
such option, so these do not export to it.
"""

from __future__ import annotations

import torch
from torch import nn

from zhixing.config import ModelConfig
from zhixing.errors import ConfigError
from zhixing.models.base import Model, ModelOutput, check_length
from zhixing.models.heads import (
    IGNORE,
    ClassifierHead,
    MLMHead,
    classification_loss,
    lm_loss,
    mean_pool,
    span_loss,
)
from zhixing.nn.attention import build_mask
from zhixing.nn.layers import Block, make_norm, run_encoder
from zhixing.nn.position import RotaryEmbedding

POOLED_HEADS = ("none", "pretraining", "seq_cls")


class Bert(Model):
    arch = "bert"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = cfg = config
        if cfg.position not in ("learned", "rotary"):
            raise ConfigError(f"position={cfg.position!r}: a BERT encoder takes learned absolute positions "
                              "('learned') or rotary ones ('rotary', RoFormer)")
        self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        learned = cfg.position == "learned"
        self.pos_embed = nn.Embedding(cfg.max_seq_len + cfg.position_offset, cfg.dim) if learned else None
        self.rope = None if learned else RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.type_embed = nn.Embedding(cfg.type_vocab_size, cfg.dim) if cfg.type_vocab_size else None
        self.embed_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps) if cfg.embed_norm else None
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg, layer=i) for i in range(cfg.num_layers))
        final = cfg.pre_norm and cfg.final_norm
        self.final_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps) if final else None
        self.mean_pool = cfg.head == "seq_cls" and cfg.seq_pooling == "mean"
        self.pooler = nn.Linear(cfg.dim, cfg.dim) if cfg.head in POOLED_HEADS and not self.mean_pool else None
        self.mlm = MLMHead(cfg, self.tok_embed) if cfg.head in ("mlm", "pretraining") else None
        self.nsp = ClassifierHead(cfg.dim, 2) if cfg.head == "pretraining" else None
        out = {"seq_cls": cfg.num_labels, "token_cls": cfg.num_labels, "qa": 2}.get(cfg.head)
        drop = cfg.classifier_dropout if cfg.head != "qa" else 0.0
        # relation heads read the pooled [CLS] and the two entity-start markers' states side by side
        width = cfg.dim * 3 if cfg.head == "seq_cls" and cfg.entity_markers else cfg.dim
        self.classifier = ClassifierHead(width, out, drop) if out else None
        self.init_weights()

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.config.position_offset:  # RoBERTa: real tokens count from pad_id + 1, pads sit at pad_id
            pad = self.config.pad_token_id
            real = input_ids.ne(pad).int()
            return (real.cumsum(dim=1) * real + pad).long()
        return torch.arange(input_ids.size(1), device=input_ids.device)[None]

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
              position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, seq) ids -> (batch, seq, dim): token + position (+ segment), normalised."""
        x = self.tok_embed(input_ids)
        if self.pos_embed is not None:
            x = x + self.pos_embed(self.position_ids(input_ids) if position_ids is None else position_ids)
        if self.type_embed is not None:
            x = x + self.type_embed(torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        return self.drop(x)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, next_sentence_label: torch.Tensor | None = None,
        output_attentions: bool = False, output_hidden_states: bool = False,
    ) -> ModelOutput:
        """input_ids, attention_mask (1 = real), token_type_ids: (batch, seq).

        labels by head: mlm/pretraining (batch, seq) with -100 for unmasked tokens; seq_cls (batch,);
        token_cls (batch, seq); qa (batch, 2) start/end. next_sentence_label (batch,) for pretraining.
        """
        out = self._backbone(input_ids, attention_mask, token_type_ids, position_ids, output_attentions,
                             output_hidden_states)
        x = out.last_hidden_state
        if self.pooler is not None:
            out.pooled = self.pool(x)
        elif self.mean_pool:  # the real tokens' states, averaged (sentence-transformers' mean pooling)
            real = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            out.pooled = mean_pool(x, real)
        head = self.config.head
        if self.mlm is not None:
            out.logits = self.mlm(x)
            if labels is not None:
                out.loss = lm_loss(out.logits, labels, shift=False)
        if self.nsp is not None:
            out.nsp_logits = self.nsp(out.pooled)
            if next_sentence_label is not None:
                nsp = classification_loss(out.nsp_logits, next_sentence_label)
                out.loss = nsp if out.loss is None else out.loss + nsp
        if self.classifier is not None:
            feats = out.pooled if head == "seq_cls" else x
            if head == "seq_cls" and self.config.entity_markers:
                feats = self.marked(x, input_ids, out.pooled)
            out.logits = self.classifier(feats)
            if labels is not None:
                loss_fn = span_loss if head == "qa" else classification_loss
                out.loss = loss_fn(out.logits, labels)
        return out

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        """The top layer's states (batch, seq, dim) that every head reads: what a training objective takes
        to run a head its own way (objectives.mlm scores only the masked positions)."""
        return self._backbone(input_ids, attention_mask, token_type_ids, position_ids).last_hidden_state

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """pooled = tanh(W_p h[CLS] + b_p): (batch, seq, dim) -> (batch, dim)."""
        return torch.tanh(self.pooler(hidden[:, 0]))

    def marked(self, hidden: torch.Tensor, input_ids: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """[pooled; h at the first marker's position; h at the second's]: (batch, seq, dim) -> (batch, 3·dim).

        Relation classification with entity markers, "entity start" (Baldini Soares et al. 2019; R-BERT
        pools the entity spans instead): the marker ids are config.entity_markers. A row without a marker
        (cut off by truncation) reads position 0, the [CLS] state."""
        rows = torch.arange(hidden.size(0), device=hidden.device)
        states = [hidden[rows, input_ids.eq(m).int().argmax(-1)] for m in self.config.entity_markers[:2]]
        return torch.cat([pooled, *states], dim=-1)

    def _backbone(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                  output_attentions: bool = False, output_hidden_states: bool = False) -> ModelOutput:
        check_length(input_ids.size(1), self.config.max_seq_len)
        if position_ids is None:
            position_ids = self.position_ids(input_ids)
        x = self.embed(input_ids, token_type_ids, position_ids)
        mask, _ = build_mask(attention_mask, x.size(1), x.size(1), causal=False)
        rope = self.rope(position_ids, x.dtype) if self.rope is not None else None
        # Padding removed for the token-wise work (see nn.attention.Packing); states at padding are 0.
        x, attentions, hidden = run_encoder(self.layers, x, mask, attention_mask, self.final_norm,
                                            output_attentions, output_hidden_states, rope=rope)
        return ModelOutput(last_hidden_state=x, attentions=attentions if output_attentions else None,
                           hidden_states=hidden if output_hidden_states else None)


__all__ = ["Bert", "IGNORE"]
