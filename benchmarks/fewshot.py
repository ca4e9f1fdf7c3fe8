"""Few-shot classification, LM-BFF protocol (Gao et al. 2021): per seed, K examples per class sampled from
the training file as train and another K per class as dev; the whole test set scored with the weights of
the best dev accuracy. Methods, all on the same encoder (all-MiniLM-L6-v2 with the MLM head that
benchmarks/minilm_mlm_head.py trained on its frozen encoder):

- finetune:   standard fine-tuning, a fresh classifier on the mean of the tokens' last hidden states
              (--pooling mean, the sentence embedding all-MiniLM-L6-v2 was trained for) or the [CLS]
              pooler (--pooling cls, LM-BFF's baseline)
- zero-shot:  the manual prompt with no training
- pet:        prompt-based fine-tuning with the manual template and label words
- auto:       label words found by zhixing.prompts.auto.search_label_words on the K-shot train/dev, then
              prompt-based fine-tuning with them
- autoprompt: AutoPrompt's frozen-LM setting: 3 trigger tokens ({text} [T] [T] [T] {mask}, the manual
              words; 20 HotFlip steps, 8 candidates) searched on the K-shot train set, no fine-tuning;
              compare with zero-shot (manual)
- pet-distill: PET in full — one prompt-fine-tuned model per pattern (template, template2), their
              ensemble's soft labels on --unlabeled texts of the training pool distilled into a fresh
              classifier on --encoder (zhixing.prompts.distill_ensemble); the student is scored
- icl, icl-cal, icl-nearest-cal: in-context learning with a causal LM (--gpt); electra-zero, electra: the
              ELECTRA discriminator as the scorer (--electra), zero-shot and prompt-fine-tuned

    flock /tmp/zhixing-cpu.lock .venv/bin/python benchmarks/fewshot.py --data sst2 \\
        --model /tmp/prompts-runs/minilm-mlm --seeds 0,1,2,3,4

Same steps, batch, learning rate and evaluation schedule for every trained method. One JSON line per
(method, seed), then a summary line per method: mean ± std of test accuracy over the seeds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings

import torch
from finetune_common import DATA, emit, environment, minilm_dir

warnings.filterwarnings("ignore")

SETS = {  # template2: pet-distill's second pattern
    "sst2": dict(template="{text} It was {mask} .", template2="{mask} ! {text}",
                 words={"1": ["great"], "0": ["terrible"]}),
    "hwu64": dict(template="{text} This is about {mask} .", template2="{mask} : {text}",
                  words=None),  # words: the intent's name
    "chnsenticorp": dict(template="{text}总之很{mask}。", template2="很{mask}！{text}",
                         words={"1": ["好"], "0": ["差"]}),
}


def load(name: str, seed: int, k: int, unlabeled: int = 0):
    """(train K/class, dev K/class, test) TextExamples; test is the full SST-2 dev / HWU64 test set. With
    unlabeled=N also N other texts of the training pool, labels removed (pet-distill's), as a 4th item."""
    from zhixing.tasks.data import read_table

    if name == "sst2":
        pool = read_table(DATA / "sst2/train.tsv", text_column="sentence")
        test = read_table(DATA / "sst2/dev.tsv", text_column="sentence")
    elif name == "chnsenticorp":  # the test split the Chinese pretraining corpus leaves out (zh_corpus.py);
        from finetune_common import chnsenticorp_splits  # the K-shot sets from its train split

        pool, _, test = chnsenticorp_splits(0)
    else:
        pool = read_table(DATA / "hwu64/train.csv", text_column="text")
        test = read_table(DATA / "hwu64/test.csv", text_column="text")
    rng = random.Random(seed)
    by_label: dict[str, list] = {}
    for e in pool:
        by_label.setdefault(e.label, []).append(e)
    train, dev = [], []
    for y in sorted(by_label):
        picked = rng.sample(by_label[y], min(2 * k, len(by_label[y])))
        train += picked[:k]
        dev += picked[k:2 * k]
    rng.shuffle(train)
    if not unlabeled:
        return train, dev, test
    taken = {id(e) for e in train + dev}
    rest = [e for e in pool if id(e) not in taken]
    from zhixing.tasks.data import TextExample

    picked = rng.sample(rest, min(unlabeled, len(rest)))
    return train, dev, test, [TextExample(e.text, e.pair, None) for e in picked]


def intent_words(labels: list[str]) -> dict[str, list[str]]:
    """HWU64's manual verbalizer: the words of the intent's name (alarm_query -> alarm, query)."""
    return {y: [w for w in y.replace("_", " ").split() if w] for y in labels}


def train_cfg(args, seed: int):
    from zhixing.train.config import TrainConfig

    return TrainConfig(max_steps=args.steps, batch_size=args.batch, lr=args.lr, warmup_steps=0,
                       schedule="linear", weight_decay=0.01, beta2=0.999, eval_interval=args.eval_every,
                       seed=seed, device="cpu", progress=False, tensorboard=False, plots=False,
                       log_interval=max(1, args.steps))


def standard_finetune(args, train, dev, test, labels, seed):
    """A fresh seq_cls head on the encoder; the weights of the best dev accuracy score the test set."""
    from zhixing.objectives import Classification
    from zhixing.tasks import classify
    from zhixing.tasks.data import TaskLoader
    from zhixing.tasks.finetune import load_for_task
    from zhixing.train import Trainer

    torch.manual_seed(seed)
    # MiniLM: the original checkpoint; else the pretrained run given (its mean or its [CLS] pooler)
    pooling = {"seq_pooling": "mean"} if args.pooling == "mean" else {}
    model = load_for_task(args.encoder or minilm_dir(), "seq_cls", labels, 0.1, **pooling)
    tok = model.tokenizer

    class Cfg:
        max_seq_len, eval_batch_size = 128, 64

    best = {"acc": -1.0, "state": None}

    def evaluator(m):
        r = classify.evaluate(m, tok, dev, Cfg)
        if r["accuracy"] > best["acc"]:
            best.update(acc=r["accuracy"], state={k: v.clone() for k, v in m.state_dict().items()})
        return r

    feats = classify.encode(train, tok, 128, labels)
    Trainer(model, Classification(evaluator=evaluator, metric="accuracy"), train_cfg(args, seed),
            TaskLoader(feats, args.batch, tok.pad_id, seed=seed)).fit()
    model.load_state_dict(best["state"])
    model.eval()
    return classify.evaluate(model, tok, test, Cfg)["accuracy"], best["acc"]


def prompt_finetune(args, train, dev, test, template, words, seed):
    from zhixing import hub
    from zhixing.prompts import ClozeClassifier

    torch.manual_seed(seed)
    model = hub.load(args.model)
    c = ClozeClassifier(model, model.tokenizer, template, words, scorer="mlm")
    s = c.finetune(train, dev, train_cfg(args, seed))
    return c.evaluate(test, 64)["accuracy"], s["best_dev"]["accuracy"]


def pet_distill(args, train, dev, test, unlabeled, spec, words, labels, seed):
    """PET in full: one prompt-fine-tuned model per pattern (the two templates), their ensemble labels the
    unlabelled texts softly, and a fresh classifier on --encoder (as standard fine-tuning's) learns those
    labels; the student is scored."""
    from zhixing import hub
    from zhixing.prompts import ClozeClassifier, distill_ensemble
    from zhixing.tasks import classify
    from zhixing.tasks.finetune import load_for_task

    patterns = []
    for template in (spec["template"], spec["template2"]):
        torch.manual_seed(seed)
        model = hub.load(args.model)
        c = ClozeClassifier(model, model.tokenizer, template, words, scorer="mlm")
        c.finetune(train, dev, train_cfg(args, seed))
        patterns.append(c)
    torch.manual_seed(seed)
    pooling = {"seq_pooling": "mean"} if args.pooling == "mean" else {}
    student = load_for_task(args.encoder or minilm_dir(), "seq_cls", labels, 0.1, **pooling)
    out = distill_ensemble(patterns, unlabeled, student, train_cfg(args, seed), dev=dev)

    class Cfg:
        max_seq_len, eval_batch_size = 128, 64

    teacher = {"ensemble_test_acc": round(ensemble_accuracy(patterns, test), 4),
               "agreement": round(out["agreement"], 4)}
    acc = classify.evaluate(student, student.tokenizer, test, Cfg)["accuracy"]
    return acc, out["best_dev"]["accuracy"], teacher


def ensemble_accuracy(patterns, test) -> float:
    from zhixing.prompts import ensemble
    from zhixing.prompts.cloze import metrics_of

    return metrics_of(patterns[0].labels, ensemble(patterns, test), test)["accuracy"]


def in_context(args, train, dev, test, template, words, seed, method):
    """k-shot prompting of --gpt: random demonstrations (one seeded set) or the nearest by MiniLM sentence
    embedding; "-cal": contextual calibration."""
    from zhixing import hub
    from zhixing.prompts import InContextClassifier

    model = hub.load(args.gpt)
    embed = None
    if "nearest" in method:
        from zhixing.tasks.pretrained import EmbeddingPipeline

        pipe = EmbeddingPipeline(minilm_dir())
        embed = lambda xs: pipe(list(xs))  # noqa: E731  (n, dim)
    icl = InContextClassifier(model, model.tokenizer, template, words, shots=args.shots,
                              selection="nearest" if embed else "random", calibrate=method.endswith("-cal"),
                              separator="\n", seed=seed, embed=embed, demo_tokens=args.demo_tokens)
    return icl.evaluate(test, train)["accuracy"], icl.evaluate(dev, train)["accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=list(SETS), default="sst2")
    ap.add_argument("--model", default="/tmp/prompts-runs/minilm-mlm")
    ap.add_argument("--gpt", default="", help="icl methods: a causal LM")
    ap.add_argument("--electra", default="", help="electra methods: an ELECTRA pair / discriminator")
    ap.add_argument("--shots", type=int, default=4, help="icl: demonstrations per prompt")
    ap.add_argument("--demo-tokens", type=int, default=None, help="icl: demo text cut to N tokens")
    ap.add_argument("--encoder", default="", help="standard fine-tuning's checkpoint ('' = all-MiniLM-L6-v2)")
    ap.add_argument("--pooling", choices=["mean", "cls"], default="mean", help="standard fine-tuning's")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--methods", default="", help="'' = zero-shot,finetune,pet,auto (+autoprompt on SST-2)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--test-limit", type=int, default=0)
    ap.add_argument("--unlabeled", type=int, default=1000, help="pet-distill: unlabelled texts from the pool")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from zhixing import hub
    from zhixing.prompts import ClozeClassifier
    from zhixing.prompts.auto import search_label_words

    spec = SETS[args.data]
    if not args.methods:
        args.methods = "zero-shot,finetune,pet,auto" + (",autoprompt" if args.data == "sst2" else "")
    emit({"bench": "fewshot", "data": args.data, "k": args.k, "args": vars(args),
          "env": environment(args.threads)})
    results: dict[str, list[float]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        train, dev, test, unlabeled = load(args.data, seed, args.k, unlabeled=args.unlabeled)
        if args.test_limit:
            test = random.Random(0).sample(test, min(args.test_limit, len(test)))
        labels = sorted({e.label for e in train})
        words = spec["words"] or intent_words(labels)
        for method in args.methods.split(","):
            t0 = time.time()
            extra = {}
            if method == "zero-shot":
                model = hub.load(args.model)
                clf = ClozeClassifier(model, model.tokenizer, spec["template"], words)
                acc = clf.evaluate(test, 64)["accuracy"]
                dev_acc = None
            elif method == "finetune":
                acc, dev_acc = standard_finetune(args, train, dev, test, labels, seed)
            elif method == "pet":
                acc, dev_acc = prompt_finetune(args, train, dev, test, spec["template"], words, seed)
            elif method == "auto":
                model = hub.load(args.model)
                verb, report = search_label_words(model, model.tokenizer, spec["template"], train, dev,
                                                  top_k=10, labels=labels)
                extra = {"words": {y: w for y, w in list(verb.words.items())[:8]}}
                acc, dev_acc = prompt_finetune(args, train, dev, test, spec["template"], verb, seed)
            elif method == "autoprompt":
                from zhixing.prompts.auto import search_triggers

                model = hub.load(args.model)
                trig = spec["template"].replace("{mask}", "[T] [T] [T] {mask}")
                c = ClozeClassifier(model, model.tokenizer, trig, words)
                found = search_triggers(c, train, iterations=20, candidates=8, batch_size=16, seed=seed)
                extra = {"triggers": found["triggers"]}
                dev_acc = c.evaluate(dev, 64)["accuracy"]
                acc = c.evaluate(test, 64)["accuracy"]
            elif method == "pet-distill":
                acc, dev_acc, extra = pet_distill(args, train, dev, test, unlabeled, spec, words, labels,
                                                  seed)
            elif method.startswith("icl"):  # icl, icl-cal, icl-nearest-cal: a causal LM (--gpt)
                acc, dev_acc = in_context(args, train, dev, test, spec["template"], words, seed, method)
            elif method in ("electra-zero", "electra"):  # the ELECTRA discriminator as scorer (--electra)
                model = hub.load(args.electra)
                c = ClozeClassifier(model, model.tokenizer, spec["template"], words, scorer="rtd")
                dev_acc = None
                if method == "electra":
                    torch.manual_seed(seed)
                    dev_acc = c.finetune(train, dev, train_cfg(args, seed))["best_dev"]["accuracy"]
                acc = c.evaluate(test, 64)["accuracy"]
            else:
                raise SystemExit(f"unknown method {method}")
            results.setdefault(method, []).append(acc)
            emit({"data": args.data, "method": method, "seed": seed, "test_acc": round(acc, 4),
                  "dev_acc": dev_acc, "test_n": len(test), "wall_s": round(time.time() - t0, 1), **extra})
    for method, accs in results.items():
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        emit({"data": args.data, "method": method, "summary": True, "seeds": len(accs),
              "mean": round(100 * statistics.mean(accs), 1), "std": round(100 * sd, 1)})


if __name__ == "__main__":
    main()
