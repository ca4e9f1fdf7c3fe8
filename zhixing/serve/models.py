"""The models one server holds, each under a name: what each can do (generate, embed, classify, ner, qa,
attention), its batcher, and the chat template seam.

A model directory or run is classified by its head: an `lm` head on a decoder-only model generates
(completions, chat) through a continuous-batching `Batcher`; a fine-tuned run (seq_cls / token_cls / qa
head) answers its task endpoint through `zhixing.pipeline`; every model embeds and shows its attention.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zhixing.generation import chat
from zhixing.serve.batcher import Batcher


def message_text(content: Any) -> str:
    """OpenAI message content: a string, or a list of parts of which the text parts are kept."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
    )


def render_chat(
    messages: list[dict[str, Any]],
    tokenizer: Any,
    template: str | None = None,
    add_generation_prompt: bool = True,
) -> tuple[str, list[str]]:
    """(prompt text, extra stop strings) for a chat: the model's stored `chat_template` (Jinja, rendered in
    its sandbox by zhixing.generation.chat, exactly as transformers' apply_chat_template), else that
    module's documented default transcript for base models ("User: ...\nAssistant:"), whose replies stop
    at "\nUser:". The same rendering as `zhixing chat` and the text-generation pipeline."""
    msgs = [{**m, "content": message_text(m.get("content"))} for m in messages]
    text = chat.render(msgs, template if template else chat.DEFAULT_TEMPLATE, tokenizer=tokenizer,
                       add_generation_prompt=add_generation_prompt)
    return text, chat.stop_strings_for(template or None)


def stored_chat_template(directory: Path) -> str | None:
    """The `chat_template` of tokenizer_config.json (or chat_template.jinja) next to the model, or in its
    tokenizer/ folder, if any."""
    for d in (directory, directory / "tokenizer"):
        if d.is_dir():
            try:
                template = chat.load_template(d)
            except (OSError, ValueError):
                continue
            if template:
                return template
    return None


@dataclass
class ServedModel:
    """One model in the server."""

    name: str
    path: str
    model: Any
    tokenizer: Any
    task: str | None = None  # classify | ner | qa for a fine-tuned run
    pipeline: Any = None
    batcher: Batcher | None = None
    chat_template: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # one forward at a time outside the batcher

    @property
    def generates(self) -> bool:
        return self.batcher is not None

    @property
    def context(self) -> int:
        return self.model.config.max_seq_len

    def card(self, created: int) -> dict[str, Any]:
        caps = (["completions", "chat"] if self.generates else []) + ["embeddings", "attention"]
        if self.task:
            caps.append(self.task)
        return {
            "id": self.name,
            "object": "model",
            "created": created,
            "owned_by": "zhixing",
            "max_model_len": self.context,
            "capabilities": caps,
            "arch": self.model.config.arch,
        }

    @torch.no_grad()
    def embed(self, inputs: list[list[int]], pooling: str = "mean") -> list[list[float]]:
        """Mean-pooled (over real tokens) or first-token (CLS) final hidden states, one per input."""
        out = []
        with self.lock:
            for ids in inputs:  # one at a time: no padding, so every model family pools the same way
                x = torch.tensor([ids], device=next(self.model.parameters()).device)
                if self.model.config.arch == "transformer":  # encoder–decoder: the encoder's states
                    h = self.model.encode(x, None)[0][0].float()
                else:
                    h = self.model(x).last_hidden_state[0].float()  # (seq, dim)
                out.append((h[0] if pooling == "cls" else h.mean(0)).tolist())
        return out


def load_model(
    name: str, path: str | os.PathLike, max_batch: int = 32, max_queue: int = 256, device: str = "cpu"
) -> ServedModel:
    """Load a model or run directory (or Hub id) and set it up for serving."""
    from zhixing.hub import load, resolve
    from zhixing.tasks import task_for_head
    from zhixing.tasks.pipeline import Pipeline

    model = load(path).to(device).eval()
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"{path}: no tokenizer found next to the model; a served model needs one")
    cfg = model.config
    served = ServedModel(name, str(path), model, tokenizer)
    task = task_for_head(cfg.head)  # the registry's head -> task mapping
    if task is not None:
        served.task = task.name
        served.pipeline = Pipeline(task.name, path, device=device)
    if cfg.head == "lm" and cfg.arch == "gpt":
        served.batcher = Batcher(model, tokenizer, max_batch=max_batch, max_queue=max_queue)
        try:
            directory, named = resolve(path)
        except Exception:
            directory = named = Path(str(path))
        served.chat_template = stored_chat_template(Path(directory)) or stored_chat_template(Path(named))
    return served
