"""The tokenizer a recipe trains once and caches (pretraining: on its corpus; translation: on both sides of
its parallel text), or the one its data section names."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from zhixing.io import atomic_write_json, staged_dir
from zhixing.train import distributed as D
from zhixing.train.config import Recipe

TRAINED_ON = "trained_on.json"  # beside a cached tokenizer: the fingerprint of the corpus it was trained on


def cached_tokenizer(recipe: Recipe, info: D.DistInfo, progress: bool, texts: Callable[[], Iterable[str]],
                     directory: Path, special_tokens: dict[str, str] | None = None,
                     source: Any = None):
    """data.tokenizer when given; else the tokenizer in `directory`, trained on `texts()` by rank 0 the first
    time (other ranks wait at a barrier and load it).

    `source`, when given, is a JSON-able fingerprint of what `texts()` reads (files, sizes, modification
    times): it is stored beside the tokenizer, and a cached tokenizer whose corpus has changed since is
    trained again instead of being reused silently. A cache written before fingerprints existed adopts
    the current one."""
    from zhixing.tokenizers import Tokenizer

    d = recipe.data
    if d.tokenizer:
        return Tokenizer.load(d.tokenizer)
    record = directory / TRAINED_ON
    current = json.loads(json.dumps(source, default=str)) if source is not None else None
    if info.is_main:
        cached = Tokenizer.can_load(directory)
        if cached and current is not None and not record.exists():
            atomic_write_json(record, current)  # a cache from before fingerprints: adopt the current one
        stale = cached and current is not None and json.loads(record.read_text(encoding="utf-8")) != current
        if stale:
            print(f"{d.corpus}: the corpus changed since the tokenizer in {directory} was trained on it; "
                  "training it again", file=sys.stderr)
        if stale or not cached:
            tok = Tokenizer.train(iter(texts()), kind=d.tokenizer_kind, vocab_size=d.vocab_size,
                                  chinese_words=d.chinese_words, special_tokens=special_tokens,
                                  show_progress=progress)
            with staged_dir(directory) as tmp:  # other ranks (and later runs) see a whole tokenizer or none
                tok.save(tmp)
                if current is not None:
                    atomic_write_json(tmp / TRAINED_ON, current)
    D.barrier(info)
    return Tokenizer.load(directory)
