"""What can be measured honestly: aspect-sentiment accuracy against a hand-annotated sample, explanation
faithfulness, and coverage.

The annotated sample is JSONL, one review a line: {"review_id", "item", "text", "mentions": [{"aspect":
"屏幕", "polarity": "positive" | "negative"}]} — every aspect (written as in the text) that the review
judges, with the judgement's polarity (tests/apps/data/recommend_aspects.jsonl; how it was made:
docs/applications.md, "Recommendation explanations").

Two scores: *end to end* (the extractor finds its mentions, a predicted mention matches a gold one of the
same review when one term contains the other: aspect precision / recall / F1, polarity accuracy on the
matched ones, and F1 of (aspect, polarity) pairs); *polarity given the gold aspect* (the clause holding
each gold aspect, classified: the sentiment model alone), next to two baselines that need no model of
clauses: the review's own label for every aspect in it, and the majority polarity of the sample; and the
same two on the mentions of *mixed* reviews (annotated with both polarities), where one label cannot fit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zhixing.apps.recommend.aspects import find_mentions
from zhixing.apps.recommend.reviews import Review, clauses
from zhixing.apps.recommend.sentiment import ClauseSentiment, polarity
from zhixing.errors import DataError

POLARITIES = ("positive", "negative")


def read_annotations(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The annotated sample; errors name the line and the field."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not JSON ({e.msg})") from None
        for key in ("review_id", "text", "mentions"):
            if key not in row:
                raise DataError(
                    f"{path}:{n}: missing field {key!r} (fields: review_id, item, text, mentions)"
                )
        for m in row["mentions"]:
            if m.get("polarity") not in POLARITIES or not m.get("aspect"):
                raise DataError(f"{path}:{n}: mention {m}: expected an aspect and a polarity in {POLARITIES}")
            if m["aspect"] not in row["text"]:
                raise DataError(f"{path}:{n}: aspect {m['aspect']!r} does not occur in the review text")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no annotated reviews")
    return rows


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def evaluate_aspects(
    rows: Sequence[dict[str, Any]],
    terms: Sequence[str],
    sentiment: ClauseSentiment,
) -> dict[str, Any]:
    """Scores of the extractor (lexicon `terms` + `sentiment`) on the annotated `rows` (module docstring)."""
    gold_n = pred_n = matched = polar_ok = pair_ok = 0
    oracle_ok = oracle_n = label_ok = 0
    mixed = [0, 0, 0]  # mentions in reviews judging things both ways: count, model right, review label right
    in_lexicon = 0
    confusion = {g: {p: 0 for p in POLARITIES} for g in POLARITIES}
    terms = sorted(terms, key=lambda t: (-len(t), t))
    term_set = set(terms)
    found = [find_mentions(Review(r["review_id"], r.get("item", ""), r["text"], None), terms) for r in rows]

    def gold_clause(row: dict[str, Any], aspect: str) -> str:
        return next((c for _, c in clauses(row["text"]) if aspect in c), row["text"])

    # every clause the model reads, scored in one batch
    texts = [m.clause for ms in found for m in ms] + [
        gold_clause(r, g["aspect"]) for r in rows for g in r["mentions"]
    ]
    scored = dict(zip(texts, sentiment(texts))) if texts else {}
    for row, preds in zip(rows, found):
        gold = list(row["mentions"])
        probs = [scored[m.clause] for m in preds]
        gold_n += len(gold)
        pred_n += len(preds)
        free = list(range(len(gold)))
        for m, p in zip(preds, probs):
            hit = next(
                (i for i in free if gold[i]["aspect"] in m.aspect or m.aspect in gold[i]["aspect"]), None
            )
            if hit is None:
                continue
            free.remove(hit)
            matched += 1
            ok = polarity(p) == gold[hit]["polarity"]
            polar_ok += ok
            pair_ok += ok
        # the sentiment model alone: the clause holding each gold aspect
        for g in gold:
            p = scored[gold_clause(row, g["aspect"])]
            in_lexicon += any(g["aspect"] in t or t in g["aspect"] for t in term_set)
            oracle_n += 1
            oracle_ok += polarity(p) == g["polarity"]
            label_ok += row.get("label") == g["polarity"]
            confusion[g["polarity"]][polarity(p)] += 1
            if len({m["polarity"] for m in gold}) > 1:
                mixed[0] += 1
                mixed[1] += polarity(p) == g["polarity"]
                mixed[2] += row.get("label") == g["polarity"]
    precision, recall = (matched / pred_n if pred_n else 0.0), (matched / gold_n if gold_n else 0.0)
    pair_p, pair_r = (pair_ok / pred_n if pred_n else 0.0), (pair_ok / gold_n if gold_n else 0.0)
    return {
        "reviews": len(rows),
        "gold_mentions": gold_n,
        "predicted_mentions": pred_n,
        "matched": matched,
        "aspect_precision": precision,
        "aspect_recall": recall,
        "aspect_f1": _f1(precision, recall),
        "polarity_accuracy_matched": polar_ok / matched if matched else None,
        "pair_precision": pair_p,
        "pair_recall": pair_r,
        "pair_f1": _f1(pair_p, pair_r),
        "gold_aspects_in_lexicon": in_lexicon / gold_n if gold_n else None,
        "polarity_accuracy_gold_aspects": oracle_ok / oracle_n if oracle_n else None,
        "confusion_gold_aspects": confusion,
        "baseline_review_label": label_ok / oracle_n if oracle_n else None,
        "baseline_majority": max(sum(confusion[g].values()) for g in POLARITIES) / oracle_n
        if oracle_n
        else None,
        "mixed_reviews": {"mentions": mixed[0], "model_right": mixed[1], "review_label_right": mixed[2]},
    }


def coverage(store: Any, top: int = 3) -> dict[str, Any]:
    """How much the store can say: reviews with at least one aspect mention (per item and overall), and for
    single-aspect queries (each aspect preferred alone) the share of the top-`top` items whose explanation
    cites that aspect."""
    per_item = {item: m / n for item, (n, m) in store.items.items()}
    reviews = sum(n for n, _ in store.items.values())
    cited = asked = 0
    for aspect in store.aspects:
        for r in store.rank([aspect], top=top):
            asked += 1
            cited += any(c.aspect == aspect for c in r.citations)
    return {
        "review_coverage": sum(m for _, m in store.items.values()) / reviews,
        "per_item": per_item,
        "single_aspect_queries": len(store.aspects),
        "top": top,
        "top_items_citing_the_aspect": cited / asked if asked else None,
    }
