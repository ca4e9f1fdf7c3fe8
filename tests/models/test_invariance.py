"""Invariances every model must keep, on tiny configs (2 layers, dim 32), fp32 CPU:

- padding: a padded row gives, at its real positions, what the row alone gives;
- caching: step-by-step decoding through the KV cache (growing or preallocated) equals one full forward;
- attention paths: the explicit reference (attn_impl="eager") equals the fused SDPA path.
"""

from __future__ import annotations

import pytest
import torch

from zhixing.models import build_model
from zhixing.nn.attention import attention_reference, build_mask, scaled_dot_product

TINY = dict(vocab_size=99, dim=32, num_heads=4, max_seq_len=64)
MODELS = {
    "bert": ("bert-tiny", {}),
    "roberta": ("roberta-base", {"num_layers": 2}),  # positions offset past the pad id
    "roformer": ("bert-tiny", {"position": "rotary"}),  # BERT with rotary positions in q and k
    "gpt2": ("gpt-tiny", {}),
    "llama": ("llama-tiny", {"num_kv_heads": 2, "ffn_dim": 48}),  # GQA, RoPE, SwiGLU, RMSNorm
    "transformer": ("transformer-tiny", {"ffn_dim": 48}),
}
DECODERS = ["gpt2", "llama"]


def tiny(name: str, **overrides):
    preset, extra = MODELS[name]
    return build_model(preset, **{**TINY, **extra, **overrides}).eval()


def ids_and_mask(pad_id: int, lengths=(9, 6, 3), seq: int = 9, left: bool = False):
    ids = torch.randint(3, 99, (len(lengths), seq))
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        if left:
            mask[row, seq - n :] = 1
        else:
            mask[row, :n] = 1
    return ids.masked_fill(mask == 0, pad_id), mask


def forward(model, ids, mask=None, **kw):
    with torch.no_grad():
        if model.config.arch == "transformer":  # ids are the source; a fixed target reads them
            target = torch.arange(3, 8)[None].expand(ids.size(0), -1)
            return model(ids, attention_mask=mask, decoder_input_ids=target, **kw).logits
        return model(ids, attention_mask=mask, **kw).last_hidden_state


# -- padding ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_padded_equals_unpadded(name):
    model = tiny(name)
    pad = model.config.pad_token_id or 0
    ids, mask = ids_and_mask(pad)
    full = forward(model, ids, mask)
    for row, n in enumerate((9, 6, 3)):
        alone = forward(model, ids[row : row + 1, :n])[0]
        got = full[row] if name == "transformer" else full[row, :n]  # enc–dec: every target position
        torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", DECODERS)
def test_left_padded_batch_with_position_ids_equals_unpadded(name):
    model = tiny(name)
    ids, mask = ids_and_mask(0, left=True)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    full = forward(model, ids, mask, position_ids=positions)
    for row, n in enumerate((9, 6, 3)):
        torch.testing.assert_close(full[row, 9 - n :], forward(model, ids[row : row + 1, 9 - n :])[0],
                                   atol=1e-5, rtol=1e-5)


# -- KV cache ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("max_len", [None, 20])
def test_cached_decoding_equals_full_forward(name, max_len):
    model = tiny(name)
    ids = torch.randint(0, 99, (2, 20))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache(max_len)
        steps = [model(ids[:, :7], cache=cache).logits]  # the prompt, then one token at a time
        steps += [model(ids[:, t : t + 1], cache=cache).logits for t in range(7, 20)]
    assert cache.length == 20
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", DECODERS)
def test_cached_decoding_of_a_left_padded_batch(name):
    """What batched generation does: left-padded prompts, a growing mask and positions per row."""
    model = tiny(name)
    ids, mask = ids_and_mask(0, lengths=(8, 5), seq=8, left=True)
    new = torch.randint(3, 99, (2, 4))
    with torch.no_grad():
        cache = model.new_cache()
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        steps = [model(ids, attention_mask=mask, position_ids=positions, cache=cache).logits[:, -1]]
        for t in range(4):
            mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1)
            positions = positions[:, -1:] + 1
            steps.append(model(new[:, t : t + 1], attention_mask=mask, position_ids=positions,
                               cache=cache).logits[:, -1])
        for row, n in enumerate((8, 5)):
            alone = model(torch.cat([ids[row : row + 1, 8 - n :], new[row : row + 1]], dim=1)).logits[0]
            got = torch.stack([s[row] for s in steps])
            torch.testing.assert_close(got, alone[n - 1 :], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_len", [None, 12])
def test_encoder_decoder_cached_decoding_equals_full_forward(max_len):
    """Self-attention keys/values appended per step, cross-attention ones computed once and kept."""
    model = tiny("transformer")
    src, src_mask = ids_and_mask(0, lengths=(9, 5))
    tgt = torch.randint(3, 99, (2, 12))
    with torch.no_grad():
        full = model(src, attention_mask=src_mask, decoder_input_ids=tgt).logits
        memory, _ = model.encode(src, src_mask)
        cache = model.new_cache(max_len)
        steps = [model(memory=memory, attention_mask=src_mask, decoder_input_ids=tgt[:, t : t + 1],
                       cache=cache).logits for t in range(12)]
    assert all(kv is not None for kv in cache.cross)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


# -- reference == fused attention -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("padded", [False, True])
def test_eager_equals_sdpa(name, padded):
    fast = tiny(name, attn_impl="sdpa")
    eager = build_model(fast.config.replace(attn_impl="eager")).eval()
    eager.load_state_dict(fast.state_dict())
    ids, mask = ids_and_mask(fast.config.pad_token_id or 0)
    if not padded:
        mask = None
    torch.testing.assert_close(forward(eager, ids, mask), forward(fast, ids, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("past", [0, 3])
def test_attention_reference_equals_scaled_dot_product(kv_heads, causal, past):
    """Padding + causal (offset by cached positions) + grouped-query, through build_mask as the models
    use it."""
    b, h, t, d = 3, 4, 5, 8
    q = torch.randn(b, h, t, d)
    k, v = torch.randn(2, b, kv_heads, past + t, d)
    keep = torch.ones(b, past + t, dtype=torch.long)
    keep[1, :2] = 0  # left padding
    keep[2, -2:] = 0  # right padding
    mask, kernel_causal = build_mask(keep, t, past + t, causal=causal)
    ref, weights = attention_reference(q, k, v, mask, kernel_causal)
    fast = scaled_dot_product(q, k, v, mask, kernel_causal)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(b, h, t))
    # nobody attends to the padding, except a left pad under a causal mask, which has nothing else to
    # look at (build_mask lets it see everything rather than produce NaN; its output is never used)
    first = max(0, 2 - past) if causal else 0
    assert (weights[1, :, first:, :2] == 0).all()
