"""Bad input fails with one line that names the key or the file and line."""

from __future__ import annotations

import gzip

import pytest

from zhixing.errors import ConfigError, CorpusError, DataError
from zhixing.ngram import NgramModel, read_arpa


@pytest.mark.parametrize("order", [0, -1, 11, 2.5, True])
def test_bad_order(order):
    with pytest.raises(ConfigError, match=r"order=.*from 1 to 10"):
        NgramModel.train(["a b c"], order=order, unit="word")


def test_empty_corpus(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(CorpusError, match="empty"):
        NgramModel.train(str(empty), order=3)
    with pytest.raises(CorpusError, match="empty"):
        NgramModel.train([], order=2, unit="word")


def test_bad_unit_and_tokenizer():
    with pytest.raises(ConfigError, match="unit='bytes'"):
        NgramModel.train(["abc"], unit="bytes")
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        NgramModel.train(["abc"], unit="tokenizer")


GOOD = """\\data\\
ngram 1=4
ngram 2=2

\\1-grams:
-1.0\t<unk>
-99\t<s>\t-0.3
-0.5\t</s>
-0.4\ta\t-0.2

\\2-grams:
-0.2\t<s> a
-0.1\ta </s>

\\end\\
"""


def write(tmp_path, text, name="m.arpa"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_good_arpa_scores(tmp_path):
    m = read_arpa(write(tmp_path, GOOD))
    assert m.score("a") == pytest.approx(-0.2 + -0.1)
    assert m.score("a a") == pytest.approx(-0.2 + (-0.2 + -0.4) + -0.1)  # backoff b(a) * P(a)
    g = tmp_path / "m.arpa.gz"
    g.write_bytes(gzip.compress(GOOD.encode()))
    assert NgramModel.load(g).score("a") == pytest.approx(-0.3)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t[: t.index("\\2-grams:") + 20], r"line 12: the file ends after 1 of the 2 2-grams"),
        (lambda t: t.replace("\\end\\\n", ""), r"line 14: the file ends without \\end\\: truncated"),
        (lambda t: t.replace("-0.4\ta\t-0.2", "-0.4"), r"line 9: expected a 1-gram line"),
        (lambda t: t.replace("-0.1\ta </s>", "x\ta </s>"), r"line 13: not a number"),
        (lambda t: t.replace("ngram 2=2", "ngram 2=two"), r"line 3: expected 'ngram N=COUNT'"),
        (lambda t: t.replace("-0.1\ta </s>", "-0.1\tb </s>"), r"line 13: word 'b' of a 2-gram is not a"),
        (lambda t: t.replace("-0.1\ta </s>", "-0.1\t<s> a"), r"line 13: the 2-gram '<s> a' appears twice"),
        (lambda t: "hello\n", r"line 1: the file ends before \\data\\"),
        (lambda t: t.replace("\\2-grams:", "\\3-grams:"), r"line 11: expected '\\2-grams:'"),
    ],
)
def test_malformed_arpa_names_file_and_line(tmp_path, mutate, message):
    path = write(tmp_path, mutate(GOOD))
    with pytest.raises(DataError, match=message) as e:
        NgramModel.load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_damaged_npz(tmp_path, word3):
    path = word3.save(tmp_path / "m.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"m.npz: not a zhixing n-gram model"):
        NgramModel.load(path)
    with pytest.raises(ConfigError, match=r"\.npz or \.arpa"):
        word3.save(tmp_path / "m.bin")
    with pytest.raises(FileNotFoundError, match="no such model file"):
        NgramModel.load(tmp_path / "missing.npz")
