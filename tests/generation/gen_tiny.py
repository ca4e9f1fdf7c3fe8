"""Helpers shared by the generation tests: transformers' GPT-2 and Llama with their zhixing
twins (converted with zhixing.interop.from_hf), and a small byte-level BPE tokenizer."""

from __future__ import annotations

import functools

import pytest
import torch

from zhixing.generation.api import left_pad

VOCAB, BOS, EOS, PAD = 99, 1, 2, 0


@functools.cache
def hf_pair(kind: str):
    """(transformers model, zhixing model) with the same random weights, both in eval mode."""
    transformers = pytest.importorskip("transformers")
    from zhixing.interop import from_hf

    torch.manual_seed(1234)
    common = dict(vocab_size=VOCAB, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=4, **common)
        hf = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2,
                                       max_position_embeddings=64, tie_word_embeddings=False, **common)
        hf = transformers.LlamaForCausalLM(cfg)
    hf.eval()
    return hf, from_hf(hf).eval()


def random_prompts(lengths: tuple[int, ...] = (3, 7, 5), seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in lengths]


def padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and the attention mask (always given, for transformers)."""
    ids, mask = left_pad(prompts, PAD, "cpu")
    return ids, mask if mask is not None else torch.ones_like(ids)


def frequent_token(model, prompts, step: int = 3, **settings) -> int:
    """The token decoding (with `settings`) produces at `step` for prompt 0. Used as eos, it makes that
    row end early while others run on: random tiny models rarely produce any fixed eos id."""
    from zhixing.generation import generate

    settings = {**settings, "num_return_sequences": 1}
    out = generate(model, prompts[:1], max_new_tokens=step + 1, eos_token_ids=[], pad_token_id=PAD,
                   **settings)
    return int(out.tokens[0, step])
