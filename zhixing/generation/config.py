"""GenerationConfig: every knob of decoding in one validated dataclass, saved as `generation_config.json`.

Names follow transformers' `GenerationConfig` where the meaning is the same, so settings carry over.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zhixing.config import Config
from zhixing.io import read_json_object

FILENAME = "generation_config.json"


@dataclass
class GenerationConfig(Config):
    """How to turn a prompt into new tokens. `validate()` checks every value against its valid range."""

    max_new_tokens: int = 64  # tokens to generate after the prompt (at most)
    do_sample: bool = False  # sample from the (processed) distribution; False = greedy / beam search
    temperature: float = 1.0  # divide logits by this before sampling (< 1 sharper, > 1 flatter)
    top_k: int = 0  # sample among the k most likely tokens only (0 = off)
    top_p: float = 1.0  # nucleus: the smallest set of tokens whose probability mass reaches top_p (1 = off)
    min_p: float | None = None  # drop tokens less likely than min_p x the most likely one (None = off)
    repetition_penalty: float = 1.0  # CTRL penalty on tokens already in the sequence (> 1 discourages)
    no_repeat_ngram_size: int = 0  # forbid any n-gram of this size from occurring twice (0 = off)
    num_beams: int = 1  # beam width (1 = no beam search)
    length_penalty: float = 1.0  # beam score = sum log p / generated_len ** length_penalty
    early_stopping: bool | Literal["never"] = False  # beam search stop rule (as in transformers)
    num_return_sequences: int = 1  # sequences returned per prompt (<= num_beams in beam search)
    eos_token_ids: list[int] | None = None  # tokens that end a sequence (None = the tokenizer's/model's eos)
    pad_token_id: int | None = None  # left padding and finished rows (None = tokenizer/model pad, or eos)
    stop_strings: list[str] = field(default_factory=list)  # stop once the text has one (needs a tokenizer)
    seed: int | None = None  # seed of the sampling generator (None = nondeterministic)
    truncate_prompt: bool = False  # drop the oldest prompt tokens when prompt + new tokens exceed the context
    sliding_window: bool = False  # past the context: predict from the last max_seq_len tokens (nanoGPT)
    cuda_graph: bool = True  # on CUDA, replay each decode step as one CUDA graph (greedy / sampling)
    # controllable generation (zhixing.generation.constraints; need a tokenizer)
    form: str | None = None  # a verse form the text must take: 五言绝句, 七言绝句, 五言律诗, 七言律诗
    acrostic: str | None = None  # 藏头诗: line i starts with character i (needs form)
    bad_words: list[str] = field(default_factory=list)  # words the generated text may never contain
    force_words: list[str] = field(default_factory=list)  # words the poem must contain (needs form)

    def validate(self) -> GenerationConfig:
        """Raise ValueError naming the parameter and its valid range; return self when all is well."""

        def bad(name: str, valid: str) -> ValueError:
            return ValueError(f"{name}={getattr(self, name)!r} is invalid: must be {valid}")

        if self.max_new_tokens < 1:
            raise bad("max_new_tokens", ">= 1")
        if self.temperature < 0:
            raise bad("temperature", ">= 0 (0 means greedy)")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "in (0, 1]")
        if self.top_k < 0:
            raise bad("top_k", ">= 0 (0 = off)")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise bad("min_p", "in [0, 1] or None")
        if self.repetition_penalty <= 0:
            raise bad("repetition_penalty", "> 0 (1 = off)")
        if self.no_repeat_ngram_size < 0:
            raise bad("no_repeat_ngram_size", ">= 0 (0 = off)")
        if self.num_beams < 1:
            raise bad("num_beams", ">= 1")
        if self.num_return_sequences < 1:
            raise bad("num_return_sequences", ">= 1")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences={self.num_return_sequences} is invalid: must be <= num_beams="
                f"{self.num_beams} in beam search"
            )
        if self.num_beams == 1 and not self.sampling and self.num_return_sequences > 1:
            raise ValueError(
                f"num_return_sequences={self.num_return_sequences} is invalid with greedy decoding (it would "
                "return copies): must be 1, or set do_sample=True or num_beams >= num_return_sequences"
            )
        if self.early_stopping not in (True, False, "never"):
            raise bad("early_stopping", "True, False or 'never'")
        if self.sliding_window and self.num_beams > 1:
            raise ValueError("sliding_window=True is invalid with beam search (num_beams > 1): use greedy "
                             "decoding or sampling")
        if any(not s for s in self.stop_strings):
            raise bad("stop_strings", "non-empty strings")
        if self.form is not None or self.acrostic is not None or self.bad_words or self.force_words:
            from zhixing.generation.constraints import validate

            validate(self.form, self.acrostic, self.bad_words, self.force_words)
        return self

    @property
    def constrained(self) -> bool:
        """Whether form / content constraints apply (zhixing.generation.constraints)."""
        return self.form is not None or bool(self.bad_words) or bool(self.force_words)

    @property
    def sampling(self) -> bool:
        """Whether tokens are drawn at random; temperature 0 means greedy whatever do_sample says."""
        return self.do_sample and self.temperature > 0

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in super().to_dict().items()}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `generation_config.json` into a model directory (atomically)."""
        path = Path(directory) / FILENAME
        self.save_json(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> GenerationConfig:
        """Read `generation_config.json` (a model directory or the file); unknown keys are errors."""
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        data = read_json_object(path)
        if "transformers_version" in data:  # a Hugging Face model directory's file
            data = from_hf_dict(data)
        return cls.from_dict(data, source=str(path)).validate()

    @classmethod
    def for_model(cls, model: Any) -> GenerationConfig:
        """The model's own generation config (attribute `generation_config`), else the defaults."""
        own = getattr(model, "generation_config", None)
        return own if isinstance(own, GenerationConfig) else cls()


# transformers' generation_config.json keys that mean the same here (its sampling default top_k=50 is kept
# only when the file sets it: our default is no top-k filtering).
_HF_SAME = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
            "no_repeat_ngram_size", "num_beams", "length_penalty", "early_stopping", "num_return_sequences",
            "pad_token_id", "stop_strings")


def from_hf_dict(hf: dict[str, Any]) -> dict[str, Any]:
    """Translate a transformers generation config to ours, keeping the keys that mean the same."""
    out = {k: hf[k] for k in _HF_SAME if hf.get(k) is not None}
    eos = hf.get("eos_token_id")
    if eos is not None:
        out["eos_token_ids"] = eos if isinstance(eos, list) else [eos]
    if isinstance(out.get("stop_strings"), str):
        out["stop_strings"] = [out["stop_strings"]]
    return out
