"""Data: corpora -> token shards -> batches for each pretraining objective.

    from zhixing.data import read_documents, prepare_shards, TokenShards, CLMLoader, MLMLoader, PLMLoader
    prepare_shards("peoples-daily", "my_tokenizer/", "shards/pd")      # once; reused afterwards
    train = CLMLoader(TokenShards("shards/pd", "train"), block_size=256, batch_size=32)
    for batch in train: model(**batch).loss ...

The loaders import torch; corpora and shards do not (prepare workers stay light), so the loaders are
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .corpora import BUILTIN_CORPORA, CorpusError, data_dir, read_documents
from .shards import ShardError, TokenShards, prepare_shards, token_dtype, vocab_fingerprint

if TYPE_CHECKING:
    from .collators import MLMLoader, mask_tokens
    from .loaders import CLMLoader
    from .plm import PLMLoader, plm_masks

_LAZY = {"CLMLoader": ".loaders", "MLMLoader": ".collators", "mask_tokens": ".collators", "PLMLoader": ".plm",
         "plm_masks": ".plm"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'zhixing.data' has no attribute {name!r}")


__all__ = [
    "BUILTIN_CORPORA",
    "CLMLoader",
    "CorpusError",
    "MLMLoader",
    "PLMLoader",
    "ShardError",
    "TokenShards",
    "data_dir",
    "mask_tokens",
    "plm_masks",
    "prepare_shards",
    "read_documents",
    "token_dtype",
    "vocab_fingerprint",
]
