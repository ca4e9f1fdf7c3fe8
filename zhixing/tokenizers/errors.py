"""The one error type of zhixing.tokenizers: every message names the problem and the fix."""

from __future__ import annotations


class TokenizerError(ValueError):
    """Bad input to a tokenizer: a file, an argument or a directory. The message says how to fix it."""
