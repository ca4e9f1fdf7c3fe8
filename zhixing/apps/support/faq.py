"""Automatic answers: a FAQ / knowledge base matched by dense retrieval.

Each entry has question variants, an answer (with optional `{slot}` placeholders) and optionally the
intent it serves. Every variant is embedded with a sentence encoder (all-MiniLM-L6-v2, mean-pooled and
unit-length: zhixing.tasks.pretrained.EmbeddingPipeline), and a query q is scored against entry e by its
closest variant:

    s(q, e) = max_{v in e} cos(E(q), E(v))        answer: argmax_e s(q, e) if s >= τ, else "don't know"

The index is exact inner product over a NumPy matrix of unit vectors (`VectorIndex`): with a few hundred
variants one matrix-vector product takes well under a millisecond and needs no approximation, and
neither hnswlib (only an sdist here: a C++ build) nor faiss is a dependency of the project. An
approximate index (HNSW) pays off from ~10^5 vectors; `VectorIndex` is the one place to swap it in.

Files: YAML (`entries: [{id, questions: [...], answer, intent}]`) or CSV (`id,question,answer,intent`,
one row per variant; rows sharing an id form one entry).
"""

from __future__ import annotations

import csv
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zhixing.errors import DataError

_SLOT = re.compile(r"\{([A-Za-z_][\w]*)\}")


@dataclass
class FaqEntry:
    id: str
    questions: list[str]
    answer: str
    intent: str | None = None
    slots: list[str] = field(default_factory=list)  # the {slot} names its answer needs

    def fill(self, values: dict[str, str]) -> tuple[str, list[str]]:
        """(the answer with its slots filled, the slot names still missing — left as {name})."""
        missing = [s for s in self.slots if not values.get(s)]
        return _SLOT.sub(lambda m: values.get(m.group(1)) or m.group(0), self.answer), missing


def _entry(raw: Any, where: str) -> FaqEntry:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a mapping with id, questions, answer (and intent)")
    unknown = set(raw) - {"id", "questions", "answer", "intent"}
    if unknown:
        raise DataError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}; an entry has id, questions, "
            "answer, intent"
        )
    for key in ("id", "questions", "answer"):
        if not raw.get(key):
            raise DataError(f"{where}: missing or empty field {key!r}")
    questions = raw["questions"]
    if isinstance(questions, str):
        questions = [questions]
    if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
        raise DataError(f"{where}: 'questions' must be a list of non-empty strings")
    answer = str(raw["answer"])
    try:  # a stray "{" or "}" would otherwise show up in an answer unfilled
        names = [f for _, f, _, _ in string.Formatter().parse(answer) if f is not None]
    except ValueError as e:
        raise DataError(f"{where}: answer {answer!r}: {e}; write slots as {{name}}") from None
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z_]\w*", n)]
    if bad:
        raise DataError(f"{where}: answer placeholder {{{bad[0]}}} is not a slot name (letters, digits, _)")
    return FaqEntry(
        str(raw["id"]),
        [q.strip() for q in questions],
        answer,
        str(raw["intent"]) if raw.get("intent") else None,
        list(dict.fromkeys(names)),
    )


def read_faq(path: str | os.PathLike) -> list[FaqEntry]:
    """FaqEntries of a YAML or CSV file; errors name the file and the entry / line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such FAQ file")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise DataError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            raise DataError(f"{path}: expected a mapping with a list 'entries:'")
        entries = [_entry(raw, f"{path}: entry {i + 1}") for i, raw in enumerate(data["entries"])]
    elif path.suffix.lower() == ".csv":
        grouped: dict[str, dict[str, Any]] = {}
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"id", "question", "answer"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {', '.join(sorted(missing))}; expected "
                    "id,question,answer[,intent]"
                )
            for line, row in enumerate(reader, start=2):
                g = grouped.setdefault(
                    row["id"],
                    {
                        "id": row["id"],
                        "questions": [],
                        "answer": row["answer"],
                        "intent": row.get("intent") or None,
                        "line": line,
                    },
                )
                if row["answer"] and row["answer"] != g["answer"]:
                    raise DataError(
                        f"{path}:{line}: entry {row['id']!r} has another answer at line {g['line']}"
                    )
                g["questions"].append(row["question"])
        entries = [
            _entry({k: v for k, v in g.items() if k != "line"}, f"{path}:{g['line']}")
            for g in grouped.values()
        ]
    else:
        raise DataError(f"{path}: unknown FAQ format {path.suffix!r}; use .yaml / .yml or .csv")
    if not entries:
        raise DataError(f"{path}: no entries")
    ids = [e.id for e in entries]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DataError(f"{path}: duplicate entry id(s) {', '.join(dup)}")
    return entries


class VectorIndex:
    """Exact maximum inner product search over unit vectors: (n, dim) float32 rows."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (m, dim) -> (scores (m, k), row indices (m, k)), best first."""
        sims = queries.astype(np.float32) @ self.vectors.T  # (m, n)
        k = min(k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, top, 1).argsort(axis=1)[:, ::-1]
        idx = np.take_along_axis(top, order, 1)
        return np.take_along_axis(sims, idx, 1), idx


class FaqIndex:
    """The FAQ entries with their variants' embeddings; `search(texts, k)` ranks entries per text."""

    def __init__(self, entries: list[FaqEntry], encoder: Any = None, threshold: float = 0.5):
        from zhixing.tasks.pretrained import EmbeddingPipeline

        if encoder is None:
            from zhixing.apps.support.model import default_model

            encoder = EmbeddingPipeline(default_model(), max_length=64)
        self.entries, self.encode, self.threshold = entries, encoder, threshold
        self.owner = [i for i, e in enumerate(entries) for _ in e.questions]  # variant row -> entry
        texts = [q for e in entries for q in e.questions]
        self.index = VectorIndex(self.embed(texts))

    @classmethod
    def from_file(cls, path: str | os.PathLike, encoder: Any = None, threshold: float = 0.5) -> FaqIndex:
        return cls(read_faq(path), encoder, threshold)

    def embed(self, texts: list[str]) -> np.ndarray:
        """(n, dim) unit vectors."""
        vecs = self.encode(list(texts)).float().numpy()
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)

    def search(
        self, texts: list[str], k: int = 5, vectors: np.ndarray | None = None
    ) -> list[list[tuple[FaqEntry, float]]]:
        """Per text, up to k (entry, score) pairs, best first; an entry's score is its closest variant's
        cosine similarity."""
        q = self.embed(texts) if vectors is None else vectors
        scores, rows = self.index.search(q, len(self.owner))  # all variants: entries need their best one
        out = []
        for srow, irow in zip(scores, rows):
            seen: dict[int, float] = {}
            for s, r in zip(srow.tolist(), irow.tolist()):
                e = self.owner[r]
                if e not in seen:
                    seen[e] = s
                    if len(seen) == k:
                        break
            out.append([(self.entries[e], s) for e, s in seen.items()])
        return out

    def answer(self, text: str, intent: str | None = None, k: int = 5) -> tuple[FaqEntry | None, float]:
        """The entry to answer `text` with, or (None, best score) below the threshold ("don't know").
        Among the top k, an entry serving the recognised `intent` wins over a closer one that does not,
        as long as it clears the threshold."""
        ranked = self.search([text], k)[0]
        if not ranked:
            return None, 0.0
        if intent is not None:
            for e, s in ranked:
                if e.intent == intent and s >= self.threshold:
                    return e, s
        best, score = ranked[0]
        return (best, score) if score >= self.threshold else (None, score)


def choose_threshold(index: FaqIndex, texts: list[str], intents: list[str | None]) -> dict[str, float]:
    """The "don't know" threshold τ maximising dev accuracy: a text whose intent some entry serves is
    right when its best entry serves that intent and clears τ; any other text is right when nothing
    clears τ. Returns {"threshold", "dev_accuracy", ...}."""
    covered = {e.intent for e in index.entries if e.intent}
    best = [ranked[0] if ranked else (None, 0.0) for ranked in index.search(texts, 1)]
    scores = np.array([s for _, s in best])
    should = np.array([i in covered for i in intents])
    right_entry = np.array([e is not None and e.intent == i for (e, _), i in zip(best, intents)])
    cands = np.concatenate([[0.0], np.sort(scores), [1.01]])
    accs = [float(np.mean(np.where(should, right_entry & (scores >= t), scores < t))) for t in cands]
    k = int(np.argmax(accs))
    return {
        "threshold": float(cands[k]),
        "dev_accuracy": accs[k],
        "dev_rows": len(texts),
        "dev_covered": int(should.sum()),
    }


__all__ = ["FaqEntry", "FaqIndex", "VectorIndex", "read_faq", "choose_threshold"]
