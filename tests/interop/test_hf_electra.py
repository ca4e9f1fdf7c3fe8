"""ELECTRA parity with transformers: import (from_hf), export (to_hf) and reload, every class, with and
without the embedding projection (embedding_size != hidden_size), padded batches with attention masks and
token types. fp32, CPU, atol 1e-4; and the generator + discriminator pair, saved whole or split in two."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from hf_tiny import VOCAB, assert_close_real, batch, transformers

from zhixing.config import ConfigError
from zhixing.interop import from_hf, pretraining_from_hf, to_hf
from zhixing.models import Electra, ElectraPretraining, Model, build_model

CLASSES = {
    "ElectraModel": "none", "ElectraForPreTraining": "rtd", "ElectraForMaskedLM": "mlm",
    "ElectraForSequenceClassification": "seq_cls", "ElectraForTokenClassification": "token_cls",
    "ElectraForQuestionAnswering": "qa",
}


def electra_config(**kw):
    base = dict(vocab_size=VOCAB, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
                attn_implementation="eager")
    return transformers.ElectraConfig(**{**base, **kw})


def randomised(model):
    """Every parameter moved off its initial value (zero biases, unit LayerNorms would hide a swapped or
    missing mapping; the heads' logits get an O(1) scale). A tied matrix is one parameter, moved once."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def logits_hf(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    if hasattr(out, "start_logits"):
        return torch.stack([out.start_logits, out.end_logits], dim=-1)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits


def logits_ours(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    return out.last_hidden_state if model.config.head == "none" else out.logits


def check(ours: torch.Tensor, theirs: torch.Tensor, mask: torch.Tensor) -> None:
    if ours.dim() == 2 and ours.shape != mask.shape:  # (batch, labels): one row per sequence
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    else:
        assert_close_real(ours, theirs, mask)


@pytest.mark.parametrize("embedding_size", [16, 32], ids=["projected", "same-width"])
@pytest.mark.parametrize("name", list(CLASSES))
def test_import_and_export_match_transformers(name, embedding_size, tmp_path):
    labels = 2 if name.endswith("QuestionAnswering") else 3
    config = electra_config(num_labels=labels, embedding_size=embedding_size)
    hf = randomised(getattr(transformers, name)(config))
    inputs = batch(pad_id=config.pad_token_id)
    theirs = logits_hf(hf, inputs)
    real = inputs["attention_mask"].bool()
    assert (theirs[real] if theirs.shape[:2] == real.shape else theirs).std() > 0.1  # far above the tolerance

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious "ignoring tensors" warning (e.g. the tied decoder)
        ours = from_hf(hf)
    assert ours.config.head == CLASSES[name] and not ours.training
    assert (ours.embed_proj is not None) == (embedding_size != 32)
    check(logits_ours(ours, inputs), theirs, inputs["attention_mask"])

    to_hf(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [name]
    reloaded = getattr(transformers, name).from_pretrained(tmp_path, attn_implementation="eager").eval()
    check(logits_hf(reloaded, inputs), theirs, inputs["attention_mask"])
    check(logits_ours(from_hf(tmp_path), inputs), theirs, inputs["attention_mask"])  # the directory route


def test_generator_mlm_loss_and_sdpa_and_gelu_tanh():
    """The loss too, transformers' SDPA path on both sides, and hidden_act gelu_new (the generator head keeps
    exact gelu on both sides)."""
    config = electra_config(attn_implementation="sdpa", hidden_act="gelu_new")
    hf = randomised(transformers.ElectraForMaskedLM(config))
    ours = from_hf(hf, attn_impl="sdpa")
    assert ours.config.activation == "gelu_tanh"
    inputs = batch(pad_id=0)
    drop = (torch.rand(inputs["input_ids"].shape) < 0.5) | (inputs["attention_mask"] == 0)  # never a pad
    labels = inputs["input_ids"].masked_fill(drop, -100)
    with torch.no_grad():
        want, got = hf(**inputs, labels=labels), ours(**inputs, labels=labels)
    assert_close_real(got.logits, want.logits, inputs["attention_mask"])
    torch.testing.assert_close(got.loss, want.loss, atol=1e-5, rtol=1e-5)


def test_discriminator_loss_is_over_real_tokens_as_transformers():
    hf = randomised(transformers.ElectraForPreTraining(electra_config()))
    ours = from_hf(hf)
    inputs = batch(pad_id=0)
    replaced = (torch.rand(inputs["input_ids"].shape) < 0.3).long()
    with torch.no_grad():
        want, got = hf(**inputs, labels=replaced), ours(**inputs, labels=replaced)
    torch.testing.assert_close(got.loss, want.loss, atol=1e-5, rtol=1e-5)


def test_untied_generator_decoder(tmp_path):
    hf = randomised(transformers.ElectraForMaskedLM(electra_config(tie_word_embeddings=False)))
    ours = from_hf(hf)
    assert not torch.equal(hf.generator_lm_head.weight, hf.electra.embeddings.word_embeddings.weight)
    assert not ours.config.tie_embeddings
    assert ours.mlm.decoder.weight.data_ptr() != ours.tok_embed.weight.data_ptr()
    inputs = batch(pad_id=0)
    check(logits_ours(ours, inputs), logits_hf(hf, inputs), inputs["attention_mask"])
    to_hf(ours, tmp_path)
    reloaded = transformers.ElectraForMaskedLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    check(logits_hf(reloaded, inputs), logits_hf(hf, inputs), inputs["attention_mask"])


def test_pretraining_pair_exports_each_half_and_saves_whole(tmp_path):
    """Our pair -> two HF checkpoints (ElectraForMaskedLM, ElectraForPreTraining) with equal outputs, and
    back into one pair; the pair's own directory stores the shared tables once."""
    pair = build_model("electra-tiny", vocab_size=VOCAB, max_seq_len=64, dropout=0.0).eval()
    inputs = batch(pad_id=0)
    with pytest.raises(ConfigError, match="head='pretraining' is a generator \\+ discriminator pair"):
        to_hf(pair, tmp_path / "both")
    to_hf(pair.generator, tmp_path / "gen")
    to_hf(pair.discriminator, tmp_path / "disc")
    mask = inputs["attention_mask"]
    gen = transformers.ElectraForMaskedLM.from_pretrained(tmp_path / "gen", attn_implementation="eager")
    disc = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "disc", attn_implementation="eager")
    check(logits_hf(gen.eval(), inputs), logits_ours(pair.generator, inputs), mask)
    check(logits_hf(disc.eval(), inputs), logits_ours(pair.discriminator, inputs), mask)
    assert gen.config.embedding_size == disc.config.embedding_size == 32
    g = gen.config
    assert (g.hidden_size, g.num_attention_heads, g.intermediate_size) == (16, 1, 64)

    again = pretraining_from_hf(tmp_path / "gen", tmp_path / "disc")
    assert isinstance(again, ElectraPretraining) and again.config.generator_size == 0.25
    assert again.generator.tok_embed is again.discriminator.tok_embed
    check(logits_ours(again.generator, inputs), logits_ours(pair.generator, inputs), mask)
    check(logits_ours(again, inputs), logits_ours(pair, inputs), mask)

    pair.save_pretrained(tmp_path / "pair")
    loaded = Model.from_pretrained(tmp_path / "pair").eval()
    assert isinstance(loaded, ElectraPretraining)
    assert loaded.generator.tok_embed is loaded.discriminator.tok_embed
    check(logits_ours(loaded.generator, inputs), logits_ours(pair.generator, inputs), mask)


def test_a_mismatched_pair_is_refused(tmp_path):
    disc = transformers.ElectraForPreTraining(electra_config())
    gen = transformers.ElectraForMaskedLM(electra_config(hidden_size=8, num_attention_heads=1,
                                                         intermediate_size=20))
    with pytest.raises(ConfigError, match=r"does not fit discriminator.*ffn_dim: 20 \(the pair needs 9\)"):
        pretraining_from_hf(gen, disc)
    gen = transformers.ElectraForMaskedLM(electra_config(hidden_size=8, num_attention_heads=1,
                                                         intermediate_size=9))  # 37 x 8/32, rounded
    with pytest.raises(ConfigError, match="different tok_embed.weight"):
        pretraining_from_hf(gen, disc)
    with pytest.raises(ConfigError, match="takes an ElectraForMaskedLM generator"):
        pretraining_from_hf(disc, disc)


def test_settings_transformers_cannot_express_are_named(tmp_path):
    model = Electra(build_model("electra-tiny", vocab_size=VOCAB).discriminator.config.replace(
        activation="swiglu", norm="rmsnorm"))
    with pytest.raises(ConfigError, match="cannot export to Hugging Face electra: norm='rmsnorm'.*activat"):
        to_hf(model, tmp_path)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
