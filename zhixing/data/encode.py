"""Encoding a corpus into token ids, in this process or a pool of worker processes (for prepare_shards).

Imports no torch: the workers stay light. Each chunk of documents comes back already split into the
train and val streams, with word-start flags for whole-word masking.
"""

from __future__ import annotations

import collections
import hashlib
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhixing.errors import ShardError

SPLITS = ("train", "val")


def unit_hash(text: str) -> float:
    """A number in [0, 1) fixed by the text: the deterministic train/val coin."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


# ---------------------------------------------------------------------------------------------
# encoding (runs in worker processes)

_WORKER_TOK = None


def load_tokenizer(tokenizer):
    if isinstance(tokenizer, (str, os.PathLike)):
        from zhixing.tokenizers import Tokenizer

        path = Path(tokenizer)
        if not Tokenizer.can_load(path):
            raise ShardError(
                f"{path}: no tokenizer here (tokenizer.json / vocab.txt / vocab.json+merges.txt); "
                "fix: train one with `zhixing tokenizer train` or pass its directory"
            )
        return Tokenizer.load(path)
    return tokenizer


def separator_id_of(tokenizer) -> int | None:
    # GPT-style corpora separate documents with eos (<|endoftext|>), BERT-style ones with [SEP].
    return tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.sep_id


def _init_worker(tokenizer_dir: str) -> None:
    global _WORKER_TOK
    _WORKER_TOK = load_tokenizer(tokenizer_dir)


@dataclass
class _Chunk:
    """A batch of encoded documents, already split into train and val streams."""

    ids: dict[str, np.ndarray]  # split -> concatenated ids (separators included)
    lengths: dict[str, np.ndarray]  # split -> tokens per document (separator included)
    words: dict[str, np.ndarray]  # split -> uint8 word-start flags
    max_id: int
    num_docs: int


def _encode_chunk(texts: list[str], val_fraction: float, separator: bool, tokenizer=None) -> _Chunk:
    tok = tokenizer if tokenizer is not None else _WORKER_TOK
    sep = separator_id_of(tok) if separator else None
    encodings = tok.encode_batch(texts, add_special_tokens=False)
    parts: dict[str, tuple[list, list, list]] = {s: ([], [], []) for s in SPLITS}
    max_id = -1
    for text, enc in zip(texts, encodings):
        ids = np.asarray(enc.ids, dtype=np.int64)
        # word starts: a token starts a word when its word id differs from the previous token's
        # (None = special / no word: always a start).
        w = np.asarray([-1 if x is None else x for x in enc.word_ids], dtype=np.int64)
        starts = np.ones(len(ids), dtype=np.uint8)
        if len(w) > 1:
            starts[1:] = (w[1:] != w[:-1]) | (w[1:] < 0)
        if sep is not None:
            ids = np.append(ids, sep)
            starts = np.append(starts, np.uint8(1))
        if len(ids) == 0:
            continue
        max_id = max(max_id, int(ids.max()))
        split = "val" if unit_hash(text) < val_fraction else "train"
        parts[split][0].append(ids)
        parts[split][1].append(len(ids))
        parts[split][2].append(starts)
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return _Chunk(
        ids={s: cat(parts[s][0], np.int64) for s in SPLITS},
        lengths={s: np.asarray(parts[s][1], dtype=np.int64) for s in SPLITS},
        words={s: cat(parts[s][2], np.uint8) for s in SPLITS},
        max_id=max_id,
        num_docs=len(texts),
    )


def _worker_task(args) -> _Chunk:
    return _encode_chunk(*args)


def _chunks(docs: Iterable[str], max_chars: int = 1 << 20, max_docs: int = 4096) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for doc in docs:
        chunk.append(doc)
        size += len(doc)
        if size >= max_chars or len(chunk) >= max_docs:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def encode_corpus(
    docs: Iterable[str],
    tokenizer,
    tokenizer_dir: str | None,
    val_fraction: float,
    separator: bool,
    workers: int,
) -> Iterator[_Chunk]:
    """Encoded chunks in corpus order; with workers > 1, a process pool with a bounded queue."""
    if workers <= 1:
        for chunk in _chunks(docs):
            yield _encode_chunk(chunk, val_fraction, separator, tokenizer)
        return
    # fork where there is one: it starts in milliseconds and, unlike spawn, does not re-run a user's
    # script that lacks an `if __name__ == "__main__"` guard. The children only run tokenizers + numpy.
    ctx = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    # One Rust thread per worker: the processes are the parallelism (and setting the variable tells
    # tokenizers that the fork is deliberate, so it does not warn about it).
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer_dir,))
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved
    with pool:
        pending: collections.deque = collections.deque()
        for chunk in _chunks(docs):
            # Bounded: Pool.imap would read the whole corpus into its task queue.
            pending.append(pool.apply_async(_worker_task, ((chunk, val_fraction, separator),)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
