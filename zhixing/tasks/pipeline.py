"""`zhixing.pipeline(task, RUN)`: a fine-tuned model as a function of text.

    clf = zhixing.pipeline("classify", "runs/sst2")
    clf("a charming and often affecting journey")   # {"label": "1", "score": 0.97, "scores": {...}}
    ner = zhixing.pipeline("ner", "runs/conll")
    ner("EU rejects German call")                   # [{"type": "ORG", "text": "EU", "start": 0, ...}]
    qa = zhixing.pipeline("qa", "runs/cmrc")
    qa({"question": "...", "context": "..."})       # {"answer", "start", "end", "score", "n_best"}

A single input gives a single result, a list gives a list.
"""

from __future__ import annotations

import os
from typing import Any

from zhixing.config import ConfigError

TASK_HEADS = {"classify": "seq_cls", "ner": "token_cls", "qa": "qa"}


class Pipeline:
    """A loaded model + tokenizer + the run's task settings; call it on a string or a batch."""

    def __init__(self, task: str, path: str | os.PathLike, device: str = "cpu", **settings: Any):
        from zhixing.tasks.finetune import FinetuneConfig, load_run

        if task not in TASK_HEADS:
            raise ConfigError(f"unknown task {task!r}; use one of {', '.join(TASK_HEADS)}")
        model, cfg = load_run(path)
        if model.config.head != TASK_HEADS[task]:
            raise ConfigError(f"{path}: the model has head {model.config.head!r}; task {task!r} needs "
                              f"{TASK_HEADS[task]!r} (fine-tune it with zhixing finetune --task {task})")
        if model.tokenizer is None:
            raise ConfigError(f"{path}: no tokenizer found next to the model")
        cfg = cfg or FinetuneConfig(task=task)
        self.cfg = cfg.replace(**settings) if settings else cfg
        self.task, self.model, self.tokenizer = task, model.to(device).eval(), model.tokenizer

    def __call__(self, inputs: Any) -> Any:
        from zhixing.tasks import classify, ner, qa
        from zhixing.tasks.data import TextExample

        single = isinstance(inputs, (str, dict)) or (self.task == "qa" and isinstance(inputs, tuple))
        batch = [inputs] if single else list(inputs)
        if self.task == "classify":
            examples = [TextExample(*x, None) if isinstance(x, tuple) else TextExample(str(x), None, None)
                        for x in batch]
            out = classify.predict(self.model, self.tokenizer, examples, self.cfg)
        elif self.task == "ner":
            out = ner.predict(self.model, self.tokenizer, [str(x) for x in batch], self.cfg)
        else:
            pairs = []
            for x in batch:
                if isinstance(x, dict):
                    if "question" not in x or "context" not in x:
                        raise ValueError(f"a QA input needs 'question' and 'context', got keys {sorted(x)}")
                    pairs.append((x["question"], x["context"]))
                else:
                    pairs.append(tuple(x))
            out = qa.predict(self.model, self.tokenizer, pairs, self.cfg)
        return out[0] if single else out


def pipeline(task: str, path: str | os.PathLike, device: str = "cpu", **settings: Any) -> Pipeline:
    """A callable for `task` ("classify" | "ner" | "qa") from a fine-tuning run or model directory.
    `settings` override the run's task settings (max_seq_len, max_answer_len, n_best, ...)."""
    return Pipeline(task, path, device=device, **settings)
