"""The textbook algorithms in reference.py equal the Rust engine on real text."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from tokenizers import pre_tokenizers

from zhixing.tokenizers import Tokenizer
from zhixing.tokenizers import reference as R


def engine_bpe(tok: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(tok.backend.to_str())["model"]
    return model["vocab"], [tuple(m) for m in model["merges"]]


def words_of(tok: Tokenizer, texts) -> Counter:
    """Word frequencies after the engine's normalizer and pre-tokenizer: what both trainers count."""
    counts: Counter = Counter()
    for text in texts:
        if tok.backend.normalizer is not None:
            text = tok.backend.normalizer.normalize_str(text)
        counts.update(w for w, _ in tok.backend.pre_tokenizer.pre_tokenize_str(text))
    return counts


@pytest.fixture(scope="module")
def shakespeare_bpe(shakespeare_lines):
    train = shakespeare_lines[:20000]
    tok = Tokenizer.train(iter(train), kind="byte_bpe", vocab_size=2000, min_frequency=2, show_progress=False)
    return tok, train


def test_byte_level_bpe_training_learns_the_engines_merges(shakespeare_bpe):
    tok, train = shakespeare_bpe
    vocab, merges = engine_bpe(tok)
    specials = [t for t in vocab if vocab[t] < len(set(tok.special_tokens.values()))]
    ref_vocab, ref_merges = R.train_bpe(
        words_of(tok, train), 2000, 2, specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    assert len(merges) > 1500
    assert ref_merges == merges
    assert ref_vocab == vocab


def test_bpe_training_on_chinese_words_learns_the_engines_merges(peoples_daily_words):
    # People's Daily with its own word segmentation: BPE learns frequent characters pairs in words.
    train = peoples_daily_words[:1500]
    tok = Tokenizer.train(iter(train), kind="bpe", vocab_size=6000, min_frequency=2, show_progress=False)
    vocab, merges = engine_bpe(tok)
    specials = sorted(set(tok.special_tokens.values()), key=vocab.get)
    ref_vocab, ref_merges = R.train_bpe(words_of(tok, train), 6000, 2, specials)
    assert len(merges) > 1000 and any(len(a + b) >= 3 for a, b in merges)
    assert ref_merges == merges
    assert ref_vocab == vocab


def test_tie_break_is_smallest_symbol_ids():
    # pairs (a,b), (c,d) both occur 3 times; ids a < c, so (a,b) is merged first, like the engine
    vocab, merges = R.train_bpe({"ab": 3, "cd": 3}, vocab_size=6)
    assert merges == [("a", "b"), ("c", "d")]
    vocab, merges = R.train_bpe({"cd": 3, "ab": 3}, vocab_size=5)
    assert merges == [("a", "b")] and vocab == {"a": 0, "b": 1, "c": 2, "d": 3, "ab": 4}


def test_byte_level_bpe_encoding_equals_engine(shakespeare_bpe, shakespeare_lines, peoples_daily_lines):
    tok, _ = shakespeare_bpe
    vocab, merges = engine_bpe(tok)
    ranks = R.bpe_ranks(merges)
    texts = shakespeare_lines[-3000:] + peoples_daily_lines[:200] + ["naïve 👍🏽 \x00\t https://x.org/?q=1"]
    for text in texts:
        expected = tok.encode(text).tokens
        got = []
        for mapped, (a, b) in tok.backend.pre_tokenizer.pre_tokenize_str(text):
            assert R.to_byte_symbols(text[a:b]) == mapped  # the byte alphabet is GPT-2's
            got += R.bpe_encode(mapped, ranks)
        assert got == expected, text
        assert R.from_byte_symbols("".join(got)) == text


def wordpiece_pipeline(tok: Tokenizer, text: str, vocab) -> list[str]:
    """Special tokens written in the text are matched first (as the engine's added tokens are), then
    each remaining piece is normalized, split into words and WordPiece-encoded."""
    specials = sorted(tok.special_tokens.values(), key=len, reverse=True)
    out = []
    for piece in re.split("(" + "|".join(map(re.escape, specials)) + ")", text):
        if piece in specials:
            out.append(piece)
            continue
        words = tok.backend.pre_tokenizer.pre_tokenize_str(tok.backend.normalizer.normalize_str(piece))
        out += [p for w, _ in words for p in R.wordpiece_encode(w, vocab)]
    return out


def test_wordpiece_encoding_equals_engine_on_minilm_vocab(minilm_dir, parity_lines):
    tok = Tokenizer.load(minilm_dir)
    vocab = tok.get_vocab()
    for text in parity_lines[:2500]:
        assert wordpiece_pipeline(tok, text, vocab) == tok.encode(text, add_special_tokens=False).tokens, text


def test_wordpiece_encoding_equals_engine_on_trained_chinese_vocab(peoples_daily_lines):
    train = iter(peoples_daily_lines[:3000])
    tok = Tokenizer.train(train, kind="wordpiece", vocab_size=5000, show_progress=False)
    vocab = tok.get_vocab()
    for text in peoples_daily_lines[3000:3500] + ["Hello world, 知行合一 unbelievable!"]:
        assert wordpiece_pipeline(tok, text, vocab) == tok.encode(text, add_special_tokens=False).tokens


def test_wordpiece_greedy_longest_match():
    vocab = {"un": 0, "##aff": 1, "##able": 2, "[UNK]": 3, "u": 4, "##n": 5, "##affable": 6}
    assert R.wordpiece_encode("unaffable", vocab) == ["un", "##affable"]  # longest, not first
    assert R.wordpiece_encode("unx", vocab) == ["[UNK]"]  # one unmatched piece -> whole word unknown
    assert R.wordpiece_encode("u" * 101, vocab) == ["[UNK]"]


def test_bytes_to_unicode_is_gpt2s_table():
    table = R.bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())
