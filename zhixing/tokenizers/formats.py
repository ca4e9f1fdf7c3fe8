"""Tokenizer directories on disk: ours, any HF ``tokenizer.json``, BERT ``vocab.txt``, GPT-2
``vocab.json`` + ``merges.txt``, XLNet's ``spiece.model`` (with the sentencepiece package).

``save`` writes ``tokenizer.json`` (the HF format, readable by `tokenizers` and transformers) and
``tokenizer_config.json`` (the roles of the special tokens, in transformers' keys, plus a ``zhixing``
section with the kind), and the legacy files of the family (``vocab.txt`` for WordPiece,
``vocab.json`` + ``merges.txt`` for byte-level BPE) so older tools can read the result too.
Every file is written to a temporary name first and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as Backend

from zhixing.io import atomic_write_text

from . import spiece
from .errors import TokenizerError
from .pipelines import (
    KNOWN_SPELLINGS,
    ROLES,
    bert_normalizer,
    infer_role,
    set_post_processor,
    setup_byte_level,
)

FORMAT_VERSION = 1
CONFIG_FILE = "tokenizer_config.json"


@dataclass
class Loaded:
    """What a directory holds, before it becomes a `Tokenizer`."""

    backend: Backend
    kind: str
    roles: dict[str, str]
    extras: list[str] = field(default_factory=list)
    chinese_words: str | None = None
    source: str = "tokenizer.json"
    padding_side: str = "right"  # XLNet: "left"
    pad_type_id: int = 0  # segment id of padding (XLNet: 3)
    tokenizer_class: str | None = None  # the transformers class to save, when not PreTrainedTokenizerFast


def detect_format(path: str | os.PathLike) -> str | None:
    """'tokenizer.json', 'vocab.txt', 'gpt2', 'spiece' or None: the first format found in directory `path`."""
    d = Path(path)
    if not d.is_dir():
        return None
    if (d / "tokenizer.json").is_file():
        return "tokenizer.json"
    if (d / "vocab.txt").is_file():
        return "vocab.txt"
    if (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
        return "gpt2"
    if (d / "spiece.model").is_file():
        return "spiece"
    return None


def load_dir(path: str | os.PathLike) -> Loaded:
    d = Path(path)
    if not d.exists():
        raise TokenizerError(f"tokenizer directory not found: {d}; fix: check the path")
    if not d.is_dir():
        raise TokenizerError(
            f"{d} is a file; fix: pass the directory that holds tokenizer.json (or vocab.txt, or "
            "vocab.json + merges.txt), e.g. {d.parent}"
        )
    fmt = detect_format(d)
    if fmt is None:
        hint = " (vocab.json is there but merges.txt is missing)" if (d / "vocab.json").is_file() else ""
        raise TokenizerError(
            f"{d} holds no tokenizer{hint}: expected tokenizer.json, vocab.txt (BERT), vocab.json + "
            "merges.txt (GPT-2) or spiece.model (XLNet); fix: point to a tokenizer directory, or create one "
            "with `zhixing tokenizer train ... --out DIR` / Tokenizer.save(DIR)"
        )
    config = read_config(d)
    ours = config.get("zhixing", {}) if isinstance(config.get("zhixing"), dict) else {}
    if fmt == "tokenizer.json":
        loaded = load_tokenizer_json(d / "tokenizer.json", config)
    elif fmt == "vocab.txt":
        loaded = load_bert_vocab(d / "vocab.txt", config)
    elif fmt == "gpt2":
        loaded = load_gpt2(d / "vocab.json", d / "merges.txt", config)
    else:
        backend, roles, extras = spiece.load_spiece(d / "spiece.model", config)
        loaded = Loaded(backend, "unigram", roles, extras, source="spiece.model")
    loaded.kind = ours.get("kind", loaded.kind)
    loaded.chinese_words = ours.get("chinese_words")
    # XLNet pads on the left with segment id 3 (its <cls> must stay last); transformers knows that from
    # the class, which is kept for saving
    named = str(config.get("tokenizer_class") or "").removesuffix("Fast")
    xlnet = fmt == "spiece" or named == "XLNetTokenizer"
    loaded.tokenizer_class = "XLNetTokenizer" if xlnet else None
    loaded.padding_side = config.get("padding_side") or ("left" if xlnet else "right")
    loaded.pad_type_id = int(ours.get("pad_type_id", spiece.XLNET_PAD_TYPE_ID if xlnet else 0))
    return loaded


# ----------------------------------------------------------------------------------------------
# reading


def read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise TokenizerError(
            f"{path}: line {e.lineno}: invalid JSON ({e.msg}); fix: repair it or save it again"
        ) from None
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path}: byte {e.start}: not UTF-8; fix: re-save the file as UTF-8") from None


def read_config(d: Path) -> dict:
    """tokenizer_config.json merged with special_tokens_map.json (transformers' two config files)."""
    config: dict = {}
    for name in ("special_tokens_map.json", CONFIG_FILE):
        if (d / name).is_file():
            data = read_json(d / name)
            if not isinstance(data, dict):
                raise TokenizerError(f"{d / name}: expected a JSON object; fix: repair or delete the file")
            config.update(data)
    return config


def read_chat_template(d: Path, config: dict) -> str | None:
    """The chat template of a tokenizer directory: tokenizer_config.json's `chat_template` (a string, or
    transformers' list of named templates, of which "default" is taken), else a `chat_template.jinja` file
    (where transformers >= 4.43 may save it)."""
    value = config.get("chat_template")
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default") or next(iter(named.values()), None)
    if isinstance(value, str):
        return value
    if (d / "chat_template.jinja").is_file():
        return (d / "chat_template.jinja").read_text(encoding="utf-8")
    return None


def token_str(value) -> str | None:
    # transformers writes a token either as a string or as {"content": "[PAD]", ...}.
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def roles_from(config: dict, backend: Backend) -> tuple[dict[str, str], list[str]]:
    """Roles from the config (``pad_token`` ...), else from the spelling of the special tokens."""
    roles: dict[str, str] = {}
    section = config.get("zhixing")
    ours = section.get("special_tokens") if isinstance(section, dict) else None
    if isinstance(ours, dict):
        roles = {r: t for r, t in ours.items() if r in ROLES and isinstance(t, str)}
    else:
        for role in ROLES:
            token = token_str(config.get(f"{role}_token"))
            if token is not None and backend.token_to_id(token) is not None:
                roles[role] = token
    # transformers 5 writes `extra_special_tokens` (a list, or a dict of named tokens); 4.x the older key
    listed = config.get("additional_special_tokens") or config.get("extra_special_tokens") or []
    listed = list(listed.values()) if isinstance(listed, dict) else listed
    extras = [t for t in map(token_str, listed) if t]
    if not roles:
        specials = [t.content for t in backend.get_added_tokens_decoder().values() if t.special]
        vocab = backend.get_vocab()
        specials += [s for spellings in KNOWN_SPELLINGS.values() for s in spellings if s in vocab]
        for token in specials:
            role = infer_role(token, taken=roles)
            if role is not None:
                roles[role] = token
            # GPT-2's one special token plays both ends
            if token == "<|endoftext|>" and "eos" not in roles:
                roles["eos"] = token
    return roles, [t for t in extras if t not in roles.values()]


def infer_kind(backend: Backend) -> str:
    spec = json.loads(backend.to_str())
    model = (spec.get("model") or {}).get("type")
    text = json.dumps(spec.get("pre_tokenizer")) + json.dumps(spec.get("decoder"))
    if model == "WordPiece":
        return "wordpiece"
    if model == "BPE":
        return "byte_bpe" if "ByteLevel" in text else "bpe"
    if model == "Unigram" and "BertPreTokenizer" in text:
        return "words"
    if model == "WordLevel":
        return "char" if "Fuse" in text else "wordlevel"
    return (model or "unknown").lower()


def load_tokenizer_json(path: Path, config: dict) -> Loaded:
    try:
        backend = Backend.from_file(str(path))
    except Exception as e:  # the Rust side raises a bare Exception with serde's message
        raise TokenizerError(
            f"{path}: not a valid tokenizer.json ({e}); fix: re-save it with tokenizers/transformers "
            "or with Tokenizer.save"
        ) from None
    unk = getattr(backend.model, "unk_token", None)
    if unk and unk not in backend.get_vocab(with_added_tokens=False):
        # Otherwise the first unknown character fails deep inside encoding (a multiprocessing pool in
        # `zhixing prepare`) with the Rust library's message.
        raise TokenizerError(
            f"{path}: the model's unknown token {unk!r} is not in its vocabulary; fix: add {unk!r} to "
            f"model.vocab (or set model.unk_token to a token of the vocabulary)"
        )
    # Files saved by transformers often carry a fixed truncation/padding; encode() takes them per call.
    backend.no_truncation()
    backend.no_padding()
    roles, extras = roles_from(config, backend)
    return Loaded(backend, infer_kind(backend), roles, extras, source="tokenizer.json")


def load_bert_vocab(path: Path, config: dict) -> Loaded:
    """A BERT ``vocab.txt`` (one token per line, id = line number) + BERT's pipeline.

    Casing comes from ``do_lower_case`` in tokenizer_config.json; without one, a vocabulary with no
    upper-case letters outside ``[...]`` specials is taken to be uncased (as every uncased BERT is).
    """
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    if not tokens:
        raise TokenizerError(f"{path}: empty vocabulary; fix: point to a BERT vocab.txt (one token per line)")
    vocab = {tok: i for i, tok in enumerate(tokens)}  # a repeated line keeps its last id, as in transformers
    lowercase = config.get("do_lower_case")
    if lowercase is None:
        lowercase = not any(
            c.lower() != c for t in tokens if not (t.startswith("[") and t.endswith("]")) for c in t
        )
    unk = token_str(config.get("unk_token")) or "[UNK]"
    if unk not in vocab:
        raise TokenizerError(
            f"{path}: the unknown token {unk!r} is not in the vocabulary; fix: add it as a line"
        )
    backend = Backend(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    backend.normalizer = bert_normalizer(
        bool(lowercase), config.get("strip_accents"), config.get("tokenize_chinese_chars", True)
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    roles, extras = roles_from(config, backend)
    roles.setdefault("unk", unk)
    add_specials(backend, roles, extras)
    set_post_processor(backend, "wordpiece", roles)
    return Loaded(backend, "wordpiece", roles, extras, source="vocab.txt")


def read_merges(path: Path) -> list[tuple[str, str]]:
    merges = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if (lineno == 1 and line.startswith("#version")) or not line:
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise TokenizerError(
                    f"{path}: line {lineno}: expected two symbols separated by one space, got {line!r}; "
                    "fix: repair the line (GPT-2 merges.txt format)"
                )
            merges.append((parts[0], parts[1]))
    return merges


def load_gpt2(vocab_path: Path, merges_path: Path, config: dict) -> Loaded:
    """GPT-2's ``vocab.json`` + ``merges.txt``, with GPT-2's byte-level pipeline."""
    vocab = read_json(vocab_path)
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise TokenizerError(f"{vocab_path}: expected a JSON object token -> id; fix: use GPT-2's vocab.json")
    missing = [c for c in pre_tokenizers.ByteLevel.alphabet() if c not in vocab]
    if missing:
        raise TokenizerError(
            f"{vocab_path}: {len(missing)} of the 256 byte symbols are missing, so this is not a byte-level "
            "(GPT-2) vocabulary; fix: load its tokenizer.json instead"
        )
    merges = read_merges(merges_path)
    unknown = [m for m in merges if m[0] not in vocab or m[1] not in vocab or m[0] + m[1] not in vocab]
    if unknown:
        raise TokenizerError(
            f"{merges_path}: merge {unknown[0]} uses a symbol missing from {vocab_path.name}; "
            "fix: use the vocab.json and merges.txt saved together"
        )
    backend = Backend(models.BPE(vocab, merges))
    setup_byte_level(backend, lowercase=bool(config.get("do_lower_case", False)))
    roles, extras = roles_from(config, backend)
    add_specials(backend, roles, extras)
    return Loaded(backend, "byte_bpe", roles, extras, source="vocab.json+merges.txt")


def add_specials(backend: Backend, roles: dict[str, str], extras: list[str]) -> None:
    """Mark role and extra tokens special: matched before normalization, skipped by decode."""
    tokens = list(dict.fromkeys([*roles.values(), *extras]))
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])


# ----------------------------------------------------------------------------------------------
# writing


def save_dir(
    d: Path, backend: Backend, kind: str, roles: dict[str, str], extras: list[str], hf_keys: dict, ours: dict
) -> None:
    if d.exists() and not d.is_dir():
        raise TokenizerError(f"cannot save to {d}: it is a file; fix: choose a directory path")
    d.mkdir(parents=True, exist_ok=True)
    spec = backend.to_str(pretty=True)
    atomic_write_text(d / "tokenizer.json", spec)
    config = {"tokenizer_class": "PreTrainedTokenizerFast"}
    config.update({f"{r}_token": roles[r] for r in ROLES if r in roles})
    if extras:
        config["additional_special_tokens"] = list(extras)
    config.update(hf_keys)
    config["zhixing"] = {"format_version": FORMAT_VERSION, "kind": kind, "special_tokens": dict(roles)}
    config["zhixing"].update(ours)
    atomic_write_text(d / CONFIG_FILE, json.dumps(config, ensure_ascii=False, indent=2) + "\n")
    model = json.loads(spec)["model"]
    vocab = backend.get_vocab(with_added_tokens=True)
    contiguous = sorted(vocab.values()) == list(range(len(vocab)))
    if kind == "wordpiece" and contiguous and not any("\n" in t or "\r" in t for t in vocab):
        by_id = sorted(vocab, key=vocab.get)
        atomic_write_text(d / "vocab.txt", "".join(t + "\n" for t in by_id))
    if kind == "byte_bpe" and contiguous:
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        atomic_write_text(d / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
        atomic_write_text(d / "merges.txt", "#version: 0.2\n" + "".join(m + "\n" for m in merges))
