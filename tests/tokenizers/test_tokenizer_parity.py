"""Token-for-token parity with the field on the MiniLM (BERT uncased) vocabulary.

5,000 lines of real English and Chinese (tinyshakespeare, People's Daily, Python's docs) mixed with
accents, emoji, control characters, URLs and over-long words; singles and pairs, with and without
truncation. Reference: transformers' fast `BertTokenizer` (offsets too) and the slow Python
`BertTokenizerLegacy` (ids and type ids; it has no offsets).
"""

from __future__ import annotations

import shutil

import pytest

from zhixing.tokenizers import Tokenizer

transformers = pytest.importorskip("transformers")
from transformers.models.bert.tokenization_bert import BertTokenizer as BertFast  # noqa: E402
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as BertSlow  # noqa: E402

# (name, use pairs, max_length, also check the slow tokenizer); truncation is longest_first when
# max_length is set. The slow Python tokenizer is the bottleneck (~0.5 ms a line), so it checks the
# two cases that cover every line, pairs and truncation: all 5,000 singles and 2,500 truncated pairs.
# Pairs truncate to 49 = 46 tokens + [CLS] [SEP] [SEP]: an even budget. With an odd budget the field
# disagrees with itself (see test_odd_budget_tie), so the slow check uses an even one.
CASES = [
    ("single", False, None, True),
    ("pair-trunc49", True, 49, True),
    ("pair-trunc48", True, 48, False),
    ("pair", True, None, False),
    ("single-trunc32", False, 32, False),
]


@pytest.fixture(scope="module")
def corpus(parity_lines):
    assert len(parity_lines) == 5000
    return parity_lines


@pytest.fixture(scope="module")
def hf(minilm_dir):
    transformers.logging.set_verbosity_error()  # silence "sequence longer than 512" warnings
    return BertFast.from_pretrained(minilm_dir), BertSlow.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def loaders(minilm_dir, tmp_path_factory):
    """MiniLM's directory as shipped (tokenizer.json), and its vocab.txt alone (BERT's pipeline rebuilt)."""
    d = tmp_path_factory.mktemp("vocab_only")
    shutil.copy(minilm_dir / "vocab.txt", d / "vocab.txt")  # no config: casing inferred from the vocab
    return {"tokenizer.json": Tokenizer.load(minilm_dir), "vocab.txt": Tokenizer.load(d)}


# every case for the shipped tokenizer.json; the slow-checked cases for the rebuilt vocab.txt pipeline
PARAMS = [("tokenizer.json", *c) for c in CASES] + [("vocab.txt", *c) for c in CASES if c[3]]


def batches(corpus, pairs: bool):
    """All lines as singles, or as 2,500 pairs that again use every line once.

    An empty string never goes second: transformers' `__call__` reads `text_pair=""` as "no pair"
    (a falsy check) and drops the final [SEP], while the engine and the slow tokenizer encode an empty
    second sequence (test_empty_second_sequence); such pairs are swapped.
    """
    if not pairs:
        return corpus, None
    half = len(corpus) // 2
    firsts, seconds = [], []
    for x, y in zip(corpus[:half], corpus[half:]):
        x, y = (y, x) if y == "" else (x, y)
        firsts.append(x)
        seconds.append(y)
    return firsts, seconds


@pytest.fixture(scope="module")
def expected(corpus, hf):
    """Per case: fast outputs (ids, type ids, offsets, word ids) and slow outputs (ids, type ids)."""
    fast, slow = hf
    out = {}
    for name, pairs, max_length, check_slow in CASES:
        a, b = batches(corpus, pairs)
        kw = dict(truncation="longest_first", max_length=max_length) if max_length else {}
        f = fast(a, b, return_offsets_mapping=True, **kw)
        word_ids = [f.word_ids(i) for i in range(len(a))]
        s = None
        if check_slow:
            kw["return_token_type_ids"] = True
            s = [slow(x, y, **kw) for x, y in zip(a, b)] if b else [slow(x, **kw) for x in a]
        out[name] = (f, word_ids, s)
    return out


def test_corpus_covers_the_hard_cases(corpus):
    text = "".join(corpus)
    assert any("\u4e00" <= c <= "\u9fff" for c in text)  # Chinese
    assert "é" in text and "\u0301" in text  # composed and combining accents
    assert "👨‍👩‍👧‍👦" in text and "\x00" in text and "https://" in text
    assert max(len(w) for line in corpus for w in line.split()) > 100  # beyond BERT's word limit


@pytest.mark.parametrize(
    "loader,name,pairs,max_length,check_slow", PARAMS, ids=[f"{p[0]}-{p[1]}" for p in PARAMS]
)
def test_matches_bert_fast_and_slow(loaders, corpus, expected, loader, name, pairs, max_length, check_slow):
    ours = loaders[loader]
    fast, fast_word_ids, slow = expected[name]
    a, b = batches(corpus, pairs)
    encs = ours.encode_batch(a, b, max_length=max_length)
    mismatches = []
    for i, enc in enumerate(encs):
        if (
            enc.ids != fast["input_ids"][i]
            or enc.type_ids != fast["token_type_ids"][i]
            or enc.attention_mask != fast["attention_mask"][i]
            or enc.offsets != [tuple(o) for o in fast["offset_mapping"][i]]
            or enc.word_ids != fast_word_ids[i]
            or (slow is not None and enc.ids != slow[i]["input_ids"])
            or (slow is not None and enc.type_ids != slow[i]["token_type_ids"])
        ):
            mismatches.append(i)
    first = mismatches[0] if mismatches else None
    where = f"first: {a[first]!r} / {b and b[first]!r}" if mismatches else ""
    assert not mismatches, f"{len(mismatches)} of {len(encs)} differ; {where}"
    if max_length:
        assert max(len(e) for e in encs) == max_length  # truncation really happened


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return Tokenizer.load(minilm_dir)


def test_odd_budget_tie(minilm, corpus, hf):
    """With 45 tokens to share, the engine (and transformers' fast tokenizer) gives the extra token to
    the second sequence, the slow tokenizer to the first. We follow the engine; the slow one differs
    only in that one token."""
    slow = hf[1]
    a, b = batches(corpus, True)
    encs = minilm.encode_batch(a, b, max_length=48)
    differ = 0
    for i in range(0, len(a), 7):  # 7, not 10: the corpus cycles through its sources every 10 lines
        s = slow(a[i], b[i], truncation="longest_first", max_length=48, return_token_type_ids=True)
        if s["input_ids"] == encs[i].ids:
            continue
        differ += 1
        ids, k = encs[i].ids, encs[i].type_ids.count(0) - 2  # [CLS] + k tokens + [SEP]
        assert s["token_type_ids"].count(0) == k + 3  # the slow one keeps one more of the first text
        assert s["input_ids"][: k + 1] == ids[: k + 1]
        assert s["input_ids"][k + 3 : -1] == ids[k + 2 : -2]  # ... and one fewer of the second
    assert differ > 0  # the tie is common in this corpus, so the explanation above is exercised


def test_empty_second_sequence(minilm, hf):
    enc = minilm.encode("hello", "")
    assert enc.tokens == ["[CLS]", "hello", "[SEP]", "[SEP]"] and enc.type_ids == [0, 0, 0, 1]
    assert enc.ids == hf[1]("hello", "", return_token_type_ids=True)["input_ids"]


def test_single_encode_equals_batch(minilm, corpus, expected):
    fast = expected["pair-trunc49"][0]
    a, b = batches(corpus, True)
    for i in range(0, len(a), 97):
        assert minilm.encode(a[i], b[i], max_length=49).ids == fast["input_ids"][i]


@pytest.mark.parametrize("loader", ["tokenizer.json", "vocab.txt"])
def test_roles_found_by_spelling(loaders, loader):
    ours = loaders[loader]
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (0, 100, 101, 102, 103)
    assert ours.bos_id is None and ours.eos_id is None
    assert ours.kind == "wordpiece" and ours.vocab_size == len(ours) == 30522
    assert ours.lowercase
