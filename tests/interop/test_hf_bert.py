"""BERT / RoBERTa parity with transformers: import (from_hf), export (to_hf) and reload, every head,
padded batches with attention masks and token types. fp32, CPU, atol 1e-4 (observed: ~1e-7)."""

from __future__ import annotations

import json

import pytest
import torch
from hf_tiny import assert_close_real, batch, bert_config, roberta_config, transformers

from zhixing.interop import from_hf, to_hf


def outputs_hf(model, inputs) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs)
    if hasattr(out, "start_logits"):
        return {"tokens": torch.stack([out.start_logits, out.end_logits], dim=-1)}
    if hasattr(out, "prediction_logits"):
        return {"tokens": out.prediction_logits, "pooled": out.seq_relationship_logits}
    if hasattr(out, "pooler_output"):
        return {"tokens": out.last_hidden_state, "pooled": out.pooler_output}
    return {"pooled" if out.logits.dim() == 2 else "tokens": out.logits}


def outputs_ours(model, inputs) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs)
    head = model.config.head
    if head == "pretraining":
        return {"tokens": out.logits, "pooled": out.nsp_logits}
    if head == "none":
        return {"tokens": out.last_hidden_state, "pooled": out.pooled}
    return {"pooled" if head == "seq_cls" else "tokens": out.logits}


def check(ours: dict, theirs: dict, mask: torch.Tensor) -> None:
    assert ours.keys() == theirs.keys()
    if "tokens" in ours:
        assert_close_real(ours["tokens"], theirs["tokens"], mask)
    if "pooled" in ours:
        torch.testing.assert_close(ours["pooled"], theirs["pooled"], atol=1e-4, rtol=1e-4)


BERT_CLASSES = {
    "BertForMaskedLM": "mlm", "BertForSequenceClassification": "seq_cls",
    "BertForTokenClassification": "token_cls",
    "BertForQuestionAnswering": "qa", "BertForPreTraining": "pretraining", "BertModel": "none",
}
ROBERTA_CLASSES = {
    "RobertaForMaskedLM": "mlm", "RobertaForSequenceClassification": "seq_cls",
    "RobertaForTokenClassification": "token_cls", "RobertaForQuestionAnswering": "qa", "RobertaModel": "none",
}


@pytest.mark.parametrize("name", [*BERT_CLASSES, *ROBERTA_CLASSES])
def test_import_and_export_match_transformers(name, tmp_path):
    roberta = name.startswith("Roberta")
    labels = 2 if name.endswith("QuestionAnswering") else 3
    config = roberta_config(num_labels=labels) if roberta else bert_config(num_labels=labels)
    hf = getattr(transformers, name)(config).eval()
    inputs = batch(pad_id=config.pad_token_id)
    if roberta:  # one token type; RoBERTa's positions depend on the pad id in input_ids
        inputs.pop("token_type_ids")
    theirs = outputs_hf(hf, inputs)

    ours = from_hf(hf)
    assert ours.config.head == {**BERT_CLASSES, **ROBERTA_CLASSES}[name]
    assert not ours.training
    check(outputs_ours(ours, inputs), theirs, inputs["attention_mask"])

    to_hf(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [name]
    reloaded = getattr(transformers, name).from_pretrained(tmp_path, attn_implementation="eager").eval()
    check(outputs_hf(reloaded, inputs), theirs, inputs["attention_mask"])

    again = from_hf(tmp_path)  # and the directory route back into zhixing
    check(outputs_ours(again, inputs), theirs, inputs["attention_mask"])


def test_unpadded_rows_match_padded_batch():
    """The real tokens of a padded row give what the row alone gives (both sides, to 1e-5)."""
    hf = transformers.BertForMaskedLM(bert_config()).eval()
    ours = from_hf(hf)
    inputs = batch(pad_id=0)
    full = outputs_ours(ours, inputs)["tokens"]
    for row, n in ((1, 6), (2, 3)):
        alone = {k: v[row : row + 1, :n] for k, v in inputs.items()}
        alone_out = outputs_ours(ours, alone)["tokens"][0]
        torch.testing.assert_close(alone_out, full[row, :n], atol=1e-5, rtol=1e-5)


def test_label_names_survive_the_round_trip(tmp_path):
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    hf = transformers.BertForSequenceClassification(bert_config(id2label=labels)).eval()
    ours = from_hf(hf)
    assert ours.config.num_labels == 3 and ours.config.label_names == ["negative", "neutral", "positive"]
    to_hf(ours, tmp_path)
    assert transformers.AutoConfig.from_pretrained(tmp_path).id2label == labels


def test_untied_mlm_decoder_and_gelu_tanh(tmp_path):
    """tie_word_embeddings=False keeps a separate decoder matrix; gelu_new maps to our gelu_tanh."""
    config = bert_config(tie_word_embeddings=False, hidden_act="gelu_new")
    hf = transformers.BertForMaskedLM(config).eval()
    with torch.no_grad():
        hf.cls.predictions.decoder.weight.normal_()
    ours = from_hf(hf)
    assert ours.config.activation == "gelu_tanh" and not ours.config.tie_embeddings
    assert ours.mlm.decoder.weight.data_ptr() != ours.tok_embed.weight.data_ptr()
    inputs = batch(pad_id=0)
    check(outputs_ours(ours, inputs), outputs_hf(hf, inputs), inputs["attention_mask"])
    to_hf(ours, tmp_path)
    reloaded = transformers.BertForMaskedLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    check(outputs_hf(reloaded, inputs), outputs_hf(hf, inputs), inputs["attention_mask"])


def test_sdpa_on_both_sides():
    """Our fused path against transformers' default (SDPA) path."""
    hf = transformers.BertForMaskedLM(bert_config(attn_implementation="sdpa")).eval()
    ours = from_hf(hf, attn_impl="sdpa")
    inputs = batch(pad_id=0)
    check(outputs_ours(ours, inputs), outputs_hf(hf, inputs), inputs["attention_mask"])


def test_roberta_positions_follow_the_padding_id():
    config = roberta_config()
    ours = from_hf(transformers.RobertaModel(config).eval())
    assert ours.config.position_offset == config.pad_token_id + 1
    assert ours.config.max_seq_len == config.max_position_embeddings - ours.config.position_offset
