"""Shared fixtures: small real tokenizers and shards built from small real corpora (fast on 2 CPUs)."""

from __future__ import annotations

import itertools

import pytest

from zhixing.data import prepare_shards, read_documents
from zhixing.tokenizers import Tokenizer

ENGLISH = [
    "The quick brown fox jumps over the lazy dog. It was not amused.",
    "Knowing and doing are one: theory and practice side by side.",
    "A language model assigns a probability to every sequence of tokens.",
    "Masked language models predict hidden tokens from both sides.",
    "Causal language models predict the next token from the left.",
] * 4


@pytest.fixture(scope="session")
def docs_file(tmp_path_factory):
    """A .txt corpus of 60 distinct English documents, one per line."""
    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    lines = [f"{i}: {text} Document number {i} ends here." for i, text in enumerate(ENGLISH * 3)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def char_tok(docs_file, tmp_path_factory):
    tok = Tokenizer.train(
        iter([docs_file.read_text()]), kind="char", vocab_size=200, min_frequency=1, show_progress=False
    )
    d = tmp_path_factory.mktemp("char_tok")
    tok.save(d)
    return Tokenizer.load(d), d


@pytest.fixture(scope="session")
def char_shards(docs_file, char_tok, tmp_path_factory):
    out = tmp_path_factory.mktemp("char_shards")
    return prepare_shards(docs_file, char_tok[1], out, val_fraction=0.2, workers=1, progress=False)


@pytest.fixture(scope="session")
def pd_docs():
    """The first 80 articles of People's Daily (real Chinese news)."""
    return list(itertools.islice(read_documents("peoples-daily"), 80))


@pytest.fixture(scope="session")
def wp_tok(pd_docs, tmp_path_factory):
    """A small Chinese WordPiece tokenizer whose word_ids follow jieba words."""
    tok = Tokenizer.train(
        iter(pd_docs),
        kind="wordpiece",
        vocab_size=3000,
        min_frequency=1,
        chinese_words="jieba",
        show_progress=False,
    )
    d = tmp_path_factory.mktemp("wp_tok")
    tok.save(d)
    return Tokenizer.load(d), d


@pytest.fixture(scope="session")
def pd_shards(pd_docs, wp_tok, tmp_path_factory):
    src = tmp_path_factory.mktemp("pd") / "pd.jsonl"
    import json

    src.write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in pd_docs), encoding="utf-8"
    )
    out = tmp_path_factory.mktemp("pd_shards")
    return prepare_shards(src, wp_tok[1], out, val_fraction=0.1, workers=1, progress=False)
