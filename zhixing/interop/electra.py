"""ELECTRA <-> Hugging Face `electra`.

HF's ElectraModel is BERT's encoder with embeddings of width `embedding_size`, a Linear
`embeddings_project` to `hidden_size` when the two differ, and no pooler. Its heads: the discriminator
(ElectraForPreTraining, our head "rtd"), the generator (ElectraForMaskedLM, "mlm": dense down to
`embedding_size`, gelu, LayerNorm, decoder tied to the word embeddings), and the fine-tuning classes.
A generator and its discriminator are two HF checkpoints; our `ElectraPretraining` pair exports as two
(`to_hf(model.generator, ...)`, `to_hf(model.discriminator, ...)`), and
`zhixing.interop.pretraining_from_hf` joins two.
"""

from __future__ import annotations

from typing import Any

from zhixing.config import ConfigError, ModelConfig
from zhixing.interop.core import (
    ACT_TO_HF,
    Family,
    Rule,
    activation_from_hf,
    exportable,
    fuse,
    label_names_from_hf,
    label_names_to_hf,
    pick,
    rename,
    require,
    single_id,
)

ARCHITECTURES = {
    "ElectraModel": "none",
    "ElectraForPreTraining": "rtd",
    "ElectraForMaskedLM": "mlm",
    "ElectraForSequenceClassification": "seq_cls",
    "ElectraForTokenClassification": "token_cls",
    "ElectraForQuestionAnswering": "qa",
}


def config_from_hf(hf: dict[str, Any], head: str) -> ModelConfig:
    mt = "electra"
    require(hf, {"position_embedding_type": ("absolute", "absolute"), "is_decoder": (False, False),
                 "add_cross_attention": (False, False)}, mt)
    num_labels, names = label_names_from_hf(hf)
    if head == "qa" and num_labels != 2:
        raise ConfigError(f"{mt} config.json: question answering needs num_labels=2 (start, end), "
                          f"got {num_labels}")
    dim, embed = pick(hf, "hidden_size", mt), pick(hf, "embedding_size", mt)
    dropout = hf.get("hidden_dropout_prob", 0.1)
    return ModelConfig(
        arch="electra", head=head,
        vocab_size=pick(hf, "vocab_size", mt), dim=dim, embed_dim=None if embed == dim else embed,
        num_layers=pick(hf, "num_hidden_layers", mt), num_heads=pick(hf, "num_attention_heads", mt),
        ffn_dim=pick(hf, "intermediate_size", mt), max_seq_len=pick(hf, "max_position_embeddings", mt),
        dropout=dropout, attn_dropout=hf.get("attention_probs_dropout_prob", dropout),
        classifier_dropout=hf.get("classifier_dropout"),
        activation=activation_from_hf(hf.get("hidden_act", "gelu"), mt), norm="layernorm",
        norm_eps=hf.get("layer_norm_eps", 1e-12), pre_norm=False, position="learned", bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True), type_vocab_size=hf.get("type_vocab_size", 2),
        embed_norm=True, final_norm=False,
        num_labels=2 if head == "qa" else num_labels, label_names=[] if head == "qa" else names,
        pad_token_id=hf.get("pad_token_id", 0), bos_token_id=single_id(hf.get("bos_token_id")),
        eos_token_id=single_id(hf.get("eos_token_id")), initializer_range=hf.get("initializer_range", 0.02),
    )


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    if cfg.head == "pretraining":
        raise ConfigError("cannot export to Hugging Face electra: head='pretraining' is a generator + "
                          "discriminator pair, two HF models; export model.discriminator "
                          "(ElectraForPreTraining) and model.generator (ElectraForMaskedLM) one by one")
    exportable(cfg, "electra", {"arch": ("electra",), "pre_norm": (False,), "norm": ("layernorm",),
                                "position": ("learned",), "position_offset": (0,), "bias": (True,),
                                "embed_norm": (True,), "embed_scale": (False,),
                                "activation": tuple(ACT_TO_HF), "num_kv_heads": (cfg.num_heads,),
                                "head_dim": (cfg.dim // cfg.num_heads,)})
    if cfg.type_vocab_size < 1:
        raise ConfigError("cannot export to Hugging Face electra: type_vocab_size=0 "
                          "(HF always has token types; use 1)")
    return {
        "model_type": "electra", "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim,
        "embedding_size": cfg.dim if cfg.embed_dim is None else cfg.embed_dim,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.ffn_dim, "hidden_act": ACT_TO_HF[cfg.activation],
        "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.attn_dropout,
        "classifier_dropout": cfg.classifier_dropout, "max_position_embeddings": cfg.max_seq_len,
        "type_vocab_size": cfg.type_vocab_size, "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.norm_eps, "position_embedding_type": "absolute",
        "pad_token_id": cfg.pad_token_id, "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
        "tie_word_embeddings": cfg.tie_embeddings, **label_names_to_hf(cfg),
    }


def rules(cfg: ModelConfig) -> list[Rule]:
    """Our names <- HF names (without the `electra.` prefix)."""
    out = [*rename("tok_embed", "embeddings.word_embeddings", bias=False),
           *rename("pos_embed", "embeddings.position_embeddings", bias=False),
           *rename("type_embed", "embeddings.token_type_embeddings", bias=False),
           *rename("embed_norm", "embeddings.LayerNorm"),
           *rename("embed_proj", "embeddings_project")]
    for i in range(cfg.num_layers):  # same as interop/bert.py: the encoder layers
        ours, hf = f"layers.{i}", f"encoder.layer.{i}"
        out += fuse(f"{ours}.attn.qkv", [f"{hf}.attention.self.{n}" for n in ("query", "key", "value")], True)
        out += rename(f"{ours}.attn.o", f"{hf}.attention.output.dense")
        out += rename(f"{ours}.attn_norm", f"{hf}.attention.output.LayerNorm")
        out += rename(f"{ours}.ffn.up", f"{hf}.intermediate.dense")
        out += rename(f"{ours}.ffn.down", f"{hf}.output.dense")
        out += rename(f"{ours}.ffn_norm", f"{hf}.output.LayerNorm")
    out += rename("rtd.dense", "discriminator_predictions.dense")
    out += rename("rtd.out", "discriminator_predictions.dense_prediction")
    out += rename("mlm.dense", "generator_predictions.dense")
    out += rename("mlm.norm", "generator_predictions.LayerNorm")
    out += rename("mlm.decoder", "generator_lm_head")  # the weight only when untied
    out += rename("classifier.dense", "classifier.dense")  # seq_cls
    classifier = {"seq_cls": "classifier.out_proj", "qa": "qa_outputs"}
    out += rename("classifier.proj", classifier.get(cfg.head, "classifier"))
    return out


HEAD_PREFIXES = ("discriminator_predictions.", "generator_predictions.", "generator_lm_head.", "classifier.",
                 "qa_outputs.")

FAMILY = Family(
    model_types=("electra",),
    prefix=lambda model_type: "electra",
    architectures=ARCHITECTURES,
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    rules=rules,
    default_head=lambda hf: "none",
    ignored=(r"(^|\.)position_ids$", r"(^|\.)token_type_ids$"),
    head_prefixes=HEAD_PREFIXES,
    outside_base=HEAD_PREFIXES,
)


__all__ = ["FAMILY"]
