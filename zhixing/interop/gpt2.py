"""GPT-2 <-> Hugging Face `gpt2`.

GPT-2's linear layers are `Conv1D`s, which store the weight as (in, out), the transpose of nn.Linear's
(out, in); `c_attn` is already fused q | k | v like our `qkv`, so it is only transposed.
"""

from __future__ import annotations

from typing import Any

from zhixing.config import ModelConfig
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


def config_from_hf(hf: dict[str, Any], head: str) -> ModelConfig:
    mt = "gpt2"
    # reorder_and_upcast_attn only changes the precision of the scores, not the maths; it is accepted.
    require(hf, {"scale_attn_weights": (True, True), "scale_attn_by_inverse_layer_idx": (False, False),
                 "add_cross_attention": (False, False)}, mt)
    dim = pick(hf, "n_embd", mt)
    dropout = hf.get("resid_pdrop", 0.1)
    num_labels, names = label_names_from_hf(hf)
    return ModelConfig(
        num_labels=num_labels, label_names=names,
        arch="gpt", head=head, vocab_size=pick(hf, "vocab_size", mt), dim=dim,
        num_layers=pick(hf, "n_layer", mt), num_heads=pick(hf, "n_head", mt),
        ffn_dim=hf.get("n_inner") or 4 * dim,
        max_seq_len=pick(hf, "n_positions", mt), dropout=dropout, attn_dropout=hf.get("attn_pdrop", dropout),
        activation=activation_from_hf(hf.get("activation_function", "gelu_new"), mt, "activation_function"),
        norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5), pre_norm=True, position="learned",
        bias=True, tie_embeddings=hf.get("tie_word_embeddings", True), final_norm=True,
        pad_token_id=single_id(hf.get("pad_token_id")), bos_token_id=single_id(hf.get("bos_token_id")),
        eos_token_id=single_id(hf.get("eos_token_id")), initializer_range=hf.get("initializer_range", 0.02),
    )


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    exportable(cfg, "gpt2", {"arch": ("gpt",), "pre_norm": (True,), "norm": ("layernorm",),
                             "position": ("learned",), "bias": (True,), "final_norm": (True,),
                             "embed_scale": (False,), "seq_pooling": ("last",),
                             "activation": tuple(ACT_TO_HF), "num_kv_heads": (cfg.num_heads,),
                             "head_dim": (cfg.dim // cfg.num_heads,)})
    return {
        "model_type": "gpt2", "vocab_size": cfg.vocab_size, "n_embd": cfg.dim, "n_layer": cfg.num_layers,
        "n_head": cfg.num_heads, "n_inner": cfg.ffn_dim, "n_positions": cfg.max_seq_len,
        "activation_function": ACT_TO_HF[cfg.activation], "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.attn_dropout, "layer_norm_epsilon": cfg.norm_eps,
        "initializer_range": cfg.initializer_range, "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id,
        "tie_word_embeddings": cfg.tie_embeddings,
        **(label_names_to_hf(cfg) if cfg.head == "seq_cls" else {}),
    }


def rules(cfg: ModelConfig) -> list[Rule]:
    """Our names <- HF names (without the `transformer.` prefix)."""
    out = [*rename("tok_embed", "wte", bias=False), *rename("pos_embed", "wpe", bias=False)]
    for i in range(cfg.num_layers):
        ours, hf = f"layers.{i}", f"h.{i}"
        out += rename(f"{ours}.attn_norm", f"{hf}.ln_1")
        out += rename(f"{ours}.attn.qkv", f"{hf}.attn.c_attn", transpose=True)
        out += rename(f"{ours}.attn.o", f"{hf}.attn.c_proj", transpose=True)
        out += rename(f"{ours}.ffn_norm", f"{hf}.ln_2")
        out += rename(f"{ours}.ffn.up", f"{hf}.mlp.c_fc", transpose=True)
        out += rename(f"{ours}.ffn.down", f"{hf}.mlp.c_proj", transpose=True)
    out += rename("final_norm", "ln_f")
    out += rename("head.proj", "lm_head", bias=False)  # only used when untied
    out += rename("score", "score", bias=False)  # GPT2ForSequenceClassification
    return out


FAMILY = Family(
    model_types=("gpt2",),
    prefix=lambda model_type: "transformer",
    architectures={"GPT2Model": "none", "GPT2LMHeadModel": "lm", "GPT2ForSequenceClassification": "seq_cls"},
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    rules=rules,
    default_head=lambda hf: "lm",
    # Old checkpoints store the causal-mask buffers h.N.attn.bias / masked_bias; they hold no weights.
    ignored=(r"^h\.\d+\.attn\.(bias|masked_bias)$",),
    head_prefixes=("lm_head.", "score."),
    outside_base=("lm_head.", "score."),
)
