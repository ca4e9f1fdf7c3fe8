"""Extraction over raw text: sentences -> candidate entities -> pairs -> the relation model -> triples.

Entities. The relation model is trained on SemEval-2010 Task 8, whose arguments are *nominals* — common
nouns and noun compounds ("configuration", "antenna elements", "cradle") — not the names a CoNLL-2003
NER model finds (PER / ORG / LOC / MISC would miss almost all of them). So candidates are noun-chunk
heads: maximal runs of content words (function words, pronouns, auxiliaries, words in -ed and punctuation
break a run), each run giving its last word, the head of an English noun compound. No tagger is involved (no
POS model ships offline); verbs and adjectives that slip through become pairs the relation model labels
Other, which is dropped. Candidate recall against SemEval's marked nominals is measured in
benchmarks/kg_relation.py.

Pairs. Every two candidates of a sentence, in text order (the first is e1, as in SemEval), at most
`max_candidates` per sentence. Relations. A directed label "Cause-Effect(e2,e1)" becomes the triple
(e2, Cause-Effect, e1): the store keeps the relation type with its first argument as head.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhixing.apps.kg.store import Triple, TripleStore
from zhixing.errors import ConfigError, DataError
from zhixing.tasks.relation import OTHER, RelationExample, relation_type

# Words that end a noun chunk: determiners, pronouns, prepositions, conjunctions, auxiliaries, negation,
# wh-words and a few frequent adverbs. (A closed-class list: these are the words a noun chunk cannot end in.)
FUNCTION_WORDS = frozenset(
    """
a an the this that these those some any each every no all both either neither such what which who whom whose
i you he she it we they me him her us them my your his its our their mine yours hers ours theirs itself
himself herself themselves myself yourself ourselves one ones there here
of in on at by for with from to into onto upon over under about above below between among through during
before after since until against within without across along around behind beyond near toward towards via
per than as like off out up down
and or but nor so yet if because although though while whereas unless whether then also too very not
is are was were be been being am do does did done doing have has had having will would shall should can
could may might must ought
when where why how just only even still already again ever never always often sometimes more most less
least much many few other another same own
""".split()
)

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\S")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text` (splits after . ! ? before a capital)."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:  # trim whitespace inside each span
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def nominals(sentence: str) -> list[tuple[int, int]]:
    """Character spans of the candidate nominals of a sentence: the last word of each run of content
    words. Words in -ed (past tenses, participles) end a run and are no candidates; a one-word run in -ly
    (an adverb) is skipped."""
    out: list[tuple[int, int]] = []
    run: list[tuple[int, int, str]] = []

    def close() -> None:
        if run:
            s, e, w = run[-1]
            if not (len(run) == 1 and w.lower().endswith("ly")) and len(w) > 1:
                out.append((s, e))
            run.clear()

    for m in _WORD.finditer(sentence):
        w = m.group()
        low = w.lower()
        if not w[0].isalpha() or low in FUNCTION_WORDS:
            close()
        elif len(low) > 4 and low.endswith("ed"):  # a past tense / participle ends the chunk before it
            close()
        else:
            run.append((m.start(), m.end(), w))
    close()
    return out


@dataclass
class Extracted:
    """What one extraction produced: the triples kept, and the counts behind them."""

    triples: list[Triple]
    sentences: int
    candidates: int
    pairs: int


class Extractor:
    """A fine-tuned relation run applied to raw text.

    ex = Extractor("runs/semeval")
    ex.extract("The burst has been caused by water hammer pressure.")  # Extracted(triples=[...])
    """

    def __init__(
        self,
        run: str | Path,
        device: str = "cpu",
        min_score: float = 0.5,
        max_candidates: int = 12,
        batch_size: int = 64,
    ):
        from zhixing.tasks.pipeline import pipeline

        if not 0.0 <= min_score <= 1.0:
            raise ConfigError(f"min_score={min_score}: expected a probability in [0, 1]")
        if max_candidates < 2:
            raise ConfigError(f"max_candidates={max_candidates}: a pair needs at least 2")
        self.pipe = pipeline("relation", run, device=device, eval_batch_size=batch_size)
        self.min_score, self.max_candidates = min_score, max_candidates

    def classify(self, examples: Sequence[RelationExample]) -> list[dict[str, Any]]:
        """The relation model's predictions for pairs: {"label", "score", "scores", "head", "tail"}."""
        return self.pipe(list(examples)) if examples else []

    def extract(self, text: str, source: str = "") -> Extracted:
        """Triples of the text (relations other than Other with score >= min_score), one per pair."""
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{source or 'text'}: nothing to extract from (empty text)")
        examples: list[RelationExample] = []
        n_sent = n_cand = 0
        for s, e in split_sentences(text):
            sentence = text[s:e]
            n_sent += 1
            cands = nominals(sentence)[: self.max_candidates]
            n_cand += len(cands)
            for i, a in enumerate(cands):
                for b in cands[i + 1 :]:
                    examples.append(RelationExample(sentence, a, b, None, f"{source or 'text'}:{s}"))
        triples = []
        for x, p in zip(examples, self.classify(examples)):
            t = to_triple(x, p["label"], p["score"], source)
            if t is not None and t.score >= self.min_score:
                triples.append(t)
        return Extracted(dedupe(triples), n_sent, n_cand, len(examples))

    def extract_into(self, store: TripleStore, text: str, source: str = "") -> dict[str, Any]:
        """Extract and add to `store` (one transaction); the counts and the triples added."""
        got = self.extract(text, source)
        new = store.add_triples(got.triples)
        return {
            "sentences": got.sentences,
            "candidates": got.candidates,
            "pairs": got.pairs,
            "triples": [t.to_dict() for t in got.triples],
            "new_triples": new,
        }


def to_triple(x: RelationExample, label: str, score: float, source: str = "") -> Triple | None:
    """The triple a directed label states about a marked pair, or None for Other."""
    kind = relation_type(label)
    if kind == OTHER:
        return None
    e1, e2 = x.text[x.head[0] : x.head[1]], x.text[x.tail[0] : x.tail[1]]
    head, tail = (e2, e1) if label.endswith("(e2,e1)") else (e1, e2)
    return Triple(head, kind, tail, float(score), x.text, source)


def dedupe(triples: Iterable[Triple]) -> list[Triple]:
    """One triple per (head, relation, tail, sentence) after normalisation, the best-scored kept."""
    from zhixing.apps.kg.store import normalise

    best: dict[tuple[str, str, str, str], Triple] = {}
    for t in triples:
        key = (normalise(t.head), t.relation, normalise(t.tail), t.sentence)
        if key not in best or t.score > best[key].score:
            best[key] = t
    return list(best.values())


__all__ = ["Extractor", "Extracted", "split_sentences", "nominals", "to_triple", "dedupe", "FUNCTION_WORDS"]
