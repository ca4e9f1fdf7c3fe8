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
    """Load a model: a zhixing directory, a run directory, a Hugging Face directory or a Hub id.

    - zhixing (`config.json` with an `arch` key, written by `save_pretrained`): loaded as is;
      a run directory `runs/<name>/` gives its `best/` model, else its last `checkpoints/step-N/`.
    - Hugging Face (`config.json` with `model_type` bert / roberta / gpt2 / llama): converted with
      `zhixing.interop.from_hf`; weights from model.safetensors, or pytorch_model.bin read with
      `weights_only=True`.
    - A Hub id such as "gpt2" (when no such directory exists): fetched with huggingface_hub if it is
      installed; offline this fails at once with a message saying so.

    The tokenizer found next to the weights (or in the run directory) is attached as `model.tokenizer`
    (None when there is none). `config_overrides` are ModelConfig fields, e.g. attn_impl="eager".
    The model is returned in eval mode.
    """
    from zhixing.config import ConfigError, read_json_object
    from zhixing.interop.hub import resolve, tokenizer_directory

    directory, named = resolve(path)
    config_file = directory / "config.json"
    data = read_json_object(config_file)
    if "arch" in data:
        from zhixing.models.base import Model

        model = Model.from_pretrained(directory, **config_overrides)
    elif "model_type" in data:
        from zhixing.interop import from_hf

        model = from_hf(directory, **config_overrides)
    else:
        from zhixing.interop import SUPPORTED_MODEL_TYPES

        raise ConfigError(f"{config_file}: neither a zhixing config (no 'arch' key) nor a Hugging Face one "
                          "(no 'model_type'); supported Hugging Face model types: "
                          f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    tok_dir = tokenizer_directory(directory, named)
    if tok_dir is not None:
        from zhixing.tokenizers import Tokenizer

        model.tokenizer = Tokenizer.load(tok_dir)
    else:
        model.tokenizer = None
    return model.eval()


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer of a model, run or tokenizer directory (or Hub id), as `zhixing.load` finds it."""
    from zhixing.interop.hub import resolve, tokenizer_directory
    from zhixing.tokenizers import Tokenizer

    p = os.fspath(path)
    if os.path.isdir(p) and Tokenizer.can_load(p):  # a bare tokenizer directory (no config.json)
        return Tokenizer.load(p)
    directory, named = resolve(p)
    tok_dir = tokenizer_directory(directory, named)
    if tok_dir is None:
        raise FileNotFoundError(f"{named}: no tokenizer found (looked for tokenizer.json, vocab.txt, or "
                                f"vocab.json + merges.txt in {directory}" +
                                (f" and {named}" if named != directory else "") + ")")
    return Tokenizer.load(tok_dir)


def pipeline(task: str, path: str | os.PathLike, **settings: Any):
    """A fine-tuned model as a callable: `zhixing.pipeline("classify" | "ner" | "qa", "runs/<name>")`
    (see zhixing.tasks.pipeline); the tasks package is imported on first use."""
    from zhixing.tasks.pipeline import pipeline as _pipeline

    return _pipeline(task, path, **settings)


__all__ = ["__version__", "load", "load_tokenizer", "pipeline"]
