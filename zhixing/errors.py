"""One exception tree. Every error zhixing raises on purpose is a `ZhixingError`: its message names the
file / line / field / parameter at fault and the fix, so the command layer prints it as one line
(zhixing.cli) and Python callers can catch the whole family with one `except ZhixingError`.

    ZhixingError
    ├── ConfigError        a configuration key or value (recipe, override, flag, argument)
    ├── DataError          input data: corpora, task files, token shards, bad encodings
    │   ├── CorpusError    a corpus that cannot be read
    │   └── ShardError     token shards missing, damaged or built with another tokenizer
    ├── TokenizerError     a tokenizer file or an encoding request
    ├── CheckpointError    a checkpoint or model directory: missing, damaged, or not fitting the model
    │   └── ModelFormatError  a foreign (Hugging Face) checkpoint that cannot be converted
    └── TrainingError      a run that cannot go on (diverged loss, run directory in use)

The classes also derive from the built-in they refine (ValueError, RuntimeError), so code written
against those keeps working.
"""

from __future__ import annotations


class ZhixingError(Exception):
    """Base of every error zhixing raises on purpose; the message says what is wrong and the fix."""


class ConfigError(ZhixingError, ValueError):
    """A configuration value or key is wrong; the message names it and the fix."""


class DataError(ZhixingError, ValueError):
    """Input data is malformed; the message names the file and line (or field) and what was expected."""


class CorpusError(DataError):
    """A corpus cannot be read: the message names the file (and line) and the fix."""


class ShardError(DataError):
    """Token shards are missing, inconsistent, or built with another tokenizer."""


class TokenizerError(ZhixingError, ValueError):
    """A tokenizer cannot be loaded, trained or used as asked; the message names the file or option."""


class CheckpointError(ZhixingError, ValueError):
    """A checkpoint is missing, damaged or does not fit the model; the message names the file(s)."""


class ModelFormatError(CheckpointError):
    """A foreign checkpoint (e.g. a Hugging Face directory) that zhixing cannot convert."""


class TrainingError(ZhixingError, RuntimeError):
    """The run cannot go on (diverged loss, bad or busy run directory); the message says what to change."""


__all__ = ["ZhixingError", "ConfigError", "DataError", "CorpusError", "ShardError", "TokenizerError",
           "CheckpointError", "ModelFormatError", "TrainingError"]
