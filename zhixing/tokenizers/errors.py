"""The error type of zhixing.tokenizers (defined in zhixing.errors, re-exported here)."""

from zhixing.errors import TokenizerError

__all__ = ["TokenizerError"]
