"""n-gram speed: zhixing's interpolated modified Kneser–Ney vs NLTK's (and KenLM's lmplz when given).

Corpus: People's Daily, Jan 1998 (`read_documents("peoples-daily")`, 3,162 articles, 1.86M characters),
character-level, every article one sentence. Prints one JSON object per measurement and ratio lines:

- train: zhixing on the whole corpus (orders 3 and 5); zhixing and NLTK on the same subset (NLTK's
  `fit` is pure Python). NLTK computes the Kneser–Ney quantities lazily when it scores, so training
  alone flatters it: `score` times both on the same held-out characters (zhixing: all of the held-out
  articles; NLTK: the first --nltk-score-tokens of them) and the ratios are per token.
- lmplz (--lmplz PATH): KenLM's estimator on the whole corpus, and the largest difference between its
  ARPA file and ours over every n-gram (the same n-grams are required).

Usage: python benchmarks/ngram.py [--order 3] [--nltk-docs 60] [--nltk-score-tokens 400] [--lmplz PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time

import numpy as np

from zhixing.data import read_documents
from zhixing.ngram import NgramModel
from zhixing.ngram.units import escape


def emit(**record) -> None:
    print(json.dumps({"bench": "ngram", **record}, ensure_ascii=False), flush=True)


def timed(fn, rounds: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def arpa_table(path: str) -> dict:
    out, n = {}, 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("\\") and line.endswith("-grams:"):
                n = int(line[1: line.index("-")])
            elif n and line and not line.startswith("\\"):
                p = line.split("\t")
                out[(n, p[1])] = (float(p[0]), float(p[2]) if len(p) > 2 else 0.0)
    out.pop((1, "<s>"), None)  # a convention: KenLM writes 0, we write -99
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--order", type=int, default=3, help="order for the NLTK comparison")
    ap.add_argument("--nltk-docs", type=int, default=60, help="training articles for the NLTK comparison")
    ap.add_argument("--nltk-score-tokens", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lmplz", default=None, help="path of KenLM's lmplz binary (optional)")
    args = ap.parse_args()

    import nltk
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import pad_both_ends, padded_everygram_pipeline

    docs = list(read_documents("peoples-daily"))
    held, train = docs[-300:], docs[:-300]
    chars = sum(map(len, train))
    device = f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    common = dict(device=device, corpus="peoples-daily", unit="char", numpy=np.__version__,
                  nltk=nltk.__version__)

    # 1. zhixing on the whole training corpus
    speed = {}
    for order in (3, 5):
        NgramModel.train(train[:50], order=order)  # warm-up
        s, model = timed(lambda o=order: NgramModel.train(train, order=o), args.rounds)
        emit(impl="zhixing", op="train", order=order, docs=len(train), tokens=chars, seconds=round(s, 3),
             tokens_per_s=round(chars / s), ngrams=sum(len(k) for k in model.keys), **common)  # fmt: skip
    enc = model.encode(held)
    s, _ = timed(lambda: model.token_log10probs(enc.ids), args.rounds)
    n_pred = int((enc.ids != 1).sum())
    emit(impl="zhixing", op="score", order=5, tokens=n_pred, seconds=round(s, 4),
         tokens_per_s=round(n_pred / s), **common)  # fmt: skip

    # 2. the same subset, both implementations
    order, sub = args.order, train[: args.nltk_docs]
    sub_chars = sum(map(len, sub))
    s, ours = timed(lambda: NgramModel.train(sub, order=order), args.rounds)
    speed["zhixing_train"] = sub_chars / s
    emit(impl="zhixing", op="train", order=order, docs=len(sub), tokens=sub_chars, seconds=round(s, 4),
         tokens_per_s=round(speed["zhixing_train"]), **common)  # fmt: skip

    def nltk_fit():
        data, vocab = padded_everygram_pipeline(order, [list(d) for d in sub])
        lm = KneserNeyInterpolated(order)
        lm.fit(data, vocab)
        return lm

    s, lm = timed(nltk_fit, 1 if args.rounds > 1 else args.rounds)
    speed["nltk_train"] = sub_chars / s
    emit(impl="nltk", op="train", order=order, docs=len(sub), tokens=sub_chars, seconds=round(s, 3),
         tokens_per_s=round(speed["nltk_train"]), note="fit only counts; KN is computed when scoring",
         **common)  # fmt: skip

    # scoring the same held-out characters (NLTK: a prefix of them)
    held_chars = [list(d) for d in held]
    grams = []
    for d in held_chars:
        padded = list(pad_both_ends(d, order))
        grams += [(padded[i], tuple(padded[i - order + 1: i])) for i in range(order - 1, len(padded))]
        if len(grams) >= args.nltk_score_tokens:
            break
    grams = grams[: args.nltk_score_tokens]
    t0 = time.perf_counter()
    for w, ctx in grams:
        lm.logscore(w, ctx)
    s = time.perf_counter() - t0
    speed["nltk_score"] = len(grams) / s
    emit(impl="nltk", op="score", order=order, tokens=len(grams), seconds=round(s, 3),
         tokens_per_s=round(speed["nltk_score"], 1), **common)  # fmt: skip
    enc = ours.encode(held)
    s, _ = timed(lambda: ours.token_log10probs(enc.ids), args.rounds)
    n_pred = int((enc.ids != 1).sum())
    speed["zhixing_score"] = n_pred / s
    emit(impl="zhixing", op="score", order=order, tokens=n_pred, seconds=round(s, 4),
         tokens_per_s=round(speed["zhixing_score"]), **common)  # fmt: skip

    # 3. KenLM's lmplz on the whole corpus, and parity of every n-gram
    if args.lmplz:
        with tempfile.TemporaryDirectory() as tmp:
            text = os.path.join(tmp, "chars.txt")
            with open(text, "w", encoding="utf-8") as f:
                for d in train:
                    f.write(" ".join(escape(c) for c in d) + "\n")
            for order_k in (3, 5):
                arpa = os.path.join(tmp, f"kenlm{order_k}.arpa")
                t0 = time.perf_counter()
                subprocess.run([args.lmplz, "-o", str(order_k), "--text", text, "--arpa", arpa, "-S", "1G",
                                "-T", tmp], check=True, capture_output=True)  # fmt: skip
                s = time.perf_counter() - t0
                emit(impl="kenlm-lmplz", op="train", order=order_k, tokens=chars, seconds=round(s, 3),
                     tokens_per_s=round(chars / s), note="from a space-separated file; 1G sort memory",
                     **common)  # fmt: skip
                t0 = time.perf_counter()
                m = NgramModel.train(train, order=order_k)
                train_s = time.perf_counter() - t0
                m.save(os.path.join(tmp, "ours.arpa"))
                a, b = arpa_table(arpa), arpa_table(os.path.join(tmp, "ours.arpa"))
                same = set(a) == set(b)
                dp = max(abs(a[k][0] - b[k][0]) for k in a) if same else None
                db = max(abs(a[k][1] - b[k][1]) for k in a) if same else None
                emit(impl="zhixing", op="parity_vs_lmplz", order=order_k, ngrams=len(a), same_ngrams=same,
                     max_abs_diff_log10p=dp, max_abs_diff_log10b=db, zhixing_train_seconds=round(train_s, 3),
                     lmplz_seconds=round(s, 3), ratio_speed=round(s / train_s, 2))  # fmt: skip

    print(json.dumps({"bench": "ngram", "ratio": "zhixing/nltk train tokens/s (same subset)",
                      "value": round(speed["zhixing_train"] / speed["nltk_train"], 1)}))
    print(json.dumps({"bench": "ngram", "ratio": "zhixing/nltk score tokens/s",
                      "value": round(speed["zhixing_score"] / speed["nltk_score"], 1)}))


if __name__ == "__main__":
    main()
