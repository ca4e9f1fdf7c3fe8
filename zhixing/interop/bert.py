"""BERT and RoBERTa <-> Hugging Face `bert` / `roberta`.

RoBERTa is BERT with positions offset past the padding id (`position_offset = pad_token_id + 1`, so HF's
`max_position_embeddings` 514 is our `max_seq_len` 512 + 2), one token type, and its own head names.
HF keeps q, k, v as three Linears; ours is one fused `qkv` (rows q | k | v).
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
    "BertModel": "none",
    "BertForMaskedLM": "mlm",
    "BertForPreTraining": "pretraining",
    "BertForSequenceClassification": "seq_cls",
    "BertForTokenClassification": "token_cls",
    "BertForQuestionAnswering": "qa",
    "RobertaModel": "none",
    "RobertaForMaskedLM": "mlm",
    "RobertaForSequenceClassification": "seq_cls",
    "RobertaForTokenClassification": "token_cls",
    "RobertaForQuestionAnswering": "qa",
}


def model_type_of(cfg: ModelConfig) -> str:
    return "roberta" if cfg.position_offset else "bert"


def config_from_hf(hf: dict[str, Any], head: str) -> ModelConfig:
    mt = hf["model_type"]
    require(hf, {"position_embedding_type": ("absolute", "absolute"), "is_decoder": (False, False),
                 "add_cross_attention": (False, False)}, mt)
    roberta = mt == "roberta"
    pad = hf.get("pad_token_id", 1 if roberta else 0)
    offset = pad + 1 if roberta else 0  # RoBERTa positions start after the padding id
    activation = activation_from_hf(hf.get("hidden_act", "gelu"), mt)
    if roberta and head == "mlm" and activation != "gelu":
        raise ConfigError(f"roberta config.json: hidden_act={hf['hidden_act']!r}, but RoBERTa's LM head "
                          "always uses gelu and zhixing's MLM head uses hidden_act; only gelu is supported")
    num_labels, names = label_names_from_hf(hf)
    if head == "qa" and num_labels != 2:
        raise ConfigError(f"{mt} config.json: question answering needs num_labels=2 (start, end), "
                          f"got {num_labels}")
    dropout = hf.get("hidden_dropout_prob", 0.1)
    return ModelConfig(
        arch="bert", head=head,
        vocab_size=pick(hf, "vocab_size", mt), dim=pick(hf, "hidden_size", mt),
        num_layers=pick(hf, "num_hidden_layers", mt), num_heads=pick(hf, "num_attention_heads", mt),
        ffn_dim=pick(hf, "intermediate_size", mt),
        max_seq_len=pick(hf, "max_position_embeddings", mt) - offset,
        dropout=dropout, attn_dropout=hf.get("attention_probs_dropout_prob", dropout),
        classifier_dropout=hf.get("classifier_dropout"), activation=activation, norm="layernorm",
        norm_eps=hf.get("layer_norm_eps", 1e-12), pre_norm=False, position="learned", bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True), type_vocab_size=hf.get("type_vocab_size", 2),
        position_offset=offset, embed_norm=True, final_norm=False,
        num_labels=2 if head == "qa" else num_labels, label_names=[] if head == "qa" else names,
        pad_token_id=pad, bos_token_id=single_id(hf.get("bos_token_id")),
        eos_token_id=single_id(hf.get("eos_token_id")), initializer_range=hf.get("initializer_range", 0.02),
    )


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    mt = model_type_of(cfg)
    exportable(cfg, mt, {"arch": ("bert",), "pre_norm": (False,), "norm": ("layernorm",),
                         "position": ("learned",), "bias": (True,), "embed_norm": (True,),
                         "embed_scale": (False,),
                         **({"seq_pooling": ("last",)} if cfg.head == "seq_cls" else {}),
                         "activation": tuple(ACT_TO_HF), "num_kv_heads": (cfg.num_heads,),
                         "head_dim": (cfg.dim // cfg.num_heads,)})
    if cfg.type_vocab_size < 1:
        raise ConfigError(f"cannot export to Hugging Face {mt}: type_vocab_size=0 "
                          "(HF always has token types; use 1)")
    if mt == "roberta" and cfg.position_offset != (cfg.pad_token_id or 0) + 1:
        raise ConfigError(f"cannot export to Hugging Face roberta: position_offset={cfg.position_offset} "
                          f"must be pad_token_id + 1 = {(cfg.pad_token_id or 0) + 1}")
    return {
        "model_type": mt, "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.ffn_dim, "hidden_act": ACT_TO_HF[cfg.activation],
        "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.attn_dropout,
        "classifier_dropout": cfg.classifier_dropout,
        "max_position_embeddings": cfg.max_seq_len + cfg.position_offset,
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.initializer_range, "layer_norm_eps": cfg.norm_eps,
        "position_embedding_type": "absolute", "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
        "tie_word_embeddings": cfg.tie_embeddings, **label_names_to_hf(cfg),
    }


def rules(cfg: ModelConfig) -> list[Rule]:
    """Our names <- HF names (without the `bert.` / `roberta.` prefix)."""
    roberta = model_type_of(cfg) == "roberta"
    out = [*rename("tok_embed", "embeddings.word_embeddings", bias=False),
           *rename("pos_embed", "embeddings.position_embeddings", bias=False),
           *rename("type_embed", "embeddings.token_type_embeddings", bias=False),
           *rename("embed_norm", "embeddings.LayerNorm")]
    for i in range(cfg.num_layers):
        ours, hf = f"layers.{i}", f"encoder.layer.{i}"
        qkv = [f"{hf}.attention.self.{n}" for n in ("query", "key", "value")]
        out += fuse(f"{ours}.attn.qkv", qkv, bias=True)
        out += rename(f"{ours}.attn.o", f"{hf}.attention.output.dense")
        out += rename(f"{ours}.attn_norm", f"{hf}.attention.output.LayerNorm")
        out += rename(f"{ours}.ffn.up", f"{hf}.intermediate.dense")
        out += rename(f"{ours}.ffn.down", f"{hf}.output.dense")
        out += rename(f"{ours}.ffn_norm", f"{hf}.output.LayerNorm")
    # RobertaForSequenceClassification's head is dense + tanh + out_proj on <s>: our pooler + classifier.
    out += rename("pooler", "classifier.dense" if roberta and cfg.head == "seq_cls" else "pooler.dense")
    mlm = "lm_head" if roberta else "cls.predictions"
    out += rename("mlm.dense", f"{mlm}.dense" if roberta else f"{mlm}.transform.dense")
    out += rename("mlm.norm", f"{mlm}.layer_norm" if roberta else f"{mlm}.transform.LayerNorm")
    out += rename("mlm.decoder", f"{mlm}.decoder", bias=False)  # only used when untied
    out.append(Rule("mlm.decoder.bias", (f"{mlm}.bias",)))
    out += rename("nsp.proj", "cls.seq_relationship")
    classifier = {"qa": "qa_outputs", "seq_cls": "classifier.out_proj" if roberta else "classifier"}
    out += rename("classifier.proj", classifier.get(cfg.head, "classifier"))
    return out


FAMILY = Family(
    model_types=("bert", "roberta"),
    prefix=lambda model_type: model_type,
    architectures=ARCHITECTURES,
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    rules=rules,
    default_head=lambda hf: "none",
    ignored=(r"(^|\.)position_ids$", r"(^|\.)token_type_ids$"),
    aliases={"cls.predictions.decoder.bias": "cls.predictions.bias", "lm_head.decoder.bias": "lm_head.bias"},
    head_prefixes=("pooler.", "cls.", "classifier.", "qa_outputs.", "lm_head."),
    outside_base=("cls.", "classifier.", "qa_outputs.", "lm_head."),
)
