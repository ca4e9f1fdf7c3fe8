"""The triple store: SQLite with entities, their aliases, relations, triples and their provenance.

    entities(id, name, norm UNIQUE)                 one row per normalised name ("the cradles" -> "cradle")
    aliases(norm, entity_id)                        surface forms seen for an entity, normalised (linking)
    relations(id, name UNIQUE)                      relation types, direction folded into head/tail
    sources(id, name UNIQUE)                        documents triples were read from
    sentences(id, source_id, text, UNIQUE(source_id, text))
    triples(id, head_id, relation_id, tail_id, score, UNIQUE(head, relation, tail))   score = best evidence
    provenance(triple_id, sentence_id, score, PRIMARY KEY(triple_id, sentence_id))
    meta(key, value)                                e.g. relation_run: the model that extracted the triples

A triple is stored once however often it is read (deduplicated on normalised head, relation, tail); each
sentence that supports it is a provenance row. Every `add_triples` call is one transaction: a failure
leaves the store as it was. Indexes on triples(head), (tail), (relation) and aliases(norm) serve the
queries by entity and by relation.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zhixing.errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (id INTEGER PRIMARY KEY, name TEXT NOT NULL, norm TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS aliases (norm TEXT NOT NULL, entity_id INTEGER NOT NULL REFERENCES entities(id),
    PRIMARY KEY (norm, entity_id));
CREATE TABLE IF NOT EXISTS relations (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sentences (id INTEGER PRIMARY KEY,
    source_id INTEGER NOT NULL REFERENCES sources(id),
    text TEXT NOT NULL, UNIQUE (source_id, text));
CREATE TABLE IF NOT EXISTS triples (id INTEGER PRIMARY KEY,
    head_id INTEGER NOT NULL REFERENCES entities(id), relation_id INTEGER NOT NULL REFERENCES relations(id),
    tail_id INTEGER NOT NULL REFERENCES entities(id), score REAL NOT NULL,
    UNIQUE (head_id, relation_id, tail_id));
CREATE TABLE IF NOT EXISTS provenance (triple_id INTEGER NOT NULL REFERENCES triples(id),
    sentence_id INTEGER NOT NULL REFERENCES sentences(id), score REAL NOT NULL,
    PRIMARY KEY (triple_id, sentence_id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS triples_head ON triples(head_id);
CREATE INDEX IF NOT EXISTS triples_tail ON triples(tail_id);
CREATE INDEX IF NOT EXISTS triples_relation ON triples(relation_id);
CREATE INDEX IF NOT EXISTS aliases_norm ON aliases(norm);
"""

_DETERMINERS = {
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "his",
    "her",
    "its",
    "their",
    "our",
    "my",
    "your",
    "some",
    "any",
}


def normalise(name: str) -> str:
    """The key entities are deduplicated and linked by: lower case, words only, leading determiners
    dropped, a plural -s / -es / -ies of the last word folded ("The Cradles" -> "cradle")."""
    words = re.findall(r"[^\W_]+", name.lower())
    while len(words) > 1 and words[0] in _DETERMINERS:
        words = words[1:]
    if words:
        w = words[-1]
        if len(w) > 4 and w.endswith("ies"):
            w = w[:-3] + "y"
        elif len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
            w = w[:-2]
        elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
        words[-1] = w
    return " ".join(words)


@dataclass
class Triple:
    """One extracted fact with its evidence. `relation` has no direction: head plays its first role
    (Cause-Effect(head, tail): head causes tail)."""

    head: str
    relation: str
    tail: str
    score: float
    sentence: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TripleStore:
    """A knowledge graph in one SQLite file (":memory:" for a temporary one)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise FileNotFoundError(f"{self.path}: directory {parent} does not exist")
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False)
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: not a zhixing knowledge-graph database ({e})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> TripleStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------------

    def _id(self, table: str, column: str, value: str, extra: dict[str, str] | None = None) -> int:
        row = self.db.execute(f"SELECT id FROM {table} WHERE {column} = ?", (value,)).fetchone()
        if row:
            return row[0]
        cols = {column: value, **(extra or {})}
        cur = self.db.execute(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            tuple(cols.values()),
        )
        return int(cur.lastrowid)

    def _entity(self, name: str) -> int:
        norm = normalise(name)
        if not norm:
            raise DataError(f"entity {name!r} has no letters or digits")
        eid = self._id("entities", "norm", norm, {"name": name.strip()})
        self.db.execute("INSERT OR IGNORE INTO aliases (norm, entity_id) VALUES (?, ?)", (norm, eid))
        return eid

    def add_triples(self, triples: Iterable[Triple]) -> int:
        """Add triples in one transaction; a triple already there gains the new evidence and keeps the
        higher score. Returns how many triples were new."""
        new = 0
        with self.db:  # one transaction: committed at the end, rolled back on any error
            for t in triples:
                if not t.relation or not 0.0 <= t.score <= 1.0:
                    raise DataError(f"triple {t}: needs a relation and a score in [0, 1]")
                h, r, tl = (
                    self._entity(t.head),
                    self._id("relations", "name", t.relation),
                    self._entity(t.tail),
                )
                row = self.db.execute(
                    "SELECT id, score FROM triples WHERE head_id=? AND relation_id=? AND tail_id=?",
                    (h, r, tl),
                ).fetchone()
                if row is None:
                    tid = int(
                        self.db.execute(
                            "INSERT INTO triples (head_id, relation_id, tail_id, score) VALUES (?, ?, ?, ?)",
                            (h, r, tl, t.score),
                        ).lastrowid
                    )
                    new += 1
                else:
                    tid = row[0]
                    if t.score > row[1]:
                        self.db.execute("UPDATE triples SET score=? WHERE id=?", (t.score, tid))
                if t.sentence:
                    src = self._id("sources", "name", t.source or "")
                    sid = self.db.execute(
                        "SELECT id FROM sentences WHERE source_id=? AND text=?", (src, t.sentence)
                    ).fetchone()
                    sid = (
                        sid[0]
                        if sid
                        else int(
                            self.db.execute(
                                "INSERT INTO sentences (source_id, text) VALUES (?, ?)", (src, t.sentence)
                            ).lastrowid
                        )
                    )
                    self.db.execute(
                        "INSERT INTO provenance (triple_id, sentence_id, score) VALUES (?, ?, ?) "
                        "ON CONFLICT DO UPDATE SET score = max(score, excluded.score)",
                        (tid, sid, t.score),
                    )
        return new

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO UPDATE SET "
                "value = excluded.value",
                (key, value),
            )

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- reading -----------------------------------------------------------------------------------------

    _SELECT = """SELECT t.id, h.name, r.name, tl.name, t.score,
        (SELECT s.text FROM provenance p JOIN sentences s ON s.id = p.sentence_id WHERE p.triple_id = t.id
         ORDER BY p.score DESC LIMIT 1),
        (SELECT so.name FROM provenance p JOIN sentences s ON s.id = p.sentence_id JOIN sources so
         ON so.id = s.source_id WHERE p.triple_id = t.id ORDER BY p.score DESC LIMIT 1),
        (SELECT count(*) FROM provenance p WHERE p.triple_id = t.id)
        FROM triples t JOIN entities h ON h.id = t.head_id JOIN relations r ON r.id = t.relation_id
        JOIN entities tl ON tl.id = t.tail_id"""

    def _rows(self, where: str, args: tuple) -> list[dict[str, Any]]:
        rows = self.db.execute(f"{self._SELECT} {where} ORDER BY t.score DESC, t.id", args).fetchall()
        return [
            {
                "head": h,
                "relation": r,
                "tail": tl,
                "score": s,
                "sentence": sent or "",
                "source": src or "",
                "evidence": n,
            }
            for _, h, r, tl, s, sent, src, n in rows
        ]

    def entity_ids(self, name: str) -> list[int]:
        """Entities whose alias equals the normalised name."""
        return [
            r[0] for r in self.db.execute("SELECT entity_id FROM aliases WHERE norm = ?", (normalise(name),))
        ]

    def query(
        self, entity: str | None = None, relation: str | None = None, role: str = "any", limit: int = 100
    ) -> list[dict[str, Any]]:
        """Triples about `entity` (as head, tail or either: role "head" | "tail" | "any") and/or of
        `relation`, best score first, each with its best evidence sentence and source."""
        if role not in ("head", "tail", "any"):
            raise ValueError(f"role={role!r}: expected head, tail or any")
        conds, args = [], []
        if entity is not None:
            ids = self.entity_ids(entity)
            if not ids:
                return []
            marks = ", ".join("?" * len(ids))
            parts = {"head": f"t.head_id IN ({marks})", "tail": f"t.tail_id IN ({marks})"}
            if role == "any":
                conds.append(f"({parts['head']} OR {parts['tail']})")
                args += ids * 2
            else:
                conds.append(parts[role])
                args += ids
        if relation is not None:
            conds.append("r.name = ?")
            args.append(relation)
        where = ("WHERE " + " AND ".join(conds)) if conds else ""
        return self._rows(f"{where}", tuple(args))[:limit]

    def aliases(self) -> Iterator[tuple[str, int]]:
        yield from self.db.execute("SELECT norm, entity_id FROM aliases")

    def entity_name(self, eid: int) -> str:
        row = self.db.execute("SELECT name FROM entities WHERE id = ?", (eid,)).fetchone()
        return row[0] if row else ""

    def relations(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM relations ORDER BY name")]

    def stats(self) -> dict[str, int]:
        return {
            t: self.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("entities", "relations", "triples", "sentences", "provenance")
        }


__all__ = ["TripleStore", "Triple", "normalise", "SCHEMA"]
