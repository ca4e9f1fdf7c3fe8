"""The "words" tokenizer kind: Chinese characters plus frequent jieba words, a unigram model over them."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from zhixing.tokenizers import Tokenizer, TokenizerError
from zhixing.tokenizers.chinese import word_vocabulary


@pytest.fixture(scope="module")
def words_tok(peoples_daily_lines) -> Tokenizer:
    lines = peoples_daily_lines[:3000]
    return Tokenizer.train(iter(lines), kind="words", vocab_size=8000, show_progress=False)


def boundaries(words: list[str]) -> set[int]:
    out, pos = set(), 0
    for w in words:
        pos += len(w)
        out.add(pos)
    return out


def test_vocabulary_is_characters_plus_frequent_words(words_tok, peoples_daily_lines):
    tok = words_tok
    assert tok.kind == "words" and tok.vocab_size == 8000
    vocab = tok.get_vocab()
    assert all(c in vocab for c in "".join(peoples_daily_lines[:3000]).replace(" ", "").lower())
    assert {"中国", "经济", "发展", "人民", "我们"} <= set(vocab)
    enc = tok.encode("中国经济发展很快。")
    assert enc.tokens == ["[CLS]", "中国", "经济", "发展", "很快", "。", "[SEP]"]
    assert [("中国经济发展很快。")[a:b] for a, b in enc.offsets[1:-1]] == enc.tokens[1:-1]
    pair = tok.encode("中国经济", "发展")
    assert pair.tokens == ["[CLS]", "中国", "经济", "[SEP]", "发展", "[SEP]"] and pair.type_ids[-1] == 1


def test_segmentation_agrees_with_peoples_daily(words_tok, peoples_daily_words):
    """Held-out lines (never trained on): the token boundaries against the corpus's own segmentation."""
    hits = found = gold = 0
    for line in peoples_daily_words[5000:5300]:
        text = line.replace(" ", "")
        truth = boundaries([w for w in line.split(" ") if w])
        enc = words_tok.encode(text, add_special_tokens=False)
        ours = {b for _, b in enc.offsets}
        hits, found, gold = hits + len(truth & ours), found + len(ours), gold + len(truth)
    precision, recall = hits / found, hits / gold
    f1 = 2 * precision * recall / (precision + recall)
    # measured: F1 0.888 with 21,866 tokens for 29,975 characters; characters alone score 0.768 and
    # jieba itself (its full dictionary) 0.931
    assert f1 > 0.85, (precision, recall)
    assert found < 0.75 * sum(len(w.replace(" ", "")) for w in peoples_daily_words[5000:5300])


def test_presplit_characters_stay_one_token_each(words_tok):
    """NER reads tagged characters joined by spaces: each must stay one labelled token."""
    text = " ".join("中国人民银行")
    enc = words_tok.encode(text, add_special_tokens=False)
    assert enc.tokens == list("中国人民银行")
    assert [text[a:b] for a, b in enc.offsets] == list("中国人民银行")


def test_unknown_characters_and_decode(words_tok):
    enc = words_tok.encode("中国𪚥经济")
    assert enc.ids[2] == words_tok.unk_id and enc.tokens[1] == "中国"
    assert words_tok.decode(words_tok.encode("中国经济发展").ids) == "中国 经济 发展"


def test_save_load_and_transformers_parity(words_tok, tmp_path):
    words_tok.save(tmp_path / "words")
    back = Tokenizer.load(tmp_path / "words")
    text = "今年中国经济发展很快，Hello 2008年。"
    assert back.kind == "words" and back.encode(text).ids == words_tok.encode(text).ids
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "words"))
    assert hf(text)["input_ids"] == words_tok.encode(text).ids
    assert hf.convert_ids_to_tokens(hf(text)["input_ids"])[:3] == ["[CLS]", "今年", "中国"]


def test_word_vocabulary_hand_computed():
    words = Counter({"酒店": 3, "好": 2, "的": 1, "服务员": 1})
    chars = Counter("酒店酒店酒店好好的服务员")
    pieces = word_vocabulary(words, chars, room=9, min_frequency=2)
    names = [p for p, _ in pieces]
    # every character (most frequent first), then words seen >= 2 times: 服务员 (once) is left out
    assert names == ["店", "酒", "好", "务", "员", "服", "的", "酒店"]
    counts = {"店": 0, "酒": 0, "好": 2, "务": 1, "员": 1, "服": 1, "的": 1, "酒店": 3}  # 服务员 -> its chars
    total = sum(counts.values()) + 0.5 * len(counts)
    for p, score in pieces:
        assert score == pytest.approx(math.log((counts[p] + 0.5) / total))
    assert [p for p, _ in word_vocabulary(words, chars, room=7, min_frequency=1)] == names[:7]
    assert len(word_vocabulary(words, chars, room=9, min_frequency=1, limit_alphabet=2)) == 2 + 2


def test_words_errors(peoples_daily_lines):
    with pytest.raises(TokenizerError, match="smaller than the base alphabet"):
        Tokenizer.train(iter(peoples_daily_lines[:200]), kind="words", vocab_size=100, show_progress=False)
    with pytest.raises(TokenizerError, match="empty"):
        Tokenizer.train(iter(["", "  "]), kind="words", vocab_size=100, show_progress=False)
    with pytest.warns(UserWarning, match="no further multi-character word"):
        Tokenizer.train(iter(["今天天气很好"]), kind="words", vocab_size=100, show_progress=False)


def test_word_ids_are_tokens_not_clauses(peoples_daily_lines, tmp_path):
    """The pre-tokenizer leaves a Chinese clause whole; whole-word masking must not mask whole clauses."""
    lines = peoples_daily_lines[:3000] + ["hello world"]  # Latin letters, but hello is no word (seen once)
    jieba_tok = Tokenizer.train(iter(lines), kind="words", vocab_size=8000, chinese_words="jieba",
                                show_progress=False)
    jieba_tok.save(tmp_path / "w")
    tok = Tokenizer.load(tmp_path / "w")
    tok.chinese_words = None
    text = "中国经济发展很快 hello，好"
    enc = tok.encode(text)
    assert enc.tokens[1:5] == ["中国", "经济", "发展", "很快"]
    assert enc.word_ids[1:5] == [0, 1, 2, 3]  # one word per CJK token
    latin = [w for w, (a, b) in zip(enc.word_ids, enc.offsets) if 9 <= a < 14]
    assert len(latin) > 1 and set(latin) == {4}  # hello, spelled in pieces, stays one word
    assert enc.word_ids[-3:] == [5, 6, None]  # ， and 好
    assert [e.word_ids for e in tok.encode_batch([text])] == [enc.word_ids]
    both = jieba_tok.encode("我们在北京大学读书")
    groups: dict[int, str] = {}
    for w, t in zip(both.word_ids, both.tokens):
        if w is not None:
            groups[w] = groups.get(w, "") + t
    assert list(groups.values()) == ["我们", "在", "北京大学", "读书"]  # jieba's words, whatever the tokens
