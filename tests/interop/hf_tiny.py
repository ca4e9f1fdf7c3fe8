"""Helpers for the interop tests (a uniquely named module, not conftest.py, so that importing it cannot
clash with another directory's conftest): tiny random Hugging Face models (2 layers, dim 32) and batches."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

VOCAB = 99


def bert_config(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=64, attn_implementation="eager")
    return transformers.BertConfig(**{**base, **kw})


def roberta_config(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=66, type_vocab_size=1,
                attn_implementation="eager")
    return transformers.RobertaConfig(**{**base, **kw})


def gpt2_config(**kw):
    base = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0,
                eos_token_id=0, attn_implementation="eager")
    return transformers.GPT2Config(**{**base, **kw})


def llama_config(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, intermediate_size=37, max_position_embeddings=64, rope_theta=500.0,
                attn_implementation="eager")
    return transformers.LlamaConfig(**{**base, **kw})


def batch(pad_id: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """3 sequences of length 9, right-padded to 9, 6 and 3 real tokens, with two segments."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    for row, n in ((1, 6), (2, 3)):
        mask[row, n:] = 0
    ids = ids.masked_fill(mask == 0, pad_id)
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types * mask}


def assert_close_real(ours: torch.Tensor, theirs: torch.Tensor, mask: torch.Tensor, atol: float = 1e-4):
    """Compare (batch, seq, ...) outputs at the real (non-pad) positions only: what a model computes at
    a pad position is never used, and the two sides fill it differently. Returns the max abs diff."""
    keep = mask.bool()
    torch.testing.assert_close(ours[keep], theirs[keep], atol=atol, rtol=1e-4)
    return (ours[keep] - theirs[keep]).abs().max().item()
