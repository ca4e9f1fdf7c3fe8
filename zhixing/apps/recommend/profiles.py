"""Item profiles in a store, user profiles, and the ranked list with its extractive explanation.

The store is one SQLite file: every aspect mention (review id, item, aspect, clause, quotable phrase, the
classifier's p(positive) and polarity), the number of reviews per item, the mined lexicon and how the
store was built. An item's profile — aspect → positive / negative counts, its most frequent phrases and
most confident snippets per polarity — is a GROUP BY over the mentions, so every figure and every quoted
word can be traced to review ids.

Ranking for preferences {aspect: weight} (and aspects to avoid), per item and aspect with n = pos + neg
mentions:

    prefer a:  w_a · (2 · LB(pos, n) − 1)          avoid a:  − w_a · LB(neg, n)
    score = Σ contributions / Σ w_a

LB is the Wilson lower bound (95%) of a proportion: ten glowing mentions outweigh one, and a handful of
mentions does not beat hundreds with a slightly lower rate. With no mentions LB is 0: an item whose reviews
never speak of a preferred aspect gets its lowest value there (it is listed as unknown), and one whose
reviews never complain about an avoided aspect loses nothing.

The explanation cites only what the profile holds: "推荐" the preferred aspects the item's mentions are
mostly positive about, "注意" the preferred / avoided aspects mostly negative (an avoided one already
when a third of its mentions are negative), plus the item's most complained-about aspect; each quoted
with its most frequent phrase of that polarity and with evidence (review ids, clauses). `faithfulness`
re-checks every citation against the raw review files and the model.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zhixing.apps.recommend.aspects import Lexicon, Mention, all_mentions, find_mentions, mine_aspects
from zhixing.apps.recommend.reviews import Review, parse_source, read_all
from zhixing.apps.recommend.sentiment import ClauseSentiment, polarity
from zhixing.config import nearest
from zhixing.errors import ConfigError, DataError
from zhixing.io import atomic_write

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (item TEXT PRIMARY KEY, reviews INTEGER NOT NULL, mentioned INTEGER NOT NULL);
CREATE TABLE mentions (review_id TEXT NOT NULL, item TEXT NOT NULL, aspect TEXT NOT NULL,
                       clause TEXT NOT NULL, phrase TEXT NOT NULL, p_positive REAL NOT NULL,
                       polarity TEXT NOT NULL);
CREATE INDEX mentions_item_aspect ON mentions (item, aspect, polarity);
"""
NOTE_SHARE = 0.3  # an avoided aspect goes under 注意 once this share of its mentions is negative
EVIDENCE = 3  # snippets cited per aspect and polarity
Z = 1.96  # Wilson interval, 95%


def wilson_lower(k: int, n: int, z: float = Z) -> float:
    """Lower bound of the Wilson score interval of the proportion k / n (0 when n = 0)."""
    if n == 0:
        return 0.0
    p = k / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - margin) / (1 + z * z / n)


def build_store(
    sources: Sequence[str],
    sentiment_run: str,
    out: str | os.PathLike,
    *,
    lexicon: Lexicon | None = None,
    per_item: int = 12,
    min_count: int = 5,
    mine_sample: int = 1500,
    max_per_item: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Read the review files, mine the aspect lexicon (unless given), find every mention, classify its
    clause, and write the store to `out` (atomically). Returns the build summary (also in the store)."""
    import time

    start = time.perf_counter()
    reviews = read_all(sources, max_per_item)
    lexicon = lexicon or mine_aspects(
        reviews, per_item=per_item, min_count=min_count, sample=mine_sample, seed=seed
    )
    terms = lexicon.terms
    if not terms:
        raise DataError(f"{', '.join(sources)}: no aspect terms mined (too few reviews?)")
    mentions = all_mentions(reviews, terms)
    probs = ClauseSentiment(sentiment_run)([m.clause for m in mentions])
    per_item_counts: dict[str, list[int]] = {}
    mentioned = {m.review_id for m in mentions}
    for r in reviews:
        c = per_item_counts.setdefault(r.item, [0, 0])
        c[0] += 1
        c[1] += r.id in mentioned
    summary = {
        # absolute paths: the store is read (faithfulness, user reviews) from wherever the server runs
        "sources": [_absolute(spec) for spec in sources],
        "sentiment_run": str(Path(sentiment_run).resolve()),
        "reviews": len(reviews),
        "items": len(per_item_counts),
        "aspects": len(terms),
        "mentions": len(mentions),
        "review_coverage": len(mentioned) / len(reviews),
        "per_item": per_item,
        "min_count": min_count,
        "mine_sample": mine_sample,
        "max_per_item": max_per_item,
        "seed": seed,
        "wall_s": round(time.perf_counter() - start, 1),
    }

    def write(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        with sqlite3.connect(tmp) as db:
            db.executescript(SCHEMA)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("summary", json.dumps(summary, ensure_ascii=False)),
                    ("lexicon", json.dumps(lexicon.to_dict(), ensure_ascii=False)),
                ],
            )
            db.executemany(
                "INSERT INTO items VALUES (?, ?, ?)",
                [(item, n, m) for item, (n, m) in sorted(per_item_counts.items())],
            )
            db.executemany(
                "INSERT INTO mentions VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (m.review_id, m.item, m.aspect, m.clause, m.phrase, p, polarity(p))
                    for m, p in zip(mentions, probs)
                ],
            )
        db.close()

    atomic_write(out, write)
    return summary


def _absolute(spec: str) -> str:
    item, path = parse_source(str(spec))
    return f"{item}={path.resolve()}" if item else str(path.resolve())


@dataclass
class Citation:
    """One aspect an explanation cites, with the polarity it is cited for and its evidence."""

    aspect: str
    polarity: str  # "positive" (推荐) | "negative" (注意)
    phrase: str  # what the explanation quotes: the most frequent phrase of that polarity, else the aspect
    positive: int
    negative: int
    evidence: list[dict[str, Any]]  # [{"review_id", "clause", "p_positive"}], the most confident first


@dataclass
class Ranked:
    item: str
    score: float
    explanation: str  # "推荐：屏幕很清晰、续航长；注意：发热严重"
    citations: list[Citation]
    contributions: dict[str, float]  # aspect -> its share of the score
    unknown: list[str] = field(default_factory=list)  # preferred / avoided aspects no review mentions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Store:
    """A built store (read-only): item profiles, ranking, explanations."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"{self.path}: no recommendation store (build one: zhixing app recommend "
                "build --data FILE OUT)"
            )
        # read-only and shareable across the server's threads: nothing here writes
        self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            meta = dict(self.db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: not a recommendation store ({e})") from None
        self.summary = json.loads(meta["summary"])
        self.lexicon = Lexicon.from_dict(json.loads(meta["lexicon"]))
        self.items = {
            item: (n, m) for item, n, m in self.db.execute("SELECT item, reviews, mentioned FROM items")
        }
        self._counts: dict[tuple[str, str], list[int]] = {}
        for item, aspect, pol, n in self.db.execute(
            "SELECT item, aspect, polarity, count(*) FROM mentions GROUP BY item, aspect, polarity"
        ):
            self._counts.setdefault((item, aspect), [0, 0])[pol == "negative"] += n
        self.aspects = sorted({a for _, a in self._counts})

    def counts(self, item: str, aspect: str) -> tuple[int, int]:
        pos, neg = self._counts.get((item, aspect), (0, 0))
        return pos, neg

    def check_item(self, item: str) -> None:
        if item not in self.items:
            raise ConfigError(
                f"item {item!r} is not in {self.path}{nearest(item, self.items)}; items: "
                f"{', '.join(sorted(self.items))}"
            )

    def check_aspects(self, aspects: Iterable[str], parameter: str) -> None:
        known = set(self.aspects)
        for a in aspects:
            if a not in known:
                raise ConfigError(
                    f"{parameter} {a!r}: no review in {self.path} mentions this aspect"
                    f"{nearest(a, known)}; known aspects: {', '.join(self.aspects)}"
                )

    def snippets(self, item: str, aspect: str, pol: str, limit: int = EVIDENCE) -> list[dict[str, Any]]:
        """The most confident mentions of `aspect` with polarity `pol` in `item`'s reviews."""
        order = "p_positive DESC" if pol == "positive" else "p_positive ASC"
        rows = self.db.execute(
            f"SELECT review_id, clause, p_positive FROM mentions WHERE item=? AND aspect=? "
            f"AND polarity=? ORDER BY {order}, review_id LIMIT ?",
            (item, aspect, pol, limit),
        )
        return [{"review_id": r, "clause": c, "p_positive": round(p, 4)} for r, c, p in rows]

    def phrases(self, item: str, aspect: str, pol: str, limit: int = 3) -> list[tuple[str, int]]:
        rows = self.db.execute(
            "SELECT phrase, count(*) AS n FROM mentions WHERE item=? AND aspect=? AND "
            "polarity=? AND phrase != '' GROUP BY phrase ORDER BY n DESC, length(phrase), "
            "phrase LIMIT ?",
            (item, aspect, pol, limit),
        )
        return [(p, n) for p, n in rows]

    def profile(self, item: str, top: int | None = None) -> dict[str, Any]:
        """aspect -> {positive, negative, phrases and snippets per polarity}, most mentioned first."""
        self.check_item(item)
        aspects = sorted(
            (a for i, a in self._counts if i == item), key=lambda a: (-sum(self.counts(item, a)), a)
        )
        out = {}
        for a in aspects[:top]:
            pos, neg = self.counts(item, a)
            out[a] = {
                "positive": pos,
                "negative": neg,
                "phrases": {p: self.phrases(item, a, p) for p in ("positive", "negative")},
                "snippets": {p: self.snippets(item, a, p) for p in ("positive", "negative")},
            }
        reviews, mentioned = self.items[item]
        return {"item": item, "reviews": reviews, "reviews_with_aspects": mentioned, "aspects": out}

    def cite(self, item: str, aspect: str, pol: str) -> Citation:
        pos, neg = self.counts(item, aspect)
        phrases = self.phrases(item, aspect, pol, 1)
        phrase = phrases[0][0] if phrases else aspect
        evidence = self.snippets(item, aspect, pol)
        if phrases:  # the quoted phrase's own most confident source comes first
            order = "p_positive DESC" if pol == "positive" else "p_positive ASC"
            r, c, p = self.db.execute(
                f"SELECT review_id, clause, p_positive FROM mentions WHERE item=? AND "
                f"aspect=? AND polarity=? AND phrase=? ORDER BY {order}, review_id LIMIT 1",
                (item, aspect, pol, phrase),
            ).fetchone()
            source = {"review_id": r, "clause": c, "p_positive": round(p, 4)}
            evidence = [source, *[e for e in evidence if e != source]][:EVIDENCE]
        return Citation(aspect, pol, phrase, pos, neg, evidence)

    def explain(self, item: str, prefer: Mapping[str, float], avoid: Mapping[str, float]) -> list[Citation]:
        """The citations of `item`'s explanation (see the module docstring)."""
        good, bad = [], []
        for a in sorted(prefer, key=lambda a: (-prefer[a], a)):
            pos, neg = self.counts(item, a)
            if pos > neg:
                good.append(self.cite(item, a, "positive"))
            elif neg and neg >= pos:
                bad.append(self.cite(item, a, "negative"))
        for a in sorted(avoid, key=lambda a: (-avoid[a], a)):
            pos, neg = self.counts(item, a)
            if a not in prefer and neg and (neg >= pos or neg / (pos + neg) >= NOTE_SHARE):
                bad.append(self.cite(item, a, "negative"))
        cited = {c.aspect for c in good + bad}
        if not prefer:  # no preferences: the item's best-liked aspects
            liked = sorted(
                (a for i, a in self._counts if i == item and a not in cited),
                key=lambda a: (-(self.counts(item, a)[0] - self.counts(item, a)[1]), a),
            )
            good += [
                self.cite(item, a, "positive")
                for a in liked[:3]
                if self.counts(item, a)[0] > self.counts(item, a)[1]
            ]
            cited |= {c.aspect for c in good}
        complaints = sorted(
            (
                a
                for i, a in self._counts
                if i == item and a not in cited and self.counts(item, a)[1] >= max(3, self.counts(item, a)[0])
            ),
            key=lambda a: (-self.counts(item, a)[1], a),
        )
        bad += [self.cite(item, a, "negative") for a in complaints[:1]]
        return good + bad

    def rank(
        self,
        prefer: Mapping[str, float] | Sequence[str] = (),
        avoid: Mapping[str, float] | Sequence[str] = (),
        top: int | None = None,
    ) -> list[Ranked]:
        """Items ranked for the preferences, each with its explanation (the module docstring)."""
        prefer, avoid = weights(prefer, "prefer"), weights(avoid, "avoid")
        self.check_aspects(prefer, "prefer")
        self.check_aspects(avoid, "avoid")
        total = sum(prefer.values()) + sum(avoid.values())
        out = []
        for item in self.items:
            contrib, unknown = {}, []
            for a, w in prefer.items():
                pos, neg = self.counts(item, a)
                contrib[a] = w * (2 * wilson_lower(pos, pos + neg) - 1)
                unknown += [] if pos + neg else [a]
            for a, w in avoid.items():
                pos, neg = self.counts(item, a)
                contrib[a] = contrib.get(a, 0.0) - w * wilson_lower(neg, pos + neg)
                unknown += [] if pos + neg or a in unknown else [a]
            if total:
                score = sum(contrib.values()) / total
            else:  # no preferences: how positive the item's aspect mentions are overall
                pos = sum(self._counts[k][0] for k in self._counts if k[0] == item)
                neg = sum(self._counts[k][1] for k in self._counts if k[0] == item)
                score = 2 * wilson_lower(pos, pos + neg) - 1
            citations = self.explain(item, prefer, avoid)
            out.append(
                Ranked(
                    item,
                    round(score, 4),
                    render(citations),
                    citations,
                    {a: round(v / (total or 1), 4) for a, v in contrib.items()},
                    unknown,
                )
            )
        out.sort(key=lambda r: (-r.score, r.item))
        return out[:top]


def weights(spec: Mapping[str, float] | Sequence[str] | str, parameter: str) -> dict[str, float]:
    """Preferences as {aspect: weight}: a mapping, a list (weight 1 each) or "屏幕:2,续航" text."""
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        parts = (
            [p.strip() for p in spec.split(",")] if isinstance(spec, str) else [str(p).strip() for p in spec]
        )
        items = []
        for p in filter(None, parts):
            name, _, w = p.partition(":")
            try:
                items.append((name.strip(), float(w) if w else 1.0))
            except ValueError:
                raise ConfigError(f"{parameter} {p!r}: expected ASPECT or ASPECT:WEIGHT (a number)") from None
    out = {}
    for name, w in items:
        if not name or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise ConfigError(f"{parameter} {name!r}: weight {w!r}; expected a positive number")
        out[name] = float(w)
    return out


def render(citations: Sequence[Citation]) -> str:
    """ "推荐：屏幕很清晰、续航长；注意：发热严重" from the citations (phrases as the reviews wrote them)."""
    good = "、".join(c.phrase for c in citations if c.polarity == "positive")
    bad = "、".join(c.phrase for c in citations if c.polarity == "negative")
    parts = ([f"推荐：{good}"] if good else []) + ([f"注意：{bad}"] if bad else [])
    return "；".join(parts) or "（评论中没有提到这些方面）"


def user_profile(
    texts: Sequence[str],
    store: Store,
    sentiment: ClauseSentiment | None = None,
) -> dict[str, Any]:
    """A user's preferences from their own reviews: every store aspect they mention, weighted by how often
    (what someone writes about is what they care about); with `sentiment`, also how they judged it."""
    terms = sorted(store.aspects, key=lambda t: (-len(t), t))
    mentions: list[Mention] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"reviews[{i}]: expected a non-empty review text")
        # everything the user names counts (no opinion needed: "屏幕一定要大" and "在意屏幕" alike)
        mentions += find_mentions(Review(f"user:{i + 1}", "user", text.strip(), None), terms, False)
    counts: dict[str, int] = {}
    for m in mentions:
        counts[m.aspect] = counts.get(m.aspect, 0) + 1
    judged: dict[str, list[int]] = {}
    if sentiment is not None and mentions:
        for m, p in zip(mentions, sentiment([m.clause for m in mentions])):
            judged.setdefault(m.aspect, [0, 0])[p < 0.5] += 1
    total = sum(counts.values()) or 1
    return {
        "prefer": {a: round(n / total, 4) for a, n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))},
        "judged": {a: {"positive": v[0], "negative": v[1]} for a, v in judged.items()},
        "mentions": [asdict(m) for m in mentions],
    }


def faithfulness(
    store: Store,
    ranked: Sequence[Ranked],
    sentiment: ClauseSentiment | None = None,
) -> dict[str, Any]:
    """Every cited aspect checked against the raw review files: a citation is faithful when at least one
    of its evidence reviews (re-read by id from the sources) belongs to the item, contains the aspect in
    the cited clause, and — re-scored by the sentiment model — has the cited polarity; the quoted phrase
    must occur in one of those re-checked clauses (its source is cited first).
    Returns the fraction and the failures."""
    sentiment = sentiment or ClauseSentiment(store.summary["sentiment_run"])
    raw = {r.id: r for r in read_all(store.summary["sources"], store.summary.get("max_per_item"))}
    checked, failures = 0, []
    for r in ranked:
        for c in r.citations:
            checked += 1
            ok = []
            for ev in c.evidence:
                review = raw.get(ev["review_id"])
                ok.append(
                    review is not None
                    and review.item == r.item
                    and ev["clause"] in review.text
                    and c.aspect in ev["clause"]
                )
            clauses = [ev["clause"] for ev, good in zip(c.evidence, ok) if good]
            polar = [polarity(p) == c.polarity for p in sentiment(clauses)] if clauses else []
            phrase_ok = c.phrase == c.aspect or any(c.phrase in cl for cl, g in zip(clauses, polar) if g)
            if not (any(polar) and phrase_ok):
                failures.append(
                    {"item": r.item, "aspect": c.aspect, "polarity": c.polarity, "phrase": c.phrase}
                )
    return {
        "citations": checked,
        "faithful": checked - len(failures),
        "faithfulness": (checked - len(failures)) / checked if checked else None,
        "failures": failures,
    }
