"""Logits processors on hand-computed cases, GenerationConfig validation and files, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from gen_tiny import PAD, VOCAB

from zhixing.config import ConfigError
from zhixing.generation import GenerationConfig, generate
from zhixing.generation.processors import (
    LogitsProcessor,
    min_p_filter,
    no_repeat_ngram,
    repetition_penalty,
    top_k_filter,
    top_p_filter,
)
from zhixing.models import build_model

INF = float("-inf")


def test_top_k_keeps_the_k_best():
    s = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert top_k_filter(s, 2).tolist() == [[INF, 3.0, 2.0, INF]]


def test_top_p_keeps_the_smallest_set_reaching_p():
    s = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = top_p_filter(s, 0.75).isfinite().tolist()
    assert kept == [[True, True, False, False]]  # 0.5 + 0.3 >= 0.75; 0.5 alone is not
    assert top_p_filter(s, 0.4).isfinite().tolist() == [[True, False, False, False]]


def test_min_p_scales_with_the_top_probability():
    s = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert min_p_filter(s, 0.2).isfinite().tolist() == [[True, True, True, False]]  # < 0.2 * 0.5


def test_repetition_penalty_divides_positive_and_multiplies_negative_scores():
    s = torch.tensor([[2.0, -2.0, 1.0, 4.0]])
    tokens = torch.tensor([[0, 1, 0, 3]])
    ignore = torch.tensor([[False, False, False, True]])  # token 3 sits in left padding: not penalised
    assert repetition_penalty(s, tokens, 2.0, ignore).tolist() == [[1.0, -4.0, 1.0, 4.0]]


def test_no_repeat_ngram_bans_the_completion_of_a_seen_ngram():
    s = torch.zeros(1, 5)
    out = no_repeat_ngram(s, torch.tensor([[1, 2, 3, 1, 2]]), 3)
    assert out.isinf().nonzero()[:, 1].tolist() == [3]  # "1 2 3" was seen; "1 2" is the suffix


def test_temperature_divides_the_logits_when_sampling():
    s = torch.tensor([[1.0, 2.0, 4.0]])
    proc = LogitsProcessor(GenerationConfig(do_sample=True, temperature=0.5))
    assert proc(s, torch.zeros(1, 0, dtype=torch.long)).tolist() == [[2.0, 4.0, 8.0]]
    greedy = LogitsProcessor(GenerationConfig(do_sample=False, temperature=0.5, top_k=1))
    assert greedy(s, torch.zeros(1, 0, dtype=torch.long)).tolist() == s.tolist()  # warpers only when sampling


@pytest.mark.parametrize("field, value, valid", [
    ("temperature", -0.1, ">= 0"),
    ("top_p", 0.0, "(0, 1]"),
    ("top_p", 1.5, "(0, 1]"),
    ("top_k", -1, ">= 0"),
    ("num_beams", 0, ">= 1"),
    ("max_new_tokens", 0, ">= 1"),
    ("min_p", 2.0, "[0, 1]"),
    ("repetition_penalty", 0.0, "> 0"),
])
def test_invalid_values_name_the_parameter_and_its_range(field, value, valid):
    with pytest.raises(ValueError) as e:
        GenerationConfig(**{field: value}).validate()
    assert field in str(e.value) and valid in str(e.value)


def test_num_return_sequences_above_num_beams_is_rejected():
    with pytest.raises(ValueError, match=r"num_return_sequences=5 .*num_beams=3"):
        GenerationConfig(num_beams=3, num_return_sequences=5).validate()


def test_config_saves_loads_and_rejects_unknown_keys(tmp_path):
    cfg = GenerationConfig(max_new_tokens=9, do_sample=True, top_p=0.9, eos_token_ids=[2, 5],
                           stop_strings=["\n\n"], early_stopping="never")
    cfg.save(tmp_path)
    assert GenerationConfig.load(tmp_path) == cfg
    (tmp_path / "generation_config.json").write_text(json.dumps({"top_pp": 0.9}))
    with pytest.raises(ConfigError, match="did you mean 'top_p'"):
        GenerationConfig.load(tmp_path)


def test_transformers_generation_config_is_translated(tmp_path):
    hf = {"transformers_version": "5.0", "eos_token_id": [2, 7], "do_sample": True, "top_k": 50,
          "bos_token_id": 1, "_from_model_config": True}
    (tmp_path / "generation_config.json").write_text(json.dumps(hf))
    cfg = GenerationConfig.load(tmp_path)
    assert (cfg.eos_token_ids, cfg.do_sample, cfg.top_k) == ([2, 7], True, 50)


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return build_model("gpt-tiny", vocab_size=VOCAB, dim=32, max_seq_len=32, bos_token_id=1,
                       eos_token_id=2, pad_token_id=PAD).eval()


def test_per_call_overrides_and_model_generation_config(gpt):
    gpt.generation_config = GenerationConfig(max_new_tokens=3, eos_token_ids=[])
    try:
        assert generate(gpt, [[5, 6]]).tokens.shape == (1, 3)
        assert generate(gpt, [[5, 6]], max_new_tokens=5).tokens.shape == (1, 5)
    finally:
        del gpt.generation_config


def test_prompt_longer_than_the_context(gpt):
    long = list(range(3, 33))  # 30 tokens + 5 new > 32
    with pytest.raises(ValueError, match=r"30 tokens.*max_seq_len=32.*truncate_prompt=True"):
        generate(gpt, [long], max_new_tokens=5)
    out = generate(gpt, [long], max_new_tokens=5, truncate_prompt=True, eos_token_ids=[])
    assert torch.equal(out.tokens, generate(gpt, [long[-27:]], max_new_tokens=5, eos_token_ids=[]).tokens)
    with pytest.raises(ValueError, match="max_new_tokens=32"):
        generate(gpt, [[5]], max_new_tokens=32)


def test_empty_prompt_starts_from_bos(gpt):
    a = generate(gpt, [[]], max_new_tokens=4, eos_token_ids=[])
    b = generate(gpt, [[1]], max_new_tokens=4, eos_token_ids=[])
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(generate(gpt, [], max_new_tokens=4, eos_token_ids=[]).sequences, b.sequences)
    no_bos = build_model("gpt-tiny", vocab_size=VOCAB, dim=32, max_seq_len=32, bos_token_id=None)
    with pytest.raises(ValueError, match="empty.*BOS"):
        generate(no_bos, [[]], max_new_tokens=2)


def test_other_bad_inputs(gpt):
    with pytest.raises(ValueError, match="tokenizer"):
        generate(gpt, "text without a tokenizer")
    with pytest.raises(ValueError, match="right padding"):
        generate(gpt, torch.tensor([[5, 6, 0]]), attention_mask=torch.tensor([[1, 1, 0]]))
    with pytest.raises(ValueError, match="temperature"):
        generate(gpt, [[5]], temperature=-1.0)
    with pytest.raises(ValueError, match="stop_strings need a tokenizer"):
        generate(gpt, [[5]], stop_strings=["x"], max_new_tokens=2)


def test_tensor_prompt_with_left_padding_mask(gpt):
    ids = torch.tensor([[PAD, PAD, 5, 6], [7, 8, 9, 10]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    a = generate(gpt, ids, attention_mask=mask, max_new_tokens=4, eos_token_ids=[])
    b = generate(gpt, [[5, 6], [7, 8, 9, 10]], max_new_tokens=4, eos_token_ids=[])
    assert torch.equal(a.sequences, b.sequences)


def test_beam_scores_are_length_normalised_log_probabilities(gpt):
    """With no eos, every hypothesis has max_new_tokens tokens: score = sum log p / len**lp."""
    out = generate(gpt, [[5, 6, 7]], num_beams=2, max_new_tokens=4, length_penalty=2.0, eos_token_ids=[])
    seq = out.sequences[0]
    with torch.no_grad():
        logp = gpt(seq[None]).logits[0].float().log_softmax(-1)
    total = sum(float(logp[i - 1, seq[i]]) for i in range(3, 7))
    assert math.isclose(float(out.scores[0]), total / 4**2.0, rel_tol=1e-4)


def test_caller_logits_processors_steer_greedy_and_streamed_decoding():
    """`logits_processors=` callables see every step's (rows, vocab) scores and the token history, and
    what they return is what greedy decoding picks from (the writing assistant's FUDGE guidance)."""
    from zhixing.generation import stream

    torch.manual_seed(0)
    model = build_model("gpt-tiny", vocab_size=VOCAB, dim=32, num_layers=2, num_heads=2, max_seq_len=32)
    seen: list[tuple[int, int]] = []

    def only_seven(scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        seen.append((scores.size(0), tokens.size(1)))
        out = torch.full_like(scores, INF)
        out[:, 7] = 0.0
        return out

    out = generate(model, [[1, 2, 3], [4, 5]], max_new_tokens=4, pad_token_id=PAD,
                   logits_processors=[only_seven])
    assert out.tokens.tolist() == [[7] * 4, [7] * 4]
    assert seen == [(2, 3), (2, 4), (2, 5), (2, 6)]  # history grows one column per step

    class Chars:  # a minimal tokenizer for stream(): token i decodes to chr(65 + i)
        eos_id = None

        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(65 + i) for i in ids)

    pieces = list(stream(model, [1, 2], tokenizer=Chars(), max_new_tokens=3, pad_token_id=PAD,
                         logits_processors=[only_seven]))
    assert "".join(pieces) == "HHH"
