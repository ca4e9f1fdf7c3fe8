"""Token-for-token parity with transformers' `generate` on tiny random GPT-2 and Llama models."""

from __future__ import annotations

import pytest
import torch
from gen_tiny import PAD, frequent_token, hf_pair, padded, random_prompts

from zhixing.generation import generate


def both(pair, prompts, eos: int, **settings):
    """(transformers' sequences [, scores], ours [, scores]) for the same left-padded batch."""
    hf, ours = pair
    ids, mask = padded(prompts)
    beam = settings.get("num_beams", 1) > 1
    ref = hf.generate(ids, attention_mask=mask, eos_token_id=eos, pad_token_id=PAD, do_sample=False,
                      top_k=None, top_p=None, temperature=None, return_dict_in_generate=True,
                      output_scores=beam, **settings)
    out = generate(ours, prompts, eos_token_ids=[eos], pad_token_id=PAD, **settings)
    return ref, out


def test_greedy_batched_matches_transformers(pair):
    prompts = random_prompts()
    eos = frequent_token(pair[1], prompts)
    ref, out = both(pair, prompts, eos, max_new_tokens=12)
    assert torch.equal(out.sequences, ref.sequences)
    ended = (out.tokens == eos).any(dim=1)
    assert ended.any() and not ended.all(), "the test should have rows that end early and rows that do not"


@pytest.mark.parametrize("kind, settings", [
    ("gpt2", dict(repetition_penalty=1.5)),
    ("gpt2", dict(repetition_penalty=0.7, no_repeat_ngram_size=2)),
    ("llama", dict(repetition_penalty=1.3, no_repeat_ngram_size=3)),
], ids=["gpt2-rep1.5", "gpt2-rep0.7-ngram2", "llama-rep1.3-ngram3"])
def test_penalties_match_transformers(kind, settings):
    pair = hf_pair(kind)
    prompts = random_prompts(seed=1)
    eos = frequent_token(pair[1], prompts, step=6)
    ref, out = both(pair, prompts, eos, max_new_tokens=14, **settings)
    assert torch.equal(out.sequences, ref.sequences)


@pytest.mark.parametrize("kind, settings", [
    ("gpt2", dict(num_beams=3)),
    ("gpt2", dict(num_beams=4, length_penalty=0.5, num_return_sequences=2)),
    ("gpt2", dict(num_beams=3, early_stopping=True)),
    ("gpt2", dict(num_beams=3, early_stopping="never", length_penalty=2.0)),
    ("llama", dict(num_beams=3, num_return_sequences=3)),
    ("llama", dict(num_beams=2, length_penalty=-1.0, repetition_penalty=1.3, no_repeat_ngram_size=2)),
], ids=["gpt2-b3", "gpt2-b4-lp0.5-n2", "gpt2-b3-early", "gpt2-b3-never-lp2", "llama-b3-n3",
        "llama-b2-lp-1-penalties"])
def test_beam_search_matches_transformers(kind, settings):
    pair = hf_pair(kind)
    prompts = random_prompts(seed=2)
    eos = frequent_token(pair[1], prompts, step=2, **settings)
    ref, out = both(pair, prompts, eos, max_new_tokens=10, **settings)
    assert torch.equal(out.sequences, ref.sequences)
    torch.testing.assert_close(out.scores, ref.sequences_scores, rtol=1e-4, atol=1e-4)
    if settings.get("length_penalty", 1.0) < 0:  # favours short hypotheses: the one ending at step 2 wins
        assert (out.tokens[0] == eos).any()


@pytest.mark.parametrize("settings", [
    dict(top_k=10),
    dict(temperature=1.3, top_k=20, top_p=0.8),
    dict(temperature=0.7, min_p=0.1),
], ids=["topk", "temp-topk-topp", "temp-minp"])
def test_sampling_matches_transformers_under_the_same_seed(gpt2_pair, settings):
    """With no seed of its own, sampling draws from torch's global generator exactly as transformers
    does, so the same torch.manual_seed gives the same tokens."""
    hf, ours = gpt2_pair
    prompts = random_prompts(seed=3)
    ids, mask = padded(prompts)
    full = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=None) | settings
    torch.manual_seed(11)
    ref = hf.generate(ids, attention_mask=mask, pad_token_id=PAD, eos_token_id=None, do_sample=True,
                      max_new_tokens=12, **{k: v for k, v in full.items() if k != "top_k"},
                      top_k=full["top_k"] or None)
    torch.manual_seed(11)
    out = generate(ours, prompts, eos_token_ids=[], pad_token_id=PAD, do_sample=True, max_new_tokens=12,
                   **full)
    assert torch.equal(out.sequences, ref)


def test_sampling_with_a_seed_is_reproducible(gpt2_pair):
    _, ours = gpt2_pair
    prompts = random_prompts()
    kw = dict(do_sample=True, top_p=0.95, temperature=1.5, max_new_tokens=16, eos_token_ids=[],
              pad_token_id=PAD)
    a = generate(ours, prompts, seed=7, **kw).sequences
    torch.manual_seed(123)  # the global generator must not matter
    b = generate(ours, prompts, seed=7, **kw).sequences
    c = generate(ours, prompts, seed=8, **kw).sequences
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_num_return_sequences_when_sampling(gpt2_pair):
    _, ours = gpt2_pair
    out = generate(ours, random_prompts((4, 6)), do_sample=True, num_return_sequences=3, seed=0,
                   max_new_tokens=8, eos_token_ids=[], pad_token_id=PAD)
    assert out.sequences.shape == (6, 6 + 8)
    assert not torch.equal(out.tokens[0], out.tokens[1])  # three different samples of prompt 0
