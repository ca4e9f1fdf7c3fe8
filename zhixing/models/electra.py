"""ELECTRA (Clark et al. 2020): a BERT encoder pretrained as a discriminator of replaced tokens.

    e_0 = LayerNorm(E_token[x] + E_position[i] + E_segment[s])    (batch, seq, embed_dim)
    h_0 = W_proj e_0 + b_proj                                      (batch, seq, dim); if embed_dim != dim
    h_l = Block(h_{l-1})                                           (bidirectional, post-norm; no pooler)

Heads on h_L:
    rtd (discriminator):   D(x)_t = w^T act(W h_t + b) + c             "was token t replaced?" (a logit)
    mlm (generator):       p_G(x_t | x~) = softmax(E_token LN(gelu(W h_t + b)) + b_out)   (decoder tied)
    seq_cls:               out_proj(gelu(W h_[CLS] + b))               (dropout before both linears)
    token_cls, qa:         dropout + linear on every token (as BERT)

Pretraining (`ElectraPretraining`, head "pretraining") holds a small generator G (an MLM with
`generator_size` x the discriminator's width, FFN width and heads; same depth) and the discriminator D.
They share the embedding tables (token, position, segment and their LayerNorm; Clark et al. §3.2); each
projects them to its own width. The replaced-token-detection loss that trains the pair is
zhixing.objectives.rtd; the equations are in docs/models.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.config import ModelConfig
from zhixing.errors import ConfigError
from zhixing.models.base import Model, ModelOutput, check_length
from zhixing.models.heads import ClassifierHead, classification_loss, lm_loss, span_loss
from zhixing.nn.attention import build_mask
from zhixing.nn.layers import _ACTIVATIONS, Block, make_norm, run_encoder
from zhixing.nn.position import RotaryEmbedding

HEADS = ("none", "rtd", "mlm", "seq_cls", "token_cls", "qa")  # of one Electra; "pretraining" is the pair
EMBEDDINGS = ("tok_embed", "pos_embed", "type_embed", "embed_norm")  # what generator and discriminator share


def embed_width(cfg: ModelConfig) -> int:
    return cfg.dim if cfg.embed_dim is None else cfg.embed_dim


def check_config(cfg: ModelConfig) -> None:
    """Settings ELECTRA does not have: one ConfigError naming the key and what is expected."""
    if cfg.position not in ("learned", "rotary") or cfg.position_offset:
        raise ConfigError(f"position={cfg.position!r}, position_offset={cfg.position_offset}: ELECTRA uses "
                          "learned absolute positions from 0 (position='learned', position_offset=0), or "
                          "rotary ones in q and k (position='rotary', as models/bert.py)")
    if cfg.embed_scale:
        raise ConfigError("embed_scale=True: ELECTRA does not scale its embeddings; expected "
                          "embed_scale=False")


def generator_config(cfg: ModelConfig) -> ModelConfig:
    """The generator of an ELECTRA pair: `generator_size` x the discriminator's width, FFN width and heads
    (Clark et al. Table 6: 1/4 for Small and Large, 1/3 for Base), same depth, the same embedding width
    (the tables are shared), an MLM head."""
    s = cfg.generator_size
    dim, heads = round(cfg.dim * s), max(1, round(cfg.num_heads * s))
    if dim < 1 or dim % heads:
        raise ConfigError(f"generator_size={s}: gives a generator of width {dim} (dim {cfg.dim} x {s}) with "
                          f"{heads} heads (num_heads {cfg.num_heads} x {s}); expected a width >= 1 divisible "
                          "by its heads, e.g. generator_size=0.25 with dim and num_heads multiples of 4")
    return cfg.replace(head="mlm", dim=dim, num_heads=heads, num_kv_heads=None, head_dim=None,
                       ffn_dim=max(1, round(cfg.ffn_dim * s)), embed_dim=embed_width(cfg),
                       heads_per_layer=[], ffn_dims=[])  # the generator is never pruned


def _activation(cfg: ModelConfig):
    return _ACTIVATIONS["gelu" if cfg.activation == "swiglu" else cfg.activation]


class DiscriminatorHead(nn.Module):
    """D(x)_t = w^T act(W h_t + b) + c: one logit per token, > 0 for "replaced"
    (transformers' ElectraDiscriminatorPredictions)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.dim, cfg.dim)
        self.act = _activation(cfg)
        self.out = nn.Linear(cfg.dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (..., dim) -> (...)
        return self.out(self.act(self.dense(h))).squeeze(-1)


class GeneratorHead(nn.Module):
    """MLM logits E_token LN(gelu(W h + b)) + b_out: down to the embedding width, then the tied decoder.
    gelu (erf) whatever `activation` says, as transformers' ElectraGeneratorPredictions hard-codes it."""

    def __init__(self, cfg: ModelConfig, embedding: nn.Embedding):
        super().__init__()
        e = embed_width(cfg)
        self.dense = nn.Linear(cfg.dim, e)
        self.norm = make_norm(cfg.norm, e, cfg.norm_eps)
        self.decoder = nn.Linear(e, cfg.vocab_size)
        if cfg.tie_embeddings:
            self.decoder.weight = embedding.weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (..., dim) -> (..., vocab)
        return self.decoder(self.norm(F.gelu(self.dense(h))))


class SequenceHead(nn.Module):
    """ELECTRA's sentence classifier on the first token: dropout, dense, gelu, dropout, out_proj. Unlike
    BERT there is no pooler (tanh) trained in pretraining; this dense layer is new at fine-tuning."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.drop = nn.Dropout(cfg.classifier_dropout)
        self.dense = nn.Linear(cfg.dim, cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (batch, seq, dim) -> (batch, num_labels)
        return self.proj(self.drop(F.gelu(self.dense(self.drop(h[:, 0])))))


def rtd_loss(logits: torch.Tensor, replaced: torch.Tensor, attention_mask: torch.Tensor | None
             ) -> torch.Tensor:
    """Mean binary cross-entropy of the discriminator over the real (non-padding) tokens:
    -1/n Σ_{t real} [r_t log σ(D_t) + (1 - r_t) log(1 - σ(D_t))].  logits, replaced: (batch, seq).
    A sum over the mask, not a selection: no device sync, and a graph-connected 0 without real tokens."""
    per_token = F.binary_cross_entropy_with_logits(logits.float(), replaced.float(), reduction="none")
    if attention_mask is None:
        return per_token.mean()
    real = attention_mask.to(per_token.dtype)
    return (per_token * real).sum() / real.sum().clamp(min=1)


class Electra(Model):
    """One ELECTRA encoder with one head: the discriminator (head="rtd"), a generator (head="mlm"), a
    fine-tuning head, or none."""

    arch = "electra"

    @classmethod
    def from_config(cls, config: ModelConfig) -> Model:
        """The pretraining pair for head="pretraining", else one encoder with its head."""
        return ElectraPretraining(config) if config.head == "pretraining" else cls(config)

    def __init__(self, config: ModelConfig):
        super().__init__()
        check_config(config)
        if config.head not in HEADS:
            raise ConfigError(f"head={config.head!r}: an ELECTRA encoder takes one of {list(HEADS)}; "
                              "head='pretraining' builds the generator + discriminator pair (build_model)")
        self.config = cfg = config
        e = embed_width(cfg)
        self.tok_embed = nn.Embedding(cfg.vocab_size, e)
        learned = cfg.position == "learned"
        self.pos_embed = nn.Embedding(cfg.max_seq_len, e) if learned else None
        self.rope = None if learned else RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.type_embed = nn.Embedding(cfg.type_vocab_size, e) if cfg.type_vocab_size else None
        self.embed_norm = make_norm(cfg.norm, e, cfg.norm_eps) if cfg.embed_norm else None
        self.embed_proj = nn.Linear(e, cfg.dim) if e != cfg.dim else None
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg, layer=i) for i in range(cfg.num_layers))
        final = cfg.pre_norm and cfg.final_norm
        self.final_norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps) if final else None
        self.rtd = DiscriminatorHead(cfg) if cfg.head == "rtd" else None
        self.mlm = GeneratorHead(cfg, self.tok_embed) if cfg.head == "mlm" else None
        if cfg.head == "seq_cls":
            self.classifier = SequenceHead(cfg)
        elif cfg.head in ("token_cls", "qa"):
            self.classifier = ClassifierHead(cfg.dim, cfg.num_labels if cfg.head == "token_cls" else 2,
                                             cfg.classifier_dropout if cfg.head == "token_cls" else 0.0)
        else:
            self.classifier = None
        self.init_weights()

    def share_embeddings(self, other: Electra) -> None:
        """Use `other`'s embedding tables (token, position, segment, their LayerNorm) from now on; a tied
        MLM decoder follows the token table. ELECTRA's generator reads the discriminator's (§3.2)."""
        def shapes(module: nn.Module | None) -> list | None:
            return None if module is None else [tuple(p.shape) for p in module.parameters()]

        for name in EMBEDDINGS:
            if shapes(getattr(self, name)) != shapes(getattr(other, name)):
                raise ConfigError(f"cannot share {name}: the two models' embeddings differ in shape "
                                  "(vocab_size, max_seq_len, type_vocab_size and embed_dim must agree)")
            setattr(self, name, getattr(other, name))
        if self.mlm is not None and self.config.tie_embeddings:
            self.mlm.decoder.weight = self.tok_embed.weight

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
              position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, seq) ids -> (batch, seq, dim): token + position (+ segment), normalised, projected."""
        if position_ids is None:
            position_ids = torch.arange(input_ids.size(1), device=input_ids.device)[None]
        x = self.tok_embed(input_ids)  # (batch, seq, embed_dim)
        if self.pos_embed is not None:
            x = x + self.pos_embed(position_ids)
        if self.type_embed is not None:
            x = x + self.type_embed(torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.drop(x)
        return x if self.embed_proj is None else self.embed_proj(x)  # (batch, seq, dim)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
               output_attentions: bool = False, output_hidden_states: bool = False,
               ) -> tuple[torch.Tensor, list, list]:
        """(final states (batch, seq, dim), per-layer attention weights, [embeddings, each layer])."""
        check_length(input_ids.size(1), self.config.max_seq_len)
        if position_ids is None:
            position_ids = torch.arange(input_ids.size(1), device=input_ids.device)[None]
        x = self.embed(input_ids, token_type_ids, position_ids)
        mask, _ = build_mask(attention_mask, x.size(1), x.size(1), causal=False)
        rope = self.rope(position_ids, x.dtype) if self.rope is not None else None
        # token-wise work on the real tokens only (nn.attention.Packing); padding states = 0
        return run_encoder(self.layers, x, mask, attention_mask, self.final_norm, output_attentions,
                           output_hidden_states, rope=rope)

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        """The final hidden states (batch, seq, dim), for objectives that apply a head themselves."""
        return self.encode(input_ids, attention_mask, token_type_ids, position_ids)[0]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """input_ids, attention_mask (1 = real), token_type_ids: (batch, seq).

        logits by head: rtd (batch, seq) replaced-token logits; mlm (batch, seq, vocab); seq_cls
        (batch, labels); token_cls (batch, seq, labels); qa (batch, seq, 2). labels by head: rtd (batch, seq)
        1 = replaced, 0 = original (the loss is over real tokens); mlm (batch, seq) with -100 where not
        masked; seq_cls (batch,); token_cls (batch, seq); qa (batch, 2) start/end.
        """
        x, attentions, hidden = self.encode(input_ids, attention_mask, token_type_ids, position_ids,
                                            output_attentions, output_hidden_states)
        out = ModelOutput(last_hidden_state=x, attentions=attentions if output_attentions else None,
                          hidden_states=hidden if output_hidden_states else None)
        head = self.config.head
        if head == "rtd":
            out.logits = self.rtd(x)
            if labels is not None:
                out.loss = rtd_loss(out.logits, labels, attention_mask)
        elif head == "mlm":  # (objectives score the masked positions only, with hidden() + self.mlm)
            out.logits = self.mlm(x)
            if labels is not None:
                out.loss = lm_loss(out.logits, labels, shift=False)
        elif self.classifier is not None:
            out.logits = self.classifier(x)
            if labels is not None:
                out.loss = (span_loss if head == "qa" else classification_loss)(out.logits, labels)
        return out


class ElectraPretraining(Model):
    """The generator + discriminator pair that replaced-token detection trains (head="pretraining").

    `generator` (head "mlm") and `discriminator` (head "rtd") are complete `Electra` models sharing one set
    of embedding tables; each can be saved or exported (`to_hf`) on its own. The pair saves as one
    directory, the shared tables once. `forward` and `hidden` are the discriminator's — the model kept for
    fine-tuning; the training step (mask -> generator -> sample -> discriminator) needs sampling and is
    zhixing.objectives.rtd.RTDObjective's.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.head != "pretraining":
            raise ConfigError(f"head={config.head!r}: ElectraPretraining is the pair built for "
                              "head='pretraining'")
        self.config = config
        self.discriminator = Electra(config.replace(head="rtd"))
        self.generator = Electra(generator_config(config))
        self.generator.share_embeddings(self.discriminator)

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        return self.discriminator.hidden(input_ids, attention_mask, token_type_ids, position_ids)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs) -> ModelOutput:
        """The discriminator's forward (see Electra.forward, head "rtd")."""
        return self.discriminator(input_ids, attention_mask, **kwargs)


__all__ = ["Electra", "ElectraPretraining", "generator_config", "rtd_loss"]
