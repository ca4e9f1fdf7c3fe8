"""The KV-cache engine: cached decoding equals recomputation, batches equal one-by-one, static == dynamic."""

from __future__ import annotations

import pytest
import torch
from gen_tiny import PAD, VOCAB, frequent_token, padded, random_prompts

from zhixing.generation import generate
from zhixing.generation.engine import DecoderOnlyRunner
from zhixing.models import build_model


@pytest.fixture(scope="module", params=["gpt", "llama"])
def model(request):
    torch.manual_seed(5)
    preset = "gpt-tiny" if request.param == "gpt" else "llama-tiny"
    return build_model(preset, vocab_size=VOCAB, dim=32, max_seq_len=64, pad_token_id=PAD).eval()


def uncached_logits(model, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Next-token logits from a full forward of the whole sequence (no cache), as a reference."""
    pos = None if mask is None else (mask.cumsum(-1) - 1).clamp(min=0)
    return model(ids, attention_mask=mask, position_ids=pos).logits[:, -1].float()


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("lengths", [(6,), (3, 7, 5)], ids=["single", "padded"])
@torch.inference_mode()
def test_cached_decoding_equals_recomputation(model, static, lengths):
    ids, mask = padded(random_prompts(lengths))
    has_pad = bool((mask == 0).any())
    runner = DecoderOnlyRunner(model, ids, mask if has_pad else None, max_new_tokens=8, static=static)
    logits = runner.prefill()
    seq, full_mask = ids, mask
    for _ in range(8):
        torch.testing.assert_close(logits, uncached_logits(model, seq, full_mask if has_pad else None),
                                   rtol=1e-5, atol=1e-5)
        nxt = logits.argmax(-1)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        full_mask = torch.cat([full_mask, torch.ones_like(nxt[:, None])], dim=1)
        logits = runner.step(nxt)
    assert runner.cache.layers[0].k.size(2) == ids.size(1) + 8  # allocated once, at its final size


def test_batched_greedy_equals_one_by_one(model):
    prompts = random_prompts((2, 9, 5, 1), seed=4)
    eos = frequent_token(model, prompts, step=4)
    batched = generate(model, prompts, max_new_tokens=10, eos_token_ids=[eos], pad_token_id=PAD)
    for i, p in enumerate(prompts):
        alone = generate(model, [p], max_new_tokens=10, eos_token_ids=[eos], pad_token_id=PAD)
        n = alone.tokens.size(1)
        assert torch.equal(batched.tokens[i, :n], alone.tokens[0])
        assert (batched.tokens[i, n:] == PAD).all()  # a row that ended holds pad


def test_batched_beam_search_equals_one_by_one(model):
    prompts = random_prompts((4, 8), seed=6)
    kw = dict(max_new_tokens=8, num_beams=3, eos_token_ids=[frequent_token(model, prompts, 2, num_beams=3)],
              pad_token_id=PAD)
    batched = generate(model, prompts, **kw)
    for i, p in enumerate(prompts):
        alone = generate(model, [p], **kw)
        n = alone.tokens.size(1)
        assert torch.equal(batched.tokens[i, :n], alone.tokens[0])
        torch.testing.assert_close(batched.scores[i], alone.scores[0])


@pytest.mark.gpu
def test_cuda_graph_gives_the_same_tokens_as_eager(model):
    gpu = model.to("cuda")
    try:
        prompts = random_prompts((3, 7, 5))
        for settings in (dict(), dict(do_sample=True, top_p=0.9, seed=3)):
            kw = dict(max_new_tokens=20, eos_token_ids=[7], pad_token_id=PAD, **settings)
            eager = generate(gpu, prompts, cuda_graph=False, **kw)
            graph = generate(gpu, prompts, cuda_graph=True, **kw)
            assert torch.equal(eager.sequences, graph.sequences)
    finally:
        model.to("cpu")
