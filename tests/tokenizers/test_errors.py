"""Bad input fails with a message that names the problem and the fix."""

from __future__ import annotations

import json

import pytest

from zhixing.tokenizers import Tokenizer, TokenizerError

TEXT = ["the quick brown fox jumps over the lazy dog\n"] * 50


def train(src, **kw):
    kw.setdefault("show_progress", False)
    return Tokenizer.train(src, **kw)


def test_non_utf8_file_names_file_line_and_byte(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes(b"first line ok\n" + "第二行".encode("gbk") + b"\n")
    with pytest.raises(TokenizerError) as e:
        train(path, kind="wordpiece", vocab_size=100)
    msg = str(e.value)
    assert str(path) in msg and "line 2" in msg and "byte offset 14" in msg and "errors='replace'" in msg
    tok = train(path, kind="char", vocab_size=100, errors="replace")
    assert tok.token_to_id("\ufffd") is not None  # the bad bytes became U+FFFD


@pytest.mark.parametrize("content", [b"", b"\n\n   \n"])
def test_empty_corpus(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(TokenizerError, match=r"corpus is empty.*empty\.txt.*fix"):
        train(path, kind="bpe", vocab_size=100)
    with pytest.raises(TokenizerError, match="corpus is empty.*iterator"):
        train(iter([]), kind="byte_bpe", vocab_size=300)


def test_vocab_size_smaller_than_alphabet():
    with pytest.raises(TokenizerError, match=r"smaller than the byte-level base alphabet.*vocab_size >= 258"):
        train(iter(TEXT), kind="byte_bpe", vocab_size=100)
    with pytest.raises(TokenizerError, match=r"smaller than the base alphabet.*limit_alphabet"):
        train(iter(TEXT), kind="wordpiece", vocab_size=20)
    with pytest.raises(TokenizerError, match="leaves no room"):
        train(iter(TEXT), kind="char", vocab_size=3)


def test_a_corpus_too_small_for_vocab_size_warns(recwarn):
    with pytest.warns(UserWarning, match=r"tokens, fewer than vocab_size=5,000: WordPiece splits"):
        tok = train(iter(TEXT), kind="wordpiece", vocab_size=5000)
    assert tok.vocab_size < 5000
    with pytest.warns(UserWarning, match=r"fewer than vocab_size=5,000: no further merge occurs at least"):
        train(iter(TEXT), kind="bpe", vocab_size=5000)
    recwarn.clear()
    train(iter(TEXT), kind="char", vocab_size=5000)  # a cap by design: no warning
    assert not [w for w in recwarn if "vocab_size" in str(w.message)]


def test_unknown_kind_and_bad_arguments():
    with pytest.raises(TokenizerError, match=r"unknown tokenizer kind 'spm'.*wordpiece, bpe, byte_bpe, char"):
        train(iter(TEXT), kind="spm")
    with pytest.raises(TokenizerError, match="vocab_size must be a positive integer"):
        train(iter(TEXT), vocab_size=0)
    with pytest.raises(TokenizerError, match="unknown role 'begin'"):
        train(iter(TEXT), special_tokens={"begin": "<s>"})
    with pytest.raises(TokenizerError, match="needs an 'unk' special token"):
        train(iter(TEXT), kind="wordpiece", special_tokens={"pad": "[PAD]"})
    with pytest.raises(TokenizerError, match="chinese_words"):
        train(iter(TEXT), chinese_words="thulac")
    with pytest.raises(TokenizerError, match="errors="):
        train(iter(TEXT), errors="skip")


def test_missing_files(tmp_path):
    with pytest.raises(TokenizerError, match=r"input file not found: .*nope\.txt"):
        train([tmp_path / "nope.txt"])
    with pytest.raises(TokenizerError, match="pass iter"):
        train(["a line of text, not a path\n"])
    with pytest.raises(TokenizerError, match="pass iter"):  # a short list of texts too
        train(["hello world", "你好"])
    with pytest.raises(TokenizerError, match=r"nope\.txt'; fix: check the path$"):  # one path: no hint
        train(str(tmp_path / "nope.txt"))
    with pytest.raises(TokenizerError, match="is a directory"):
        train(tmp_path)


def test_directory_with_neither_format(tmp_path):
    (tmp_path / "README.md").write_text("not a tokenizer")
    assert not Tokenizer.can_load(tmp_path) and not Tokenizer.can_load(tmp_path / "missing")
    with pytest.raises(TokenizerError, match=r"holds no tokenizer: expected tokenizer\.json, vocab\.txt"):
        Tokenizer.load(tmp_path)
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(TokenizerError, match="merges.txt is missing"):
        Tokenizer.load(tmp_path)
    with pytest.raises(TokenizerError, match="not found"):
        Tokenizer.load(tmp_path / "missing")
    with pytest.raises(TokenizerError, match="is a file"):
        Tokenizer.load(tmp_path / "README.md")


def test_corrupt_files(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"model": ')
    with pytest.raises(TokenizerError, match=r"tokenizer\.json: not a valid tokenizer\.json"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(TokenizerError, match="not a byte-level"):
        Tokenizer.load(tmp_path)


def test_encode_errors():
    tok = train(iter(TEXT), kind="byte_bpe", vocab_size=300, special_tokens={"eos": "<|endoftext|>"})
    with pytest.raises(TokenizerError, match="no pad token"):
        tok.encode_batch(["a", "bb"], padding=True)
    with pytest.raises(TokenizerError, match="must be str"):
        tok.encode(b"bytes")
    with pytest.raises(TokenizerError, match="one string"):
        tok.encode_batch("a string")
    with pytest.raises(TokenizerError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(TokenizerError, match="truncation="):
        tok.encode("x", max_length=4, truncation="middle")
    with pytest.raises(TokenizerError, match="2 texts but 1 pairs"):
        tok.encode_batch(["a", "b"], ["c"])
