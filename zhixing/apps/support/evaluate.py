"""The figures of a support run (`zhixing app support eval RUN`, benchmarks/support.py):

- intent accuracy: closed-set argmax over the trained intents, on the test utterances of those intents;
- slot precision / recall / F1: entity level, seqeval's way (zhixing.tasks.metrics.entity_scores), same rows;
- out of scope: every test utterance of a held-out intent is OOS; flagged when its calibrated max
  probability is below the dev-chosen threshold; OOS precision / recall / F1, in-scope accuracy with
  rejection (accepted and right, over in-scope rows) and the joint accuracy;
- sentiment accuracy (SST-2 dev: GLUE's test labels are not public);
- FAQ retrieval recall@1/5: test utterances whose intent an FAQ entry serves; a hit when one of the top-k
  entries serves that intent; plus the don't-know behaviour at the run's threshold;
- latency per turn: SupportBot.turn on test utterances, one at a time, median and p90 (ms);
- cost: parameters of body and heads, bytes of model.safetensors.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from zhixing.apps.support.data import OOS_LABEL, mark_oos, read_hwu64, read_sentiment
from zhixing.apps.support.faq import FaqIndex
from zhixing.apps.support.model import SupportModel
from zhixing.apps.support.train import oos_scores, score_hwu, score_sentiment
from zhixing.io import model_directory, read_json_object


def run_settings(run: str | os.PathLike) -> dict[str, Any]:
    f = Path(run) / "support_config.json"
    return read_json_object(f) if f.is_file() else {}


def model_cost(sm: SupportModel) -> dict[str, Any]:
    weights = model_directory(sm.path) / "model.safetensors" if sm.path is not None else None
    return {
        "parameters": sm.num_parameters(),
        "disk_bytes": weights.stat().st_size if weights is not None and weights.is_file() else None,
    }


def intent_figures(sm: SupportModel, test_path: str | os.PathLike) -> dict[str, Any]:
    """Intent, slot and out-of-scope figures on an HWU64 test file."""
    rows = [mark_oos(u, sm.labels.oos_intents) for u in read_hwu64(test_path)]
    s = score_hwu(sm, rows)
    out: dict[str, Any] = {k: v for k, v in s.items() if k != "logits"}
    probs = (s["logits"] / sm.labels.temperature).softmax(-1)
    conf, pred = probs.max(-1)
    index = {n: i for i, n in enumerate(sm.labels.intents)}
    gold = torch.tensor([index.get(u.intent, -1) for u in rows])
    is_oos = torch.tensor([u.intent == OOS_LABEL for u in rows])
    flagged = conf < sm.labels.oos_threshold
    inside = ~is_oos
    accepted_right = (~flagged & (pred == gold))[inside]
    out.update(oos_scores(is_oos.tolist(), flagged.tolist()))
    out.update(
        {
            "n_test": len(rows),
            "n_oos": int(is_oos.sum()),
            "in_scope_accuracy_with_rejection": float(accepted_right.float().mean())
            if inside.any()
            else None,
            "in_scope_rejected": float(flagged[inside].float().mean()) if inside.any() else None,
            "joint_accuracy": float(torch.where(is_oos, flagged, ~flagged & (pred == gold)).float().mean()),
            "temperature": sm.labels.temperature,
            "oos_threshold": sm.labels.oos_threshold,
        }
    )
    return out


def retrieval_figures(index: FaqIndex, test_path: str | os.PathLike, oos: list[str]) -> dict[str, Any]:
    """recall@1/5 on the test utterances of intents the FAQ serves; don't-know rates at the threshold."""
    rows = read_hwu64(test_path)
    covered = {e.intent for e in index.entries if e.intent}
    asked = [u for u in rows if u.intent in covered]
    t0 = time.perf_counter()
    ranked = index.search([u.text for u in asked], 5)
    per_query_ms = 1000 * (time.perf_counter() - t0) / max(len(asked), 1)
    hit = [[e.intent == u.intent for e, _ in r] for r, u in zip(ranked, asked)]
    answered = [r[0][1] >= index.threshold for r in ranked]
    outside = [u for u in rows if u.intent in oos]
    out_scores = [r[0][1] for r in index.search([u.text for u in outside], 1)] if outside else []
    return {
        "faq_entries": len(index.entries),
        "faq_variants": len(index.owner),
        "n_queries": len(asked),
        "recall_at_1": sum(h[0] for h in hit) / max(len(hit), 1),
        "recall_at_5": sum(any(h[:5]) for h in hit) / max(len(hit), 1),
        "answered_correct_at_threshold": sum(a and h[0] for a, h in zip(answered, hit)) / max(len(hit), 1),
        "answered_at_threshold": sum(answered) / max(len(answered), 1),
        "dont_know_on_oos": sum(s < index.threshold for s in out_scores) / max(len(out_scores), 1),
        "n_oos_queries": len(out_scores),
        "faq_threshold": index.threshold,
        "search_ms_per_query_batched": per_query_ms,
    }


def latency(bot: Any, texts: list[str], warmup: int = 5) -> dict[str, float]:
    """SupportBot.turn one utterance at a time (a fresh conversation each): median / p90 ms per turn."""
    for t in texts[:warmup]:
        bot.turn("warmup", t)
    times = []
    for i, t in enumerate(texts):
        start = time.perf_counter()
        bot.turn(f"latency-{i}", t)
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return {
        "turns": len(times),
        "median_ms": statistics.median(times),
        "p90_ms": times[int(0.9 * (len(times) - 1))],
        "threads": torch.get_num_threads(),
    }


def evaluate_run(
    run: str | os.PathLike,
    *,
    hwu64_test: str | None = None,
    sentiment_test: str | None = None,
    faq: str | None = None,
    latency_turns: int = 60,
) -> dict[str, Any]:
    """Every figure of the module docstring that the run's heads and the given files allow."""
    from zhixing.apps.support.bot import SupportBot
    from zhixing.apps.support.http import find_faq

    settings = run_settings(run)
    hwu64_test = hwu64_test or settings.get("hwu64_test") or None
    sentiment_test = sentiment_test or settings.get("sentiment_test") or None
    tasks = set((settings.get("tasks") or "intent,slots,sentiment").split(","))
    sm = SupportModel.load(run)
    out: dict[str, Any] = {"run": str(run), "tasks": sorted(tasks), **model_cost(sm)}
    if hwu64_test and {"intent", "slots"} & tasks:
        fig = intent_figures(sm, hwu64_test)
        keep = (
            (
                "intent_accuracy",
                "in_scope_accuracy_with_rejection",
                "in_scope_rejected",
                "joint_accuracy",
                "oos_precision",
                "oos_recall",
                "oos_f1",
                "temperature",
                "oos_threshold",
                "n_oos",
            )
            if "intent" in tasks
            else ()
        )
        keep += ("slot_precision", "slot_recall", "slot_f1") if "slots" in tasks else ()
        out.update({k: fig[k] for k in (*keep, "n_test", "n_in_scope")})
    if sentiment_test and "sentiment" in tasks:
        out.update(score_sentiment(sm, read_sentiment(sentiment_test)))
        out["n_sentiment_test"] = len(read_sentiment(sentiment_test))
    faq_path = faq or (str(find_faq(Path(run))) if any(Path(run).glob("faq.*")) else None)
    if faq_path and hwu64_test:
        index = FaqIndex.from_file(faq_path, threshold=sm.labels.faq_threshold)
        out["retrieval"] = retrieval_figures(index, hwu64_test, sm.labels.oos_intents)
        if latency_turns and {"intent", "slots", "sentiment"} <= tasks:
            texts = [u.text for u in read_hwu64(hwu64_test)][::7][:latency_turns]
            out["latency"] = latency(SupportBot(sm, index), texts)
    return out


__all__ = ["evaluate_run", "intent_figures", "retrieval_figures", "latency", "model_cost"]
