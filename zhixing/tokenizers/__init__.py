"""Tokenizers: WordPiece, byte-level BPE, BPE and char, on the Hugging Face `tokenizers` engine.

    from zhixing.tokenizers import Tokenizer
    tok = Tokenizer.train(["corpus.txt"], kind="wordpiece", vocab_size=21128)
    enc = tok.encode("知行合一", "Knowing and doing are one.")
    enc.ids, enc.type_ids, enc.offsets, enc.word_ids
    tok.save("my_tok"); Tokenizer.load("my_tok")

`reference` holds the textbook algorithms (BPE training and encoding, WordPiece greedy longest match),
tested token-for-token equal to the engine.
"""

from .errors import TokenizerError
from .tokenizer import Encoding, Tokenizer

__all__ = ["Encoding", "Tokenizer", "TokenizerError"]
