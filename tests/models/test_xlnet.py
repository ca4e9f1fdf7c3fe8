"""XLNet's own behaviour, without transformers: the two streams' visibility, segment recurrence, the
`hidden` contract, configs and presets, and one-line errors for bad input."""

from __future__ import annotations

import pytest
import torch

from zhixing.config import ConfigError, ModelConfig
from zhixing.models import Model, XLNet, build_model

TINY = dict(vocab_size=99, dim=32, num_layers=2, num_heads=4, ffn_dim=37, max_seq_len=16, dropout=0.0)


def tiny(**kw) -> XLNet:
    return build_model("xlnet-tiny", **{**TINY, **kw}).eval()


def order_masks(order: list[int], num_predict: int):
    """perm_mask / target_mapping for one sequence factorised in `order`, predicting its last tokens."""
    seq = len(order)
    rank = torch.empty(seq, dtype=torch.long)
    rank[torch.tensor(order)] = torch.arange(seq)
    targets = torch.tensor(order[seq - num_predict:])
    is_target = torch.zeros(seq, dtype=torch.bool)
    is_target[targets] = True
    perm_mask = (is_target[None, :] & (rank[None, :] >= rank[:, None])).float()[None]
    target_mapping = torch.zeros(1, num_predict, seq)
    target_mapping[0, torch.arange(num_predict), targets] = 1
    return perm_mask, target_mapping


def test_query_stream_never_sees_its_own_token_or_later_ones():
    """Prediction t reads every non-target and the targets before it in the order, never x_{z_t}
    itself nor later targets; the content stream at z_t does read x_{z_t}."""
    model = tiny()
    order = [3, 0, 5, 1, 6, 2, 4]  # targets: the last three, 6 then 2 then 4
    perm_mask, target_mapping = order_masks(order, 3)
    ids = torch.randint(6, 99, (1, 7))

    def query_states(x):
        with torch.no_grad():
            return model.hidden(x, perm_mask=perm_mask, target_mapping=target_mapping)[0]  # (3, dim)

    base = query_states(ids)
    for pos in range(7):
        changed = ids.clone()
        changed[0, pos] = (ids[0, pos] + 1 - 6) % 93 + 6
        diff = (query_states(changed) - base).abs().amax(dim=-1) > 1e-6  # which predictions moved
        rank = order.index(pos)
        expected = [rank < order.index(t) for t in (6, 2, 4)]  # only what precedes a target reaches it
        assert diff.tolist() == expected, (pos, diff.tolist(), expected)
    # content stream: position 4 (the last target) sees its own token
    with torch.no_grad():
        h = model.hidden(ids, perm_mask=perm_mask)
        changed = ids.clone()
        changed[0, 4] += 1
        assert (model.hidden(changed, perm_mask=perm_mask)[0, 4] - h[0, 4]).abs().max() > 1e-4


def test_hidden_is_the_stream_the_head_reads():
    model = tiny()
    ids = torch.randint(6, 99, (2, 7))
    perm_mask, target_mapping = order_masks([3, 0, 5, 1, 6, 2, 4], 3)
    perm_mask, target_mapping = perm_mask.expand(2, -1, -1), target_mapping.expand(2, -1, -1)
    with torch.no_grad():
        out = model(ids, perm_mask=perm_mask, target_mapping=target_mapping)
        g = model.hidden(ids, perm_mask=perm_mask, target_mapping=target_mapping)
        h = model.hidden(ids)
    assert g.shape == (2, 3, 32) and h.shape == (2, 7, 32)
    torch.testing.assert_close(out.last_hidden_state, g)
    torch.testing.assert_close(out.logits, model.head(g))
    assert model.head.weight is model.tok_embed.weight and model.head.bias is not None


def test_recurrence_uni_equals_one_long_forward():
    """Causal attention with unbounded memory: two segments chained through mems compute what one
    forward over their concatenation computes (Transformer-XL's defining property)."""
    model = tiny(attn_type="uni")
    ids = torch.randint(6, 99, (2, 12))
    with torch.no_grad():
        full = model(ids).logits
        first = model(ids[:, :5], use_mems=True)
        second = model(ids[:, 5:], mems=first.mems, use_mems=True)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], dim=1), full, atol=1e-5, rtol=1e-5)
    assert [m.shape for m in second.mems] == [(2, 12, 32)] * 2


def test_recurrence_bi_equals_a_forward_where_the_past_cannot_see_the_future():
    model = tiny()
    ids = torch.randint(6, 99, (2, 12))
    perm_mask = torch.zeros(2, 12, 12)
    perm_mask[:, :5, 5:] = 1  # the first segment does not see the second
    with torch.no_grad():
        full = model(ids, perm_mask=perm_mask).logits
        first = model(ids[:, :5], use_mems=True)
        second = model(ids[:, 5:], mems=first.mems)
    torch.testing.assert_close(second.logits, full[:, 5:], atol=1e-5, rtol=1e-5)
    assert second.mems is None  # not asked for


@pytest.mark.parametrize("mem_len,kept", [(None, 9), (4, 4), (0, 0)])
def test_mems_keep_the_last_mem_len_layer_inputs_detached(mem_len, kept):
    model = tiny(mem_len=mem_len).train()
    ids = torch.randint(6, 99, (2, 9))
    out = model(ids, use_mems=True)
    assert len(out.mems) == 2 and all(m.shape == (2, kept, 32) and not m.requires_grad for m in out.mems)
    emb = model.tok_embed(ids)  # layer 0's input (dropout is 0)
    torch.testing.assert_close(out.mems[0], emb[:, 9 - kept:].detach())
    again = model(ids[:, :3], mems=out.mems)  # an empty memory is no memory
    assert again.logits.shape == (2, 3, 99)


def test_fully_blocked_rows_and_left_padding_give_finite_outputs():
    model = tiny()
    ids = torch.randint(6, 99, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    perm_mask = torch.ones(2, 7, 7)  # nothing visible through the query stream
    target_mapping = torch.zeros(2, 2, 7)
    target_mapping[:, 0, 1] = target_mapping[:, 1, 6] = 1
    with torch.no_grad():
        out = model(ids, attention_mask=mask, perm_mask=perm_mask, target_mapping=target_mapping)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_does_not_change_the_real_tokens(side):
    """Relative positions: the distances between real tokens do not depend on where the padding is."""
    model = tiny(head="token_cls", num_labels=3)
    ids = torch.randint(6, 99, (2, 9))
    types = (torch.arange(9) >= 5).long().expand(2, -1).clone()
    mask = torch.ones_like(ids)
    real = slice(4, 9) if side == "left" else slice(0, 5)
    mask[1] = 0
    mask[1, real] = 1
    with torch.no_grad():
        padded = model(ids, attention_mask=mask, token_type_ids=types).logits[1, real]
        alone = model(ids[1:, real], token_type_ids=types[1:, real]).logits[0]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head,shape", [("seq_cls", (2, 3)), ("token_cls", (2, 7, 3)), ("qa", (2, 7, 2)),
                                        ("none", None)])
def test_heads_and_their_losses(head, shape):
    model = tiny(head=head, num_labels=3)
    ids = torch.randint(6, 99, (2, 7))
    labels = {"seq_cls": torch.tensor([0, 2]), "token_cls": ids % 3, "qa": torch.tensor([[1, 2], [0, 6]])}
    out = model(ids, labels=labels.get(head))
    assert out.last_hidden_state.shape == (2, 7, 32)
    if shape is None:
        assert out.logits is None and out.loss is None
    else:
        assert out.logits.shape == shape and out.loss.ndim == 0
    if head == "seq_cls":  # the summary reads the last token (<cls>) only
        changed = ids.clone()
        changed[:, -1] += 1
        assert not torch.allclose(model(changed).logits, out.logits)


def test_save_and_load_round_trip(tmp_path):
    model = tiny(mem_len=8, clamp_len=4)
    model.save_pretrained(tmp_path)
    loaded = Model.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, XLNet) and (loaded.config.mem_len, loaded.config.clamp_len) == (8, 4)
    ids = torch.randint(6, 99, (2, 6))
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_presets():
    for name in ("xlnet-tiny", "xlnet-base-cased", "xlnet-large-cased"):
        cfg = ModelConfig.from_preset(name)
        assert (cfg.arch, cfg.head, cfg.pre_norm, cfg.attn_type) == ("xlnet", "lm", False, "bi")
    with torch.device("meta"):
        base = build_model("xlnet-base-cased")
    # XLNet-base: 116,718,336 parameters in XLNetModel + a 32,000 output bias in XLNetLMHeadModel
    assert base.num_parameters() == 116_718_336 + 32_000


def test_eager_equals_sdpa_in_training_shapes():
    eager, sdpa = tiny(attn_impl="eager"), tiny(attn_impl="sdpa")
    sdpa.load_state_dict(eager.state_dict())
    ids = torch.randint(6, 99, (2, 7))
    types = (torch.arange(7) > 3).long().expand(2, -1)
    perm_mask, target_mapping = order_masks([3, 0, 5, 1, 6, 2, 4], 3)
    kw = dict(token_type_ids=types, perm_mask=perm_mask.expand(2, -1, -1),
              target_mapping=target_mapping.expand(2, -1, -1))
    with torch.no_grad():
        torch.testing.assert_close(sdpa(ids, **kw).logits, eager(ids, **kw).logits, atol=1e-5, rtol=1e-5)


# -- errors: one line, naming the argument ---------------------------------------------------------------


def test_config_errors():
    with pytest.raises(ConfigError, match="mem_len must be >= 0"):
        ModelConfig.from_preset("xlnet-tiny", mem_len=-1)
    with pytest.raises(ConfigError, match="clamp_len must be >= 1"):
        ModelConfig.from_preset("xlnet-tiny", clamp_len=0)
    with pytest.raises(ConfigError, match="attn_type.*'both'"):
        ModelConfig.from_preset("xlnet-tiny", attn_type="both")
    with pytest.raises(ConfigError, match="pre_norm=True.*post-norm"):
        build_model("xlnet-tiny", pre_norm=True)
    with pytest.raises(ConfigError, match="head='mlm'"):
        build_model("xlnet-tiny", head="mlm")


@pytest.mark.parametrize("kwargs,match", [
    (dict(perm_mask=torch.zeros(2, 7, 6)), r"perm_mask has shape \(2, 7, 6\), expected \(batch, seq, seq\) "
                                           r"= \(2, 7, 7\)"),
    (dict(target_mapping=torch.zeros(2, 3, 7)), "target_mapping selects no query positions"),
    (dict(target_mapping=torch.zeros(2, 0, 7)), r"target_mapping has shape \(2, 0, 7\)"),
    (dict(target_mapping=torch.ones(2, 1, 7)), "target_mapping rows must be one-hot"),
    (dict(attention_mask=torch.ones(2, 8)), r"attention_mask has shape \(2, 8\)"),
    (dict(mems=[torch.zeros(2, 3, 32)]), "mems has 1 tensors, expected one per layer"),
    (dict(mems=[torch.zeros(2, 3, 16)] * 2), r"mems must be \(batch, mem, dim\)"),
])
def test_bad_inputs_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        tiny()(torch.randint(6, 99, (2, 7)), **kwargs)
    assert "\n" not in str(err.value)


def test_too_long_without_memory_says_to_use_segments():
    model = tiny()
    with pytest.raises(ValueError, match="17 positions but the model's max_seq_len is 16; split .*mems"):
        model(torch.zeros(1, 17, dtype=torch.long))
    # longer context through memory is fine: 16 + 16 positions
    first = model(torch.zeros(1, 16, dtype=torch.long), use_mems=True)
    assert model(torch.zeros(1, 16, dtype=torch.long), mems=first.mems).logits.shape == (1, 16, 99)
