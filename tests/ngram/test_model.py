"""NgramModel behaviour: save/load (npz never unpickles, ARPA), scoring, perplexity, sampling, units."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zhixing.ngram import NgramModel, read_arpa
from zhixing.ngram.units import escape, unescape


def same_model(a: NgramModel, b: NgramModel, atol: float = 0.0) -> None:
    assert a.order == b.order and a.vocab.tokens == b.vocab.tokens
    for n in range(a.order):
        assert np.array_equal(a.keys[n], b.keys[n])
        np.testing.assert_allclose(a.logp[n], b.logp[n], atol=atol, rtol=0)
    for n in range(a.order - 1):
        np.testing.assert_allclose(a.logb[n], b.logb[n], atol=atol, rtol=0)


def test_save_load_npz_and_arpa(tmp_path, shakespeare):
    m = NgramModel.train(shakespeare[:500], order=4, unit="char")
    same_model(m, NgramModel.load(m.save(tmp_path / "m.npz")))  # exact
    back = NgramModel.load(m.save(tmp_path / "m.arpa"))
    same_model(m, back, atol=1e-6)  # 8 significant digits in the text
    assert back.units.kind == "char" and back.meta["discounts"] == m.meta["discounts"]
    text = shakespeare[600]
    assert back.score(text) == pytest.approx(m.score(text), abs=1e-5)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:  # plain arrays, no objects
        assert all(z[k].dtype != object for k in z.files)


def test_escaping_round_trips_whitespace_and_markers():
    for tok in [" ", "\n", "\t", "\u3000", "a\\b", "\0", "<s>", "</s>", "<unk>", "中", "\U0001f600 x"]:
        e = escape(tok)
        assert not any(c.isspace() for c in e) and unescape(e) == tok
    assert escape("<s>") != "<s>"


@pytest.mark.filterwarnings("ignore:.*discounts cannot be estimated")
def test_char_model_over_whitespace(tmp_path):
    docs = ["a b\tc\nd  e", "知行 合一\u3000。"] * 30
    m = NgramModel.train(docs, order=3, unit="char")
    assert {" ", "\t", "\n", "\u3000"} <= set(m.vocab.tokens)
    back = NgramModel.load(m.save(tmp_path / "ws.arpa"))
    assert back.vocab.tokens == m.vocab.tokens
    assert back.score(docs[1]) == pytest.approx(m.score(docs[1]), abs=1e-5)


def test_perplexity_counts_and_unknowns(word3, shakespeare):
    res = word3.perplexity(shakespeare[900:920])
    words = sum(len(s.split()) for s in shakespeare[900:920])
    assert res["sentences"] == 20 and res["tokens"] == words + 20 and res["tokens_no_eos"] == words
    assert res["perplexity"] == pytest.approx(math.exp(res["nats_per_token"]))
    assert res["log10_prob"] == pytest.approx(sum(word3.score(s) for s in shakespeare[900:920]))
    unk = word3.perplexity(["qqq zzz First"])
    assert unk["oov"] == 2 and math.isfinite(unk["perplexity"])
    with pytest.raises(ValueError, match="empty"):
        word3.perplexity([])


def test_sampling_is_seeded(word3):
    a = [word3.sample(seed=3, max_tokens=30) for _ in range(2)]
    assert a[0] == a[1] and a[0]
    assert word3.sample(seed=4, max_tokens=30) != a[0] or word3.sample(seed=5, max_tokens=30) != a[0]
    assert word3.sample(seed=0, prefix="First Citizen:", max_tokens=5).startswith("First Citizen:")
    assert "<unk>" not in word3.sample(seed=1, max_tokens=50)


def test_order_one_and_highest_order_contexts(shakespeare):
    uni = NgramModel.train(shakespeare[:200], order=1, unit="word")
    p = uni.distribution([])
    assert p.sum() == pytest.approx(1.0) and p[1] == 0
    # context beyond the order is ignored
    m = NgramModel.train(shakespeare[:200], order=2, unit="word")
    assert m.log10prob("Citizen:", ["<s>", "x", "First"]) == m.log10prob("Citizen:", ["First"])


def test_tokenizer_unit_and_shards(tmp_path, shakespeare):
    from zhixing.data import prepare_shards
    from zhixing.tokenizers import Tokenizer

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(shakespeare[:400]) + "\n", encoding="utf-8")
    tok = Tokenizer.train(str(corpus), kind="byte_bpe", vocab_size=400, show_progress=False)
    tok.save(tmp_path / "tok")
    m = NgramModel.train(str(corpus), order=3, unit="tokenizer", tokenizer=str(tmp_path / "tok"))
    back = NgramModel.load(m.save(tmp_path / "t.arpa"))
    assert back.units.kind == "tokenizer" and back.score(shakespeare[500]) == pytest.approx(
        m.score(shakespeare[500]), abs=1e-5)
    # the same ids from token shards give the same model
    shards = prepare_shards(str(corpus), str(tmp_path / "tok"), tmp_path / "shards", val_fraction=0.0,
                            workers=1, progress=False)  # fmt: skip
    s = NgramModel.train_shards(shards, order=3)
    assert s.meta["tokens"] == m.meta["tokens"]
    np.testing.assert_allclose(sorted(s.logp[2]), sorted(m.logp[2]))


def test_reads_lmplz_arpa_and_scores(tmp_path):
    arpa = read_arpa(__import__("pathlib").Path(__file__).parent / "data" /
                     "shakespeare-1000.words.o3.kenlm.arpa.gz")  # fmt: skip
    assert arpa.order == 3 and arpa.units.kind == "word"  # no zhixing header: words
    assert arpa.score("First Citizen:") < 0


def test_library_needs_neither_torch_nor_the_cli():
    import subprocess
    import sys

    code = ("import sys; from zhixing.ngram import NgramModel; "
            "m = NgramModel.train(['a b c', 'a c'], order=2, unit='word', discounts=[(0.5, 1, 1.5)] * 2); "
            "m.perplexity(['a b']); print('torch' in sys.modules, 'zhixing.cli' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
