"""The textbook tokenization algorithms in plain Python, tested equal to the Rust engine.

Read this file to learn the algorithms; `Tokenizer` runs the same ones in Rust (HF `tokenizers`).
tests/tokenizers/test_reference.py proves, on real text (tinyshakespeare, People's Daily), that

- `train_bpe` learns the same merges and vocabulary as `tokenizers.trainers.BpeTrainer`, and
- `bpe_encode` / `wordpiece_encode` give the same tokens as the engine for the same vocabulary.

Everything works on *words*: the output of normalization + pre-tokenization (BERT splits on spaces
and punctuation; GPT-2 on a regex), which both implementations share.

BPE (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units")
    training: start from characters; repeat: count every adjacent pair of symbols over the corpus,
    merge the most frequent pair into a new symbol, record the merge; stop at the vocabulary size.
    encoding: split a word into characters; repeatedly merge the adjacent pair whose merge was
    learned earliest (lowest rank) until no learned merge applies.
Byte-level BPE (Radford et al. 2019, GPT-2)
    the same, over the UTF-8 *bytes* of each word, each byte shown as a printable character
    (`bytes_to_unicode`), so the 256 bytes cover any text and nothing is ever unknown.
WordPiece (Schuster & Nakajima 2012; Devlin et al. 2019, BERT)
    encoding: greedy longest-match-first: take the longest vocabulary entry that prefixes the rest
    of the word (``##``-prefixed after the first piece); if none matches, the whole word is [UNK].
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping

# ----------------------------------------------------------------------------------------------
# byte-level alphabet (GPT-2's encoder.py)


def bytes_to_unicode() -> dict[int, str]:
    """Map each of the 256 byte values to a printable Unicode character.

    Printable Latin-1 bytes map to themselves; the other 68 (control chars, space, ...) are shifted
    to U+0100 and up, so e.g. the space byte 0x20 becomes 'Ġ' and newline 0x0A becomes 'Ċ'.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    table, shift = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def to_byte_symbols(word: str) -> str:
    """A word's UTF-8 bytes written in the byte alphabet: 'é' -> 'Ã©', ' the' -> 'Ġthe'."""
    return "".join(BYTE_TO_CHAR[b] for b in word.encode("utf-8"))


def from_byte_symbols(symbols: str) -> str:
    return bytes(CHAR_TO_BYTE[c] for c in symbols).decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------------------------
# BPE training


def train_bpe(
    word_counts: Mapping[str, int],
    vocab_size: int,
    min_frequency: int = 0,
    special_tokens: Iterable[str] = (),
    initial_alphabet: Iterable[str] = (),
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn BPE merges from word frequencies. Returns (vocab token -> id, merges in rank order).

    The vocabulary is laid out as the engine lays it out: special tokens, then the alphabet sorted
    by code point, then one entry per merge. Ties (pairs with equal counts) go to the pair whose
    symbol ids are smallest, `(id_left, id_right)` compared as a tuple -- the engine's rule, which
    makes training deterministic. A merge whose result already exists (``"ab"+"c"`` after
    ``"a"+"bc"``) is recorded but adds no vocabulary entry, again as in the engine.

    Recounting every pair after each merge is O(corpus) per merge; like the engine we update the
    counts only in the words that contain the merged pair, and keep the candidates in a heap.
    """
    vocab: dict[str, int] = {}
    for tok in special_tokens:
        vocab.setdefault(tok, len(vocab))
    alphabet = {c for w in word_counts for c in w} | set(initial_alphabet)
    for c in sorted(alphabet):  # sorted by code point
        vocab.setdefault(c, len(vocab))
    id_to_token = sorted(vocab, key=vocab.get)

    # Each distinct word as a list of symbol ids, with its corpus frequency.
    words = [[vocab[c] for c in w] for w in word_counts]
    freqs = list(word_counts.values())

    # 1. Count adjacent pairs over the corpus, and remember which words contain each pair.
    pair_counts: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = {}
    for i, (w, f) in enumerate(zip(words, freqs)):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += f
            where.setdefault(pair, set()).add(i)
    # Max-heap of candidates as (-count, left id, right id): the smallest tuple is the most frequent
    # pair, ties broken by the smaller ids. Entries go stale as counts change; we check on pop.
    heap = [(-c, a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if -neg != count:  # stale: the pair's count changed since this entry was pushed
            if count > 0:
                heapq.heappush(heap, (-count, a, b))
            continue
        if count < 1 or count < min_frequency:
            break
        # 2. Merge the most frequent pair into a new symbol and record the merge.
        new = id_to_token[a] + id_to_token[b]
        if new not in vocab:
            vocab[new] = len(vocab)
            id_to_token.append(new)
        merges.append((id_to_token[a], id_to_token[b]))
        # 3. Rewrite every word containing the pair, updating pair counts by the difference.
        for i in where.pop((a, b)):
            old = words[i]
            merged = merge_pair(old, a, b, vocab[new])
            if len(merged) == len(old):
                continue  # the pair no longer occurs here (stale entry in `where`)
            words[i] = merged
            delta = Counter(zip(merged, merged[1:]))
            delta.subtract(Counter(zip(old, old[1:])))
            for pair, d in delta.items():
                if d == 0:
                    continue
                pair_counts[pair] += d * freqs[i]
                if d > 0:
                    where.setdefault(pair, set()).add(i)
                    heapq.heappush(heap, (-pair_counts[pair], *pair))
        pair_counts.pop((a, b), None)
    return vocab, merges


def merge_pair(symbols: list, a, b, new) -> list:
    """Replace every non-overlapping occurrence of the pair (a, b), scanning left to right."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


# ----------------------------------------------------------------------------------------------
# BPE encoding


def bpe_encode(word: str, ranks: Mapping[tuple[str, str], int], unk: str | None = None,
               vocab: Mapping[str, int] | None = None) -> list[str]:  # fmt: skip
    """Split `word` into BPE tokens by applying the learned merges in rank order (GPT-2's `bpe`).

    `ranks` maps a merge (left, right) to its position in the merge list. Characters outside
    `vocab` (when given) become `unk` -- byte-level BPE never needs this.
    """
    symbols = list(word)
    while len(symbols) > 1:
        # the adjacent pair learned earliest; merging it cannot be undone by a later merge
        best = min(zip(symbols, symbols[1:]), key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        symbols = merge_pair(symbols, best[0], best[1], best[0] + best[1])
    if vocab is not None and unk is not None:
        symbols = [s if s in vocab else unk for s in symbols]
    return symbols


def bpe_ranks(merges: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """merge -> rank. A merge listed twice keeps its last rank, as the engine does on load."""
    return {m: r for r, m in enumerate(merges)}


# ----------------------------------------------------------------------------------------------
# WordPiece encoding


def wordpiece_encode(word: str, vocab: Mapping[str, int], unk: str = "[UNK]", prefix: str = "##",
                     max_chars: int = 100) -> list[str]:  # fmt: skip
    """Greedy longest-match-first (BERT's `WordpieceTokenizer.tokenize`).

    From the start of the word, take the longest substring in the vocabulary; continue from where it
    ended, looking up ``##``-prefixed substrings. If at some point nothing matches, the whole word
    becomes `unk` (not just the unmatched part), as does any word longer than `max_chars`.
    """
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:  # no piece matches at `start`
            return [unk]
        pieces.append(piece)
        start = end
    return pieces
