"""Llama <-> Hugging Face `llama`.

HF keeps q, k, v and the SwiGLU gate / up projections as separate Linears; ours fuses them: `qkv` rows are
q | k | v, and `ffn.up` rows are gate | up (FeedForward chunks them in that order). Rotary positions use
the half-split pairing of HF checkpoints, so no permutation of q/k rows is needed.
"""

from __future__ import annotations

from typing import Any

from zhixing.config import ConfigError, ModelConfig
from zhixing.interop.core import Family, Rule, exportable, fuse, pick, rename, require, single_id


def rope_theta(hf: dict[str, Any]) -> float:
    """The rotary base: transformers 5 keeps it in `rope_parameters`, 4.x at the top level."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = params.get("rope_type") or params.get("type") or scaling.get("rope_type") or scaling.get("type")
    kind = kind or "default"
    if kind != "default":
        raise ConfigError(f"llama config.json: rope_type={kind!r} (RoPE scaling) is not supported; "
                          "supported: 'default'")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def config_from_hf(hf: dict[str, Any], head: str) -> ModelConfig:
    mt = "llama"
    require(hf, {"hidden_act": ("silu", "silu")}, mt)
    if hf.get("attention_bias", False) != hf.get("mlp_bias", False):
        raise ConfigError(f"llama config.json: attention_bias={hf.get('attention_bias')} and "
                          f"mlp_bias={hf.get('mlp_bias')} differ; zhixing has one `bias` switch for both")
    dim, heads = pick(hf, "hidden_size", mt), pick(hf, "num_attention_heads", mt)
    return ModelConfig(
        arch="gpt", head=head, vocab_size=pick(hf, "vocab_size", mt), dim=dim,
        num_layers=pick(hf, "num_hidden_layers", mt), num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=hf.get("head_dim") or dim // heads,
        ffn_dim=pick(hf, "intermediate_size", mt), max_seq_len=pick(hf, "max_position_embeddings", mt),
        dropout=0.0, attn_dropout=hf.get("attention_dropout", 0.0), activation="swiglu", norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6), pre_norm=True, position="rotary", rope_theta=rope_theta(hf),
        bias=hf.get("attention_bias", False), tie_embeddings=hf.get("tie_word_embeddings", False),
        final_norm=True,
        pad_token_id=single_id(hf.get("pad_token_id")), bos_token_id=single_id(hf.get("bos_token_id")),
        eos_token_id=single_id(hf.get("eos_token_id")), initializer_range=hf.get("initializer_range", 0.02),
    )


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    exportable(cfg, "llama", {"arch": ("gpt",), "pre_norm": (True,), "norm": ("rmsnorm",),
                              "position": ("rotary",), "activation": ("swiglu",), "final_norm": (True,),
                              "embed_scale": (False,)})
    return {
        "model_type": "llama", "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        # both spellings: transformers 5 reads rope_parameters, 4.x reads rope_theta
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_theta": cfg.rope_theta,
        "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "attention_dropout": cfg.attn_dropout,
        "initializer_range": cfg.initializer_range, "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id,
    }


def rules(cfg: ModelConfig) -> list[Rule]:
    """Our names <- HF names (without the `model.` prefix)."""
    out = rename("tok_embed", "embed_tokens", bias=False)
    for i in range(cfg.num_layers):
        ours, hf = f"layers.{i}", f"layers.{i}"
        out += rename(f"{ours}.attn_norm", f"{hf}.input_layernorm", bias=False)
        out += fuse(f"{ours}.attn.qkv", [f"{hf}.self_attn.{n}_proj" for n in "qkv"], bias=cfg.bias)
        out += rename(f"{ours}.attn.o", f"{hf}.self_attn.o_proj", bias=cfg.bias)
        out += rename(f"{ours}.ffn_norm", f"{hf}.post_attention_layernorm", bias=False)
        out += fuse(f"{ours}.ffn.up", [f"{hf}.mlp.gate_proj", f"{hf}.mlp.up_proj"], bias=cfg.bias)
        out += rename(f"{ours}.ffn.down", f"{hf}.mlp.down_proj", bias=cfg.bias)
    out += rename("final_norm", "norm", bias=False)
    out += rename("head.proj", "lm_head", bias=False)  # only used when untied
    return out


FAMILY = Family(
    model_types=("llama",),
    prefix=lambda model_type: "model",
    architectures={"LlamaModel": "none", "LlamaForCausalLM": "lm"},
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    rules=rules,
    default_head=lambda hf: "lm",
    ignored=(r"rotary_emb\.inv_freq$",),
    head_prefixes=("lm_head.",),
    outside_base=("lm_head.",),
)
