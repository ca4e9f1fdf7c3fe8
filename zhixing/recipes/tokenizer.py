"""The tokenizer a recipe trains once and caches (pretraining: on its corpus; translation: on both sides of
its parallel text), or the one its data section names."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from zhixing.io import staged_dir
from zhixing.train import distributed as D
from zhixing.train.config import Recipe


def cached_tokenizer(recipe: Recipe, info: D.DistInfo, progress: bool, texts: Callable[[], Iterable[str]],
                     directory: Path, special_tokens: dict[str, str] | None = None):
    """data.tokenizer when given; else the tokenizer in `directory`, trained on `texts()` by rank 0 the first
    time (other ranks wait at a barrier and load it)."""
    from zhixing.tokenizers import Tokenizer

    d = recipe.data
    if d.tokenizer:
        return Tokenizer.load(d.tokenizer)
    if info.is_main and not Tokenizer.can_load(directory):
        tok = Tokenizer.train(iter(texts()), kind=d.tokenizer_kind, vocab_size=d.vocab_size,
                              chinese_words=d.chinese_words, special_tokens=special_tokens,
                              show_progress=progress)
        with staged_dir(directory) as tmp:  # other ranks (and later runs) see a whole tokenizer or none
            tok.save(tmp)
    D.barrier(info)
    return Tokenizer.load(directory)
