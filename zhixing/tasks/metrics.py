"""Task metrics, written out so they can be read next to their definitions.

Classification: accuracy and macro-F1 (the unweighted mean of per-class F1 over the classes present in
the gold labels or the predictions, as scikit-learn's `f1_score(average="macro")`).

NER, entity level, the way `seqeval` (and CoNLL's conlleval) count: an entity is a (type, start, end)
chunk; P = |pred ∩ gold| / |pred|, R = |pred ∩ gold| / |gold|, F1 = 2PR / (P + R), micro-averaged over
all entities. Chunks are read leniently, as seqeval's default mode does: an I- tag after O or after
another type starts a chunk (so IOB1, IOB2 and BIOES sequences are all decoded by one function).

QA: SQuAD v1.1's official EM/F1 (lower-case, strip punctuation and the articles a/an/the, whitespace
tokens; F1 over the bag of tokens), and CMRC 2018's official character-level ones (Chinese characters
are single segments, non-Chinese runs are word-tokenized; F1 from the longest common subsequence). Both
take the maximum over the reference answers and report percentages.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

# -- classification -------------------------------------------------------------------------------------


def accuracy(gold: Sequence, pred: Sequence) -> float:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    return sum(g == p for g, p in zip(gold, pred)) / max(len(gold), 1)


def macro_f1(gold: Sequence, pred: Sequence) -> float:
    """Mean over classes c of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)."""
    classes = sorted(set(gold) | set(pred), key=str)
    scores = []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / max(len(scores), 1)


def classification_metrics(gold: Sequence, pred: Sequence) -> dict[str, float]:
    return {"accuracy": accuracy(gold, pred), "macro_f1": macro_f1(gold, pred)}


# -- NER: tag schemes and entities ----------------------------------------------------------------------

SCHEMES = ("iob1", "iob2", "bioes")


def _split(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '')."""
    if tag == "O" or len(tag) < 2:
        return "O", ""
    return tag[0], tag[2:]


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag == "B" and tag in ("B", "S", "O"):
        return True
    if prev_tag == "I" and tag in ("B", "S", "O"):
        return True
    return prev_tag != "O" and prev_type != type_


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if tag in ("E", "I") and prev_tag in ("E", "S", "O"):
        return True
    return tag != "O" and prev_type != type_


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) chunks (inclusive token indices) of one sentence, read like seqeval."""
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, t in enumerate([*tags, "O"]):
        tag, type_ = _split(t)
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def to_iob2(tags: Sequence[str]) -> list[str]:
    """Any of IOB1 / IOB2 / BIOES -> IOB2 (every entity starts with B-), through its entities."""
    out = ["O"] * len(tags)
    for type_, s, e in get_entities(tags):
        out[s] = f"B-{type_}"
        for i in range(s + 1, e + 1):
            out[i] = f"I-{type_}"
    return out


def convert_tags(tags: Sequence[str], scheme: str) -> list[str]:
    """Rewrite a tag sequence in `scheme`: iob1 (B- only between same-type neighbours), iob2, bioes."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    out = ["O"] * len(tags)
    prev_end, prev_type = -2, ""
    for type_, s, e in get_entities(tags):
        if scheme == "bioes" and s == e:
            out[s] = f"S-{type_}"
            continue
        if scheme == "iob1":
            # IOB1 marks B- only where an entity directly follows one of the same type.
            first = "B" if (prev_end == s - 1 and prev_type == type_) else "I"
        else:
            first = "B"
        out[s] = f"{first}-{type_}"
        for i in range(s + 1, e + 1):
            out[i] = f"I-{type_}"
        if scheme == "bioes":
            out[e] = f"E-{type_}"
        prev_end, prev_type = e, type_
    return out


def entity_scores(gold: Iterable[Sequence[str]], pred: Iterable[Sequence[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 over entities of many sentences, and per-type F1 (`f1_PER`, ...)."""
    true_set, pred_set = set(), set()
    for n, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {n}: {len(g)} gold tags but {len(p)} predicted")
        true_set.update((n, *c) for c in get_entities(g))
        pred_set.update((n, *c) for c in get_entities(p))
    out = _prf(len(true_set & pred_set), len(pred_set), len(true_set))
    for type_ in sorted({c[1] for c in true_set | pred_set}):
        t = {c for c in true_set if c[1] == type_}
        q = {c for c in pred_set if c[1] == type_}
        out[f"f1_{type_}"] = _prf(len(t & q), len(q), len(t))["f1"]
    return out


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


# -- QA: SQuAD v1.1 -------------------------------------------------------------------------------------


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 evaluate-v1.1.py: lower, drop punctuation and articles, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def overlap_f1(same: int, n_pred: int, n_gold: int) -> float:
    """F1 of a prediction sharing `same` units with the answer: 2PR/(P+R), P=same/n_pred, R=same/n_gold."""
    if same == 0:
        return 0.0
    p, r = same / n_pred, same / n_gold
    return 2 * p * r / (p + r)


def squad_f1(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    return overlap_f1(sum((Counter(pred) & Counter(gold)).values()), len(pred), len(gold))


def squad_em(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


# -- QA: CMRC 2018 --------------------------------------------------------------------------------------

# The official cmrc2018_evaluate.py's punctuation list.
CMRC_PUNCT = set("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』") | {"……"}
_CJK = re.compile(r"[\u4e00-\u9fa5]")
_WORD = re.compile(r"\w+|[^\w\s]")  # stands in for nltk.word_tokenize on the non-Chinese runs


def mixed_segmentation(text: str, rm_punc: bool = False) -> list[str]:
    """Chinese characters (and CMRC punctuation) one segment each; other runs split into words."""
    segs, run = [], ""
    for ch in str(text).lower().strip():
        if rm_punc and ch in CMRC_PUNCT:
            continue
        if _CJK.match(ch) or ch in CMRC_PUNCT:
            if run:
                segs.extend(_WORD.findall(run))
                run = ""
            segs.append(ch)
        else:
            run += ch
    if run:
        segs.extend(_WORD.findall(run))
    return segs


def remove_punctuation(text: str) -> str:
    return "".join(ch for ch in str(text).lower().strip() if ch not in CMRC_PUNCT)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common *substring* (contiguous), as the official script's find_lcs."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def cmrc_f1(prediction: str, truth: str) -> float:
    gold, pred = mixed_segmentation(truth, rm_punc=True), mixed_segmentation(prediction, rm_punc=True)
    return overlap_f1(lcs_length(gold, pred), len(pred), len(gold))


def cmrc_em(prediction: str, truth: str) -> float:
    return float(remove_punctuation(prediction) == remove_punctuation(truth))


def qa_scores(predictions: dict[str, str], references: dict[str, list[str]], style: str = "squad",
              ) -> dict[str, float]:
    """EM and F1 in percent, max over each question's references; a question without a prediction
    scores 0 (as the official scripts)."""
    em_fn, f1_fn = (squad_em, squad_f1) if style == "squad" else (cmrc_em, cmrc_f1)
    if style not in ("squad", "cmrc"):
        raise ValueError(f"unknown QA metric style {style!r}; use squad or cmrc")
    em = f1 = 0.0
    for qid, truths in references.items():
        pred = predictions.get(qid, "")
        truths = truths or [""]
        em += max(em_fn(pred, t) for t in truths)
        f1 += max(f1_fn(pred, t) for t in truths)
    n = max(len(references), 1)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}
