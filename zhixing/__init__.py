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
    """A model as a callable, on `device=` ("cpu" by default, "cuda", "auto"), inputs one or batched:

    - "text-generation": a language model (zhixing.generation.pipeline; GenerationConfig settings,
      stream=True, chats rendered with the model's chat template);
    - "fill-mask", "feature-extraction", "sentence-embedding": a pretrained encoder
      (zhixing.tasks.pretrained);
    - "classify", "ner", "qa", "relation": a fine-tuned run (zhixing.tasks.pipeline);
    - "translation": an encoder–decoder run of a seq2seq recipe (zhixing.recipes.translation).

    The packages are imported on first use."""
    if task == "text-generation":
        from zhixing.generation.pipeline import TextGenerationPipeline

        return TextGenerationPipeline(path, **settings)
    if task == "translation":
        from zhixing.recipes.translation import TranslationPipeline

        return TranslationPipeline(path, **settings)
    from zhixing.tasks.pipeline import pipeline as _pipeline

    return _pipeline(task, path, **settings)


def similarity(a, b=None):
    """Cosine similarities of embeddings (rows of `a` against rows of `b`, default `a`): see
    zhixing.tasks.pretrained.similarity."""
    from zhixing.tasks.pretrained import similarity as _similarity

    return _similarity(a, b)


__all__ = ["__version__", "load", "load_tokenizer", "pipeline", "similarity"]
