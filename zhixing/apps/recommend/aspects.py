"""Aspect terms: mined from the reviews, then found in clauses.

Mining (Hu & Liu 2004's frequent features, with their opinion-adjacency filter): jieba tags the clauses of
a seeded sample of each item's reviews; a noun (tags n, nz, vn; no names nr/ns/nt) is *opinionated* in a
clause when an adjective (a, ad, an) follows it within `window` words ("屏幕 很 清晰", "送餐 太 慢"). Per
item the nouns with the most opinionated mentions are kept (at least `min_count`, and opinionated in at
least `min_ratio` of their mentions, so "东西" or "时候" — frequent, rarely judged — mostly drop out; a short
stop list removes the generic words that still pass). The lexicon is the union over items, so 屏幕 mined
from 手机 is also found in 平板 reviews and the items can be compared on it.

Finding: a clause's aspect mentions are the lexicon terms it contains, longest first, not overlapping; the
phrase quoted for a mention must judge it (an opinion word right after the aspect, `judged`).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from zhixing.apps.recommend.reviews import Review, clauses

NOUN_TAGS = ("n", "nz", "vn")
ADJ_TAGS = ("a", "ad", "an")
OPINION_TAGS = (*ADJ_TAGS, "i", "l")
# Generic nouns that pass the opinion filter but name no aspect of a product ("东西很好", "感觉不错").
GENERIC = frozenset(
    "东西 感觉 时候 问题 宝贝 商品 产品 朋友 大家 评价 卖家 东东 地方 样子 时间 "
    "原因 事情 情况 心情 总体 整体 总的来说 效果 感受 印象 体验 机器 本本 电脑 "
    "手机 平板 书 本书 酒店 宾馆 水果 衣服 外卖 蒙牛 京东 当当 亚马逊 淘宝 客人 "
    "人 孩子 小孩 作者 老公 老婆 家人 同事 网上 实物 图片 有点 热水器 苹果 裤子 "
    "切糕 点滴 牛奶".split()
)
PHRASE_TAIL = 6  # an opinion phrase is the aspect plus at most this many characters (its clause's tail)


@dataclass
class AspectStats:
    term: str
    item: str
    mentions: int  # clauses of the sample holding the noun
    opinionated: int  # ... with an adjective within the window after it


@dataclass
class Lexicon:
    """The mined aspect terms: per item (with their mining counts) and their union (for matching)."""

    per_item: dict[str, list[AspectStats]] = field(default_factory=dict)

    @property
    def terms(self) -> list[str]:
        return sorted({s.term for stats in self.per_item.values() for s in stats}, key=lambda t: (-len(t), t))

    def to_dict(self) -> dict:
        return {item: [vars(s) for s in stats] for item, stats in self.per_item.items()}

    @classmethod
    def from_dict(cls, data: dict) -> Lexicon:
        return cls({item: [AspectStats(**s) for s in stats] for item, stats in data.items()})


def mine_aspects(
    reviews: Sequence[Review],
    *,
    per_item: int = 12,
    min_count: int = 5,
    min_ratio: float = 0.25,
    window: int = 3,
    sample: int = 1500,
    seed: int = 0,
) -> Lexicon:
    """Mine the aspect lexicon from `reviews` (see the module docstring); `sample` reviews per item (seeded:
    the shared files are sorted by label, so the first ones would all be positive)."""
    import jieba.posseg

    by_item: dict[str, list[Review]] = defaultdict(list)
    for r in reviews:
        by_item[r.item].append(r)
    lexicon = Lexicon()
    for item, items_reviews in sorted(by_item.items()):
        rng = random.Random(f"{seed}:{item}")
        picked = rng.sample(items_reviews, min(sample, len(items_reviews)))
        mentions, opinionated = Counter(), Counter()
        for r in picked:
            for _, clause in clauses(r.text):
                words = [(w.word, w.flag) for w in jieba.posseg.cut(clause)]
                seen = set()
                for i, (word, flag) in enumerate(words):
                    if not flag.startswith(NOUN_TAGS) or flag in ("nr", "ns", "nt") or len(word) < 2:
                        continue
                    if word in GENERIC or word in seen:
                        continue
                    seen.add(word)
                    mentions[word] += 1
                    if any(f in ADJ_TAGS for _, f in words[i + 1 : i + 1 + window]):
                        opinionated[word] += 1
        kept = [
            AspectStats(t, item, mentions[t], n)
            for t, n in opinionated.most_common()
            if n >= min_count and n / mentions[t] >= min_ratio
        ]
        lexicon.per_item[item] = kept[:per_item]
    return lexicon


@dataclass(frozen=True)
class Mention:
    """One aspect mentioned in one clause of one review."""

    review_id: str
    item: str
    aspect: str
    clause: str
    phrase: str  # aspect + the clause's tail when short ("屏幕很清晰"), else "" (no quotable phrase)


def judged(clause: str, end: int, window: int = 3) -> bool:
    """Whether an opinion word (`opinion_word`) follows within `window` words after offset `end` of `clause`
    — the mining's test, a little wider, applied to one mention ("电池不耐用" yes, "跟客服说" no)."""
    import jieba.posseg

    words, at = [], 0
    for w in jieba.posseg.cut(clause):
        if at >= end:
            words.append((w.word, w.flag))
        at += len(w.word)
    return any(opinion_word(word, flag) for word, flag in words[:window])


def opinion_word(word: str, flag: str) -> bool:
    """jieba's tags are rough for opinions: besides adjectives, idioms and fixed expressions (没得说) judge,
    and so do two-character adverbs (很快, 不好, 非常 + verb); single-character ones (都, 就, 还) do not."""
    return flag in OPINION_TAGS or (flag == "d" and len(word) >= 2)


def find_mentions(review: Review, terms: Sequence[str], opinion_only: bool = False) -> list[Mention]:
    """The aspect mentions of `review`: lexicon `terms` (longest first) in each clause, not overlapping.
    A mention gets a quotable phrase only when its clause judges it (`judged`: "跟客服说" is no phrase
    about 客服); `opinion_only` drops the unjudged mentions altogether (on the annotated sample that
    raises aspect precision and loses more recall: docs/applications.md, "Recommendation explanations")."""
    out = []
    for _, clause in clauses(review.text):
        taken: list[tuple[int, int]] = []
        for term in terms:
            at = clause.find(term)
            while at >= 0:
                span = (at, at + len(term))
                if not any(a < span[1] and span[0] < b for a, b in taken):
                    taken.append(span)
                    short = 0 < len(clause) - span[1] <= PHRASE_TAIL
                    opinion = (short or opinion_only) and judged(clause, span[1])
                    if opinion_only and not opinion:
                        break
                    phrase = clause[at:] if short and opinion else ""
                    out.append(Mention(review.id, review.item, term, clause, phrase))
                    break  # one mention of a term per clause
                at = clause.find(term, at + 1)
    return out


def all_mentions(reviews: Iterable[Review], terms: Sequence[str]) -> list[Mention]:
    return [m for r in reviews for m in find_mentions(r, terms)]
