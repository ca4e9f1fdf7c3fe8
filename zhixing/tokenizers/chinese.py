"""Chinese words, twice: whole-word boundaries for masking, and a vocabulary of characters plus words.

1. Whole-word masking (Cui et al. 2019, "Chinese BERT-wwm").

BERT splits Chinese into single characters, so its ``word_ids`` give every character its own word and
whole-word masking degenerates to character masking. Chinese-BERT-wwm keeps the single-character
tokens but masks whole words found by a segmenter. Here the segmenter is jieba: consecutive CJK
characters inside one jieba word share a word id; everything else keeps the engine's word ids.

2. The ``words`` tokenizer kind (WoBERT, Su 2020): BERT reads Chinese one character at a time; a
vocabulary of every character plus the corpus's most frequent jieba words lets a token be a word
("酒店", "服务员"), so a 128-token row holds more text. Encoding is a unigram model over that vocabulary
(`word_vocabulary`), which needs no segmenter at run time and saves as a plain tokenizer.json.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import Counter

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
        cjk = b > a and is_cjk(text[a])  # a character (wordpiece) or a word (the words kind)
        seg = bisect.bisect_right(starts[s], a) - 1
        # CJK tokens group by jieba's word, others by the engine's (the words kind's engine word is a
        # whole clause, so a CJK token never joins a neighbour by it)
        same_word = prev is not None and cjk == prev[3] and (seg == prev[2] if cjk else w == prev[1])
        if not same_word:
            counter += 1
        out.append(counter)
        prev = (s, w, seg, cjk)
    return out


def cjk_token_word_ids(enc, texts: tuple[str, str | None]) -> list[int | None]:
    """Word ids for the words kind without jieba: its pre-tokenizer leaves a Chinese clause whole, so the
    engine's word ids would make a clause one word; here each token that starts with a CJK character is
    a word of its own (it is a character or a vocabulary word), and other tokens keep the engine's grouping
    (a Latin word spelled in several pieces stays one word)."""
    out: list[int | None] = []
    prev = None  # (sequence, engine word id, is cjk) of the previous token
    counter = -1
    for s, w, (a, b) in zip(enc.sequence_ids, enc.word_ids, enc.offsets):
        if s is None or w is None:
            out.append(None)
            continue
        if prev is None or prev[0] != s:
            counter, prev = -1, None
        cjk = b > a and is_cjk((texts[s] or "")[a])
        if prev is None or cjk or prev[2] or w != prev[1]:
            counter += 1
        out.append(counter)
        prev = (s, w, cjk)
    return out


# ----------------------------------------------------------------------------------------------
# the "words" vocabulary: characters plus frequent words (WoBERT, Su 2020)


def has_cjk(text: str) -> bool:
    return any(is_cjk(ch) for ch in text)


def count_words(texts, normalizer, pre_tokenizer) -> tuple[Counter, Counter]:
    """(word counts, character counts) of `texts` after the tokenizer's normalizer and pre-tokenizer:
    a pre-token with CJK characters is cut into words by jieba (its dictionary + HMM for new words),
    any other pre-token (a Latin word, a number, a punctuation mark) counts as one word."""
    cut = _segmenter().cut
    words: Counter = Counter()
    chars: Counter = Counter()
    for text in texts:
        for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            chars.update(piece)
            if has_cjk(piece):
                words.update(cut(piece, HMM=True))
            else:
                words[piece] += 1
    return words, chars


def word_vocabulary(words: Counter, chars: Counter, room: int, min_frequency: int,
                    limit_alphabet: int | None = None) -> list[tuple[str, float]]:
    """Pieces and log-probabilities for a unigram model: every character seen (the most frequent
    `limit_alphabet` with a limit), then multi-character words seen at least `min_frequency` times, most
    frequent first, until `room` pieces. A word left out is spelled by its characters, so its count goes
    to theirs; a piece's score is log(count / total), so encoding picks the segmentation with the
    highest product of piece probabilities (jieba's search over its dictionary, here over the vocabulary).
    """
    alphabet = sorted(chars, key=lambda c: (-chars[c], c))
    if limit_alphabet is not None:
        alphabet = alphabet[:limit_alphabet]
    kept = [w for w in sorted(words, key=lambda w: (-words[w], w))
            if len(w) > 1 and words[w] >= max(min_frequency, 1)][:max(room - len(alphabet), 0)]
    counts = Counter({c: words.get(c, 0) for c in alphabet})
    counts.update({w: words[w] for w in kept})
    keep = set(kept)
    for w, n in words.items():
        if len(w) > 1 and w not in keep:
            for c in w:
                if c in counts:
                    counts[c] += n
    total = sum(counts.values()) + 0.5 * len(counts)
    return [(p, math.log((counts[p] + 0.5) / total)) for p in alphabet + kept]
