"""From text to the integer sequences an n-gram model counts: units, vocabulary, sentence markers.

A *unit* says what one token is:

- ``char``: one Unicode code point (newlines and spaces included: they are characters to predict);
- ``word``: a maximal run of non-whitespace (Python's ``str.split()``);
- ``tokenizer``: the ids of a zhixing `Tokenizer` (special tokens are not added).

Every document of a corpus (`zhixing.data.read_documents`) is one *sentence*: ``<s> t1 ... tn </s>``,
the convention of KenLM and SRILM (one ``<s>``, one ``</s>``; ``<s>`` is context only, ``</s>`` is
predicted). Text files give one document per line, so a line is a sentence as in the references.

Model ids: 0 = ``<unk>``, 1 = ``<s>``, 2 = ``</s>``, then the tokens seen in training. The word ``<unk>``
in word-level text (WikiText writes it) is the unknown token; the words ``<s>`` / ``</s>`` in text are
dropped, as KenLM's ``--skip_symbols`` does.

ARPA files separate words by whitespace, so a token is written *escaped*: a whitespace character, NUL or
backslash becomes ``\\uXXXX`` (``\\UXXXXXXXX`` above U+FFFF), and a token spelled like a marker
(``<s>`` as a tokenizer piece) gets its ``<`` escaped. `escape` / `unescape` are exact inverses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zhixing.errors import ConfigError

UNK, BOS, EOS = 0, 1, 2
MARKERS = ("<unk>", "<s>", "</s>")
UNITS = ("char", "word", "tokenizer")
# markers among raw symbols (code points and tokenizer ids are >= 0)
_UNK_RAW, _BOS_RAW, _EOS_RAW = -3, -2, -1


def escape(token: str) -> str:
    """The ARPA spelling of a token: no whitespace inside, markers kept distinct."""
    out = []
    for c in token:
        if c.isspace() or c in "\\\0":
            out.append(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    s = "".join(out)
    if s in MARKERS:  # a token that merely looks like a marker
        s = "\\u003c" + s[1:]
    return s


_ESCAPE = re.compile(r"\\u([0-9a-f]{4})|\\U([0-9a-f]{8})")


def unescape(word: str) -> str:
    """Inverse of `escape`."""
    if "\\" not in word:
        return word
    return _ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), word)


@dataclass
class Units:
    """How text becomes tokens. `kind` is one of UNITS; `tokenizer` is the Tokenizer for kind="tokenizer"
    and `tokenizer_path` where it was loaded from (recorded in saved models)."""

    kind: str = "char"
    tokenizer: Any = None
    tokenizer_path: str | None = None

    def __post_init__(self):
        if self.kind not in UNITS:
            raise ConfigError(f"unit={self.kind!r} is not known; fix: use one of {', '.join(UNITS)}")
        if self.kind == "tokenizer" and self.tokenizer is None:
            if not self.tokenizer_path:
                raise ConfigError("unit='tokenizer' needs a tokenizer; "
                                  "fix: pass tokenizer=DIR (CLI: --tokenizer DIR)")
            from zhixing.tokenizers import Tokenizer

            self.tokenizer = Tokenizer.load(self.tokenizer_path)

    @property
    def integer(self) -> bool:
        """True when tokens are integers (code points, tokenizer ids) that NumPy can map in bulk."""
        return self.kind != "word"

    def symbols(self, text: str) -> np.ndarray | list[str]:
        """The raw symbols of one document: code points / tokenizer ids (int64 array) or words."""
        if self.kind == "char":
            return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        if self.kind == "tokenizer":
            return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
        return [w for w in text.split() if w not in ("<s>", "</s>")]

    def batch_symbols(self, texts: list[str]) -> list[np.ndarray] | list[list[str]]:
        if self.kind == "tokenizer" and texts:
            encs = self.tokenizer.encode_batch(texts, add_special_tokens=False)
            return [np.asarray(e.ids, dtype=np.int64) for e in encs]
        return [self.symbols(t) for t in texts]

    def token(self, symbol: int) -> str:
        """The token string of an integer symbol."""
        if self.kind == "char":
            return chr(symbol)
        tok = self.tokenizer.id_to_token(int(symbol))
        return tok if tok is not None else f"[{symbol}]"

    def symbol(self, token: str) -> int | None:
        """The integer symbol of a token string (None when this unit has no such token)."""
        if self.kind == "char":
            return ord(token) if len(token) == 1 else None
        return self.tokenizer.token_to_id(token)

    def detokenize(self, tokens: list[str]) -> str:
        if self.kind == "char":
            return "".join(tokens)
        if self.kind == "word":
            return " ".join(tokens)
        ids = [self.tokenizer.token_to_id(t) for t in tokens]
        return self.tokenizer.decode([i for i in ids if i is not None])

    def mask_specials(self, raw: np.ndarray) -> np.ndarray:
        """A tokenizer's own special ids ([UNK], [CLS], ...) become the unknown symbol (-3 -> <unk>)."""
        if self.kind == "tokenizer":
            special = np.asarray(self.tokenizer.all_special_ids, dtype=np.int64)
            if len(special):
                raw = np.where(np.isin(raw, special), _UNK_RAW, raw)
        return raw

    def vocabulary(self, raw: np.ndarray) -> Vocabulary:
        """The vocabulary of a training corpus given as raw integer symbols (sorted by symbol)."""
        uniq = np.unique(raw[raw >= 0])
        vocab = Vocabulary(list(MARKERS) + [self.token(int(s)) for s in uniq])
        vocab._symbols = (uniq, np.arange(3, 3 + len(uniq), dtype=np.int64))
        return vocab

    def describe(self) -> dict:
        return {"unit": self.kind, "tokenizer": self.tokenizer_path}


@dataclass
class Vocabulary:
    """Token strings by model id (0 <unk>, 1 <s>, 2 </s>, then the tokens) and the way back."""

    tokens: list[str]
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if list(self.tokens[:3]) != list(MARKERS):
            raise ValueError(f"a vocabulary starts with {MARKERS}, got {self.tokens[:3]}")
        if not self.index:
            self.index = {t: i for i, t in enumerate(self.tokens)}
        self._symbols: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def escaped(self) -> list[str]:
        """The tokens as ARPA words (the markers as they are, every other token escaped)."""
        return list(MARKERS) + [escape(t) for t in self.tokens[3:]]

    def symbol_table(self, units: Units) -> tuple[np.ndarray, np.ndarray]:
        """(sorted raw symbols, their model ids) for mapping integer symbols in bulk."""
        if self._symbols is None:
            pairs = [(units.symbol(t), i) for i, t in enumerate(self.tokens) if i > EOS]
            pairs = sorted((s, i) for s, i in pairs if s is not None)
            syms = np.array([s for s, _ in pairs], dtype=np.int64)
            ids = np.array([i for _, i in pairs], dtype=np.int64)
            self._symbols = (syms, ids)
        return self._symbols


def _map_known(raw: np.ndarray, syms: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Raw integer symbols -> model ids; markers -> BOS/EOS, symbols not in `syms` -> UNK."""
    out = np.full(len(raw), UNK, dtype=np.int64)
    out[raw == _BOS_RAW] = BOS
    out[raw == _EOS_RAW] = EOS
    real = raw >= 0
    if len(syms):
        pos = np.minimum(np.searchsorted(syms, raw[real]), len(syms) - 1)
        hit = syms[pos] == raw[real]
        out[np.flatnonzero(real)[hit]] = ids[pos[hit]]
    return out


@dataclass
class Encoded:
    """A corpus as one id sequence: sentences back to back, each ``<s> ... </s>``."""

    ids: np.ndarray  # (tokens,) int32 model ids
    vocab: Vocabulary
    sentences: int
    tokens: int  # tokens inside sentences (markers not counted)
    oov: int  # tokens mapped to <unk> (0 when the vocabulary was built from this corpus)


def encode_documents(
    docs: Iterable[str],
    units: Units,
    vocab: Vocabulary | None = None,
    *,
    markers: bool = True,
    progress=None,
    batch: int = 512,
) -> Encoded:
    """Turn documents into one id sequence. With ``vocab=None`` the vocabulary is built from them
    (training); with a vocabulary, tokens outside it become ``<unk>`` (evaluation).

    markers=False: no ``<s>`` / ``</s>`` (a token stream, e.g. for scoring a continuation).
    progress: called as ``progress(documents, tokens)`` every `batch` documents.
    """
    chunks: list = []
    words: list[int] = []
    word_index: dict[str, int] = {} if vocab is None else vocab.index
    n_docs = n_tokens = n_oov = 0
    pending: list[str] = []

    def flush() -> None:
        nonlocal n_docs, n_tokens, n_oov
        for sym in units.batch_symbols(pending):
            n_docs += 1
            n_tokens += len(sym)
            if units.integer:
                parts = [sym]
                if markers:
                    parts = [np.array([_BOS_RAW]), sym, np.array([_EOS_RAW])]
                chunks.append(np.concatenate(parts))
            else:
                if markers:
                    words.append(BOS)
                if vocab is None:
                    for w in sym:  # the word "<unk>" (WikiText) is the unknown token itself
                        words.append(UNK if w == "<unk>" else word_index.setdefault(w, len(word_index) + 3))
                else:
                    for w in sym:
                        i = word_index.get(w, UNK)
                        n_oov += i == UNK
                        words.append(i)
                if markers:
                    words.append(EOS)
        pending.clear()
        if progress is not None:
            progress(n_docs, n_tokens)

    for doc in docs:
        pending.append(doc)
        if len(pending) >= batch:
            flush()
    flush()

    if not units.integer:
        if vocab is None:
            vocab = Vocabulary(list(MARKERS) + sorted(word_index, key=word_index.get))
        return Encoded(np.asarray(words, dtype=np.int32), vocab, n_docs, n_tokens, n_oov)

    return _encoded_ids(chunks, units, vocab, n_docs, n_tokens)


def _encoded_ids(chunks: list[np.ndarray], units: Units, vocab: Vocabulary | None, n_docs: int,
                 n_tokens: int) -> Encoded:
    """Raw tokenizer ids (with BOS/EOS markers) -> the model's vocabulary ids, counting the unknown ones."""
    raw = units.mask_specials(np.concatenate(chunks) if chunks else np.zeros(0, np.int64))
    if vocab is None:
        vocab = units.vocabulary(raw)
    syms, ids = vocab.symbol_table(units)
    out = _map_known(raw, syms, ids)
    oov = int(((out == UNK) & (raw >= 0)).sum())
    return Encoded(out.astype(np.int32), vocab, n_docs, n_tokens, oov)


def encode_token_arrays(
    arrays: Iterable[np.ndarray], units: Units, vocab: Vocabulary | None = None
) -> Encoded:
    """Like `encode_documents` for documents that are already tokenizer ids (token shards)."""
    chunks, n_docs, n_tokens = [], 0, 0
    for a in arrays:
        a = np.asarray(a, dtype=np.int64)
        chunks.append(np.concatenate([[_BOS_RAW], a, [_EOS_RAW]]))
        n_docs += 1
        n_tokens += len(a)
    return _encoded_ids(chunks, units, vocab, n_docs, n_tokens)
