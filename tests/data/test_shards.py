import json

import numpy as np
import pytest

from zhixing.data import CorpusError, ShardError, TokenShards, prepare_shards
from zhixing.data.encode import unit_hash as _unit_hash
from zhixing.tokenizers import Tokenizer


def test_shards_hold_the_encoded_documents(docs_file, char_tok, char_shards):
    tok, _ = char_tok
    docs = docs_file.read_text().splitlines()
    expected = {"train": [], "val": []}
    for d in docs:  # the split is a pure function of the document text
        expected["val" if _unit_hash(d) < 0.2 else "train"].append(d)
    assert expected["val"] and expected["train"]
    for split in ("train", "val"):
        s = TokenShards(char_shards, split)
        assert s.tokens.dtype == np.uint16 and s.vocab_size == tok.vocab_size
        ids = np.concatenate(
            [tok.encode(d, add_special_tokens=False).ids + [tok.eos_id] for d in expected[split]]
        )
        np.testing.assert_array_equal(s.tokens, ids)
        assert s.num_docs == len(expected[split]) == s.meta["documents"][split]
        starts, ends = s.doc_spans()
        assert tok.decode(s.tokens[starts[1] : ends[1]].tolist()) == expected[split][1]
        assert s.word_starts is not None and s.word_starts.sum() > 0
    meta = json.loads((char_shards / "meta.json").read_text())
    assert meta["tokens"]["train"] + meta["tokens"]["val"] == sum(len(d) + 1 for d in docs)
    assert meta["separator_id"] == tok.eos_id and meta["split"] == "hash"


def test_idempotent_reuse_and_rebuild(docs_file, char_tok, tmp_path):
    out = prepare_shards(docs_file, char_tok[1], tmp_path / "s", val_fraction=0.2, workers=1, progress=False)
    first = (out / "train.bin").stat().st_mtime_ns
    prepare_shards(docs_file, char_tok[1], out, val_fraction=0.2, workers=1, progress=False)
    assert (out / "train.bin").stat().st_mtime_ns == first  # reused, not rewritten
    prepare_shards(docs_file, char_tok[1], out, val_fraction=0.5, workers=1, progress=False)
    assert TokenShards(out).meta["val_fraction"] == 0.5  # different inputs -> rebuilt
    assert not list(out.glob(".build-*"))  # no temporary leftovers


def test_multiprocess_equals_single_process(docs_file, char_tok, char_shards, tmp_path):
    out = prepare_shards(docs_file, char_tok[0], tmp_path / "mp", val_fraction=0.2, workers=2, progress=False)
    for split in ("train", "val"):
        a, b = TokenShards(char_shards, split), TokenShards(out, split)
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_array_equal(a.doc_starts, b.doc_starts)
        np.testing.assert_array_equal(a.word_starts, b.word_starts)


def test_tail_split_is_nanogpt(char_tok, tmp_path):
    tok, tok_dir = char_tok
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    (tmp_path / "one.txt").write_text(text)
    out = prepare_shards(
        tmp_path / "one.txt", tok_dir, tmp_path / "s", val_fraction=0.1, workers=1, progress=False
    )
    train, val = TokenShards(out, "train"), TokenShards(out, "val")
    assert train.meta["split"] == "tail"  # one document: a hash split would leave val empty
    ids = tok.encode(text, add_special_tokens=False).ids
    np.testing.assert_array_equal(train.tokens, ids[:900])  # nanoGPT: data[:int(n * 0.9)]
    np.testing.assert_array_equal(val.tokens, ids[900:] + [tok.eos_id])


def test_empty_and_missing_corpus(char_tok, tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(CorpusError, match=r"empty\.txt.*is empty"):
        prepare_shards(tmp_path / "empty.txt", char_tok[1], tmp_path / "s", workers=1, progress=False)
    assert not (tmp_path / "s" / "meta.json").exists()
    with pytest.raises(CorpusError, match=r"not found"):
        prepare_shards(tmp_path / "nope.txt", char_tok[1], tmp_path / "s", workers=1, progress=False)
    with pytest.raises(ShardError, match=r"no tokenizer here"):
        prepare_shards(tmp_path / "empty.txt", tmp_path, tmp_path / "s", workers=1, progress=False)


def test_missing_truncated_and_mismatched_shards(char_tok, char_shards, docs_file, tmp_path):
    with pytest.raises(ShardError, match=r"meta\.json not found.*zhixing prepare"):
        TokenShards(tmp_path)
    TokenShards(char_shards).check_tokenizer(char_tok[0])  # the right tokenizer passes
    other = Tokenizer.train(
        iter(["completely different text 0123456789"]),
        kind="char",
        vocab_size=100,
        min_frequency=1,
        show_progress=False,
    )
    with pytest.raises(ShardError, match=r"vocabulary of \d+ ids but the tokenizer has \d+"):
        TokenShards(char_shards).check_tokenizer(other)
    # same size, different tokens: caught by the fingerprint
    text = docs_file.read_text()
    swapped = Tokenizer.train(
        iter([text.upper() + text.lower()]), kind="char", vocab_size=200, min_frequency=1, show_progress=False
    )
    if swapped.vocab_size == char_tok[0].vocab_size:
        with pytest.raises(ShardError, match=r"same size"):
            TokenShards(char_shards).check_tokenizer(swapped)
    broken = prepare_shards(
        docs_file, char_tok[1], tmp_path / "b", val_fraction=0.2, workers=1, progress=False
    )
    with open(broken / "train.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(ShardError, match=r"train\.bin: missing or truncated"):
        TokenShards(broken)


def test_word_starts_follow_jieba(wp_tok, pd_shards):
    tok, _ = wp_tok
    s = TokenShards(pd_shards)
    assert s.meta["tokenizer"]["chinese_words"] == "jieba"
    start, end = s.doc_spans()
    ids = s.tokens[start[0] : end[0]].tolist()
    words = s.word_starts[start[0] : end[0]]
    # a jieba word spans several single-character tokens: fewer word starts than tokens
    assert 0.3 * len(ids) < words.sum() < 0.95 * len(ids)
    enc = tok.encode(tok.decode(ids[:50]).replace(" ", ""), add_special_tokens=False)
    assert enc.ids == ids[:50]
