"""The clause-level sentiment model: a small Chinese BERT trained by the library on the review labels.

The shared reviews carry one label per review, not per clause. Short reviews (at most `max_chars`
characters: one or two clauses, "屏幕清晰，续航长") are nearly clauses already, so the classifier is
fine-tuned on those (`zhixing.tasks` classify, from a freshly initialised bert-tiny with a character
WordPiece vocabulary learned from the same texts — `zhixing.recipes.sentiment`'s from-scratch model) and
then applied to the single clause that holds an aspect. Reviews are split into train / held-out by a hash
of their id (`holdout_split`), so the hand-annotated evaluation sample, drawn from the held-out side, was
never trained on.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhixing.apps.recommend.reviews import Review, read_all
from zhixing.config import Config
from zhixing.errors import ConfigError


@dataclass
class SentimentRecipe(Config):
    """Settings of `zhixing app recommend train-sentiment` (configs/recommend/sentiment.yaml)."""

    data: list[str]  # review files, "PATH" or "ITEM=PATH" (reviews.parse_source)
    max_chars: int = 48  # train on reviews at most this long (clause-like)
    max_train: int = 20000  # training reviews drawn (seeded) from the train side
    max_dev: int = 1000  # held-out reviews scored after each epoch
    held_out: float = 0.1  # share of reviews (by a hash of their id) never trained on
    max_seq_len: int = 64
    epochs: float = 2.0
    lr: float = 1e-3  # from scratch: a pretraining-sized rate (recipes.sentiment)
    batch_size: int = 32
    seed: int = 0
    max_minutes: float = 0.0  # cap on training time (0 = none)

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()
    ) -> SentimentRecipe:
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings ({', '.join(cls.field_names())})")
        return cls.from_dict(data, source=str(path)).override(overrides)


def split_reviews(reviews: list[Review], held_out: float, seed: int) -> tuple[list[Review], list[Review]]:
    """(train, held-out) by a hash of each review's id: the same split wherever it is computed."""
    from zhixing.tasks.data import holdout_split

    return holdout_split(reviews, held_out, seed=seed, key=lambda r: r.id)


def train_sentiment(
    recipe: SentimentRecipe, out: str | os.PathLike, progress: bool = False
) -> dict[str, Any]:
    """Fine-tune the clause classifier into the run directory `out`; returns the fine-tuning summary
    (summary["dev"]["accuracy"]) plus the data counts."""
    from zhixing.recipes.sentiment import _scratch_bert
    from zhixing.tasks.data import TextExample
    from zhixing.tasks.finetune import finetune, finetune_config

    out = Path(out)
    reviews = [r for r in read_all(recipe.data) if r.label is not None and len(r.text) <= recipe.max_chars]
    if not reviews:
        raise ConfigError(f"data {recipe.data}: no labelled reviews of at most {recipe.max_chars} characters")
    train, held = split_reviews(reviews, recipe.held_out, recipe.seed)
    rng = random.Random(recipe.seed)
    train = rng.sample(train, min(recipe.max_train, len(train)))
    dev = rng.sample(held, min(recipe.max_dev, len(held)))
    as_examples = lambda rs: [TextExample(r.text, None, r.label, r.id) for r in rs]  # noqa: E731
    init = _scratch_bert(
        [r.text for r in train], out.parent / f"{out.name}-init", recipe.max_seq_len, recipe.seed
    )
    cfg = finetune_config("classify", model=str(init), max_seq_len=recipe.max_seq_len, epochs=recipe.epochs)
    overrides = [
        f"out_dir={out.parent}",
        f"seed={recipe.seed}",
        f"lr={recipe.lr}",
        "overwrite=true",
        f"batch_size={recipe.batch_size}",
        f"progress={str(progress).lower()}",
        "device=cpu",
    ]
    if recipe.max_minutes:
        overrides.append(f"max_time={recipe.max_minutes * 60}")
    summary = finetune(
        cfg,
        name=out.name,
        train_examples=as_examples(train),
        dev_examples=as_examples(dev),
        train_overrides=overrides,
    )
    summary["data"] = {"train": len(train), "dev": len(dev), "pool": len(reviews), "recipe": recipe.to_dict()}
    return summary


class ClauseSentiment:
    """p(positive | clause) from a fine-tuned classify run (labels "negative" / "positive")."""

    def __init__(self, run: str | os.PathLike, device: str = "cpu"):
        from zhixing.tasks.pipeline import pipeline

        self.run = str(run)
        self.pipe = pipeline("classify", run, device=device)
        names = self.pipe.model.config.label_names or []
        if set(names) != {"negative", "positive"}:
            raise ConfigError(
                f"{run}: a clause sentiment model has labels negative/positive, this one {names}"
            )

    def __call__(self, texts: list[str], batch_size: int = 256) -> list[float]:
        """p(positive) per text, in order (deduplicated: review clauses repeat a lot)."""
        unique = sorted(set(texts))
        probs: dict[str, float] = {}
        for i in range(0, len(unique), batch_size):
            chunk = unique[i : i + batch_size]
            for text, out in zip(chunk, self.pipe(chunk)):
                probs[text] = float(out["scores"]["positive"])
        return [probs[t] for t in texts]


def polarity(p_positive: float) -> str:
    return "positive" if p_positive >= 0.5 else "negative"
