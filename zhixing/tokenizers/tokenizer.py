"""`Tokenizer`: the one tokenizer interface of zhixing, over Hugging Face `tokenizers` (Rust).

Models, collators and the CLI only ever see this class: special tokens are reached by role
(``tok.pad_id``, ``tok.mask_id``) whatever their spelling, and every kind (WordPiece, byte-level BPE,
BPE, char) and every file format loads into it. The textbook algorithms it runs are in
`zhixing.tokenizers.reference`, tested equal to the engine.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tokenizers import AddedToken, models
from tokenizers import Tokenizer as Backend

from . import formats
from .chinese import CHINESE_WORDS, cjk_token_word_ids, count_words, jieba_word_ids, word_vocabulary
from .corpus import ERROR_MODES, iter_texts, normalize_sources
from .errors import TokenizerError
from .pipelines import (
    ROLES,
    base_alphabet_size,
    check_kind,
    new_backend,
    new_trainer,
    ordered_specials,
    resolve_special_tokens,
    set_post_processor,
)

TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")


class Encoding:
    """One encoded text (or text pair). Fields are read from the Rust encoding on access.

    ``offsets`` are (start, end) character spans in the original text of the token's own sequence
    (``sequence_ids`` says which: 0, 1, or None for special tokens and padding, which get (0, 0)).
    """

    __slots__ = ("_enc", "_word_ids")

    def __init__(self, enc, word_ids: list[int | None] | None = None):
        self._enc = enc
        self._word_ids = word_ids

    @property
    def ids(self) -> list[int]:
        return self._enc.ids

    @property
    def tokens(self) -> list[str]:
        return self._enc.tokens

    @property
    def type_ids(self) -> list[int]:
        return self._enc.type_ids

    @property
    def attention_mask(self) -> list[int]:
        return self._enc.attention_mask

    @property
    def offsets(self) -> list[tuple[int, int]]:
        return self._enc.offsets

    @property
    def word_ids(self) -> list[int | None]:
        """Index of the word each token belongs to (per sequence); None for special tokens."""
        return self._word_ids if self._word_ids is not None else self._enc.word_ids

    @property
    def special_tokens_mask(self) -> list[int]:
        return self._enc.special_tokens_mask

    @property
    def sequence_ids(self) -> list[int | None]:
        return self._enc.sequence_ids

    def __len__(self) -> int:
        return len(self._enc.ids)

    def __repr__(self) -> str:
        return f"Encoding(num_tokens={len(self)}, tokens={self.tokens[:8]}{'...' if len(self) > 8 else ''})"


class Tokenizer:
    """A trained tokenizer: ids <-> text, special tokens by role, save/load in the field's formats.

    Build one with `Tokenizer.train(...)` or `Tokenizer.load(dir)`; wrap an existing
    `tokenizers.Tokenizer` with ``Tokenizer(backend, kind=..., special_tokens={...})``.
    """

    def __init__(
        self,
        backend: Backend,
        kind: str,
        special_tokens: Mapping[str, str],
        extra_special_tokens: Iterable[str] = (),
        chinese_words: str | None = None,
        model_max_length: int | None = None,
        padding_side: str = "right",
        pad_type_id: int = 0,
        tokenizer_class: str | None = None,
    ):
        if padding_side not in ("left", "right"):
            raise TokenizerError(f"padding_side={padding_side!r} is not valid; fix: use 'left' or 'right'")
        self._backend = backend
        self.kind = kind
        for role, token in special_tokens.items():
            if role not in ROLES:
                raise TokenizerError(
                    f"unknown special-token role {role!r}; fix: use one of {', '.join(ROLES)}"
                )
            if backend.token_to_id(token) is None:
                raise TokenizerError(f"special token {token!r} (role {role}) is not in the vocabulary")
        self._roles = dict(special_tokens)
        self._extras = [t for t in extra_special_tokens if t not in self._roles.values()]
        self.chinese_words = chinese_words
        self.model_max_length = model_max_length
        self.padding_side = padding_side  # "left" for XLNet, whose <cls> is the last token
        self.pad_type_id = pad_type_id  # token type id of padding (XLNet: 3)
        self.tokenizer_class = tokenizer_class  # transformers class written on save (None: the generic one)
        # the Hugging Face chat template (Jinja, tokenizer_config.json); zhixing.generation.chat renders it
        self.chat_template: str | None = None
        self._state: tuple | None = None  # truncation/padding currently set on the backend

    # ------------------------------------------------------------------------------------------
    # training

    @classmethod
    def train(
        cls,
        files_or_iterator: str | os.PathLike | Sequence[str | os.PathLike] | Iterable[str],
        kind: str = "wordpiece",
        vocab_size: int = 30000,
        min_frequency: int = 2,
        lowercase: bool | None = None,
        special_tokens: Mapping[str, str] | Sequence[str] | None = None,
        *,
        strip_accents: bool | None = None,
        limit_alphabet: int | None = None,
        chinese_words: str | None = None,
        errors: str = "strict",
        show_progress: bool = True,
    ) -> Tokenizer:
        """Learn a vocabulary from text files (UTF-8, one or more) or an iterator of strings.

        kind: "wordpiece" (BERT), "byte_bpe" (GPT-2), "bpe" (SentencePiece-style), "char", or "words"
            (Chinese characters plus the corpus's most frequent jieba words, WoBERT-style).
        vocab_size: the size of the final vocabulary, special tokens included.
        min_frequency: a pair (or, for "char", a character; for "words", a word) seen fewer times is not
            added.
        lowercase: default True for WordPiece (like uncased BERT), False otherwise.
        strip_accents: WordPiece only; None follows `lowercase`, as in BERT.
        special_tokens: role -> token (``{"pad": "[PAD]", ...}``), or a list of strings whose roles are
            read from their spelling; default: the kind's usual set (``[PAD] [UNK] [CLS] [SEP] [MASK]``).
        limit_alphabet: keep at most this many initial characters (the rarest are dropped).
        chinese_words: "jieba" to make `word_ids` follow jieba's Chinese word segmentation.
        errors: "strict" (invalid UTF-8 is an error naming file and byte), "replace" or "ignore".
        """
        check_kind(kind)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise TokenizerError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 0:
            raise TokenizerError(f"min_frequency must be an integer >= 0, got {min_frequency!r}")
        if errors not in ERROR_MODES:
            raise TokenizerError(f"errors={errors!r} is not valid; fix: use one of {', '.join(ERROR_MODES)}")
        check_chinese_words(chinese_words)
        roles, extras = resolve_special_tokens(kind, special_tokens)
        if kind != "byte_bpe" and "unk" not in roles:
            raise TokenizerError(
                f"kind {kind!r} needs an 'unk' special token for text outside its vocabulary; "
                "fix: add one, e.g. special_tokens={'unk': '[UNK]', ...}"
            )
        specials = ordered_specials(roles, extras)
        if lowercase is None:
            lowercase = kind in ("wordpiece", "words")
        if kind == "byte_bpe" and vocab_size < 256 + len(specials):
            raise TokenizerError(
                f"vocab_size={vocab_size} is smaller than the byte-level base alphabet (256 bytes + "
                f"{len(specials)} special tokens); fix: use vocab_size >= {256 + len(specials)}"
            )
        if vocab_size < len(specials):
            raise TokenizerError(
                f"vocab_size={vocab_size} leaves no room after {len(specials)} special tokens; "
                f"fix: use vocab_size > {len(specials)}"
            )
        files, texts = normalize_sources(files_or_iterator)
        backend = new_backend(kind, lowercase, strip_accents, roles.get("unk"))
        trainer = new_trainer(kind, vocab_size, min_frequency, specials, limit_alphabet, show_progress=False)

        seen = {"texts": 0, "nonblank": 0}

        def counted(stream, progress):
            for text in stream:
                seen["texts"] += 1
                if text.strip():
                    seen["nonblank"] += 1
                yield text
            progress.phase(f"learning a {kind} vocabulary of {vocab_size:,}")

        with _progress(show_progress, files, texts) as progress:
            stream = counted(iter_texts(files, texts, errors, progress.advance), progress)
            if kind == "words":
                words, chars = count_words(stream, backend.normalizer, backend.pre_tokenizer)
            else:
                backend.train_from_iterator(stream, trainer)
        if seen["nonblank"] == 0:
            where = ", ".join(map(str, files)) if files else "the iterator"
            raise TokenizerError(
                f"the training corpus is empty ({seen['texts']} texts, none with non-space characters in "
                f"{where}); fix: pass files or texts that contain text"
            )
        if kind == "words":
            pieces = word_vocabulary(words, chars, vocab_size - len(specials), min_frequency, limit_alphabet)
            backend.model = models.Unigram([(t, 0.0) for t in specials] + pieces,
                                           unk_id=specials.index(roles["unk"]), byte_fallback=False)
            backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
        if backend.get_vocab_size() > vocab_size:
            base = base_alphabet_size(backend, kind, len(specials))
            raise TokenizerError(
                f"vocab_size={vocab_size} is smaller than the base alphabet: {base} symbols (characters seen "
                f"in the corpus + {len(specials)} special tokens) must all be in the vocabulary; fix: use "
                f"vocab_size >= {base}, or limit_alphabet=N to keep only the N most frequent characters"
            )
        got = backend.get_vocab_size()
        if got < vocab_size and kind != "char":  # for "char", vocab_size is a cap by design
            why = ("WordPiece splits CJK text into single characters first, so Chinese contributes its "
                   "character set and no merges; " if kind == "wordpiece" else "")
            what = "multi-character word is seen" if kind == "words" else "merge occurs"
            warnings.warn(
                f"the corpus yields {got:,} tokens, fewer than vocab_size={vocab_size:,}: {why}no further "
                f"{what} at least min_frequency={min_frequency} times. The tokenizer works; a larger "
                "corpus or a lower min_frequency gives more tokens", stacklevel=2)
        set_post_processor(backend, kind, roles)
        return cls(backend, kind, roles, extras, chinese_words=chinese_words)

    # ------------------------------------------------------------------------------------------
    # files

    @classmethod
    def can_load(cls, path: str | os.PathLike) -> bool:
        """True when directory `path` holds tokenizer.json, vocab.txt, or vocab.json + merges.txt."""
        return formats.detect_format(path) is not None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a tokenizer directory: ours, any HF tokenizer.json, BERT vocab.txt, GPT-2 vocab+merges,
        XLNet's spiece.model (needs the sentencepiece package)."""
        loaded = formats.load_dir(path)
        config = formats.read_config(Path(path))
        max_len = config.get("model_max_length")
        max_len = max_len if isinstance(max_len, int) and 0 < max_len < 10**9 else None
        tok = cls(loaded.backend, loaded.kind, loaded.roles, loaded.extras, loaded.chinese_words, max_len,
                  loaded.padding_side, loaded.pad_type_id, loaded.tokenizer_class)
        tok.chat_template = formats.read_chat_template(Path(path), config)
        return tok

    def save(self, path: str | os.PathLike) -> Path:
        """Write tokenizer.json + tokenizer_config.json (+ vocab.txt or vocab.json/merges.txt) to `path`."""
        d = Path(path)
        self._set_state(None)  # never save a per-call truncation/padding into the file
        hf_keys: dict = {}
        if self.kind in ("wordpiece", "words"):
            hf_keys["do_lower_case"] = self.lowercase
        if self.model_max_length is not None:
            hf_keys["model_max_length"] = self.model_max_length
        if self.tokenizer_class is not None:
            hf_keys["tokenizer_class"] = self.tokenizer_class
        if self.padding_side != "right":
            hf_keys["padding_side"] = self.padding_side
        if self.chat_template is not None:
            hf_keys["chat_template"] = self.chat_template
        ours = {"chinese_words": self.chinese_words}
        if self.pad_type_id:
            ours["pad_type_id"] = self.pad_type_id
        formats.save_dir(d, self._backend, self.kind, self._roles, self._extras, hf_keys, ours)
        return d

    # ------------------------------------------------------------------------------------------
    # encoding

    def encode(
        self,
        text: str,
        pair: str | None = None,
        *,
        max_length: int | None = None,
        truncation: bool | str | None = None,
        padding: bool | str = False,
        add_special_tokens: bool = True,
        pad_to_multiple_of: int | None = None,
    ) -> Encoding:
        """Encode one text (or a pair, e.g. question + context) into an `Encoding`.

        truncation: None = truncate only when max_length is given; True = "longest_first" (drop from
            the longer sequence one token at a time); or "only_first" / "only_second".
        padding: False; "max_length" pads up to max_length (True/"longest" is a no-op for one text), on
            `padding_side` (XLNet: left) with token type `pad_type_id`.
        """
        _check_text(text, "text")
        if pair is not None:
            _check_text(pair, "pair")
        self._configure(max_length, truncation, padding, pad_to_multiple_of, batch=False)
        enc = self._backend.encode(text, pair, add_special_tokens=add_special_tokens)
        return self._wrap(enc, (text, pair))

    def encode_batch(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        max_length: int | None = None,
        truncation: bool | str | None = None,
        padding: bool | str = False,
        add_special_tokens: bool = True,
        pad_to_multiple_of: int | None = None,
    ) -> list[Encoding]:
        """Encode many texts in parallel (Rust threads). padding=True pads to the longest in the batch."""
        if isinstance(texts, str):
            raise TokenizerError("encode_batch got one string; fix: pass a list of strings, or use encode()")
        texts = list(texts)
        for i, t in enumerate(texts):
            _check_text(t, f"texts[{i}]")
        if pairs is not None:
            pairs = list(pairs)
            if len(pairs) != len(texts):
                raise TokenizerError(
                    f"{len(texts)} texts but {len(pairs)} pairs; fix: pass one pair per text"
                )
            for i, t in enumerate(pairs):
                _check_text(t, f"pairs[{i}]")
            inputs = list(zip(texts, pairs))
        else:
            inputs = texts
        self._configure(max_length, truncation, padding, pad_to_multiple_of, batch=True)
        encs = self._backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        if self.chinese_words is None and self.kind != "words":
            return [Encoding(e) for e in encs]
        ps = pairs if pairs is not None else [None] * len(texts)
        return [self._wrap(e, (t, p)) for e, t, p in zip(encs, texts, ps)]

    def _wrap(self, enc, texts: tuple[str, str | None]) -> Encoding:
        if self.chinese_words == "jieba":
            return Encoding(enc, jieba_word_ids(enc, texts))
        if self.kind == "words":  # the engine's words are whole clauses of Chinese: each CJK token is one
            return Encoding(enc, cjk_token_word_ids(enc, texts))
        return Encoding(enc)

    def _configure(self, max_length, truncation, padding, pad_to_multiple_of, batch: bool) -> None:
        """Translate per-call truncation/padding into the backend's (stateful) settings."""
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)):
            raise TokenizerError(f"max_length must be an int, got {max_length!r}")
        if truncation is None:
            truncation = max_length is not None
        if truncation is True:
            truncation = "longest_first"
        if truncation and truncation not in TRUNCATION_STRATEGIES:
            raise TokenizerError(
                f"truncation={truncation!r} is not valid; fix: use True, False or one of "
                f"{', '.join(TRUNCATION_STRATEGIES)}"
            )
        trunc_len = max_length if max_length is not None else self.model_max_length
        if truncation and trunc_len is None:
            raise TokenizerError("truncation needs a length; fix: pass max_length=N")
        if truncation and trunc_len < 1:
            raise TokenizerError(f"max_length must be >= 1, got {trunc_len}")
        if padding is True:
            padding = "longest"
        if padding not in (False, None, "longest", "max_length", "do_not_pad"):
            raise TokenizerError(
                f"padding={padding!r} is not valid; fix: use False, True, 'longest' or 'max_length'"
            )
        pad = None
        if padding == "max_length" or (padding == "longest" and (batch or pad_to_multiple_of)):
            if self.pad_id is None:
                raise TokenizerError(
                    "this tokenizer has no pad token, so it cannot pad; fix: train or load it with "
                    "special_tokens including 'pad', or pad the ids yourself"
                )
            if padding == "max_length" and max_length is None:
                raise TokenizerError("padding='max_length' needs max_length; fix: pass max_length=N")
            pad = (max_length if padding == "max_length" else None, pad_to_multiple_of, self.padding_side,
                   self.pad_type_id)
        state = ((truncation, trunc_len) if truncation else None, pad)
        self._set_state(state)

    def _set_state(self, state: tuple | None) -> None:
        state = state or (None, None)
        if state == self._state:
            return
        trunc, pad = state
        if trunc is None:
            self._backend.no_truncation()
        else:
            strategy, length = trunc
            try:
                self._backend.enable_truncation(length, strategy=strategy)
            except Exception as e:  # the engine refuses a length shorter than the special tokens
                raise TokenizerError(f"cannot truncate to max_length={length}: {e}") from None
        if pad is None:
            self._backend.no_padding()
        else:
            self._backend.enable_padding(
                pad_id=self.pad_id, pad_token=self._roles["pad"], length=pad[0], pad_to_multiple_of=pad[1],
                direction=pad[2], pad_type_id=pad[3],
            )
        self._state = state

    # ------------------------------------------------------------------------------------------
    # decoding and vocabulary

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of a sequence of ids (a list, or a 1-D tensor/array); special tokens skipped by default."""
        ids = _as_id_list(ids)
        n = self.vocab_size
        bad = next((i for i in ids if not 0 <= i < n), None)
        if bad is not None:
            raise TokenizerError(
                f"id {bad} is out of range for a vocabulary of {n}; fix: pass ids in [0, {n})"
            )
        return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def decode_batch(self, batch, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    @property
    def vocab_size(self) -> int:
        """Number of ids, added/special tokens included (the embedding table needs this many rows)."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return self._backend.get_vocab(with_added_tokens=True)

    def id_to_token(self, i: int) -> str | None:
        return self._backend.id_to_token(i)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    @property
    def backend(self) -> Backend:
        """The underlying `tokenizers.Tokenizer` (for anything this class does not wrap)."""
        return self._backend

    @property
    def layout(self):
        """Where this tokenizer's template puts its special tokens and how it pads (`layout.Layout`),
        for encoders that assemble inputs from pieces (NER windows, QA windows)."""
        from .layout import layout_of

        return layout_of(self)

    @property
    def special_tokens(self) -> dict[str, str]:
        """role -> token string, for the roles this tokenizer has."""
        return dict(self._roles)

    @property
    def extra_special_tokens(self) -> list[str]:
        return list(self._extras)

    @property
    def all_special_ids(self) -> list[int]:
        return sorted({self.token_to_id(t) for t in [*self._roles.values(), *self._extras]})

    def _role_id(self, role: str) -> int | None:
        token = self._roles.get(role)
        return None if token is None else self._backend.token_to_id(token)

    pad_id = property(lambda self: self._role_id("pad"), doc="id of the padding token, or None")
    unk_id = property(lambda self: self._role_id("unk"), doc="id of the unknown token, or None")
    cls_id = property(lambda self: self._role_id("cls"), doc="id of the classification token, or None")
    sep_id = property(lambda self: self._role_id("sep"), doc="id of the separator token, or None")
    mask_id = property(lambda self: self._role_id("mask"), doc="id of the mask token, or None")
    bos_id = property(lambda self: self._role_id("bos"), doc="id of the begin-of-sequence token, or None")
    eos_id = property(lambda self: self._role_id("eos"), doc="id of the end-of-sequence token, or None")

    @property
    def chinese_words(self) -> str | None:
        """None, or "jieba": word_ids follow jieba's segmentation (for whole-word masking)."""
        return self._chinese_words

    @chinese_words.setter
    def chinese_words(self, value: str | None) -> None:
        self._chinese_words = check_chinese_words(value)

    @property
    def lowercase(self) -> bool:
        """Whether the normalizer lowercases the input."""
        spec = json.dumps(json.loads(self._backend.to_str()).get("normalizer"))
        return '"lowercase": true' in spec or '"type": "Lowercase"' in spec

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, special_tokens={self._roles})"


def check_chinese_words(value):
    if value not in CHINESE_WORDS:
        raise TokenizerError(f"chinese_words={value!r} is not valid; fix: use None or 'jieba'")
    return value


def _check_text(text, name: str) -> None:
    if not isinstance(text, str):
        raise TokenizerError(f"{name} must be str, got {type(text).__name__}; fix: decode bytes to str first")


def _as_id_list(ids) -> list[int]:
    if hasattr(ids, "tolist"):  # torch.Tensor / numpy array, without importing either
        ids = ids.tolist()
    if isinstance(ids, int):
        ids = [ids]
    ids = list(ids)
    if ids and isinstance(ids[0], list):
        raise TokenizerError("decode takes one sequence of ids; fix: use decode_batch for a batch")
    return [int(i) for i in ids]


class _progress:
    """A rich progress bar over the corpus (bytes for files, texts for an iterator); no-op if disabled.

    Used as ``with _progress(...) as p``: ``p.advance(n)`` while reading, ``p.phase(text)`` after.
    """

    def __init__(self, enabled: bool, files, texts):
        self.enabled = enabled
        if files:
            self.total, self.unit = sum(p.stat().st_size for p in files), "bytes"
        else:
            self.total, self.unit = (len(texts) if hasattr(texts, "__len__") else None), "texts"

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("{task.completed:,} " + self.unit), TimeElapsedColumn(),
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("reading corpus", total=self.total)
        return self

    def advance(self, n: int) -> None:
        if self.enabled:
            self.bar.advance(self.task, n)

    def phase(self, description: str) -> None:
        if self.enabled:
            self.bar.update(self.task, description=description)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
        return False
