"""Task metrics: entity F1 equal to seqeval on real CoNLL tags, scheme conversions, SQuAD and CMRC EM/F1."""

import os
import random
from pathlib import Path

import pytest

from zhixing.tasks.metrics import (
    accuracy,
    cmrc_em,
    cmrc_f1,
    convert_tags,
    entity_scores,
    get_entities,
    macro_f1,
    mixed_segmentation,
    qa_scores,
    squad_em,
    squad_f1,
    to_iob2,
)

seqeval = pytest.importorskip("seqeval.metrics")
DATA = Path(os.environ.get("ZHIXING_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def corrupt(tags: list[str], rng: random.Random, types=("PER", "LOC", "ORG", "MISC")) -> list[str]:
    """Prediction-like errors: wrong types, dropped/extra tags, stray I- starts, boundary shifts."""
    out = list(tags)
    for i in range(len(out)):
        r = rng.random()
        if r < 0.05:
            out[i] = "O"
        elif r < 0.09:
            out[i] = f"{rng.choice('BI')}-{rng.choice(types)}"
        elif r < 0.11 and i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


@pytest.fixture(scope="module")
def conll_test():
    from zhixing.tasks.data import read_tagged

    path = DATA / "conll2003/test.txt"
    if not path.exists():
        pytest.skip(f"{path} not found (set ZHIXING_DATA)")
    return [s.tags for s in read_tagged(path)]


@pytest.mark.parametrize("scheme", ["iob2", "iob1", "bioes"])
def test_entity_f1_equals_seqeval_on_conll(conll_test, scheme):
    rng = random.Random(0)
    gold = [convert_tags(t, scheme) for t in conll_test]
    pred = [corrupt(t, rng) for t in gold]
    ours = entity_scores(gold, pred)
    assert 0.5 < ours["f1"] < 0.99  # the corruption is real but partial
    assert ours["f1"] == pytest.approx(seqeval.f1_score(gold, pred), abs=1e-12)
    assert ours["precision"] == pytest.approx(seqeval.precision_score(gold, pred), abs=1e-12)
    assert ours["recall"] == pytest.approx(seqeval.recall_score(gold, pred), abs=1e-12)
    per_type = seqeval.classification_report(gold, pred, output_dict=True)
    for t in ("PER", "LOC", "ORG", "MISC"):
        assert ours[f"f1_{t}"] == pytest.approx(per_type[t]["f1-score"], abs=1e-12)


def test_entity_f1_equals_seqeval_on_random_sequences():
    rng = random.Random(1)
    alphabet = ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"]
    gold = [[rng.choice(alphabet) for _ in range(rng.randint(1, 12))] for _ in range(400)]
    pred = [[rng.choice(alphabet) for _ in g] for g in gold]
    ours = entity_scores(gold, pred)
    assert ours["f1"] == pytest.approx(seqeval.f1_score(gold, pred), abs=1e-12)


def test_scheme_conversions_round_trip(conll_test):
    for tags in conll_test[:2000]:
        for scheme in ("iob1", "bioes"):
            converted = convert_tags(tags, scheme)
            assert to_iob2(converted) == tags
            assert get_entities(converted) == get_entities(tags)


def test_scheme_examples():
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert convert_tags(iob2, "iob1") == ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]
    assert convert_tags(iob2, "bioes") == ["B-PER", "E-PER", "S-PER", "O", "S-LOC"]
    assert get_entities(["I-PER", "I-PER", "O"]) == [("PER", 0, 1)]  # IOB1: I- starts a chunk
    with pytest.raises(ValueError, match="unknown tag scheme"):
        convert_tags(iob2, "bilou")


def test_classification_metrics():
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    assert accuracy(gold, pred) == pytest.approx(3 / 5)
    # F1: a = 2·1/(2+1+1) = 0.5, b = 2·2/(4+1+0) = 0.8, c = 0
    assert macro_f1(gold, pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_squad_metrics_official_normalisation():
    assert squad_em("The Eiffel Tower!", "eiffel tower") == 1.0
    assert squad_f1("in the Eiffel Tower", "Eiffel Tower") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    scores = qa_scores({"q1": "Denver Broncos", "q2": "wrong"},
                       {"q1": ["Denver Broncos", "Broncos"], "q2": ["right answer"], "q3": ["x"]})
    assert scores == {"exact_match": pytest.approx(100 / 3), "f1": pytest.approx(100 / 3)}


def test_cmrc_metrics_character_level():
    # "-" is CMRC punctuation: dropped, so "ω-force" becomes one non-Chinese run
    assert mixed_segmentation("光荣和ω-force公司", rm_punc=True) == ["光", "荣", "和", "ωforce", "公", "司"]
    assert mixed_segmentation("2018年CMRC", rm_punc=False) == ["2018", "年", "cmrc"]
    assert cmrc_em("光荣和ω-force", "光荣和ω－force") == 1.0  # both dashes are in the punctuation list
    assert cmrc_em("《战国无双3》", "战国无双3") == 1.0  # book-title marks are punctuation
    # prediction 4 chars, reference 6, longest common substring 4: P = 1, R = 4/6
    assert cmrc_f1("北京大学", "位于北京大学") == pytest.approx(2 * (4 / 6) / (1 + 4 / 6))
    assert qa_scores({"a": "北京"}, {"a": ["上海", "北京"]}, style="cmrc")["exact_match"] == 100.0
