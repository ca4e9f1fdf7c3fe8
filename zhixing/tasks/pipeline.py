"""`zhixing.pipeline(task, RUN)`: a fine-tuned model as a function of text.

    clf = zhixing.pipeline("classify", "runs/sst2")
    clf("a charming and often affecting journey")   # {"label": "1", "score": 0.97, "scores": {...}}
    ner = zhixing.pipeline("ner", "runs/conll")
    ner("EU rejects German call")                   # [{"type": "ORG", "text": "EU", "start": 0, ...}]
    qa = zhixing.pipeline("qa", "runs/cmrc")
    qa({"question": "...", "context": "..."})       # {"answer", "start", "end", "score", "n_best"}

Pretrained models need no fine-tuning for "fill-mask", "feature-extraction" and "sentence-embedding"
(zhixing/tasks/pretrained.py); "text-generation" lives with generation (zhixing/generation/pipeline.py)
and `zhixing.pipeline` reaches both. A single input gives a single result, a list gives a list.
"""

from __future__ import annotations

import os
from typing import Any

from zhixing.errors import ConfigError
from zhixing.tasks import get_task


class Pipeline:
    """A loaded model + tokenizer + the run's task settings; call it on a string or a batch."""

    def __init__(self, task: str, path: str | os.PathLike, device: str = "cpu", **settings: Any):
        from zhixing.tasks.finetune import load_run

        spec = get_task(task)
        model, cfg = load_run(path)
        if model.config.head != spec.head:
            raise ConfigError(f"{path}: the model has head {model.config.head!r}; task {task!r} needs "
                              f"{spec.head!r} (fine-tune it with zhixing finetune --task {task})")
        if model.tokenizer is None:
            raise ConfigError(f"{path}: no tokenizer found next to the model")
        if cfg is not None and cfg.task != task:
            raise ConfigError(f"{path} was fine-tuned for {cfg.task}, not {task}")
        cfg = cfg or spec.config(task=task)
        self.cfg = cfg.replace(**settings) if settings else cfg
        self.task, self.spec = task, spec
        from zhixing.device import pick_device

        where = pick_device(str(device), field="device")
        self.model, self.tokenizer = model.to(where).eval(), model.tokenizer

    def __call__(self, inputs: Any) -> Any:
        single = isinstance(inputs, (str, dict)) or (self.task == "qa" and isinstance(inputs, tuple))
        batch = [inputs] if single else list(inputs)
        out = self.spec.predict(self.model, self.tokenizer, self.spec.inputs(batch), self.cfg)
        return out[0] if single else out


def pipeline(task: str, path: str | os.PathLike, device: str = "cpu", **settings: Any) -> Any:
    """A callable for `task` ("classify" | "ner" | "qa") from a fine-tuning run or model directory, or
    ("fill-mask" | "feature-extraction" | "sentence-embedding") from a pretrained model.
    `settings` override the run's task settings (max_seq_len, max_answer_len, n_best, ...), or are the
    pretrained pipeline's options (top_k, pooling, normalize, max_length, batch_size)."""
    from zhixing.tasks import TASKS
    from zhixing.tasks.pretrained import PIPELINES

    if task in PIPELINES:
        return PIPELINES[task](path, device=device, **settings)
    if task not in TASKS:
        from zhixing.config import nearest

        known = [*TASKS, *PIPELINES, "text-generation", "translation"]
        raise ConfigError(f"unknown pipeline task {task!r}{nearest(task, known)}; known: {', '.join(known)}")
    return Pipeline(task, path, device=device, **settings)
