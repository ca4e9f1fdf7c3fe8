"""Knowledge graph (issue #20 §2): SemEval-2010 Task 8 relation classification, extraction, KGQA.

    flock /tmp/zhixing-cpu.lock nice -n 19 .venv/bin/python benchmarks/kg_relation.py --epochs 1 --lr 1.5e-4

1. Relation classification: all-MiniLM-L6-v2 + entity markers (zhixing/tasks/relation.py) fine-tuned on
   TRAIN_FILE.TXT less 800 sentences held out as dev (a seeded sample) for model selection; the official
   score (macro-F1 over the 9 relation types, direction counted, Other excluded) on TEST_FILE_FULL.TXT
   (2,717 sentences) with the dev-selected model.
2. Candidate recall of the nominal finder (zhixing/apps/kg/extract.py) against the test set's marked
   nominals, and end-to-end extraction on --extract-sentences test sentences: the share of their gold
   (non-Other) triples found among the triples extracted from the raw sentence.
3. KGQA (zhixing/apps/kg/qa.py): stores built from the test set's triples — the gold labels, and the
   model's predictions on the marked pairs — and questions generated from --qa-triples gold triples with
   the held-out templates (qa.EVAL_TEMPLATES, two per relation and side, used in turn; one question per side).

One JSON line per measurement, with the conditions and the wall time on this machine.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_common import DATA, emit, environment, minilm_dir  # noqa: E402

warnings.filterwarnings("ignore")


TEMPLATES = (
    "qa.EVAL_TEMPLATES (2 per relation and side, one question per triple side); relation prediction "
    "by 1-NN over qa.PROTOTYPES (3 per relation and side), all-MiniLM-L6-v2"
)


def candidate_recall(test: list) -> dict:
    """How many marked nominals' head words the nominal finder proposes, and candidates per sentence."""
    from zhixing.apps.kg.extract import nominals
    from zhixing.apps.kg.store import normalise

    found = total = candidates = 0
    for x in test:
        spans = nominals(x.text)
        candidates += len(spans)
        proposed = {normalise(x.text[s:e]) for s, e in spans}
        for s, e in (x.head, x.tail):
            total += 1
            found += normalise(x.text[s:e].split()[-1]) in proposed
    return {
        "candidate_recall": round(found / total, 4),
        "entities": total,
        "found": found,
        "candidates_per_sentence": round(candidates / len(test), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1.5e-4)
    ap.add_argument("--eval-every", type=float, default=0.0, help="dev evaluations every N epochs (0 = once)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--max-time", type=float, default=0.0, help="stop training after this many seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pooling", default="", choices=["", "mean", "cls"],
                    help="the sentence part of the head: '' = the checkpoint's own (all-MiniLM-L6-v2: mean)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit-train", type=int, default=0, help="first N training sentences (0 = all)")
    ap.add_argument(
        "--limit-dev", type=int, default=0, help="first N dev sentences (0 = all 800; smoke runs)"
    )
    ap.add_argument("--limit-test", type=int, default=0, help="first N test sentences (0 = all)")
    ap.add_argument("--qa-triples", type=int, default=600)
    ap.add_argument("--extract-sentences", type=int, default=300)
    ap.add_argument("--out", default="runs/kg-semeval")
    ap.add_argument(
        "--no-train",
        action="store_true",
        help="only what needs no relation model: candidate recall and KGQA on the gold store",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    env = environment(args.threads)

    from zhixing.apps.kg.evaluate import kgqa_scores, predict_labels
    from zhixing.apps.kg.extract import Extractor, to_triple
    from zhixing.apps.kg.qa import default_embedder
    from zhixing.apps.kg.store import normalise
    from zhixing.tasks import relation
    from zhixing.tasks.finetune import finetune, finetune_config, load_run

    root = DATA / "semeval2010-task8"
    train_all = relation.read(str(root / "TRAIN_FILE.TXT"))
    test = relation.read(str(root / "TEST_FILE_FULL.TXT"))
    if args.limit_test:
        test = test[: args.limit_test]
    held = set(random.Random(args.seed).sample(range(len(train_all)), 800))
    dev = [x for i, x in enumerate(train_all) if i in held]
    train = [x for i, x in enumerate(train_all) if i not in held]
    if args.limit_train:
        train = train[: args.limit_train]
    if args.limit_dev:
        dev = dev[: args.limit_dev]

    if args.no_train:
        emit({"bench": "kg_candidates", **candidate_recall(test), "commit": env["commit"]})
        t3 = time.time()
        for res in kgqa_scores(
            test, None, None, default_embedder(minilm_dir()), args.qa_triples, args.seed, "TEST_FILE_FULL.TXT"
        ):
            emit(
                {"bench": "kgqa", **res, "templates": TEMPLATES, "wall_s": round(time.time() - t3, 1), **env}
            )
        return

    # -- 1. relation classification ------------------------------------------------------------------
    out = Path(args.out)
    t0 = time.time()
    cfg = finetune_config(
        "relation",
        model=minilm_dir(),
        epochs=args.epochs,
        max_seq_len=args.max_len,
        dropout=0.1,
        eval_every=args.eval_every or args.epochs,
        pooling=args.pooling,
    )
    summary = finetune(
        cfg,
        name=out.name,
        train_examples=train,
        dev_examples=dev,
        train_overrides=[
            f"out_dir={out.parent}",
            f"batch_size={args.batch}",
            f"lr={args.lr}",
            f"seed={args.seed}",
            "log_interval=20",
            "overwrite=true",
            f"max_time={args.max_time}",
        ],
    )
    train_s = time.time() - t0
    model, _ = load_run(out)
    t1 = time.time()
    pred, scores = predict_labels(model, test, args.max_len)
    gold = [x.label for x in test]
    score = relation.semeval_scores(gold, pred)
    emit(
        {
            "bench": "semeval2010_task8",
            "model": "all-MiniLM-L6-v2",
            "head": "entity markers, " + ("[mean;E1;E2]" if model.config.seq_pooling == "mean"
                                          else "[CLS;E1;E2]"),
            "train": len(train),
            "dev": len(dev),
            "test": len(test),
            "epochs": args.epochs,
            "lr": args.lr,
            "batch": args.batch,
            "max_len": args.max_len,
            "seed": args.seed,
            "steps": summary.get("step"),
            "dev_metrics": summary.get("dev"),
            "official_macro_f1": round(score["semeval_f1"], 2),
            "macro_p": round(score["semeval_p"], 2),
            "macro_r": round(score["semeval_r"], 2),
            "accuracy_19way": round(sum(g == p for g, p in zip(gold, pred)) / len(gold), 4),
            "per_type_f1": {k: round(v[2], 2) for k, v in score["per_type"].items()},
            "train_wall_s": round(train_s, 1),
            "test_wall_s": round(time.time() - t1, 1),
            **env,
        }
    )

    # -- 2. extraction ---------------------------------------------------------------------------------
    recall = candidate_recall(test)
    t2 = time.time()
    ex = Extractor(out, min_score=0.5)
    sample = [x for x in test if relation.relation_type(x.label) != relation.OTHER][: args.extract_sentences]
    hit = n_triples = n_pairs = 0
    for x in sample:
        got = ex.extract(x.text, source="TEST_FILE_FULL.TXT")
        n_triples += len(got.triples)
        n_pairs += got.pairs
        want = to_triple(x, x.label, 1.0)
        keys = {(normalise(t.head), t.relation, normalise(t.tail)) for t in got.triples}
        hit += (normalise(want.head.split()[-1]), want.relation, normalise(want.tail.split()[-1])) in keys
    emit(
        {
            "bench": "kg_extraction",
            **recall,
            "sentences": len(sample),
            "pairs": n_pairs,
            "triples": n_triples,
            "gold_triple_recall": round(hit / max(1, len(sample)), 4),
            "min_score": 0.5,
            "wall_s": round(time.time() - t2, 1),
            "commit": env["commit"],
        }
    )

    # -- 3. KGQA ---------------------------------------------------------------------------------------
    t3 = time.time()
    embed = default_embedder(minilm_dir())
    for res in kgqa_scores(test, pred, scores, embed, args.qa_triples, args.seed, "TEST_FILE_FULL.TXT"):
        emit(
            {
                "bench": "kgqa",
                **res,
                "templates": TEMPLATES,
                "wall_s": round(time.time() - t3, 1),
                "commit": env["commit"],
            }
        )


if __name__ == "__main__":
    main()
