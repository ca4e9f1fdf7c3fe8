"""Continuation with our GPTs: one API for plain continuation, streaming, the poetry mode (verse forms and
acrostics of zhixing.generation.constraints) and style-guided continuation / rewriting (guidance.py).

Decoding is generation's (`generate` / `stream`); this module only chooses the settings a writer needs
and checks them at the edge, so a bad form or a too-long draft fails with a message that names it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from zhixing.errors import ConfigError
from zhixing.generation import generate, stream
from zhixing.generation.constraints import FORMS

# where a rewrite's kept opening may end: the first clause of the draft
_CLAUSE_END = re.compile(r"[，。！？；、,.!?;\s]")


@dataclass
class WriteSettings:
    """Decoding settings of one request (validated by GenerationConfig when decoding starts)."""

    max_new_tokens: int = 48  # characters to add (a verse form sets its own length)
    temperature: float = 0.8  # < 1: safer, more repetitive; > 1: bolder
    top_k: int = 20  # sample among the k most likely characters (also FUDGE's candidate set)
    top_p: float = 1.0  # nucleus sampling (1 = off)
    repetition_penalty: float = 1.1  # CTRL penalty on characters already written
    seed: int | None = None  # fixes the sample (None: a new one each time)
    form: str | None = None  # a verse form: 五言绝句, 七言绝句, 五言律诗, 七言律诗
    acrostic: str | None = None  # 藏头诗: line i starts with its i-th character (needs form)

    def overrides(self) -> dict[str, Any]:
        if self.form is not None and self.form not in FORMS:
            raise ConfigError(f"form={self.form!r} is not a verse form; choose one of {', '.join(FORMS)}")
        if self.acrostic and self.form is None:
            raise ConfigError("acrostic needs a form (e.g. form=五言绝句): the lines it heads are the form's")
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": True,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
            "form": self.form,
            "acrostic": self.acrostic or None,
            "truncate_prompt": True,
        }


class Writer:
    """A GPT run (or model directory, or a loaded model with its tokenizer) that continues drafts.

    w = Writer("runs/gpt-tang-poetry-cpu")
    w.continue_text("春夜\\n", form="五言绝句", acrostic="春夏秋冬")
    """

    def __init__(self, model: Any, device: str = "cpu"):
        if isinstance(model, torch.nn.Module):
            self.model, self.path = model, getattr(model, "name_or_path", "model")
        else:
            from zhixing.hub import load

            self.model, self.path = load(model), str(model)
        if self.model.config.arch != "gpt" or getattr(self.model, "head", None) is None:
            raise ConfigError(
                f"{self.path}: the writing assistant continues text with a GPT language model; "
                f"this is arch={self.model.config.arch!r}, head={self.model.config.head!r}"
            )
        self.tokenizer = self.model.tokenizer
        if self.tokenizer is None:
            raise ConfigError(f"{self.path}: no tokenizer next to the model")
        self.model.to(device).eval()

    def _settings(self, settings: WriteSettings | None, fields: dict[str, Any]) -> dict[str, Any]:
        base = settings if settings is not None else WriteSettings()
        unknown = set(fields) - set(WriteSettings.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(sorted(unknown))}; valid: "
                f"{', '.join(WriteSettings.__dataclass_fields__)}"
            )
        return WriteSettings(**{**base.__dict__, **fields}).overrides()

    def _processors(self, guide: Any) -> list[Any]:
        if guide is None:
            return []
        guide.lm_tokenizer = self.tokenizer
        return [guide]

    def continue_text(
        self, draft: str, guide: Any = None, settings: WriteSettings | None = None, **fields: Any
    ) -> str:
        """The continuation of `draft` (without the draft). `guide`: a StyleGuide (FUDGE) or None."""
        over = self._settings(settings, fields)
        if guide is not None:
            over["top_k"] = 0  # the guide keeps its own top-k candidates (its k is the candidate set)
        out = generate(
            self.model, [draft], tokenizer=self.tokenizer, logits_processors=self._processors(guide), **over
        )
        return out.texts[0]

    def continue_batch(
        self, drafts: list[str], guide: Any = None, settings: WriteSettings | None = None, **fields: Any
    ) -> list[str]:
        """Continuations of many drafts decoded together (one batched forward per step)."""
        over = self._settings(settings, fields)
        if guide is not None:
            over["top_k"] = 0
        out = generate(
            self.model, drafts, tokenizer=self.tokenizer, logits_processors=self._processors(guide), **over
        )
        return list(out.texts)

    def stream(
        self, draft: str, guide: Any = None, settings: WriteSettings | None = None, **fields: Any
    ) -> Iterator[str]:
        """Text pieces of the continuation as they are generated (never a broken character)."""
        over = self._settings(settings, fields)
        if guide is not None:
            over["top_k"] = 0
        return stream(
            self.model, draft, tokenizer=self.tokenizer, logits_processors=self._processors(guide), **over
        )

    @staticmethod
    def opening(text: str, keep: int | None = None) -> str:
        """What a rewrite keeps of `text`: its first `keep` characters, else its first clause (at most 10
        characters, at least 2)."""
        text = text.strip()
        if not text:
            raise ConfigError("the text to rewrite is empty")
        if keep is not None:
            if keep < 1:
                raise ConfigError(f"keep={keep} is invalid: must be >= 1 character")
            return text[:keep]
        m = _CLAUSE_END.search(text, 2)
        end = m.start() if m else len(text)
        return text[: max(2, min(end, 10))]

    def rewrite(
        self,
        text: str,
        guide: Any,
        keep: int | None = None,
        settings: WriteSettings | None = None,
        **fields: Any,
    ) -> dict[str, str]:
        """Rewrite a review toward the guide's style: keep its opening (`opening`) and write the rest again
        with guided decoding. Returns {"kept", "continuation", "text"}."""
        kept = self.opening(text, keep)
        fields.setdefault("max_new_tokens", max(16, min(96, len(text.strip()) - len(kept) + 8)))
        cont = self.continue_text(kept, guide, settings, **fields)
        return {"kept": kept, "continuation": cont, "text": kept + cont}

    @torch.no_grad()
    def perplexity(self, prompts: list[str], continuations: list[str], batch_size: int = 64) -> list[float]:
        """Per-row perplexity of each continuation given its prompt under this (plain) language model:

            PPL = exp( -1/|y| Σ_t log p_LM(y_t | x, y_<t) )

        over the continuation's tokens y (the prompt x only conditions). Rows with an empty continuation
        give nan."""
        tok = self.tokenizer
        out: list[float] = []
        limit = self.model.config.max_seq_len
        for s in range(0, len(prompts), batch_size):
            rows = []
            for p, c in zip(prompts[s : s + batch_size], continuations[s : s + batch_size]):
                x, y = list(tok.encode(p).ids), list(tok.encode(c).ids)
                ids = (x + y)[-limit:]
                rows.append((ids, min(len(y), len(ids) - 1)))
            width = max(len(ids) for ids, _ in rows)
            pad = tok.pad_id if tok.pad_id is not None else 0
            batch = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.long)
            for r, (ids, _) in enumerate(rows):
                batch[r, : len(ids)], mask[r, : len(ids)] = torch.tensor(ids), 1
            device = next(self.model.parameters()).device
            logp = self.model(batch.to(device), attention_mask=mask.to(device)).logits.float().log_softmax(-1)
            for r, (ids, n) in enumerate(rows):
                if n <= 0:
                    out.append(float("nan"))
                    continue
                t = torch.arange(len(ids) - n, len(ids))  # positions of the continuation's tokens
                nll = -logp[r, t - 1, torch.tensor(ids)[t].to(logp.device)].mean()
                out.append(float(nll.exp()))
        return out
