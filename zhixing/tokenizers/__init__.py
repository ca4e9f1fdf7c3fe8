"""Tokenizers: WordPiece, byte-level BPE, BPE and char, on the Hugging Face `tokenizers` engine.

    from zhixing.tokenizers import Tokenizer
    tok = Tokenizer.train(["corpus.txt"], kind="wordpiece", vocab_size=21128)
    enc = tok.encode("知行合一", "Knowing and doing are one.")
    enc.ids, enc.type_ids, enc.offsets, enc.word_ids
    tok.save("my_tok"); Tokenizer.load("my_tok")

`reference` holds the textbook algorithms (BPE training and encoding, WordPiece greedy longest match),
tested token-for-token equal to the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Encoding", "Tokenizer", "TokenizerError"]

if TYPE_CHECKING:
    from .errors import TokenizerError
    from .tokenizer import Encoding, Tokenizer


def __getattr__(name: str):
    # Imported on first use, so `zhixing tokenizer --help` does not load the Rust engine.
    if name in ("Tokenizer", "Encoding"):
        from . import tokenizer

        return getattr(tokenizer, name)
    if name == "TokenizerError":
        from .errors import TokenizerError

        return TokenizerError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
