"""Chinese whole-word boundaries for whole-word masking (Cui et al. 2019, "Chinese BERT-wwm").

BERT splits Chinese into single characters, so its ``word_ids`` give every character its own word and
whole-word masking degenerates to character masking. Chinese-BERT-wwm keeps the single-character
tokens but masks whole words found by a segmenter. Here the segmenter is jieba: consecutive CJK
characters inside one jieba word share a word id; everything else keeps the engine's word ids.
"""

from __future__ import annotations

import bisect
import logging

CHINESE_WORDS = (None, "jieba")

# The CJK Unified Ideograph blocks BERT's basic tokenizer treats as Chinese (its `_is_chinese_char`).
_CJK = (
    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0x2F800, 0x2FA1F),
)  # fmt: skip


def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK)


_jieba = None


def _segmenter():
    """Import and initialise jieba once, quietly (its dictionary takes ~1 s to load)."""
    global _jieba
    if _jieba is None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        _jieba = jieba
    return _jieba


def word_starts(text: str) -> list[int]:
    """Sorted character offsets where a jieba word starts in `text`."""
    return [start for _, start, _ in _segmenter().tokenize(text)]


def jieba_word_ids(enc, texts: tuple[str, str | None]) -> list[int | None]:
    """Word ids of a `tokenizers.Encoding` with CJK runs regrouped by jieba's segmentation.

    `texts` are the (first, second) sequences the encoding was made from; offsets refer to them.
    """
    starts = [word_starts(t) if t else [] for t in texts]
    seq_ids, word_ids, offsets = enc.sequence_ids, enc.word_ids, enc.offsets
    out: list[int | None] = []
    prev = None  # (sequence, engine word id, jieba word index, is cjk) of the previous token
    counter = -1
    for s, w, (a, b) in zip(seq_ids, word_ids, offsets):
        if s is None or w is None:
            out.append(None)
            continue
        if prev is None or prev[0] != s:
            counter, prev = -1, None  # word ids restart with each sequence, as in the engine
        text = texts[s] or ""
        cjk = b - a == 1 and is_cjk(text[a])
        seg = bisect.bisect_right(starts[s], a) - 1
        same_word = prev is not None and (w == prev[1] or (cjk and prev[3] and seg == prev[2]))
        if not same_word:
            counter += 1
        out.append(counter)
        prev = (s, w, seg, cjk)
    return out
