"""Parity with the references: KenLM's estimate (lmplz ARPA files), KenLM's query code (the `kenlm`
module scoring our ARPA export), and NLTK's `KneserNeyInterpolated` (its own variant of KN)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zhixing.ngram import NgramModel, read_arpa
from zhixing.ngram.reference import ReferenceKneserNey
from zhixing.ngram.units import escape

DATA = Path(__file__).parent / "data"


def arpa_table(model: NgramModel) -> dict[tuple[str, ...], tuple[float, float]]:
    """{n-gram (token strings): (log10 P, log10 backoff)}, <s> as a unigram left out (its P is a
    convention: KenLM writes 0, SRILM and we write -99)."""
    V = model.V
    out = {}
    names = [(t,) for t in model.vocab.tokens]
    for n in range(1, model.order + 1):
        keys = model.keys[n - 1]
        if n > 1:
            names = [names[k // V] + (model.vocab.tokens[k % V],) for k in keys]
        logb = model.logb[n - 1] if n < model.order else np.zeros(len(keys))
        for g, p, b in zip(names, model.logp[n - 1], logb):
            if g != ("<s>",):
                out[g] = (float(p), float(b))
    return out


@pytest.mark.parametrize(
    "fixture, unit, order, lines",
    [("shakespeare-1000.words.o3.kenlm.arpa.gz", "word", 3, 1000),
     ("shakespeare-400.chars.o5.kenlm.arpa.gz", "char", 5, 400)],
)
def test_estimate_equals_kenlm_lmplz(shakespeare, fixture, unit, order, lines):
    kenlm_model = read_arpa(DATA / fixture)  # lmplz's own ARPA (escaped words are unescaped on reading)
    ours = NgramModel.train(shakespeare[:lines], order=order, unit=unit)
    theirs, mine = arpa_table(kenlm_model), arpa_table(ours)
    assert set(theirs) == set(mine)  # the same n-grams at every order
    diff = np.array([[abs(theirs[g][0] - mine[g][0]), abs(theirs[g][1] - mine[g][1])] for g in theirs])
    # lmplz computes in float32 and prints ~8 digits
    assert diff.max() < 2e-6, diff.max(axis=0)


def test_kenlm_scores_our_arpa(tmp_path, shakespeare):
    kenlm = pytest.importorskip("kenlm")
    for unit, order in (("word", 3), ("char", 5)):
        model = NgramModel.train(shakespeare[:800], order=order, unit=unit)
        path = model.save(tmp_path / f"m-{unit}.arpa")
        lm = kenlm.Model(str(path))
        assert lm.order == order
        for s in shakespeare[800:900] + ["an entirely unseen qzx sentence"]:
            words = model.vocab.escaped()
            ids = model.encode([s]).ids[1:-1]
            # kenlm maps unknown words to <unk> itself; give it the text's own (escaped) words
            text = " ".join(escape(t) for t in (s.split() if unit == "word" else list(s)))
            assert len(text.split()) == len(ids) and all(words[i] == w or i == 0 for i, w in
                                                         zip(ids, text.split()))
            assert model.score(s) == pytest.approx(lm.score(text, bos=True, eos=True), abs=1e-4)
            assert model.score(s, bos=False, eos=False) == pytest.approx(
                lm.score(text, bos=False, eos=False), abs=1e-4)


def test_nltk_variant_equals_nltk(shakespeare):
    """NLTK 3.x's interpolated KN differs from Chen & Goodman's modified KN; `variant="nltk"` of our
    reference reproduces it: one discount (0.1) for all orders and counts, N-1 pads on both sides,
    unigram = continuation probability without a uniform term, γ counting raw-count types."""
    nltk_lm = pytest.importorskip("nltk.lm")
    from nltk.lm.preprocessing import pad_both_ends, padded_everygram_pipeline

    order = 3
    sents = [s.split() for s in shakespeare[:120]]
    train, vocab = padded_everygram_pipeline(order, sents)
    lm = nltk_lm.KneserNeyInterpolated(order, discount=0.1)
    lm.fit(train, vocab)
    ref = ReferenceKneserNey(sents, order, variant="nltk", discount=0.1)
    checked = 0
    for sent in sents[:10] + [sents[3][::-1]]:  # seen sentences and a reversed one (unseen n-grams)
        padded = list(pad_both_ends(sent, order))
        for i in range(order - 1, len(padded)):
            ctx, w = padded[i - order + 1: i], padded[i]
            assert ref.prob(w, ctx) == pytest.approx(lm.score(w, ctx), rel=1e-12)
            checked += 1
    assert checked > 50
