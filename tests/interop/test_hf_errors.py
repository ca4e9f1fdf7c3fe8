"""Bad input: checkpoints that do not fit (listed by name), unsupported model types, classes and
settings (the supported ones listed), configs transformers cannot express, and failed exports that
must leave nothing behind."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from hf_tiny import assert_close_real, batch, bert_config, gpt2_config, llama_config, transformers
from safetensors.torch import load_file, save_file

from zhixing.config import ConfigError
from zhixing.interop import from_hf, to_hf
from zhixing.models import CheckpointError, build_model


def save_hf(model, path):
    model.save_pretrained(path)
    return path


def edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def test_missing_unexpected_and_misshaped_tensors_are_all_listed(tmp_path):
    d = save_hf(transformers.BertForMaskedLM(bert_config()), tmp_path)
    state = load_file(d / "model.safetensors")
    del state["bert.encoder.layer.1.attention.self.key.weight"]
    state["bert.encoder.layer.0.attention.self.extra.weight"] = torch.zeros(2)
    state["bert.encoder.layer.0.output.dense.bias"] = torch.zeros(31)
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        from_hf(d)
    msg = str(err.value)
    assert "missing (1): encoder.layer.1.attention.self.key.weight" in msg
    assert "unexpected (1): encoder.layer.0.attention.self.extra.weight" in msg
    assert "encoder.layer.0.output.dense.bias: checkpoint (31,) vs expected (32,)" in msg
    assert str(d) in msg


def test_unsupported_model_type_lists_the_supported_ones(tmp_path):
    d = save_hf(transformers.BertModel(bert_config()), tmp_path)
    edit_config(d, model_type="t5")
    with pytest.raises(ConfigError, match="model_type 't5' is not supported; supported model types: "
                                          "bert, roberta, gpt2, llama"):
        from_hf(d)


def test_unsupported_class_lists_the_supported_ones():
    hf = transformers.GPT2ForTokenClassification(gpt2_config(pad_token_id=0))
    with pytest.raises(ConfigError, match="GPT2ForTokenClassification is not supported; supported gpt2 "
                                          "classes: GPT2Model, GPT2LMHeadModel, "
                                          "GPT2ForSequenceClassification"):
        from_hf(hf)


@pytest.mark.parametrize("make, match", [
    (lambda: transformers.LlamaForCausalLM(llama_config(rope_scaling={"rope_type": "linear", "factor": 2.0})),
     "rope_type='linear'"),
    (lambda: transformers.GPT2LMHeadModel(gpt2_config(scale_attn_by_inverse_layer_idx=True)),
     "scale_attn_by_inverse_layer_idx=True"),
    (lambda: transformers.BertModel(bert_config(hidden_act="quick_gelu")), "hidden_act='quick_gelu'"),
])
def test_settings_that_change_the_maths_are_refused(make, match):
    with pytest.raises(ConfigError, match=match):
        from_hf(make())


@pytest.mark.parametrize("preset, overrides, match", [
    ("transformer-tiny", {}, "no Hugging Face family for arch='transformer'"),
    ("gpt-tiny", {"position": "sinusoidal"}, "no Hugging Face family"),
    ("gpt-tiny", {"norm": "rmsnorm", "num_kv_heads": 2}, r"gpt2: norm='rmsnorm' .*num_kv_heads=2"),
    ("llama-tiny", {"activation": "gelu"}, r"llama: activation='gelu'"),
    ("bert-tiny", {"pre_norm": True, "head": "lm"}, r"bert: pre_norm=True"),
    ("roberta-base", {"head": "pretraining", "num_layers": 1, "dim": 32, "num_heads": 2},
     "head 'pretraining' has no Hugging Face roberta class"),
])
def test_export_refuses_what_transformers_cannot_express(tmp_path, preset, overrides, match):
    model = build_model(preset, **overrides)
    with pytest.raises(ConfigError, match=match):
        to_hf(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_export_leaves_the_previous_files_whole(tmp_path, monkeypatch):
    model = build_model("gpt-tiny", vocab_size=99)
    to_hf(model, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(tensors, path, metadata=None):
        path.write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr("zhixing.models.base.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        to_hf(build_model("gpt-tiny", vocab_size=99), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_new_head_on_a_backbone_checkpoint_is_initialised_with_a_warning(tmp_path):
    hf = transformers.BertModel(bert_config()).eval()
    d = save_hf(hf, tmp_path)
    with pytest.warns(UserWarning, match="head 'seq_cls' is not in the checkpoint; 2 tensors are freshly"):
        ours = from_hf(d, head="seq_cls", num_labels=3)
    assert ours.config.num_labels == 3 and ours.classifier.proj.weight.shape == (3, 32)
    inputs = batch(pad_id=0)
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).pooled, hf(**inputs).pooler_output, atol=1e-4, rtol=1e-4)


def test_tensors_of_another_head_are_dropped_with_a_warning(tmp_path):
    """Google's bert-base checkpoints say BertForMaskedLM but also carry the pooler and NSP layer."""
    d = save_hf(transformers.BertForPreTraining(bert_config()), tmp_path)
    edit_config(d, architectures=["BertForMaskedLM"])
    with pytest.warns(UserWarning, match="ignoring 4 tensors of a head this model does not have"):
        ours = from_hf(d)
    assert ours.config.head == "mlm"


def test_old_names_and_pickled_weights(tmp_path):
    """pytorch_model.bin (read with weights_only=True), TF-era gamma/beta names, position_ids buffers."""
    hf = transformers.BertForMaskedLM(bert_config()).eval()
    d = save_hf(hf, tmp_path / "m")
    state = load_file(d / "model.safetensors")
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in state.items()}
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")
    inputs = batch(pad_id=0)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped or guessed
        assert_close_real(from_hf(d)(**inputs).logits, hf(**inputs).logits, inputs["attention_mask"])


class NotATensor:
    pass


def test_pickled_code_is_never_run(tmp_path):
    d = save_hf(transformers.BertModel(bert_config()), tmp_path)
    (d / "model.safetensors").unlink()
    torch.save({"embeddings.word_embeddings.weight": NotATensor()}, d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        from_hf(d)


def test_no_weights_and_not_a_directory(tmp_path):
    d = save_hf(transformers.BertModel(bert_config()), tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="expected model.safetensors or pytorch_model.bin"):
        from_hf(d)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        from_hf(tmp_path / "nope")
