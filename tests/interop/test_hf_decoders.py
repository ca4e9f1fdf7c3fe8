"""GPT-2 and Llama parity with transformers: import, export and reload, right-padded batches with
attention masks, GQA, untied heads, attention biases, rope_theta; cached decoding of an imported model.
fp32, CPU, atol 1e-4 (observed: ~1e-7)."""

from __future__ import annotations

import json

import pytest
import torch
from hf_tiny import assert_close_real, batch, gpt2_config, llama_config, transformers

from zhixing.interop import from_hf, to_hf

CASES = {
    "gpt2": (transformers.GPT2LMHeadModel, lambda: gpt2_config()),
    "gpt2-untied-relu": (transformers.GPT2LMHeadModel, lambda: gpt2_config(
        tie_word_embeddings=False, activation_function="relu", n_inner=40)),
    "gpt2-backbone": (transformers.GPT2Model, lambda: gpt2_config()),
    "llama-gqa": (transformers.LlamaForCausalLM, lambda: llama_config()),
    "llama-tied-bias-headdim": (transformers.LlamaForCausalLM, lambda: llama_config(
        tie_word_embeddings=True, attention_bias=True, mlp_bias=True, head_dim=16, num_key_value_heads=1)),
    "llama-backbone": (transformers.LlamaModel, lambda: llama_config()),
}


def run(model, inputs, ours: bool) -> torch.Tensor:
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    head = model.config.head if ours else ("lm" if hasattr(out, "logits") else "none")
    return out.logits if head == "lm" else out.last_hidden_state


@pytest.mark.parametrize("case", CASES)
def test_import_and_export_match_transformers(case, tmp_path):
    cls, make_config = CASES[case]
    hf = cls(make_config()).eval()
    if case == "gpt2-untied-relu":  # a different output matrix, so tying would be caught
        with torch.no_grad():
            hf.lm_head.weight.normal_()
    inputs = batch(pad_id=0)  # right padding; GPT-2 has no pad id, the mask is what matters
    theirs = run(hf, inputs, ours=False)

    ours = from_hf(hf)
    assert ours.config.head == ("none" if "backbone" in case else "lm")
    assert_close_real(run(ours, inputs, ours=True), theirs, inputs["attention_mask"])

    to_hf(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [cls.__name__]
    reloaded = cls.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert_close_real(run(reloaded, inputs, ours=False), theirs, inputs["attention_mask"])
    assert_close_real(run(from_hf(tmp_path), inputs, ours=True), theirs, inputs["attention_mask"])


def test_llama_config_fields_map():
    config = llama_config(head_dim=16, num_key_value_heads=1, rms_norm_eps=1e-5, eos_token_id=[2, 3])
    ours = from_hf(transformers.LlamaForCausalLM(config)).config
    assert (ours.dim, ours.num_heads, ours.num_kv_heads, ours.head_dim) == (32, 4, 1, 16)
    assert (ours.activation, ours.norm, ours.position) == ("swiglu", "rmsnorm", "rotary")
    assert ours.rope_theta == 500.0
    assert ours.norm_eps == 1e-5 and not ours.tie_embeddings and not ours.bias and ours.ffn_dim == 37
    assert ours.eos_token_id == 2  # Llama 3 style lists of EOS ids keep the first


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("max_len", [None, 16])
def test_cached_decoding_of_an_imported_model_matches_transformers(family, max_len):
    """Prompt, then one token at a time through our KV cache (growing or preallocated): every step's
    logits equal transformers' full forward over the whole sequence."""
    cls, make_config = CASES["gpt2" if family == "gpt2" else "llama-gqa"]
    hf = cls(make_config()).eval()
    ours = from_hf(hf)
    ids = torch.randint(3, 99, (2, 12))
    with torch.no_grad():
        full = hf(input_ids=ids).logits
        cache = ours.new_cache(max_len)
        steps = [ours(ids[:, :5], cache=cache).logits]
        steps += [ours(ids[:, t : t + 1], cache=cache).logits for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)
