"""The textbook recursion (reference.py) and the NumPy estimator (kneser_ney.py) give the same
probabilities; the discounts follow Chen & Goodman's eq. 26 (cases computed by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zhixing.ngram import NgramModel, discounts_from_count_of_counts
from zhixing.ngram.kneser_ney import count_of_counts
from zhixing.ngram.reference import ReferenceKneserNey, discounts


def test_discounts_by_hand():
    # n1=10, n2=5, n3=3, n4=2: Y = 10 / (10 + 2*5) = 0.5
    # D1 = 1 - 2*0.5*5/10 = 0.5;  D2 = 2 - 3*0.5*3/5 = 1.1;  D3+ = 3 - 4*0.5*2/3 = 5/3
    d, fell = discounts_from_count_of_counts([0, 10, 5, 3, 2])
    assert not fell
    assert d == pytest.approx((0.5, 1.1, 5 / 3))
    assert discounts({1: 10, 2: 5, 3: 3, 4: 2}) == pytest.approx((0.5, 1.1, 5 / 3))
    # n1=4, n2=2, n3=1, n4=1: Y = 4/8 = 0.5; D1 = 1 - 2*.5*2/4 = .5; D2 = 2 - 3*.5*1/2 = 1.25; D3+ = 3 - 2 = 1
    assert discounts_from_count_of_counts([0, 4, 2, 1, 1])[0] == pytest.approx((0.5, 1.25, 1.0))
    # count-of-counts of adjusted counts: 0 and >= 5 are not counted in n1..n4
    assert count_of_counts(np.array([0, 1, 1, 2, 3, 4, 4, 4, 7])).tolist() == [1, 2, 1, 1, 3]


def test_discount_fallback_when_the_data_cannot_give_them():
    assert discounts_from_count_of_counts([0, 3, 0, 1, 1]) == ((0.5, 1.0, 1.5), True)  # n2 = 0
    assert discounts_from_count_of_counts([0, 1, 5, 1, 9])[1]  # D1 < 0: out of range


def test_probabilities_by_hand():
    # <s> a b </s> twice, <s> b a </s> once; bigram model with D = 0.5 everywhere.
    # unigram continuation counts: a(a) = |{<s>, b}| = 2, a(b) = |{a, <s>}| = 2, a(</s>) = |{b, a}| = 2,
    # a(<unk>) = 0; total 6, |V| = 4 (<unk> a b </s>). u(a) = 1.5/6 = .25, γ(∅) = .5*3/6 = .25,
    # P(a) = .25 + .25/4 = .3125, P(<unk>) = .0625.
    # context a: a(a b) = 2, a(a </s>) = 1 (raw: highest order); γ(a) = .5*2/3 = 1/3;
    # P(b|a) = 1.5/3 + P(b)/3 = .5 + .3125/3;  P(a|a) = P(a)/3 (unseen bigram).
    sents = ["a b", "a b", "b a"]
    m = NgramModel.train(sents, order=2, unit="word", discounts=[(0.5,) * 3] * 2)
    ref = ReferenceKneserNey([s.split() for s in sents], 2, discount=0.5)
    for model_p, ref_p, hand in [
        (m.log10prob("a"), ref.prob("a"), 0.3125),
        (m.log10prob("<unk>"), ref.prob("<unk>"), 0.0625),
        (m.log10prob("zzz"), ref.prob("zzz"), 0.0625),  # unknown word -> <unk>
        (m.log10prob("b", ["a"]), ref.prob("b", ["a"]), 0.5 + 0.3125 / 3),
        (m.log10prob("a", ["a"]), ref.prob("a", ["a"]), 0.3125 / 3),
        (m.log10prob("</s>", ["a"]), ref.prob("</s>", ["a"]), 0.5 / 3 + 0.3125 / 3),
    ]:
        assert 10**model_p == pytest.approx(hand) and ref_p == pytest.approx(hand)
    # every conditional distribution sums to one
    for ctx in ([], [1], [3], [4]):
        assert m.distribution(ctx).sum() == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:.*discounts cannot be estimated")
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("unit", ["word", "char"])
def test_fast_equals_reference(shakespeare, order, unit):
    train, test = shakespeare[:300], shakespeare[900:930]
    split = (lambda s: s.split()) if unit == "word" else list
    fast = NgramModel.train(train, order=order, unit=unit)
    ref = ReferenceKneserNey([split(s) for s in train], order)
    # (300 lines are too few for some high orders: both sides then use KenLM's fallback discounts)
    for n in range(1, order + 1):
        assert fast.meta["discounts"][n - 1] == pytest.approx(ref.D[n], abs=1e-12)
    for s in test:
        assert fast.score(s) == pytest.approx(ref.sentence_log10(split(s)), abs=1e-9)
    # single probabilities, including unseen contexts and unknown words
    toks = split(test[0]) + ["<unk>"]
    for i in range(len(toks)):
        ctx = ["<s>", *toks[:i]][-(order - 1):] if order > 1 else []
        assert 10 ** fast.log10prob(toks[i], ctx) == pytest.approx(ref.prob(toks[i], ctx), rel=1e-9)


@pytest.mark.filterwarnings("ignore:.*discounts cannot be estimated")
def test_high_orders_up_to_ten(shakespeare):
    train = shakespeare[:200]
    for order in (8, 10):
        fast = NgramModel.train(train, order=order, unit="char")
        ref = ReferenceKneserNey([list(s) for s in train], order)
        for s in shakespeare[950:955]:
            assert fast.score(s) == pytest.approx(ref.sentence_log10(list(s)), abs=1e-9)
        assert len(fast.keys) == order and all(len(k) for k in fast.keys)


def test_distribution_sums_to_one(word3, shakespeare):
    ids = word3.encode(shakespeare[:3]).ids.tolist()
    for t in range(1, 12):
        p = word3.distribution(ids[:t])
        assert p.sum() == pytest.approx(1.0, abs=1e-9)
        assert p[1] == 0.0  # <s> is never predicted
    assert math.isclose(word3.distribution([]).sum(), 1.0, abs_tol=1e-9)
