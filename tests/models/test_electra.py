"""ELECTRA models: heads and their losses, the embedding projection, the generator + discriminator pair
(shapes from generator_size, shared embedding tables, save/load as one directory), published sizes, and
the invariances every model keeps (padding, eager == SDPA). Tiny configs, fp32, CPU."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from zhixing.config import ConfigError, ModelConfig
from zhixing.models import Electra, ElectraPretraining, Model, build_model
from zhixing.models.electra import generator_config

TINY = dict(vocab_size=99, max_seq_len=64, dropout=0.0)


def tiny(head: str = "pretraining", **kw) -> Model:
    return build_model("electra-tiny", **{**TINY, "head": head, "num_labels": 3, **kw}).eval()


def padded_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 99, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[2, 3:] = 0, 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("head,shape", [
    ("rtd", (3, 9)), ("mlm", (3, 9, 99)), ("seq_cls", (3, 3)), ("token_cls", (3, 9, 3)), ("qa", (3, 9, 2)),
    ("none", None),
])
def test_heads(head, shape):
    model = tiny(head)
    ids, mask = padded_batch()
    labels = {"rtd": (ids % 2), "mlm": ids.masked_fill(mask == 0, -100), "seq_cls": torch.tensor([0, 2, 1]),
              "token_cls": ids % 3, "qa": torch.tensor([[1, 2], [0, 5], [1, 1]])}.get(head)
    out = model(ids, mask, labels=labels)
    assert out.last_hidden_state.shape == (3, 9, 64) and out.pooled is None  # no pooler
    if shape is None:
        assert out.logits is None
        return
    assert out.logits.shape == shape and out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    if head == "rtd":  # BCE over the real tokens only
        keep = mask.bool()
        want = F.binary_cross_entropy_with_logits(out.logits[keep], labels[keep].float())
        torch.testing.assert_close(out.loss, want)


def test_embeddings_are_projected_to_the_hidden_width():
    model = tiny("none")
    assert model.tok_embed.weight.shape == (99, 32) and model.embed_proj.weight.shape == (64, 32)
    assert tiny("none", embed_dim=None).embed_proj is None  # embed_dim = dim: no projection
    ids, _ = padded_batch()
    hidden = model(ids, output_hidden_states=True).hidden_states
    assert hidden[0].shape == (3, 9, 64) and len(hidden) == 3  # projected embeddings + 2 layers


def test_the_pair_shares_its_embedding_tables():
    pair = tiny()
    gen, disc = pair.generator, pair.discriminator
    assert isinstance(pair, ElectraPretraining) and isinstance(gen, Electra) and isinstance(disc, Electra)
    assert (gen.config.head, disc.config.head) == ("mlm", "rtd")
    for name in ("tok_embed", "pos_embed", "type_embed", "embed_norm"):
        assert getattr(gen, name) is getattr(disc, name)
    assert gen.mlm.decoder.weight is disc.tok_embed.weight  # the generator's output layer too
    assert gen.embed_proj.weight.shape == (16, 32) and disc.embed_proj.weight.shape == (64, 32)
    # counted once: the pair is the two models minus one set of tables
    tables = sum(p.numel() for n, p in disc.named_parameters() if n.split(".")[0] in
                 ("tok_embed", "pos_embed", "type_embed", "embed_norm"))
    assert pair.num_parameters() == gen.num_parameters() + disc.num_parameters() - tables


def test_the_generator_is_generator_size_of_the_discriminator():
    cfg = ModelConfig.from_preset("electra-small")
    gen = generator_config(cfg)
    assert (gen.dim, gen.num_heads, gen.ffn_dim, gen.embed_dim, gen.num_layers) == (64, 1, 256, 128, 12)
    base = generator_config(ModelConfig.from_preset("electra-base"))  # = google/electra-base-generator
    assert (base.dim, base.num_heads, base.ffn_dim, base.embed_dim) == (256, 4, 1024, 768)
    large = generator_config(ModelConfig.from_preset("electra-large"))  # = google/electra-large-generator
    assert (large.dim, large.num_heads, large.ffn_dim, large.embed_dim) == (256, 4, 1024, 1024)


def test_published_discriminator_sizes():
    """Clark et al. Table 1/8: ELECTRA-Small 14M, Base 110M, Large 335M parameters (HF: Small 13.5M)."""
    for name, published in (("electra-small", 13.5e6), ("electra-base", 110e6), ("electra-large", 335e6)):
        with torch.device("meta"):
            n = build_model(name).discriminator.num_parameters()
        assert abs(n - published) / published < 0.01, (name, n)


def test_pair_forward_is_the_discriminator():
    pair = tiny()
    ids, mask = padded_batch()
    out = pair(ids, mask)
    torch.testing.assert_close(out.logits, pair.discriminator(ids, mask).logits)
    torch.testing.assert_close(pair.hidden(ids, mask), out.last_hidden_state)


def test_hidden_and_the_head_on_labelled_positions_match_the_full_head():
    """What the RTD objective does (hidden() + the MLM head at the masked positions only) equals the
    full forward's logits and loss there."""
    gen = tiny("mlm")
    ids, mask = padded_batch()
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 4], labels[2, 1] = 7, 8, 9
    full = gen(ids, mask, labels=labels)
    keep = labels != -100
    h = gen.hidden(ids, mask)
    sparse = gen.mlm(h[keep])
    torch.testing.assert_close(sparse, full.logits[keep])
    torch.testing.assert_close(torch.nn.functional.cross_entropy(sparse, labels[keep]), full.loss)
    torch.testing.assert_close(h, full.last_hidden_state)


@pytest.mark.parametrize("head", ["pretraining", "rtd", "seq_cls"])
def test_save_and_load_round_trip(tmp_path, head):
    model = tiny(head)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["arch"], config["head"], config["embed_dim"]) == ("electra", head, 32)
    loaded = Model.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    ids, mask = padded_batch()
    torch.testing.assert_close(loaded(ids, mask).logits, model(ids, mask).logits)
    if head == "pretraining":  # the shared tables are stored once and shared again after loading
        from safetensors.torch import load_file

        names = load_file(tmp_path / "model.safetensors").keys()
        assert "discriminator.tok_embed.weight" in names and "generator.tok_embed.weight" not in names
        assert loaded.generator.tok_embed is loaded.discriminator.tok_embed
        torch.testing.assert_close(loaded.generator(ids, mask).logits, model.generator(ids, mask).logits)


def test_each_half_saves_on_its_own(tmp_path):
    pair = tiny()
    pair.generator.save_pretrained(tmp_path / "gen")
    gen = Model.from_pretrained(tmp_path / "gen").eval()
    assert isinstance(gen, Electra) and gen.config.head == "mlm" and gen.config.dim == 16
    ids, mask = padded_batch()
    torch.testing.assert_close(gen(ids, mask).logits, pair.generator(ids, mask).logits)


def test_padded_rows_equal_the_rows_alone():
    model = tiny("none")
    ids, mask = padded_batch()
    with torch.no_grad():
        full = model(ids, mask).last_hidden_state
        for row, n in ((0, 9), (1, 6), (2, 3)):
            alone = model(ids[row:row + 1, :n]).last_hidden_state[0]
            torch.testing.assert_close(full[row, :n], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padded", [False, True])
def test_eager_equals_sdpa(padded):
    fast = tiny("rtd", attn_impl="sdpa")
    eager = build_model(fast.config.replace(attn_impl="eager")).eval()
    eager.load_state_dict(fast.state_dict())
    ids, mask = padded_batch()
    mask = mask if padded else None
    with torch.no_grad():
        torch.testing.assert_close(eager(ids, mask).last_hidden_state, fast(ids, mask).last_hidden_state,
                                   atol=1e-5, rtol=1e-5)


def test_mismatched_embeddings_cannot_be_shared():
    a, b = tiny("mlm"), tiny("rtd", embed_dim=16)
    with pytest.raises(ConfigError, match="cannot share tok_embed"):
        a.share_embeddings(b)


@pytest.mark.parametrize("preset,kwargs", [("bert-tiny", {"head": "mlm"}), ("electra-tiny", {"head": "rtd"})])
def test_rotary_encoders_see_relative_positions_only_and_do_not_export(tmp_path, preset, kwargs):
    """position="rotary" (RoFormer): no absolute table, q_i·k_j depends on i - j — shifting every
    position by the same offset changes nothing; transformers' BERT / ELECTRA have no such option, so
    export says so."""
    from zhixing.errors import ConfigError
    from zhixing.interop import to_hf

    torch.manual_seed(0)
    model = build_model(preset, vocab_size=99, max_seq_len=64, position="rotary", **kwargs).eval()
    assert model.pos_embed is None and model.rope is not None
    ids = torch.randint(5, 99, (2, 12))
    with torch.no_grad():
        here = model.hidden(ids)
        shifted = model.hidden(ids, position_ids=torch.arange(12)[None] + 9)
        absolute = build_model(preset, vocab_size=99, max_seq_len=64, **kwargs).eval()
        moved = absolute.hidden(ids, position_ids=torch.arange(12)[None] + 9)
    torch.testing.assert_close(shifted, here, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(moved, absolute.hidden(ids), atol=1e-3)  # a learned table does see the shift
    with pytest.raises(ConfigError, match="position"):
        to_hf(model, tmp_path / "hf")


def test_a_rotary_pair_gives_each_half_its_own_rotation():
    pair = build_model("electra-tiny", head="pretraining", position="rotary", vocab_size=99)
    assert pair.generator.pos_embed is None and pair.discriminator.pos_embed is None
    assert pair.generator.rope.cos.size(-1) == pair.generator.config.head_dim
    assert pair.discriminator.rope.cos.size(-1) == pair.discriminator.config.head_dim
    with pytest.raises(Exception, match="position"):
        build_model("electra-tiny", head="pretraining", position="sinusoidal", vocab_size=99)


@pytest.mark.parametrize("preset,kwargs", [("bert-tiny", {"head": "seq_cls", "num_labels": 2}),
                                           ("electra-tiny", {"head": "pretraining"}),
                                           ("gpt-tiny", {"head": "lm"})])
def test_rotary_positions_extend_past_max_seq_len_without_changing_the_first(tmp_path, preset, kwargs):
    """extend_positions: a rotary model reads longer inputs; the angles of the first positions are the
    same numbers, so short inputs give the same outputs; the config (and a reload) says the new length.
    A learned table's limit is real: False and nothing changed."""
    torch.manual_seed(0)
    model = build_model(preset, vocab_size=99, max_seq_len=16, position="rotary", **kwargs).eval()
    ids, long_ids = torch.randint(5, 99, (2, 12)), torch.randint(5, 99, (2, 40))
    with torch.no_grad():
        before = model(ids).logits
        with pytest.raises(ValueError, match="max_seq_len is 16"):
            model(long_ids)
        assert model.extend_positions(48) and model.config.max_seq_len == 48
        assert not model.extend_positions(32)  # already reads that far
        torch.testing.assert_close(model(ids).logits, before, atol=0, rtol=0)
        assert model(long_ids).last_hidden_state.shape[:2] == (2, 40)
    if preset == "electra-tiny":  # the pair's halves both read the new length
        assert model.generator.config.max_seq_len == model.discriminator.config.max_seq_len == 48
    model.save_pretrained(tmp_path / "m")
    assert Model.from_pretrained(tmp_path / "m").config.max_seq_len == 48
    learned = build_model("bert-tiny", vocab_size=99, max_seq_len=16)
    assert not learned.extend_positions(48) and learned.config.max_seq_len == 16
