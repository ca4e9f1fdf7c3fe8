"""Generation past the context window: with sliding_window=True greedy decoding equals a reference loop that
recomputes the cropped context (the last max_seq_len tokens) at every step, as nanoGPT's sampler does."""

from __future__ import annotations

import pytest
import torch
from gen_tiny import random_prompts

from zhixing.generation import generate


def reference_greedy(model, prompt: list[int], new: int) -> list[int]:
    window = model.config.max_seq_len
    tokens = list(prompt)
    for _ in range(new):
        ctx = torch.tensor([tokens[-window:]])
        tokens.append(int(model(ctx).logits[0, -1].argmax()))
    return tokens[len(prompt):]


@torch.no_grad()
def test_greedy_past_the_window_equals_recomputing_the_cropped_context(pair):
    _, model = pair  # gpt2 (learned positions) and llama (rotary), max_seq_len 64
    prompt = random_prompts((10,))[0]
    new = 70  # past 64 positions
    out = generate(model, prompt, max_new_tokens=new, sliding_window=True, eos_token_ids=[])
    assert out.tokens.shape == (1, new)
    assert out.tokens[0].tolist() == reference_greedy(model, prompt, new)


@torch.no_grad()
def test_long_prompts_and_padded_batches(gpt2_pair):
    _, model = gpt2_pair
    prompts = random_prompts((70, 5, 30), seed=3)  # the first is longer than the window itself
    out = generate(model, prompts, max_new_tokens=40, sliding_window=True, eos_token_ids=[])
    for row, p in zip(out.tokens.tolist(), prompts):
        assert row == reference_greedy(model, p, 40)


def test_without_the_window_it_is_an_error_that_names_the_option(gpt2_pair):
    _, model = gpt2_pair
    with pytest.raises(ValueError, match="sliding_window=True"):
        generate(model, random_prompts((10,))[0], max_new_tokens=60)
    with pytest.raises(ValueError, match="beam search"):
        generate(model, [5, 6], max_new_tokens=80, sliding_window=True, num_beams=2)
