"""XLNet <-> Hugging Face `xlnet`.

HF keeps each attention projection as a bare (dim, heads, head_dim) Parameter used in einsums; ours are
nn.Linear: q, k, v, r are that tensor viewed as (dim, heads * head_dim) and transposed, o is it viewed as
(dim, heads * head_dim). The per-head biases keep their names' meaning: r_w_bias is u (content_bias),
r_r_bias is v (position_bias), r_s_bias is s (segment_bias). The LM head `lm_loss` shares the word
embedding (only tied checkpoints are supported, as every released one is) and has its own bias.
XLNet has no length limit; `max_seq_len` (one segment) is 512 on import unless overridden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from zhixing.config import ConfigError, ModelConfig
from zhixing.interop.core import (
    ACT_TO_HF,
    Family,
    Rule,
    activation_from_hf,
    exportable,
    label_names_from_hf,
    label_names_to_hf,
    pick,
    rename,
    require,
    single_id,
)

ARCHITECTURES = {
    "XLNetModel": "none",
    "XLNetLMHeadModel": "lm",
    "XLNetForSequenceClassification": "seq_cls",
    "XLNetForTokenClassification": "token_cls",
    "XLNetForQuestionAnsweringSimple": "qa",
}
DEFAULT_MAX_SEQ_LEN = 512  # the segment length XLNet was pretrained with


@dataclass(frozen=True)
class Reshape(Rule):
    """One HF tensor of shape `hf_shape` <-> ours of `our_shape`: a view, transposed (as a 2-D
    (hf_shape[0], -1) matrix) when `transpose`."""

    hf_shape: tuple[int, ...] = ()
    our_shape: tuple[int, ...] = ()

    def to_hf(self, t: torch.Tensor, sizes: list[int] | None = None) -> dict[str, torch.Tensor]:
        t = t.t() if self.transpose else t
        return {self.theirs[0]: t.reshape(self.hf_shape).contiguous()}

    def from_hf(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        t = state[self.theirs[0]]
        if self.transpose:
            t = t.reshape(self.hf_shape[0], -1).t()
        return t.reshape(self.our_shape).contiguous()


def config_from_hf(hf: dict[str, Any], head: str) -> ModelConfig:
    mt = "xlnet"
    require(hf, {"bi_data": (False, False), "same_length": (False, False),
                 "tie_word_embeddings": (True, True)}, mt)
    if hf.get("reuse_len") not in (None, 0):
        raise ConfigError(f"xlnet config.json: unsupported setting(s): reuse_len={hf['reuse_len']!r} "
                          "(supported: None)")
    if hf.get("attn_type", "bi") not in ("bi", "uni"):
        raise ConfigError(f"xlnet config.json: attn_type={hf['attn_type']!r} is not 'bi' or 'uni'")
    if head == "seq_cls":  # the sequence summary zhixing implements: last token, projection, tanh
        require(hf, {"summary_type": ("last", "last"), "summary_use_proj": (True, True),
                     "summary_activation": (None, "tanh"), "summary_proj_to_labels": (False, False),
                     "summary_first_dropout": (0, 0)}, mt)
    dim, heads = pick(hf, "d_model", mt), pick(hf, "n_head", mt)
    num_labels, names = label_names_from_hf(hf)
    if head == "qa" and num_labels != 2:
        raise ConfigError(f"xlnet config.json: question answering needs num_labels=2 (start, end), "
                          f"got {num_labels}")
    clamp = hf.get("clamp_len", -1)
    dropout = hf.get("dropout", 0.1)
    old_name = "vocab_size" not in hf and "n_token" in hf  # configs written before transformers 2
    vocab_size = hf["n_token"] if old_name else pick(hf, "vocab_size", mt)
    return ModelConfig(
        arch="xlnet", head=head, dim=dim, vocab_size=vocab_size,
        num_layers=pick(hf, "n_layer", mt), num_heads=heads, head_dim=hf.get("d_head") or dim // heads,
        ffn_dim=pick(hf, "d_inner", mt), max_seq_len=DEFAULT_MAX_SEQ_LEN, dropout=dropout,
        attn_dropout=dropout,
        classifier_dropout=hf.get("summary_last_dropout", 0.1),
        activation=activation_from_hf(hf.get("ff_activation", "gelu"), mt, "ff_activation"), norm="layernorm",
        norm_eps=hf.get("layer_norm_eps", 1e-12), pre_norm=False, final_norm=False, position="none",
        tie_embeddings=True, attn_type=hf.get("attn_type", "bi"), mem_len=hf.get("mem_len") or None,
        clamp_len=clamp if clamp and clamp > 0 else None,
        num_labels=2 if head == "qa" else num_labels, label_names=[] if head == "qa" else names,
        pad_token_id=single_id(hf.get("pad_token_id")), bos_token_id=single_id(hf.get("bos_token_id")),
        eos_token_id=single_id(hf.get("eos_token_id")), initializer_range=hf.get("initializer_range", 0.02),
    )


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    exportable(cfg, "xlnet", {"arch": ("xlnet",), "pre_norm": (False,), "norm": ("layernorm",),
                              "activation": tuple(ACT_TO_HF), "num_kv_heads": (cfg.num_heads,),
                              "head_dim": (cfg.dim // cfg.num_heads,), "tie_embeddings": (True,),
                              "attn_dropout": (cfg.dropout,)})
    if cfg.mem_len == 0:
        raise ConfigError("cannot export to Hugging Face xlnet: mem_len=0 (HF reads 0 as 'keep every state'; "
                          "use None or a positive length)")
    return {
        "model_type": "xlnet", "vocab_size": cfg.vocab_size, "d_model": cfg.dim, "n_layer": cfg.num_layers,
        "n_head": cfg.num_heads, "d_head": cfg.head_dim, "d_inner": cfg.ffn_dim,
        "ff_activation": ACT_TO_HF[cfg.activation], "attn_type": cfg.attn_type, "mem_len": cfg.mem_len,
        "reuse_len": None, "clamp_len": cfg.clamp_len or -1, "bi_data": False, "same_length": False,
        "dropout": cfg.dropout, "layer_norm_eps": cfg.norm_eps, "initializer_range": cfg.initializer_range,
        "summary_type": "last", "summary_use_proj": True, "summary_activation": "tanh",
        "summary_last_dropout": cfg.classifier_dropout, "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "tie_word_embeddings": True,
        **label_names_to_hf(cfg),
    }


def rules(cfg: ModelConfig) -> list[Rule]:
    """Our names <- HF names (without the `transformer.` prefix)."""
    dim, per_head = cfg.dim, (cfg.dim, cfg.num_heads, cfg.head_dim)
    width = cfg.num_heads * cfg.head_dim
    out = [*rename("tok_embed", "word_embedding", bias=False),
           Reshape("mask_emb", ("mask_emb",), hf_shape=(1, 1, dim), our_shape=(dim,))]
    for i in range(cfg.num_layers):
        ours, hf = f"layers.{i}", f"layer.{i}.rel_attn"
        for p in "qkvr":  # HF (dim, heads, head_dim) used as x @ W  ->  nn.Linear (heads * head_dim, dim)
            out.append(Reshape(f"{ours}.attn.{p}.weight", (f"{hf}.{p}",), transpose=True, hf_shape=per_head,
                               our_shape=(width, dim)))
        out.append(Reshape(f"{ours}.attn.o.weight", (f"{hf}.o",), hf_shape=per_head, our_shape=(dim, width)))
        for mine, theirs in (("content_bias", "r_w_bias"), ("position_bias", "r_r_bias"),
                             ("segment_bias", "r_s_bias"), ("segment_embed", "seg_embed")):
            out.append(Rule(f"{ours}.attn.{mine}", (f"{hf}.{theirs}",)))
        out += rename(f"{ours}.attn_norm", f"{hf}.layer_norm")
        out += rename(f"{ours}.ffn.up", f"layer.{i}.ff.layer_1")
        out += rename(f"{ours}.ffn.down", f"layer.{i}.ff.layer_2")
        out += rename(f"{ours}.ffn_norm", f"layer.{i}.ff.layer_norm")
    out.append(Rule("head.bias", ("lm_loss.bias",)))  # head.weight is the word embedding
    out += rename("summary", "sequence_summary.summary")
    classifier = {"seq_cls": "logits_proj", "qa": "qa_outputs"}.get(cfg.head, "classifier")
    out += rename("classifier.proj", classifier)
    return out


FAMILY = Family(
    model_types=("xlnet",),
    prefix=lambda model_type: "transformer",
    architectures=ARCHITECTURES,
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    rules=rules,
    default_head=lambda hf: "lm",
    # the tied LM matrix is the word embedding; a second copy under the head's name carries nothing
    ignored=(r"^lm_loss\.weight$",),
    head_prefixes=("lm_loss.", "sequence_summary.", "logits_proj.", "classifier.", "qa_outputs."),
    outside_base=("lm_loss.", "sequence_summary.", "logits_proj.", "classifier.", "qa_outputs."),
)
