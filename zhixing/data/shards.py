"""Token shards: a corpus tokenized once into flat `np.memmap` files that loaders slice for free.

Layout of a shard directory (written by `prepare_shards`, read by `TokenShards`)::

    meta.json            vocab_size, dtype, token/document counts, tokenizer fingerprint, source, options
    train.bin  val.bin   every token id of the split, documents back to back, each followed by the
                         separator (eos, else sep) when there is one; uint16 if vocab_size <= 65536
    train.docs.npy       int64 start offset of every document in train.bin (np.save, no pickle)
    train.words.bin      uint8, 1 where a token starts a word (from the tokenizer's word_ids; jieba
                         words for Chinese when the tokenizer has chinese_words="jieba"): whole-word masking

The train/val split is by document and deterministic: a document goes to val when the hash of its
text falls below `val_fraction` (so duplicated documents never straddle the split). A corpus whose
split would leave val empty (e.g. tinyshakespeare, one document) is split nanoGPT-style instead: the
last `val_fraction` of the tokens. `meta.json` is written last, so a directory with a `meta.json`
is always complete; re-running with the same inputs reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zhixing.io import atomic_write_text

from .corpora import BUILTIN_CORPORA, CorpusError, read_documents, source_files
from .encode import SPLITS, ShardError, encode_corpus, load_tokenizer, separator_id_of

FORMAT_VERSION = 1
Split = Literal["auto", "hash", "tail"]


# ---------------------------------------------------------------------------------------------
# fingerprints


def vocab_fingerprint(tokenizer) -> str:
    """sha256 of the id -> token table: equal iff two tokenizers give every id the same token."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()[:16]


def _pipeline_fingerprint(tokenizer) -> str:
    # The whole pipeline (normalizer, pre-tokenizer, vocabulary) and the word segmentation: any change
    # in how text becomes ids or word starts means the shards must be rebuilt.
    spec = tokenizer.backend.to_str() + f"|chinese_words={getattr(tokenizer, 'chinese_words', None)}"
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def source_fingerprint(source: str) -> list:
    """What a corpus is made of: its files with their sizes and modification times (a change rebuilds
    the shards and retrains a cached tokenizer)."""
    if source == "python-docs":
        return [source, sys.version.split()[0]]
    files = source_files(source)
    return [source] + [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


# ---------------------------------------------------------------------------------------------
# prepare


def _progress(enabled: bool):
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


def prepare_shards(
    source: str | os.PathLike,
    tokenizer,
    out_dir: str | os.PathLike,
    *,
    val_fraction: float = 0.01,
    split: Split = "auto",
    workers: int | None = None,
    field: str | None = None,
    column: str | None = None,
    blank_lines: bool = False,
    separator: bool = True,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Tokenize corpus `source` into `out_dir` (train.bin, val.bin, *.docs.npy, *.words.bin, meta.json).

    tokenizer: a `zhixing.tokenizers.Tokenizer` or its directory.
    val_fraction: share of documents (split="hash") or of tokens (split="tail") held out for validation.
    split: "hash" by document text; "tail" the last tokens (nanoGPT); "auto" = hash unless that leaves
        val empty, then tail.
    workers: encoding processes (None = min(cpu count, 8); 1 = in this process).
    separator: append eos (else sep) after every document so CLM windows see document boundaries.
    Idempotent: if `out_dir/meta.json` records the same inputs (corpus files, tokenizer, options) the
    shards are reused; otherwise they are rebuilt. ``force=True`` always rebuilds. Returns `out_dir`.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1); fix: e.g. 0.01")
    if split not in ("auto", "hash", "tail"):
        raise ValueError(f"split={split!r}: use 'auto', 'hash' or 'tail'")
    source = str(source)
    out = Path(out_dir)
    tok = load_tokenizer(tokenizer)
    docs = read_documents(source, field=field, column=column, blank_lines=blank_lines)  # raises if missing
    options = dict(
        val_fraction=val_fraction,
        split=split,
        field=field,
        column=column,
        blank_lines=blank_lines,
        separator=separator,
    )
    build_key = hashlib.sha256(
        json.dumps(
            [FORMAT_VERSION, source_fingerprint(source), _pipeline_fingerprint(tok), options], default=str
        ).encode()
    ).hexdigest()[:16]
    if not force and _is_complete(out, build_key):
        return out

    workers = min(os.cpu_count() or 1, 8) if workers is None else max(1, int(workers))
    out.mkdir(parents=True, exist_ok=True)
    vocab_size = tok.vocab_size
    dtype = token_dtype(vocab_size)
    build = Path(tempfile.mkdtemp(dir=out, prefix=".build-"))
    try:
        with tempfile.TemporaryDirectory() as tok_tmp:
            tok_dir = None
            if workers > 1:
                tok_dir = (
                    str(tok.save(tok_tmp))
                    if not isinstance(tokenizer, (str, os.PathLike))
                    else str(tokenizer)
                )
            # "tail" splits after the fact, so every document first goes to the train stream in order.
            hash_fraction = 0.0 if split == "tail" else val_fraction
            stats = _write_streams(
                docs, tok, tok_dir, build, dtype, hash_fraction, separator, workers, progress, source
            )
        if stats["num_docs"] == 0 or stats["tokens"]["train"] + stats["tokens"]["val"] == 0:
            raise CorpusError(
                f"corpus {source!r} is empty: {stats['num_docs']} documents, no tokens; fix: "
                "check the path, --field/--column, or that the files contain text"
            )
        if stats["max_id"] >= vocab_size:
            raise ShardError(f"the tokenizer produced id {stats['max_id']} >= its vocab_size {vocab_size}")
        unk_fraction = _check_unknown(build, dtype, tok, stats, source)
        used_split = split
        if split == "tail" or (split == "auto" and val_fraction > 0 and stats["docs"]["val"] == 0):
            used_split = "tail"
            _tail_split(build, dtype, val_fraction, stats, separator)
        elif split == "auto":
            used_split = "hash"
        sep = separator_id_of(tok) if separator else None
        meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "build_key": build_key,
            "source": source,
            "vocab_size": vocab_size,
            "dtype": dtype.name,
            "tokens": stats["tokens"],
            "documents": stats["docs"],
            "files": {
                s: {"tokens": f"{s}.bin", "doc_starts": f"{s}.docs.npy", "word_starts": f"{s}.words.bin"}
                for s in SPLITS
            },
            "separator_id": sep,
            "split": used_split,
            "val_fraction": val_fraction,
            "tokenizer": {
                "kind": getattr(tok, "kind", None),
                "vocab_fingerprint": vocab_fingerprint(tok),
                "chinese_words": getattr(tok, "chinese_words", None),
                "special_tokens": tok.special_tokens,
                "path": str(Path(tokenizer).resolve()) if isinstance(tokenizer, (str, os.PathLike)) else None,
            },
            "options": options,
            "unk_fraction": unk_fraction,
        }
        # Commit: invalidate the old meta first, move the files in, write the new meta last.
        (out / "meta.json").unlink(missing_ok=True)
        for f in build.iterdir():
            os.replace(f, out / f.name)
        atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out


UNK_WARN_FRACTION = 0.01  # above this share of unknown tokens, `prepare` warns


def _check_unknown(build: Path, dtype, tok: Any, stats: dict, source: str) -> float | None:
    """The share of the corpus's tokens that are the tokenizer's unknown token; a warning (with the
    fraction and a fix) above UNK_WARN_FRACTION: such shards train a model on "[UNK]" and say nothing."""
    unk = getattr(tok, "unk_id", None)
    total = stats["tokens"]["train"] + stats["tokens"]["val"]
    if unk is None or total == 0:
        return None if unk is None else 0.0
    count = 0
    for split in SPLITS:
        f = build / f"{split}.bin"
        if f.is_file() and f.stat().st_size:
            ids = np.memmap(f, dtype=dtype, mode="r")
            for i in range(0, len(ids), 1 << 24):  # in chunks: a corpus may not fit in memory
                count += int(np.count_nonzero(ids[i:i + (1 << 24)] == unk))
            del ids
    fraction = count / total
    if fraction > UNK_WARN_FRACTION:
        warnings.warn(
            f"corpus {source!r}: {count:,} of {total:,} tokens ({fraction:.1%}) are the unknown token "
            f"{tok.id_to_token(unk)!r}: the tokenizer does not fit this text (another language or "
            "script?); fix: train a tokenizer on this corpus (zhixing tokenizer train) or use one made for "
            "its language",
            stacklevel=3)
    return round(fraction, 6)


def _is_complete(out: Path, build_key: str) -> bool:
    try:
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("build_key") != build_key:
        return False
    itemsize = np.dtype(meta["dtype"]).itemsize
    for s in SPLITS:
        f = out / f"{s}.bin"
        if not f.is_file() or f.stat().st_size != meta["tokens"][s] * itemsize:
            return False
    return True


def _write_streams(
    docs, tok, tok_dir, build: Path, dtype, val_fraction, separator, workers, progress, source
) -> dict:
    tokens = {s: 0 for s in SPLITS}
    ndocs = {s: 0 for s in SPLITS}
    lengths: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    max_id, num_docs = -1, 0
    files = {s: open(build / f"{s}.bin", "wb") for s in SPLITS}
    words = {s: open(build / f"{s}.words.bin", "wb") for s in SPLITS}
    try:
        with _progress(progress) as bar:
            task = bar.add_task(f"tokenizing {source}", stats="")
            for chunk in encode_corpus(docs, tok, tok_dir, val_fraction, separator, workers):
                for s in SPLITS:
                    chunk.ids[s].astype(dtype).tofile(files[s])
                    chunk.words[s].tofile(words[s])
                    tokens[s] += len(chunk.ids[s])
                    ndocs[s] += len(chunk.lengths[s])
                    lengths[s].append(chunk.lengths[s])
                max_id = max(max_id, chunk.max_id)
                num_docs += chunk.num_docs
                bar.update(task, stats=f"{num_docs:,} documents, {tokens['train'] + tokens['val']:,} tokens")
    finally:
        for f in [*files.values(), *words.values()]:
            f.close()
    for s in SPLITS:
        lens = np.concatenate(lengths[s]) if lengths[s] else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if len(lens) else lens
        np.save(build / f"{s}.docs.npy", starts, allow_pickle=False)
    return {"tokens": tokens, "docs": ndocs, "max_id": max_id, "num_docs": num_docs}


def _tail_split(build: Path, dtype, val_fraction: float, stats: dict, separator: bool) -> None:
    """Re-split nanoGPT-style: all tokens in corpus order, the last `val_fraction` of them become val."""
    # Put the two hash streams back into one (train then val; for a single document val is empty).
    ids = np.concatenate([np.fromfile(build / f"{s}.bin", dtype=dtype) for s in SPLITS])
    words = np.concatenate([np.fromfile(build / f"{s}.words.bin", dtype=np.uint8) for s in SPLITS])
    offset = stats["tokens"]["train"]
    starts = np.concatenate([np.load(build / "train.docs.npy"), np.load(build / "val.docs.npy") + offset])
    # nanoGPT cuts at int(n * 0.9) of the text; a trailing separator is not text.
    n = len(ids) - (1 if separator and len(ids) else 0)
    cut = int(n * (1 - val_fraction))
    parts = {"train": (0, cut), "val": (cut, len(ids))}
    for s, (a, b) in parts.items():
        ids[a:b].tofile(build / f"{s}.bin")
        words[a:b].tofile(build / f"{s}.words.bin")
        inside = starts[(starts >= a) & (starts < b)] - a
        if b > a and (len(inside) == 0 or inside[0] != 0):
            inside = np.concatenate([[0], inside])  # the split starts mid-document
        np.save(build / f"{s}.docs.npy", inside.astype(np.int64), allow_pickle=False)
        stats["tokens"][s] = b - a
        stats["docs"][s] = len(inside)


# ---------------------------------------------------------------------------------------------
# reading


class TokenShards:
    """One split of a prepared shard directory, memory-mapped.

    tokens: 1-D np.memmap of ids; doc_starts: int64 offsets of documents in `tokens`;
    word_starts: uint8 memmap (1 = token starts a word) for whole-word masking; vocab_size; meta.
    """

    def __init__(self, directory: str | os.PathLike, split: str = "train"):
        self.dir = Path(directory)
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: use 'train' or 'val'")
        self.split = split
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            raise ShardError(
                f"{meta_path} not found: {self.dir} holds no prepared shards; fix: run "
                f"`zhixing prepare --corpus NAME|PATH --tokenizer DIR --out {self.dir}`"
            )
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ShardError(
                f"{meta_path}: line {e.lineno}: corrupted ({e.msg}); fix: re-run `zhixing prepare`"
                " with --force"
            ) from None
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise ShardError(
                f"{meta_path}: shard format {self.meta.get('format_version')} is not "
                f"{FORMAT_VERSION}; fix: re-run `zhixing prepare`"
            )
        self.vocab_size: int = int(self.meta["vocab_size"])
        self.dtype = np.dtype(self.meta["dtype"])
        self.separator_id: int | None = self.meta.get("separator_id")
        n = int(self.meta["tokens"][split])
        path = self.dir / f"{split}.bin"
        if not path.is_file() or path.stat().st_size != n * self.dtype.itemsize:
            raise ShardError(
                f"{path}: missing or truncated (meta.json says {n} tokens of {self.dtype}); "
                "fix: re-run `zhixing prepare` with --force"
            )
        # np.memmap cannot map an empty file.
        self.tokens = (
            np.memmap(path, dtype=self.dtype, mode="r", shape=(n,)) if n else np.zeros(0, self.dtype)
        )
        wpath = self.dir / f"{split}.words.bin"
        self.word_starts = (
            np.memmap(wpath, dtype=np.uint8, mode="r", shape=(n,))
            if n and wpath.is_file() and wpath.stat().st_size == n
            else None
        )
        self.doc_starts: np.ndarray = np.load(self.dir / f"{split}.docs.npy", allow_pickle=False)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def num_docs(self) -> int:
        return len(self.doc_starts)

    def doc_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of every document's own tokens, the trailing separator excluded."""
        starts = self.doc_starts.astype(np.int64)
        ends = np.append(starts[1:], len(self.tokens)).astype(np.int64)
        if self.separator_id is not None and len(ends):
            # the separator is the last token of each document (a tail split may cut one off)
            last = self.tokens[np.maximum(ends - 1, 0)]
            ends = ends - ((last == self.separator_id) & (ends > starts)).astype(np.int64)
        return starts, ends

    def check_tokenizer(self, tokenizer) -> None:
        """Raise ShardError unless `tokenizer` has exactly the vocabulary these shards were made with."""
        theirs = self.meta["tokenizer"]
        if tokenizer.vocab_size != self.vocab_size:
            raise ShardError(
                f"{self.dir}: shards were prepared with a vocabulary of {self.vocab_size} ids but the "
                f"tokenizer has {tokenizer.vocab_size}; fix: use the tokenizer they were made with "
                f"({theirs.get('path') or 'see meta.json'}) or re-run `zhixing prepare` with this one"
            )
        if vocab_fingerprint(tokenizer) != theirs["vocab_fingerprint"]:
            raise ShardError(
                f"{self.dir}: the tokenizer's vocabulary differs from the one the shards were prepared with "
                f"(same size {self.vocab_size}, different tokens); fix: use the tokenizer they were made "
                f"with ({theirs.get('path') or 'see meta.json'}) or re-run `zhixing prepare` with this one"
            )

    def __repr__(self) -> str:
        return (
            f"TokenShards({str(self.dir)!r}, split={self.split!r}, tokens={len(self):,}, "
            f"documents={self.num_docs:,}, vocab_size={self.vocab_size})"
        )


def describe(directory: str | os.PathLike) -> str:
    """A one-paragraph summary of a shard directory (for the CLI)."""
    meta = TokenShards(directory, "train").meta
    t, d = meta["tokens"], meta["documents"]
    return (
        f"{directory}: {meta['source']} -> train {t['train']:,} tokens / {d['train']:,} documents, "
        f"val {t['val']:,} tokens / {d['val']:,} documents; vocab_size {meta['vocab_size']:,} "
        f"({meta['dtype']}), split {meta['split']}"
    )


__all__ = [
    "BUILTIN_CORPORA",
    "ShardError",
    "TokenShards",
    "prepare_shards",
    "token_dtype",
    "vocab_fingerprint",
]
