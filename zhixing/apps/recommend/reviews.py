"""Reviews and their clauses: the unit every other part of the application works on.

The shared data (`zh-reviews`) has no product or user ids: `online_shopping_10_cats.csv` holds
`cat,label,review` over ten product domains, `waimai_10k.csv` holds `label,review` for food delivery. So an
*item* here is what the data can honestly support: a product domain (书籍, 平板, 手机, ..., and 外卖 for the
delivery file). A file with an `item` column gives real items instead; nothing is invented.

Every review keeps an id `<file stem>:<line>` (the CSV line its record starts on), the provenance every
cited aspect points back to.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from zhixing.errors import DataError

ITEM_COLUMNS = ("item", "cat")  # the first of these a file has names the item of each review
LABELS = {"1": "positive", "0": "negative", "positive": "positive", "negative": "negative"}

# Clause boundaries: sentence and clause punctuation, and a contrast word ("屏幕很好但是发热严重"): the
# sentiment of one review often turns at 但/不过, and the classifier reads one clause at a time.
_CLAUSE = re.compile(r"[^，,。．.！!？?；;：:~～\s…]+")
_CONTRAST = re.compile(r"(?=但是|不过|可是|然而|就是有点|只是)|(?<=[^不])(?=但)")


@dataclass(frozen=True)
class Review:
    id: str  # "<file stem>:<line>": provenance
    item: str  # the product domain (see the module docstring) or the file's `item` column
    text: str
    label: str | None  # "positive" | "negative" | None (no label column)


def parse_source(spec: str) -> tuple[str | None, Path]:
    """`--data` values: "PATH" (items from the file's item/cat column) or "ITEM=PATH" (every review of the
    file is about ITEM, e.g. 外卖=waimai_10k.csv)."""
    name, sep, path = spec.partition("=")
    if sep and name and path and not Path(spec).exists():
        return name.strip(), Path(path)
    return None, Path(spec)


def read_reviews(spec: str | Path, max_per_item: int | None = None) -> list[Review]:
    """The reviews of one CSV file (`parse_source` syntax), at most `max_per_item` per item (the first ones
    in file order: deterministic). Errors name the file, the line and what was expected."""
    item_name, path = parse_source(str(spec))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such review file (expected a CSV with a `review` column)")
    out: list[Review] = []
    counts: dict[str, int] = {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "review" not in columns:
            raise DataError(f"{path}:1: expected a header with a `review` column, got {columns}")
        item_column = next((c for c in ITEM_COLUMNS if c in columns), None)
        if item_column is None and item_name is None:
            raise DataError(
                f"{path}:1: no item column ({' or '.join(ITEM_COLUMNS)}); name the item of "
                f"every review as ITEM={path}"
            )
        line = reader.line_num + 1
        for row in reader:
            text = (row.get("review") or "").replace("\ufeff", "").strip()
            item = item_name or (row.get(item_column) or "").strip()
            raw = (row.get("label") or "").strip()
            if raw and raw not in LABELS:
                raise DataError(f"{path}:{line}: label {raw!r}: expected 1/0 or positive/negative")
            if text and item and (max_per_item is None or counts.get(item, 0) < max_per_item):
                counts[item] = counts.get(item, 0) + 1
                out.append(Review(f"{path.stem}:{line}", item, text, LABELS.get(raw)))
            line = reader.line_num + 1
    if not out:
        raise DataError(f"{path}: no reviews read (empty `review` column?)")
    return out


def read_all(specs: Sequence[str | Path], max_per_item: int | None = None) -> list[Review]:
    reviews: list[Review] = []
    for spec in specs:
        reviews.extend(read_reviews(spec, max_per_item))
    return reviews


def clauses(text: str) -> Iterator[tuple[int, str]]:
    """(start offset, clause) for each clause of `text`: split at punctuation and before contrast words."""
    for m in _CLAUSE.finditer(text):
        start, piece = m.start(), m.group()
        cuts = [0, *(c.start() for c in _CONTRAST.finditer(piece) if c.start() > 0), len(piece)]
        for a, b in zip(cuts, cuts[1:]):
            if b > a:
                yield start + a, piece[a:b]


__all__ = ["Review", "clauses", "parse_source", "read_all", "read_reviews"]
