"""Streaming: text pieces as tokens are generated, never a broken character, never a partial stop string.

Two hazards make "decode each new token and print it" wrong:

1. A token need not end on a character boundary. Byte-level BPE (GPT-2) splits a Chinese character's
   three UTF-8 bytes across tokens; decoding such a token alone gives U+FFFD. So text is decoded over a
   short window of recent tokens and released only when it no longer ends in an incomplete character
   (the incremental detokenizer of text-generation-inference / vLLM).
2. A stop string may arrive over several tokens ("\\nUser:" as "\\n", "User", ":"). Text that could still
   grow into a stop string is held back until it either completes one (stop; it is never shown) or
   can no longer do so (release it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from zhixing.generation.api import Prompt, _Plan
from zhixing.generation.config import GenerationConfig

REPLACEMENT = "\ufffd"  # what a decoder returns for an incomplete UTF-8 sequence


class TextStreamer:
    """Turn token ids, pushed as they come, into safe text pieces.

    push(ids) -> the text that is now final ('' if nothing is); finish() -> whatever was held back.
    After a stop string appears, `stopped` is True and later pushes return ''.
    """

    def __init__(self, tokenizer, stop_strings: Sequence[str] = (), skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.stop_strings = [s for s in stop_strings if s]
        self.skip_special = skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0  # decoding starts here: one token chunk of left context, so that decoders
        self.read_offset = 0  # which drop a leading space ("▁x") decode the new part as in the full text
        self.pending = ""  # decoded text held back as a possible stop-string prefix
        self.stopped = False
        self.text = ""  # everything released so far

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special)

    def push(self, ids: int | Sequence[int]) -> str:
        if self.stopped:
            return ""
        self.ids.extend([ids] if isinstance(ids, int) else ids)
        prefix = self._decode(self.ids[self.prefix_offset: self.read_offset])
        text = self._decode(self.ids[self.prefix_offset:])
        if len(text) <= len(prefix) or text.endswith(REPLACEMENT):
            return ""  # no new character yet, or the last one is still incomplete
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return self._release(text[len(prefix):])

    def finish(self) -> str:
        """Release what is left (incomplete bytes included, as the full decode would show them)."""
        if self.stopped:
            return ""
        prefix = self._decode(self.ids[self.prefix_offset: self.read_offset])
        text = self._decode(self.ids[self.prefix_offset:])
        self.prefix_offset = self.read_offset = len(self.ids)
        out = self._release(text[len(prefix):], final=True)
        return out

    def _release(self, piece: str, final: bool = False) -> str:
        self.pending += piece
        hits = [i for i in (self.pending.find(s) for s in self.stop_strings) if i >= 0]
        if hits:
            out, self.pending, self.stopped = self.pending[: min(hits)], "", True
        elif final:
            out, self.pending = self.pending, ""
        else:
            cut = len(self.pending) - self._held_suffix(self.pending)
            out, self.pending = self.pending[:cut], self.pending[cut:]
        self.text += out
        return out

    def _held_suffix(self, text: str) -> int:
        """Length of the longest end of `text` that is the beginning of a stop string."""
        best = 0
        for s in self.stop_strings:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best


@torch.no_grad()
def stream(model, prompt: Prompt, config: GenerationConfig | None = None, tokenizer=None,
           logits_processors: Sequence[Any] = (), **overrides: Any) -> Iterator[str]:
    """Generate for one prompt and yield text pieces as they become final (greedy or sampling).

    Stops at an eos token, at max_new_tokens, or when a stop string appears (the stop string itself is
    not yielded). `logits_processors`: as in `generate`. Closing the iterator (break, Ctrl-C in a caller)
    stops generation at once.
    """
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("streaming text needs a tokenizer: pass tokenizer= (or load the model with one)")
    if isinstance(prompt, str) or (isinstance(prompt, torch.Tensor) and prompt.dim() == 1):
        prompts = [prompt]
    elif isinstance(prompt, torch.Tensor) or (len(prompt) and not isinstance(prompt[0], int)):
        raise ValueError("stream() takes one prompt (a string or a list of ids); use generate() for batches")
    else:
        prompts = [list(prompt)]
    was_training = model.training
    model.eval()
    try:
        plan = _Plan(model, prompts, config, tokenizer, None, overrides, logits_processors)
        cfg = plan.config
        if cfg.num_beams > 1 or cfg.num_return_sequences > 1:
            raise ValueError(f"num_beams={cfg.num_beams} / num_return_sequences={cfg.num_return_sequences}: "
                             "streaming yields one sequence, so both must be 1")
        plan.stop = None  # the streamer watches for stop strings on the text it releases
        streamer = TextStreamer(tokenizer, cfg.stop_strings)
        eos = set(plan.eos.tolist()) if plan.eos is not None else set()
        for _, new in plan.steps():
            token = int(new[0])
            if token in eos:
                break
            piece = streamer.push(token)
            if piece:
                yield piece
            if streamer.stopped:
                return
        rest = streamer.finish()
        if rest:
            yield rest
    finally:
        model.train(was_training)
