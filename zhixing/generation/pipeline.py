"""`zhixing.pipeline("text-generation", MODEL)`: a language model as a function of text (or of a chat).

    gen = zhixing.pipeline("text-generation", "runs/gpt-tiny", max_new_tokens=40)
    gen("知行合一")                              # {"generated_text": "知行合一..."}
    gen(["Hello", "你好"], do_sample=True, seed=0)   # one dict per prompt (a list when n > 1)
    for piece in gen("Once upon a time", stream=True):
        print(piece, end="")
    gen([{"role": "user", "content": "你好"}])    # a chat: rendered with the model's chat template;
                                               # {"generated_text": [..., {"role": "assistant", ...}]}

Settings come from the model's generation_config.json, then the pipeline's keywords, then each call's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from zhixing.generation.chat import render, stop_strings_for, template_of
from zhixing.generation.config import FILENAME, GenerationConfig


def generation_config_of(path: str | os.PathLike, model: Any = None) -> GenerationConfig:
    """The generation config saved with a model: `generation_config.json` in the model directory, a run's
    best/ or the directory itself; else the model's own; else the defaults."""
    from zhixing.hub import resolve

    candidates = [Path(path) / FILENAME, Path(path) / "best" / FILENAME]
    try:
        candidates.insert(0, resolve(path)[0] / FILENAME)
    except (OSError, ValueError):
        pass
    for candidate in candidates:
        if candidate.is_file():
            return GenerationConfig.load(candidate)
    return GenerationConfig.for_model(model)


def _is_chat(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, str) and len(x) > 0 and isinstance(x[0], Mapping)


class TextGenerationPipeline:
    """A decoder-only (or encoder–decoder) LM with its tokenizer and generation config, on one device.

    path: a run, zhixing or Hugging Face model directory (or Hub id). device: "cpu", "cuda", "auto", ...
    dtype: weights' dtype (default float32 on CPU, bfloat16 on CUDA). chat_template: overrides the
    tokenizer's. settings: GenerationConfig fields (max_new_tokens, do_sample, top_p, sliding_window, ...).
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu", dtype: str | None = None,
                 chat_template: str | None = None, **settings: Any):
        import torch

        from zhixing.device import pick_device
        from zhixing.hub import load

        where = pick_device(str(device), field="device")
        dtype = dtype or ("bfloat16" if where.type == "cuda" else "float32")
        model = load(path)
        if model.tokenizer is None:
            raise ValueError(f"{path}: no tokenizer found next to the model; text generation needs one")
        self.model = model.to(device=where, dtype=getattr(torch, dtype)).eval()
        self.tokenizer = model.tokenizer
        config = generation_config_of(path, model)
        self.config = (config.replace(**settings) if settings else config).validate()
        self.chat_template = chat_template or template_of(self.tokenizer)

    def __call__(self, inputs: Any, *, stream: bool = False, return_full_text: bool = True,
                 **overrides: Any) -> Any:
        """inputs: a prompt, a list of prompts, a chat (a list of {"role", "content"} messages) or a list of
        chats. Returns per input {"generated_text": prompt + new text} (just the new text when
        `return_full_text=False`; for a chat, the messages plus the assistant's reply), or a list of
        num_return_sequences such dicts. stream=True (one input): an iterator of text pieces instead.
        overrides: GenerationConfig fields for this call."""
        from zhixing.generation.api import generate
        from zhixing.generation.streaming import stream as stream_text

        single = isinstance(inputs, str) or _is_chat(inputs)
        items = [inputs] if single else list(inputs)
        chats = [_is_chat(x) for x in items]
        prompts = [render(x, self.chat_template, tokenizer=self.tokenizer) if c else str(x)
                   for x, c in zip(items, chats)]
        config = self.config.replace(**overrides) if overrides else self.config
        if any(chats):
            stops = stop_strings_for(self.chat_template)
            config = config.replace(stop_strings=[*config.stop_strings, *stops])
        if stream:
            if not single:
                raise ValueError("stream=True takes one prompt or one chat; call it once per input")
            return self._stream(stream_text, prompts[0], config)
        out = generate(self.model, prompts, config, self.tokenizer)
        n = config.num_return_sequences
        results = []
        for i, (item, prompt, chat) in enumerate(zip(items, prompts, chats)):
            rows = []
            for text in out.texts[i * n:(i + 1) * n]:
                if chat:
                    rows.append({"generated_text": [*item, {"role": "assistant", "content": text.strip()}]})
                else:
                    rows.append({"generated_text": prompt + text if return_full_text else text})
            results.append(rows[0] if n == 1 else rows)
        return results[0] if single else results

    def _stream(self, stream_text, prompt: str, config: GenerationConfig) -> Iterator[str]:
        yield from stream_text(self.model, prompt, config, self.tokenizer)


__all__ = ["TextGenerationPipeline", "generation_config_of"]
