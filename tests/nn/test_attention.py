import math

import pytest
import torch

from zhixing.nn import Attention, Cache, KVCache, Packing, attention_reference, build_mask, scaled_dot_product


def qkv(b=2, h=4, kvh=4, q=5, k=5, d=8):
    return torch.randn(b, h, q, d), torch.randn(b, kvh, k, d), torch.randn(b, kvh, k, d)


def test_reference_is_the_textbook_formula():
    q, k, v = qkv(h=1, kvh=1)
    out, w = attention_reference(q, k, v)
    expected_w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.size(-1)), dim=-1)
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(out, expected_w @ v)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))


@pytest.mark.parametrize("kvh", [4, 2, 1])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_reference_equals_fused(kvh, causal, padded):
    q, k, v = qkv(kvh=kvh, q=6, k=6)
    keep = torch.ones(2, 6, dtype=torch.long)
    if padded:
        keep[0, :2] = 0  # left padding in row 0
        keep[1, -1] = 0  # right padding in row 1
    mask, kernel_causal = build_mask(keep if padded else None, 6, 6, causal)
    ref, _ = attention_reference(q, k, v, mask, kernel_causal)
    fast = scaled_dot_product(q, k, v, mask, kernel_causal)
    assert not torch.isnan(fast).any()
    torch.testing.assert_close(ref, fast, atol=1e-5, rtol=1e-5)


def test_causal_mask_blocks_the_future():
    q, k, v = qkv(b=1, h=1, kvh=1, q=4, k=4)
    _, w = attention_reference(q, k, v, causal=True)
    assert torch.all(w[0, 0].triu(1) == 0)
    # changing a later value must not change earlier outputs
    v2 = v.clone()
    v2[..., -1, :] += 10
    a, _ = attention_reference(q, k, v, causal=True)
    b, _ = attention_reference(q, k, v2, causal=True)
    torch.testing.assert_close(a[..., :-1, :], b[..., :-1, :])


def test_build_mask_with_cache_offsets_the_triangle():
    mask, causal = build_mask(torch.ones(1, 5), q_len=2, k_len=5, causal=True)
    assert not causal
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask[0, 0], expected)
    assert build_mask(None, 1, 9, causal=True) == (None, False)  # one new token sees the whole cache
    assert build_mask(None, 4, 4, causal=True) == (None, True)  # kernel applies the triangle
    with pytest.raises(ValueError, match="covers 3 positions, expected 5"):
        build_mask(torch.ones(1, 3), 5, 5, causal=False)


@pytest.mark.parametrize("max_len", [None, 12])
def test_kv_cache_decoding_equals_full_attention(max_len):
    attn = Attention(dim=32, num_heads=4, num_kv_heads=2).eval()
    x = torch.randn(2, 9, 32)
    full, _ = attn(x, causal=True)
    cache = Cache(num_layers=1, max_len=max_len)
    steps = []
    for chunk in (x[:, :4], x[:, 4:5], x[:, 5:6], x[:, 6:]):  # a prompt, then tokens one by one, then 3
        mask, causal = build_mask(None, chunk.size(1), cache.key_length(chunk.size(1)), causal=True)
        out, _ = attn(chunk, mask, causal=causal, cache=cache.layers[0], at=cache.write_at)
        cache.advance(chunk.size(1))
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 9
    if max_len:
        assert cache.layers[0].k.size(2) == max_len  # preallocated once, never grown


def test_kv_cache_overflow_and_reorder():
    cache = KVCache(max_len=3)  # one layer's slot
    k = torch.randn(2, 1, 3, 4)
    cache.update(k, k, at=0)
    with pytest.raises(ValueError, match="holds 3 positions"):
        cache.update(k[:, :, :1], k[:, :, :1], at=3)
    cache.reorder(torch.tensor([1, 1]))
    torch.testing.assert_close(cache.k[0], k[1])


def test_attention_returns_weights_when_asked():
    attn = Attention(dim=16, num_heads=2).eval()
    x = torch.randn(1, 3, 16)
    out_fast, none = attn(x)
    out_ref, w = attn(x, need_weights=True)
    assert none is None and w.shape == (1, 2, 3, 3)
    torch.testing.assert_close(out_fast, out_ref, atol=1e-5, rtol=1e-5)


def test_packing_round_trip_and_threshold():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    p = Packing.of(mask)
    x = torch.randn(2, 4, 3)
    packed = p.pack(x)
    assert packed.shape == (4, 3)
    torch.testing.assert_close(p.unpack(packed)[mask.bool()], x[mask.bool()])
    assert (p.unpack(packed)[~mask.bool()] == 0).all()
    assert Packing.of(torch.ones(2, 4)) is None  # nothing to save
    assert Packing.of(None) is None


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_layer_equals_padded_layer_at_real_tokens(impl):
    """A post-norm block on the real tokens only gives the padded block's outputs and gradients."""
    from zhixing.config import ModelConfig
    from zhixing.nn import Block

    torch.manual_seed(0)
    cfg = ModelConfig(arch="bert", dim=16, num_heads=4, num_layers=1, ffn_dim=32, pre_norm=False,
                      vocab_size=10, max_seq_len=8, attn_impl=impl)
    block = Block(cfg).eval()
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
    keep = mask.bool()
    x = torch.randn(3, 6, 16, requires_grad=True)
    m, _ = build_mask(mask, 6, 6, causal=False)
    full, w_full, _ = block(x, m, need_weights=impl == "eager")
    p = Packing.of(mask)
    packed, w_packed, _ = block(p.pack(x), m, packing=p, need_weights=impl == "eager")
    torch.testing.assert_close(p.unpack(packed)[keep], full[keep], atol=1e-6, rtol=1e-5)
    if impl == "eager":  # the weights of real queries over keys are the same
        torch.testing.assert_close(w_packed[:, :, :2, :2], w_full[:, :, :2, :2], atol=1e-6, rtol=1e-5)
    g_full = torch.autograd.grad(full[keep].square().sum(), x)[0]
    g_packed = torch.autograd.grad(packed.square().sum(), x)[0]
    torch.testing.assert_close(g_packed[keep], g_full[keep], atol=1e-5, rtol=1e-5)
    assert (g_packed[~keep] == 0).all()


def test_packed_examples_do_not_see_each_other():
    """A (batch, q, k) block-diagonal keep-matrix + positions restarting per example: a GPT over two packed
    examples gives each the logits it gives alone."""
    from zhixing.models import build_model

    torch.manual_seed(0)
    model = build_model("gpt-tiny", vocab_size=50, dim=32, max_seq_len=32).eval()
    a, b = torch.randint(0, 50, (1, 5)), torch.randint(0, 50, (1, 7))
    packed = torch.cat([a, b], dim=1)
    doc = torch.tensor([[0] * 5 + [1] * 7])
    keep = doc[:, :, None] == doc[:, None, :]
    positions = torch.tensor([list(range(5)) + list(range(7))])
    with torch.no_grad():
        together = model(packed, attention_mask=keep, position_ids=positions).logits
        torch.testing.assert_close(together[:, :5], model(a).logits)
        torch.testing.assert_close(together[:, 5:], model(b).logits, rtol=1e-5, atol=1e-5)
        leaky = model(packed, position_ids=positions).logits  # without the mask b sees a
    assert (leaky[:, 5:] - together[:, 5:]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="3-d attention_mask must be"):
        model(packed, attention_mask=keep[:, :3])
