"""zhixing (知行): Transformer language models from theory to practice.

`import zhixing` stays light: torch and the models are imported when `load` is first called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from zhixing.models.base import Model
    from zhixing.tokenizers import Tokenizer


def load(path: str | os.PathLike, **config_overrides: Any) -> Model:
    """Load a model: a zhixing directory, a run directory, a Hugging Face directory or a Hub id
    (see zhixing.hub.load, which this is)."""
    from zhixing.hub import load as _load

    return _load(path, **config_overrides)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer of a model, run or tokenizer directory (or Hub id), as `zhixing.load` finds it."""
    from zhixing.hub import load_tokenizer as _load_tokenizer

    return _load_tokenizer(path)


def pipeline(task: str, path: str | os.PathLike, **settings: Any):
    """A fine-tuned model as a callable: `zhixing.pipeline("classify" | "ner" | "qa", "runs/<name>")`
    (see zhixing.tasks.pipeline); the tasks package is imported on first use."""
    from zhixing.tasks.pipeline import pipeline as _pipeline

    return _pipeline(task, path, **settings)


__all__ = ["__version__", "load", "load_tokenizer", "pipeline"]
