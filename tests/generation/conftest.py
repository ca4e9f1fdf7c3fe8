"""Fixtures of the generation tests; the helpers they use live in gen_tiny.py."""

from __future__ import annotations

import pytest
from gen_tiny import hf_pair


@pytest.fixture(params=["gpt2", "llama"])
def pair(request):
    return hf_pair(request.param)


@pytest.fixture
def gpt2_pair():
    return hf_pair("gpt2")


@pytest.fixture(scope="session")
def byte_tokenizer():
    """A byte-level BPE trained on a little Chinese and English: Chinese characters often span tokens."""
    from zhixing.tokenizers import Tokenizer

    text = ["知行合一，知是行的主意，行是知的功夫。", "Knowing and doing are one.", "你好，世界！Hello.",
            "学而时习之，不亦说乎？", "The quick brown fox jumps over the lazy dog."] * 20
    return Tokenizer.train(iter(text), kind="byte_bpe", vocab_size=300, min_frequency=2, show_progress=False,
                           special_tokens={"bos": "<s>", "eos": "</s>", "pad": "<pad>"})
