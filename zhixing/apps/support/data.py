"""The customer-service data: HWU64 utterances with their intent and slots, the out-of-scope split, and
an English sentiment set (SST-2).

HWU64 marks slots inline in its `annotation` column (Liu et al. 2019):

    wake me up at [time : five am] this week   ->   words  wake me up at five am this week
                                                    tags   O    O  O  O  B-time I-time O O

`parse_annotation` reads that bracket syntax (a slot is `[type : words]`, not nested) into words and
IOB2 tags, and names the line and the character of any malformed bracket.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from zhixing.errors import DataError
from zhixing.tasks.data import TextExample, holdout_split, read_table

# A slot type: letters, digits, underscores (HWU64: date, time, place_name, business_name, ...).
_SLOT_TYPE = re.compile(r"^[A-Za-z_][\w]*$")

# Ten of the 64 intents, fixed, never trained on: the out-of-scope slice (one or two per scenario
# group, chosen so that their scenario keeps other intents in scope — harder than dropping a scenario).
OOS_INTENTS = (
    "alarm_remove",
    "audio_volume_mute",
    "calendar_remove",
    "cooking_recipe",
    "email_addcontact",
    "iot_wemo_off",
    "music_likeness",
    "play_podcasts",
    "recommendation_movies",
    "transport_taxi",
)
OOS_LABEL = "oos"


@dataclass
class Utterance:
    """One HWU64 row: words, IOB2 slot tags (one per word), the intent, and where it came from."""

    words: list[str]
    tags: list[str]
    intent: str
    where: str = ""
    text: str = field(default="", repr=False)


def parse_annotation(annotation: str, where: str = "annotation") -> tuple[list[str], list[str]]:
    """`wake me up at [time : five am]` -> (words, IOB2 tags).

    A slot is `[` type `:` one or more words `]`; brackets do not nest. Raises DataError naming `where`
    and the character position for an unclosed or stray bracket, a missing `:`, an invalid type or an
    empty slot value."""
    words: list[str] = []
    tags: list[str] = []
    pos = 0
    while pos < len(annotation):
        open_at = annotation.find("[", pos)
        close_at = annotation.find("]", pos)
        if close_at != -1 and (open_at == -1 or close_at < open_at):
            raise DataError(f"{where}: ']' at character {close_at + 1} closes no '[' in {annotation!r}")
        plain = annotation[pos:] if open_at == -1 else annotation[pos:open_at]
        for w in plain.split():
            words.append(w)
            tags.append("O")
        if open_at == -1:
            break
        end = annotation.find("]", open_at)
        nested = annotation.find("[", open_at + 1)
        if end == -1:
            raise DataError(
                f"{where}: '[' at character {open_at + 1} is never closed in {annotation!r}; "
                "expected [type : words]"
            )
        if nested != -1 and nested < end:
            raise DataError(
                f"{where}: '[' at character {nested + 1} opens inside another slot (opened at "
                f"{open_at + 1}) in {annotation!r}; slots do not nest"
            )
        inner = annotation[open_at + 1 : end]
        type_, colon, value = inner.partition(":")
        type_ = type_.strip()
        if not colon:
            raise DataError(
                f"{where}: slot {inner!r} at character {open_at + 1} has no ':'; expected [type : words]"
            )
        if not _SLOT_TYPE.match(type_):
            raise DataError(
                f"{where}: slot type {type_!r} at character {open_at + 1} is not a name (letters, digits, _)"
            )
        value_words = value.split()
        if not value_words:
            raise DataError(f"{where}: slot {type_!r} at character {open_at + 1} has no words")
        for i, w in enumerate(value_words):
            words.append(w)
            tags.append(("B-" if i == 0 else "I-") + type_)
        pos = end + 1
    return words, tags


def read_hwu64(path: str | os.PathLike) -> list[Utterance]:
    """Rows of an HWU64 CSV (`text,label,annotation`) as utterances, split into words as the annotation
    has them; those must spell the text, whitespace aside (DataError naming the line otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (HWU64 CSV with columns text,label,annotation)")
    out = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"text", "label", "annotation"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(sorted(missing))}; expected a header "
                "text,label,annotation"
            )
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            words, tags = parse_annotation(row["annotation"] or "", where)
            # The annotation may space a slot off its punctuation ("[person : robert] ," for "robert,"):
            # its words are the ones tagged, so they must spell the text apart from whitespace.
            if "".join(words) != "".join((row["text"] or "").split()):
                raise DataError(
                    f"{where}: the annotation's words {' '.join(words)!r} differ from the text "
                    f"{row['text']!r}"
                )
            if not words:
                raise DataError(f"{where}: empty utterance")
            if not row["label"]:
                raise DataError(f"{where}: empty label")
            out.append(Utterance(words, tags, row["label"], where, row["text"]))
    return out


def split_hwu64(
    train: list[Utterance], dev_fraction: float = 0.1, oos: tuple[str, ...] = OOS_INTENTS, seed: int = 0
) -> tuple[list[Utterance], list[Utterance]]:
    """(train, dev): `dev_fraction` of the rows held out (by a hash of the text, see holdout_split); the
    out-of-scope intents' rows are dropped from train (never trained on) and kept in dev relabelled
    OOS_LABEL, so the OOS threshold is chosen on intents the test's OOS intents are not (none overlap
    by utterance: dev rows of those intents come from train.csv, test rows from test.csv)."""
    unknown = sorted(set(oos) - {u.intent for u in train})
    if unknown:
        raise DataError(f"out-of-scope intents not in the training data: {', '.join(unknown)}")
    kept, held = holdout_split(train, dev_fraction, seed=seed, key=lambda u: f"{u.intent}|{u.text}")
    train_in = [u for u in kept if u.intent not in oos]
    dev = [mark_oos(u, oos) for u in held]
    return train_in, dev


def mark_oos(u: Utterance, oos: tuple[str, ...] | list[str]) -> Utterance:
    """The utterance with its intent replaced by OOS_LABEL when it is one of `oos` (slots kept)."""
    if u.intent in oos:
        return Utterance(u.words, u.tags, OOS_LABEL, u.where, u.text)
    return u


def read_sentiment(path: str | os.PathLike, limit: int = 0) -> list[TextExample]:
    """An SST-2 style TSV/CSV (`sentence`, `label` 0 = negative / 1 = positive); the first `limit` rows
    (0 = all)."""
    rows = read_table(path, label_column="label")
    bad = [e for e in rows if e.label not in ("0", "1")]
    if bad:
        raise DataError(
            f"{bad[0].where}: sentiment label {bad[0].label!r}; expected 0 (negative) or 1 (positive)"
        )
    rows = [TextExample(e.text.strip(), None, e.label, e.where) for e in rows]
    return rows[:limit] if limit else rows


__all__ = [
    "Utterance",
    "parse_annotation",
    "read_hwu64",
    "split_hwu64",
    "mark_oos",
    "read_sentiment",
    "OOS_INTENTS",
    "OOS_LABEL",
]
