import json

import pytest
import torch

from zhixing.config import PRESETS, ConfigError, ModelConfig
from zhixing.models import GPT, Bert, CheckpointError, Model, Transformer, build_model
from zhixing.models.heads import linear_cross_entropy


def count(name: str) -> int:
    with torch.device("meta"):
        return build_model(name).num_parameters()


def test_published_parameter_counts():
    # BERT-base: 110M (Devlin et al.); GPT-2 small: 124M (124,439,808 in the released checkpoint)
    assert abs(count("bert-base") - 110e6) / 110e6 < 0.01
    assert count("gpt2") == 124_439_808
    assert abs(count("gpt2-medium") - 355e6) / 355e6 < 0.01


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds(name):
    with torch.device("meta"):
        model = build_model(name)
    assert isinstance(model, Model) and model.num_parameters() > 0


def test_unknown_preset_and_key_name_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'bert-base'"):
        ModelConfig.from_preset("bert-bse")
    with pytest.raises(ConfigError, match="unknown key 'num_layer'.*did you mean 'num_layers'"):
        ModelConfig.from_preset("gpt-tiny", num_layer=3)
    with pytest.raises(ConfigError, match="activation.*'gleu'.*did you mean 'gelu'"):
        ModelConfig(activation="gelu").replace(activation="gleu")
    with pytest.raises(ConfigError, match="num_heads=4 must be a multiple of num_kv_heads=3"):
        ModelConfig(dim=64, num_heads=4, num_kv_heads=3)


def test_overrides_are_typed():
    cfg = ModelConfig.from_preset("gpt-tiny").override(["num_layers=3", "dropout=0.1", "bias=false"])
    assert (cfg.num_layers, cfg.dropout, cfg.bias) == (3, 0.1, False)
    with pytest.raises(ConfigError, match="num_layers: expected an integer"):
        cfg.override(["num_layers=three"])


TINY = dict(vocab_size=99, dim=32, num_layers=2, num_heads=4, max_seq_len=64)


@pytest.mark.parametrize("head,shape", [
    ("mlm", (2, 7, 99)), ("seq_cls", (2, 3)), ("token_cls", (2, 7, 3)), ("qa", (2, 7, 2)), ("none", None),
])
def test_bert_heads(head, shape):
    model = build_model("bert-tiny", **TINY, head=head, num_labels=3)
    ids = torch.randint(0, 99, (2, 7))
    labels = {"mlm": ids, "seq_cls": torch.tensor([0, 2]), "token_cls": ids % 3,
              "qa": torch.tensor([[1, 2], [0, 6]])}
    out = model(ids, torch.ones_like(ids), labels=labels.get(head))
    assert out.last_hidden_state.shape == (2, 7, 32)
    if shape is None:
        assert out.logits is None and out.pooled.shape == (2, 32)
    else:
        assert out.logits.shape == shape and out.loss.ndim == 0 and torch.isfinite(out.loss)
        out.loss.backward()


def test_bert_pretraining_head_sums_mlm_and_nsp():
    model = build_model("bert-tiny", **TINY, head="pretraining").eval()
    ids = torch.randint(0, 99, (2, 7))
    nsp = torch.tensor([0, 1])
    both = model(ids, labels=ids, next_sentence_label=nsp)
    mlm = model(ids, labels=ids)
    assert both.nsp_logits.shape == (2, 2)
    nsp_loss = torch.nn.functional.cross_entropy(both.nsp_logits, nsp)
    torch.testing.assert_close(both.loss, mlm.loss + nsp_loss)


def test_gpt_loss_is_shifted_next_token_cross_entropy():
    model = build_model("gpt-tiny", **TINY)
    ids = torch.randint(0, 99, (2, 9))
    out = model(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 99), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    assert model.head.proj.weight is model.tok_embed.weight  # tied


@pytest.mark.parametrize("blocks", [1 << 21, 50])  # one block; blocks of 2 rows (vocab 23)
def test_linear_cross_entropy_equals_logits_then_cross_entropy(blocks):
    torch.manual_seed(0)
    h = torch.randn(13, 8, requires_grad=True)
    w = torch.randn(23, 8, requires_grad=True)
    y = torch.randint(0, 23, (13,))
    y[[2, 5, 6]] = -100
    plain = torch.nn.functional.cross_entropy(h @ w.t(), y, ignore_index=-100)
    (plain * 3).backward()  # an upstream gradient other than 1
    expected = (plain.detach(), h.grad.clone(), w.grad.clone())
    h.grad = w.grad = None
    fused = linear_cross_entropy(h, w, y, block_elements=blocks)
    (fused * 3).backward()
    for got, want in zip((fused.detach(), h.grad, w.grad), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # without gradients: logits made a chunk of rows at a time
        torch.testing.assert_close(linear_cross_entropy(h, w, y, block_elements=blocks, chunk_elements=100),
                                   expected[0])
    with pytest.raises(ValueError, match="float32"):
        linear_cross_entropy(h.double(), w.double(), y)


def test_gpt_is_causal():
    model = build_model("llama-tiny", **TINY).eval()
    ids = torch.randint(0, 99, (1, 8))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 99
    torch.testing.assert_close(model(ids).logits[:, :-1], model(changed).logits[:, :-1])


def test_transformer_teacher_forcing():
    model = build_model("transformer-tiny", **TINY)
    src, tgt = torch.randint(3, 99, (2, 6)), torch.randint(3, 99, (2, 5))
    out = model(src, torch.ones_like(src), labels=tgt)
    assert out.logits.shape == (2, 5, 99) and out.encoder_last_hidden_state.shape == (2, 6, 32)
    out.loss.backward()
    assert model.tok_embed.weight.grad is not None


def test_attentions_returned_when_asked():
    model = build_model("bert-tiny", **TINY)
    out = model(torch.randint(0, 99, (1, 5)), output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 4, 5, 5)
    assert len(out.hidden_states) == 3
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(1, 4, 5))


def test_input_longer_than_max_seq_len_names_both_numbers():
    model = build_model("gpt-tiny", **TINY)
    with pytest.raises(ValueError, match="input has 65 positions but the model's max_seq_len is 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("name", ["bert-tiny", "gpt-tiny", "llama-tiny", "transformer-tiny"])
def test_save_and_load_round_trip(tmp_path, name):
    model = build_model(name, **TINY).eval()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["arch"] == model.config.arch
    loaded = Model.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    ids = torch.randint(3, 99, (2, 6))
    kwargs = {"decoder_input_ids": ids} if isinstance(model, Transformer) else {}
    expected = model(ids, **kwargs).last_hidden_state
    torch.testing.assert_close(loaded(ids, **kwargs).last_hidden_state, expected)


def test_checkpoint_mismatch_lists_the_tensors(tmp_path):
    build_model("gpt-tiny", **TINY).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["dim"], config["num_layers"] = 64, 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        Model.from_pretrained(tmp_path)
    message = str(err.value)
    assert "missing (" in message and "layers.2.attn.qkv.weight" in message
    assert "mis-shaped" in message
    assert "layers.0.attn.qkv.weight: checkpoint (96, 32) vs model (96, 64)" in message


def test_failed_save_leaves_no_partial_files(tmp_path, monkeypatch):
    model = build_model("gpt-tiny", **TINY)
    import zhixing.models.base as base

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(base, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing left behind: not even the directory it made


def test_families_are_the_documented_classes():
    assert isinstance(build_model("bert-tiny"), Bert)
    assert isinstance(build_model("gpt-tiny"), GPT)
    assert isinstance(build_model("transformer-tiny"), Transformer)
