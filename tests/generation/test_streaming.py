"""Streaming text: whole characters only, stop strings held back and never shown, same text as generate."""

from __future__ import annotations

import pytest
import torch

from zhixing.generation import TextStreamer, generate, stream
from zhixing.models import build_model

TEXT = "你好，世界！知行合一。Hello, 学而时习之"


def pieces_of(tokenizer, ids, stop=()):
    streamer = TextStreamer(tokenizer, stop)
    out = [streamer.push(i) for i in ids]
    return [p for p in out if p] + ([streamer.finish()] if not streamer.stopped else []), streamer


def test_pieces_never_split_a_character(byte_tokenizer):
    ids = byte_tokenizer.encode(TEXT).ids
    assert any("\ufffd" in byte_tokenizer.decode([i]) for i in ids), "a token must hold a partial character"
    pieces, _ = pieces_of(byte_tokenizer, ids)
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == TEXT
    assert len(pieces) > 5  # it did stream


def test_stop_string_is_held_back_and_cut(byte_tokenizer):
    ids = byte_tokenizer.encode("知行合一。STOP after").ids
    streamer = TextStreamer(byte_tokenizer, ["STOP"])
    shown = ""
    for i in ids:
        shown += streamer.push(i)
        assert "S" not in shown  # "S", "ST", "STO" might still become STOP: never released
    assert streamer.stopped and shown == "知行合一。"


def test_a_prefix_that_does_not_complete_is_released(byte_tokenizer):
    ids = byte_tokenizer.encode("ab STOx STOP").ids
    pieces, streamer = pieces_of(byte_tokenizer, ids, ["STOP"])
    assert "".join(pieces) == "ab STOx " and streamer.stopped


@pytest.fixture(scope="module")
def model(byte_tokenizer):
    torch.manual_seed(0)
    return build_model("gpt-tiny", vocab_size=byte_tokenizer.vocab_size, dim=32, max_seq_len=96,
                       bos_token_id=byte_tokenizer.bos_id, eos_token_id=byte_tokenizer.eos_id).eval()


def test_stream_yields_what_generate_returns(model, byte_tokenizer):
    kw = dict(max_new_tokens=40, do_sample=True, seed=1, temperature=1.5)
    text = generate(model, "知行", tokenizer=byte_tokenizer, **kw).texts[0]
    pieces = list(stream(model, "知行", tokenizer=byte_tokenizer, **kw))
    assert "".join(pieces) == text and len(pieces) > 1


def test_stop_strings_end_generation_and_are_cut(model, byte_tokenizer):
    kw = dict(max_new_tokens=40, do_sample=True, seed=1, temperature=1.5)
    full = generate(model, "知行", tokenizer=byte_tokenizer, **kw)
    text = full.texts[0]
    stop = text[len(text) // 2: len(text) // 2 + 2]
    cut = generate(model, "知行", tokenizer=byte_tokenizer, stop_strings=[stop], **kw)
    assert cut.texts[0] == text.split(stop, 1)[0]
    assert cut.tokens.size(1) < full.tokens.size(1)  # generation stopped early
    assert "".join(stream(model, "知行", tokenizer=byte_tokenizer, stop_strings=[stop], **kw)) == cut.texts[0]


def test_stream_takes_one_prompt(model, byte_tokenizer):
    with pytest.raises(ValueError, match="one prompt"):
        list(stream(model, ["a", "b"], tokenizer=byte_tokenizer))
    with pytest.raises(ValueError, match="num_beams"):
        list(stream(model, "a", tokenizer=byte_tokenizer, num_beams=2))
