"""zhixing.pipeline("text-generation"): greedy text equals transformers' text-generation pipeline on a
converted tiny GPT-2; batches, streaming, chats rendered with the chat template, generation settings."""

from __future__ import annotations

import pytest
import torch

import zhixing


@pytest.fixture(scope="module")
def hf_gpt2_dir(tmp_path_factory, byte_tokenizer):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    tok = byte_tokenizer
    cfg = transformers.GPT2Config(vocab_size=tok.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    d = tmp_path_factory.mktemp("hf-gpt2")
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(d)
    tok.save(d)
    return d


def test_greedy_text_equals_transformers_pipeline(hf_gpt2_dir):
    transformers = pytest.importorskip("transformers")
    hf = transformers.pipeline("text-generation", model=str(hf_gpt2_dir), device="cpu")
    gen = zhixing.pipeline("text-generation", hf_gpt2_dir, max_new_tokens=12)
    prompts = ["知行合一，", "The quick brown"]
    ours = gen(prompts)  # a batch: left-padded inside
    for prompt, mine in zip(prompts, ours):
        theirs = hf(prompt, max_new_tokens=12, do_sample=False)[0]["generated_text"]
        assert mine["generated_text"] == theirs
    assert gen(prompts[0]) == ours[0]
    assert gen(prompts[0], return_full_text=False)["generated_text"] == ours[0]["generated_text"][len(
        prompts[0]):]
    assert "".join(gen(prompts[0], stream=True)) == ours[0]["generated_text"][len(prompts[0]):]


def test_settings_chats_and_sampling(hf_gpt2_dir):
    gen = zhixing.pipeline("text-generation", hf_gpt2_dir, max_new_tokens=5, do_sample=True, seed=0)
    assert gen.config.max_new_tokens == 5 and gen.config.do_sample
    rows = gen("你好", num_return_sequences=3)
    assert len(rows) == 3 and all(r["generated_text"].startswith("你好") for r in rows)
    assert gen("你好", seed=1) == gen("你好", seed=1)
    chat = [{"role": "user", "content": "你好"}]
    out = gen(chat)["generated_text"]
    assert out[:1] == chat and out[1]["role"] == "assistant"
    long = gen("知行", max_new_tokens=80, sliding_window=True, do_sample=False, eos_token_ids=[])
    assert len(long["generated_text"]) > 20
