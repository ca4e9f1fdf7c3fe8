"""Evaluation of the knowledge-graph application: the relation model's official score and KGQA accuracy.

KGQA protocol: the test sentences' marked pairs become triples — once with the gold labels, once with the
model's predicted labels (scored by their probability) — each set in its own store; questions are made
from `qa_triples` gold triples (a seeded sample, Other excluded) with the held-out templates
(qa.EVAL_TEMPLATES), one per side of each triple. A question is answered right when the store's top answer
is the gold entity (normalised); "hit" when the gold entity is among the answers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from zhixing.apps.kg.extract import to_triple
from zhixing.apps.kg.qa import KGQA, default_embedder, evaluate, questions_for
from zhixing.apps.kg.store import Triple, TripleStore
from zhixing.tasks import relation
from zhixing.tasks.relation import RelationExample


def predict_labels(
    model: Any,
    examples: Sequence[RelationExample],
    max_seq_len: int,
    batch_size: int = 64,
) -> tuple[list[str], list[float]]:
    """(predicted label, its probability) for each marked pair."""
    probs, _ = relation.probabilities(model, model.tokenizer, examples, max_seq_len, batch_size)
    best = probs.max(-1)
    names = model.config.label_names
    return [names[i] for i in best.indices.tolist()], best.values.tolist()


def kgqa_scores(
    examples: Sequence[RelationExample],
    pred: Sequence[str] | None,
    scores: Sequence[float] | None,
    embedder: Any,
    qa_triples: int = 600,
    seed: int = 0,
    source: str = "",
) -> list[dict[str, Any]]:
    """KGQA on a gold-label store and (given pred and scores) on a predicted-label store (see the module
    docstring)."""
    gold = [to_triple(x, str(x.label), 1.0, source) for x in examples]
    stores = [("gold", gold)]
    if pred is not None and scores is not None:
        stores.append(("predicted", [to_triple(x, p, s, source) for x, p, s in zip(examples, pred, scores)]))
    pool = [t for t in gold if t is not None]
    asked = random.Random(seed).sample(pool, min(qa_triples, len(pool)))
    questions = questions_for([t.to_dict() for t in asked])
    out = []
    for kind, triples in stores:
        with TripleStore(":memory:") as store:
            store.add_triples(t for t in triples if isinstance(t, Triple))
            res = evaluate(KGQA(store, embedder), questions)
            out.append({"store": kind, "store_triples": store.stats()["triples"], **res})
    return out


def evaluate_run(
    run: str,
    testfile: str,
    qa_triples: int = 600,
    seed: int = 0,
    embedder: str | None = None,
) -> dict[str, Any]:
    """The official SemEval-2010 Task 8 score of a relation run on a labelled file, and KGQA accuracy."""
    from zhixing.tasks.finetune import load_run

    model, cfg = load_run(run)
    max_len = cfg.max_seq_len if cfg is not None else 128
    examples = relation.read(testfile)
    pred, scores = predict_labels(model, examples, max_len)
    official = relation.semeval_scores([str(x.label) for x in examples], pred)
    return {
        "run": str(run),
        "test": str(testfile),
        "examples": len(examples),
        "official_macro_f1": official["semeval_f1"],
        "macro_p": official["semeval_p"],
        "macro_r": official["semeval_r"],
        "kgqa": kgqa_scores(examples, pred, scores, default_embedder(embedder), qa_triples, seed, testfile),
    }


__all__ = ["evaluate_run", "kgqa_scores", "predict_labels"]
