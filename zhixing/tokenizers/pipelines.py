"""How each tokenizer kind is assembled from Hugging Face `tokenizers` parts.

A `tokenizers.Tokenizer` is a pipeline: normalizer -> pre-tokenizer -> model -> post-processor, plus a
decoder. Each kind below fixes the pipeline to match the tokenizer the field knows it by:

- ``wordpiece``: BERT. BertNormalizer (clean control chars, optional lowercase + accent stripping,
  spaces around every CJK character) -> BertPreTokenizer (split on whitespace and punctuation) ->
  WordPiece (greedy longest match, ``##`` continuation) -> ``[CLS] A [SEP] B [SEP]``.
- ``byte_bpe``: GPT-2. ByteLevel pre-tokenizer (GPT-2's regex split, then every UTF-8 byte mapped to a
  printable character) -> BPE over the 256 byte symbols, so no input is ever unknown.
- ``bpe``: SentencePiece-style BPE over characters: Metaspace marks word starts with ``▁``; characters
  never seen in training become ``unk``.
- ``char``: one token per Unicode code point (nanoGPT's shakespeare_char), WordLevel vocabulary.
- ``words``: Chinese characters plus frequent words (WoBERT). BERT's normalizer without the spaces around
  CJK characters -> BertPreTokenizer -> a Unigram model whose pieces are every character of the corpus
  plus its most frequent jieba words (`chinese.word_vocabulary`); the most probable segmentation wins.
  ``[CLS] A [SEP] B [SEP]``; decoding puts a space between tokens, as BERT's does between characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend

from .errors import TokenizerError

KINDS = ("wordpiece", "bpe", "byte_bpe", "char", "words")
ROLES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")

DEFAULT_SPECIAL_TOKENS: dict[str, dict[str, str]] = {
    "wordpiece": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    "bpe": {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>", "mask": "<mask>"},
    # GPT-2 has one special token for both ends; a separate pad keeps padding distinguishable.
    "byte_bpe": {"pad": "<|pad|>", "bos": "<|endoftext|>", "eos": "<|endoftext|>"},
    "char": {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>", "mask": "<mask>"},
    "words": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
}

# Spellings by which a role is recognised when a file or a list does not name it.
KNOWN_SPELLINGS: dict[str, tuple[str, ...]] = {
    "pad": ("[PAD]", "<pad>", "<|pad|>", "<|padding|>", "[pad]"),
    "unk": ("[UNK]", "<unk>", "<|unk|>", "[unk]"),
    "cls": ("[CLS]", "<cls>", "[cls]"),
    "sep": ("[SEP]", "<sep>", "[sep]"),
    "mask": ("[MASK]", "<mask>", "<|mask|>", "[mask]"),
    "bos": ("<s>", "<|endoftext|>", "<|begin_of_text|>", "<|startoftext|>", "[BOS]", "<bos>"),
    "eos": ("</s>", "<|endoftext|>", "<|end_of_text|>", "[EOS]", "<eos>"),
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise TokenizerError(f"unknown tokenizer kind {kind!r}; fix: use one of {', '.join(KINDS)}")
    return kind


def resolve_special_tokens(
    kind: str, special_tokens: Mapping[str, str] | Iterable[str] | None
) -> tuple[dict[str, str], list[str]]:
    """Turn the user's `special_tokens` into (role -> token, extra tokens without a role).

    A dict names roles explicitly; a list of strings gets roles from well-known spellings
    (``[CLS]`` is cls, ``</s>`` is eos, ...) and keeps the rest as extra special tokens.
    """
    if special_tokens is None:
        return dict(DEFAULT_SPECIAL_TOKENS[kind]), []
    if isinstance(special_tokens, str):
        raise TokenizerError(
            f"special_tokens={special_tokens!r} is a single string; fix: pass a dict like "
            "{'pad': '[PAD]', 'unk': '[UNK]'} or a list of strings"
        )
    if isinstance(special_tokens, Mapping):
        roles, extras = {}, []
        for role, token in special_tokens.items():
            if role not in ROLES:
                raise TokenizerError(
                    f"special_tokens has unknown role {role!r}; fix: use roles from {', '.join(ROLES)}"
                )
            if not isinstance(token, str) or not token:
                raise TokenizerError(f"special_tokens[{role!r}] must be a non-empty string, got {token!r}")
            roles[role] = token
        return roles, extras
    roles, extras = {}, []
    for token in special_tokens:
        role = infer_role(token, taken=roles)
        if role is None:
            extras.append(token)
        else:
            roles[role] = token
    return roles, extras


def infer_role(token: str, taken: Mapping[str, str] = {}) -> str | None:  # noqa: B006 (read-only)
    """The role a token's spelling suggests, or None. `<|endoftext|>` fills bos first, then eos."""
    for role, spellings in KNOWN_SPELLINGS.items():
        if token in spellings and role not in taken:
            return role
    return None


def ordered_specials(roles: Mapping[str, str], extras: Iterable[str]) -> list[str]:
    """Special tokens in vocabulary order: roles in ROLES order, then extras; each string once."""
    out: list[str] = []
    for token in [roles[r] for r in ROLES if r in roles] + list(extras):
        if token not in out:
            out.append(token)
    return out


# ----------------------------------------------------------------------------------------------
# pipelines (everything except the model's vocabulary)


def bert_normalizer(lowercase: bool, strip_accents: bool | None = None, chinese_chars: bool = True):
    # strip_accents=None means "follow lowercase", exactly as in the original BERT.
    return normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=chinese_chars, strip_accents=strip_accents, lowercase=lowercase
    )


def char_split():
    # `[\s\S]` matches every code point, newlines included; each becomes its own pre-token.
    return pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")


def new_backend(kind: str, lowercase: bool, strip_accents: bool | None, unk: str | None) -> Backend:
    """An untrained backend of `kind` with its normalizer, pre-tokenizer and decoder set."""
    if kind == "wordpiece":
        backend = Backend(models.WordPiece(unk_token=unk or "[UNK]", max_input_chars_per_word=100))
        backend.normalizer = bert_normalizer(lowercase, strip_accents)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
    elif kind == "byte_bpe":
        backend = Backend(models.BPE())
        setup_byte_level(backend, lowercase)
    elif kind == "bpe":
        backend = Backend(models.BPE(unk_token=unk))
        if lowercase:
            backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    elif kind == "char":
        backend = Backend(models.WordLevel(vocab={}, unk_token=unk))
        if lowercase:
            backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer = char_split()
        backend.decoder = decoders.Fuse()
    elif kind == "words":  # the model is set once the vocabulary is counted (Tokenizer.train)
        backend = Backend(models.Unigram())
        backend.normalizer = bert_normalizer(lowercase, strip_accents, chinese_chars=False)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
    else:
        check_kind(kind)
    return backend


def setup_byte_level(backend: Backend, lowercase: bool = False) -> None:
    """GPT-2's pipeline exactly as `transformers.GPT2TokenizerFast` writes it in tokenizer.json."""
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)


def new_trainer(
    kind: str,
    vocab_size: int,
    min_frequency: int,
    specials: list[str],
    limit_alphabet: int | None,
    show_progress: bool,
):
    """The `tokenizers` trainer for `kind`, with special tokens first in the vocabulary."""
    added = [AddedToken(s, special=True, normalized=False) for s in specials]
    common = dict(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=show_progress)
    limit = {} if limit_alphabet is None else {"limit_alphabet": limit_alphabet}  # the binding rejects None
    if kind == "wordpiece":
        # HF's WordPiece trainer is BPE with '##' on non-initial symbols, then read as a WordPiece vocab.
        return trainers.WordPieceTrainer(
            **common, special_tokens=added, continuing_subword_prefix="##", **limit
        )
    if kind == "byte_bpe":
        # All 256 byte symbols are in the alphabet whether or not the corpus has them: no unknowns.
        return trainers.BpeTrainer(
            **common, special_tokens=added, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    if kind == "bpe":
        return trainers.BpeTrainer(**common, special_tokens=added, **limit)
    if kind == "char":
        return trainers.WordLevelTrainer(**common, special_tokens=added)
    if kind == "words":
        return None  # counted in Python: chinese.count_words + word_vocabulary
    check_kind(kind)


def set_post_processor(backend: Backend, kind: str, roles: Mapping[str, str]) -> None:
    """BERT's ``[CLS] A [SEP] B [SEP]`` template for WordPiece (and words) when cls and sep exist."""
    if kind in ("wordpiece", "words") and "cls" in roles and "sep" in roles:
        cls, sep = roles["cls"], roles["sep"]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))],
        )


def base_alphabet_size(backend: Backend, kind: str, n_specials: int) -> int:
    """How many entries of a trained vocabulary are not learned merges (specials + alphabet)."""
    vocab = backend.get_vocab()
    if kind == "byte_bpe":
        return n_specials + 256
    if kind == "bpe":
        return n_specials + sum(1 for t in vocab if len(t) == 1)
    if kind == "wordpiece":
        return n_specials + sum(1 for t in vocab if len(t) == 1 or (len(t) == 3 and t.startswith("##")))
    if kind == "words":
        return n_specials + sum(1 for t in vocab if len(t) == 1)
    return n_specials
