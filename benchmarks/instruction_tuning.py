"""Instruction tuning (issue #19 §2): one GPT taught four Chinese tasks as instructions, FLAN-style — each
task phrased by several templates — and queried through its chat format on held-out examples with
held-out templates; next to task-specific fine-tuning of the same base; what the number of templates changes.

    zhixing pretrain --config configs/gpt-reviews-zh-cpu.yaml     # the base GPT (at most 10 CPU minutes)
    python benchmarks/instruction_tuning.py --base runs/gpt-reviews-zh-cpu --templates 0,1,3,6 --classify \
        --single ner

The tasks (labels as answer words, the options named in every template):
  hotel     ChnSentiCorp hotel reviews, 正面 / 负面 (the finetune_chinese.py hash split; its test set)
  category  online_shopping_10_cats: which of 10 product categories a review is about (400 a category to
            train, 100 to test; reviews also in the hotel test set are dropped)
  waimai    food-delivery reviews, 好评 / 差评 (a hash 1,000 held out as test)
  ner       NER as generation on MSRA sentences of at most 50 characters: the reply lists the names of people,
            places and organisations in order, joined by 、, or 无 (4,000 from the training file; 500 from
            the test file); scored by entity-string F1 (type-agnostic)
Each task has 8 templates: the first 6 are the training pool (a run with k templates phrases every training
example with one of the first k, drawn at random), the last 2 are never trained on ("held-out templates").
Template 0 is seen by every run ("seen template"). k = 0 is the base model itself, queried the same way.

A query is the chat rendering of one user message (the run's chat template, saved with its tokenizer:
"问：...\\n答："); the reply is greedy, at most 6 tokens, cut at the first newline; it counts as the option it
starts with (else the first option it contains; else invalid, which is wrong).

Task-specific fine-tuning (`--classify`): `zhixing.tasks.finetune` classify on the same base GPT (the
classifier reads the last token), one run per classification task, on the same training texts, dev = 10% of
them; for NER (no token-classification head on a GPT) a single-task SFT with one template (`--single ner`).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

from finetune_common import DATA, chnsenticorp_splits

CATEGORIES = ["书籍", "平板", "手机", "水果", "洗发水", "热水器", "蒙牛", "衣服", "计算机", "酒店"]
OPTIONS = "、".join(CATEGORIES)

TEMPLATES = {
    "hotel": ["判断这条酒店评论的情感是正面还是负面。\n评论：{text}",
              "{text}\n这条评论的态度是正面还是负面？",
              "评论：{text}\n情感（正面/负面）：",
              "请读下面的住店评价，回答“正面”或“负面”。\n{text}",
              "这位客人对酒店满意吗？满意答正面，不满意答负面。\n{text}",
              "{text}\n以上评论的情感倾向：正面还是负面",
              # held out
              "下面是一条酒店点评：{text}\n它的情感是正面还是负面？",
              "请给这段文字做情感分类，选项：正面、负面。\n文字：{text}"],
    "category": ["这条评论说的是哪类商品？选项：{options}。\n评论：{text}",
                 "{text}\n这条评论属于哪个类别（{options}）？",
                 "评论：{text}\n类别（{options}）：",
                 "请判断下面的购物评价在评哪一类商品，从{options}中选一个。\n{text}",
                 "顾客买的是什么？可选：{options}。\n{text}",
                 "{text}\n商品类别是{options}中的哪一个？",
                 # held out
                 "下面是一条网购评论：{text}\n它评价的商品属于哪一类？选项：{options}。",
                 "请给这条评论分类，类别有：{options}。\n评论：{text}"],
    "waimai": ["判断这条外卖评价是好评还是差评。\n评价：{text}",
               "{text}\n这是好评还是差评？",
               "外卖评价：{text}\n好评/差评：",
               "请读下面的外卖点评，回答“好评”或“差评”。\n{text}",
               "顾客对这单外卖满意吗？满意答好评，不满意答差评。\n{text}",
               "{text}\n以上评价属于：好评还是差评",
               # held out
               "下面是一条外卖订单的点评：{text}\n它是好评还是差评？",
               "请给这段点评分类，选项：好评、差评。\n点评：{text}"],
    "ner": ["找出句子里的人名、地名和机构名，用顿号隔开，没有就答无。\n句子：{text}",
            "{text}\n这句话提到了哪些人名、地名、机构名？没有就答无。",
            "句子：{text}\n其中的专名（人名/地名/机构名，没有答无）：",
            "请列出下面句子中出现的人、地方和组织的名字，用顿号分开；一个都没有就回答无。\n{text}",
            "命名实体识别：{text}\n实体（顿号分隔，无则答无）：",
            "{text}\n以上句子中的人名、地名和机构名依次是",
            # held out
            "下面这句新闻里有哪些人名、地名或机构名？按出现顺序列出，没有就答无。\n{text}",
            "请抽取句中的命名实体（人名、地名、机构名），用顿号隔开，没有则答无。\n句子：{text}"],
}
ANSWERS = {"hotel": {"1": "正面", "0": "负面"}, "category": {c: c for c in CATEGORIES},
           "waimai": {"1": "好评", "0": "差评"}}
EXTRACT = {"ner"}  # tasks whose reply is a list (entity F1), not one of a few options
NONE = "无"
POOL, HELD_OUT, SEEN = 6, (6, 7), 0

# A Chinese transcript: the user's turn after 问：, the reply after 答：, one line each.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}问：{{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}答：{{ m['content'] }}\n"
    "{% else %}{{ raise_exception('unknown role ' ~ m['role']) }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}答：{% endif %}"
)


def _stable(text: str) -> int:
    import hashlib

    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16)


def load_tasks(per_task: int, seed: int) -> dict[str, tuple[list, list]]:
    """{task: (train [(text, label)], test [(text, label)])}, deterministic."""
    rng = random.Random(seed)
    train, _, test = chnsenticorp_splits(seed)
    hotel_train = [(e.text, e.label) for e in train]
    rng.shuffle(hotel_train)
    hotel_test = [(e.text, e.label) for e in test]
    seen_hotel = {t for t, _ in hotel_test}

    by_cat: dict[str, list] = {c: [] for c in CATEGORIES}
    with open(DATA / "zh-reviews/online_shopping_10_cats.csv", encoding="utf-8-sig", newline="") as f:
        for r in csv.DictReader(f):
            text = r["review"].strip().lstrip("\ufeff")
            if text and text not in seen_hotel and r["cat"] in by_cat:
                by_cat[r["cat"]].append((text, r["cat"]))
    cat_train, cat_test = [], []
    for c in CATEGORIES:
        rows = sorted(set(by_cat[c]))
        rng.shuffle(rows)
        cat_test += rows[:100]
        cat_train += rows[100:100 + per_task // len(CATEGORIES)]
    rng.shuffle(cat_train)

    with open(DATA / "zh-reviews/waimai_10k.csv", encoding="utf-8-sig", newline="") as f:
        rows = sorted({(r["review"].strip(), r["label"]) for r in csv.DictReader(f) if r["review"].strip()})
    wm_test = [r for r in rows if _stable(r[0]) % 12 == 0][:1000]
    wm_train = [r for r in rows if _stable(r[0]) % 12 != 0]
    rng.shuffle(wm_train)
    from zhixing.tasks.data import read_tagged
    from zhixing.tasks.metrics import get_entities

    def entities(sentences) -> list[tuple[str, str]]:
        """(sentence, its entity strings in order joined by 、, or 无): the chunks the NER metric reads."""
        return [("".join(s.tokens),
                 "、".join("".join(s.tokens[a:b + 1]) for _, a, b in get_entities(s.tags)) or NONE)
                for s in sentences]

    short = [s for s in read_tagged(DATA / "msra-ner/msra_train_bio.txt") if len(s.tokens) <= 50]
    ner_train = entities(short)
    rng.shuffle(ner_train)
    short = [s for s in read_tagged(DATA / "msra-ner/msra_test_bio.txt") if len(s.tokens) <= 50]
    ner_test = entities(short)
    random.Random(seed).shuffle(ner_test)
    return {"hotel": (hotel_train[:per_task], hotel_test), "category": (cat_train, cat_test),
            "waimai": (wm_train[:per_task], wm_test), "ner": (ner_train[:per_task], ner_test[:500])}


def answer(task: str, label: str) -> str:
    return label if task in EXTRACT else ANSWERS[task][label]


def entity_f1(preds: list[str], golds: list[str]) -> tuple[float, float]:
    """Micro F1 of the entity strings (each reply's list against the gold list, as multisets) and the share
    of replies that are exactly right."""
    from collections import Counter

    tp = n_pred = n_gold = exact = 0
    for p, g in zip(preds, golds):
        ps = Counter(x for x in p.split("、") if x and x != NONE)
        gs = Counter(x for x in g.split("、") if x and x != NONE)
        tp += sum((ps & gs).values())
        n_pred += sum(ps.values())
        n_gold += sum(gs.values())
        exact += ps == gs
    f1 = 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 1.0
    return 100 * f1, 100 * exact / max(len(golds), 1)


def instruction(task: str, template: int, text: str, budget: int) -> str:
    """The user message: template `template` of `task` around the review, cut to fit `budget` characters."""
    form = TEMPLATES[task][template]
    room = budget - len(form.format(text="", options=OPTIONS))
    return form.format(text=text[:max(room, 8)], options=OPTIONS)


def write_sft_data(tasks: dict, k: int, path: Path, budget: int, seed: int) -> int:
    """JSONL conversations: every training example of every task, phrased by one of templates 0..k-1."""
    rng = random.Random(seed)
    lines = []
    for task, (train, _) in tasks.items():
        for text, label in train:
            lines.append({"messages": [
                {"role": "user", "content": instruction(task, rng.randrange(k), text, budget)},
                {"role": "assistant", "content": answer(task, label)}]})
    rng.shuffle(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return len(lines)


def parse(reply: str, options: list[str]) -> str | None:
    reply = reply.split("\n")[0].strip()
    for o in options:
        if reply.startswith(o):
            return o
    found = [(reply.find(o), o) for o in options if o in reply]
    return min(found)[1] if found else None


def evaluate(model_dir: str, tasks: dict, budget: int, batch: int = 64) -> dict:
    """Accuracy (and invalid replies) of each task under the seen template and each held-out template."""
    import torch

    from zhixing.generation.api import generate
    from zhixing.generation.chat import render
    from zhixing.hub import load

    model = load(model_dir).eval()
    tok = model.tokenizer
    out = {}
    for task, (_, test) in tasks.items():
        options = list(dict.fromkeys(ANSWERS[task].values())) if task not in EXTRACT else []
        for template in (SEEN, *HELD_OUT):
            prompts = [render([{"role": "user", "content": instruction(task, template, text, budget)}],
                              CHAT_TEMPLATE, tokenizer=tok) for text, _ in test]
            replies = []
            with torch.inference_mode():
                for s in range(0, len(prompts), batch):
                    limit = 6  # an option is a word; a list reply may be as long as the context allows
                    if task in EXTRACT:
                        longest = max(len(tok.encode(p, add_special_tokens=False).ids)
                                      for p in prompts[s:s + batch])
                        limit = min(40, model.config.max_seq_len - longest)
                    replies += generate(model, prompts[s:s + batch], tokenizer=tok, max_new_tokens=limit,
                                        do_sample=False, stop_strings=["\n"]).texts
            gold = [answer(task, label) for _, label in test]
            if task in EXTRACT:
                f1, exact = entity_f1([r.split("\n")[0].strip() for r in replies], gold)
                score = {"accuracy": round(f1, 2), "exact": round(exact, 2)}  # "accuracy": the task's metric
            else:
                preds = [parse(r, options) for r in replies]
                score = {"accuracy": round(100 * sum(p == g for p, g in zip(preds, gold)) / len(gold), 2),
                         "invalid": round(100 * sum(p is None for p in preds) / len(gold), 2)}
            out[f"{task}/t{template}"] = {**score, "n": len(gold), "sample": replies[:3]}
    return out


def summarize(scores: dict) -> dict:
    names = sorted({key.split("/")[0] for key in scores}, key=list(TEMPLATES).index)
    seen = [scores[f"{t}/t{SEEN}"]["accuracy"] for t in names]
    held = [scores[f"{t}/t{h}"]["accuracy"] for t in names for h in HELD_OUT]
    per_task = {t: round(sum(scores[f"{t}/t{h}"]["accuracy"] for h in HELD_OUT) / len(HELD_OUT), 2)
                for t in names}
    return {"seen_template_mean": round(sum(seen) / len(seen), 2),
            "held_out_templates_mean": round(sum(held) / len(held), 2), "held_out_by_task": per_task}


def sft(args, tasks: dict, k: int, name: str = "") -> str:
    """Instruction-tune the base with k templates a task; returns the run directory."""
    from zhixing.recipes.pretrain import run_recipe
    from zhixing.train.config import Recipe

    root = Path(args.out)
    name = name or f"instruct-k{k}"
    data = root / f"data-{name}.jsonl"
    n = write_sft_data(tasks, k, data, args.budget, args.seed)
    template = root / "chat-zh.jinja"
    template.write_text(CHAT_TEMPLATE, encoding="utf-8")
    steps = args.epochs * n // args.batch_size
    recipe = Recipe.from_dict({
        "name": name,
        "model": {"init": args.base},
        "data": {"objective": "sft", "corpus": str(data), "chat_template": str(template),
                 "block_size": 128, "val_fraction": 0.02},
        "train": {"max_steps": steps, "batch_size": args.batch_size, "lr": args.lr, "min_lr": args.lr / 10,
                  "warmup_steps": max(1, steps // 20), "beta2": 0.99, "weight_decay": 0.1,
                  "eval_interval": max(1, steps // 4), "eval_batches": 20, "log_interval": 50,
                  "seed": args.seed, "out_dir": str(root), "progress": False, "plots": False},
    }, source=f"instruction_tuning k={k}")
    t = time.perf_counter()
    summary = run_recipe(recipe, progress=False)
    print(json.dumps({"bench": "instruction_tuning", "sft": name, "conversations": n, "steps": steps,
                      "train_s": round(time.perf_counter() - t, 1),
                      "val_loss": summary.get("best_val_loss", summary.get("val_loss"))}), flush=True)
    return str(root / name)


def classify(args, tasks: dict) -> dict:
    """Task-specific fine-tuning of the same base: one classifier per task on the same training texts."""
    from zhixing.tasks.data import TextExample
    from zhixing.tasks.finetune import finetune, finetune_config

    out = {}
    for task, (train, test) in tasks.items():
        if task in EXTRACT:
            continue
        examples = [TextExample(text[:args.budget], None, ANSWERS[task][label], f"{task}:{i}")
                    for i, (text, label) in enumerate(train)]
        n_dev = len(examples) // 10
        test_ex = [TextExample(text[:args.budget], None, ANSWERS[task][label], f"{task}-test:{i}")
                   for i, (text, label) in enumerate(test)]
        cfg = finetune_config("classify", model=args.base, warmup_ratio=0.1, max_seq_len=128,
                              epochs=args.epochs)
        t = time.perf_counter()
        s = finetune(cfg, name=f"classify-{task}", train_examples=examples[n_dev:],
                     dev_examples=examples[:n_dev], test_examples=test_ex,
                     train_overrides=[f"out_dir={args.out}", f"batch_size={args.batch_size}",
                                      f"seed={args.seed}", "progress=false", "plots=false", "device=cpu"])
        out[task] = {"test_accuracy": round(100 * s["test"]["accuracy"], 2),
                     "dev_accuracy": round(100 * s["dev"]["accuracy"], 2), "best_step": s["dev"]["step"],
                     "wall_s": round(time.perf_counter() - t, 1)}
        print(json.dumps({"bench": "instruction_tuning", "classify": task, **out[task]}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the GPT run or model directory to instruction-tune")
    ap.add_argument("--templates", default="0,1,3,6",
                    help="numbers of training templates a task (0 = the base model, not tuned)")
    ap.add_argument("--classify", action="store_true", help="also task-specific fine-tuning of the base")
    ap.add_argument("--single", default="", help="tasks to also SFT alone, one template (e.g. ner)")
    ap.add_argument("--per-task", type=int, default=4000, help="training examples a task")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--budget", type=int, default=110, help="characters of a user message, at most")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/instruct")
    ap.add_argument("--limit-test", type=int, default=0, help="score only the first N test examples a task")
    args = ap.parse_args()

    tasks = load_tasks(args.per_task, args.seed)
    if args.limit_test:
        tasks = {t: (tr, te[:args.limit_test]) for t, (tr, te) in tasks.items()}
    print(json.dumps({"bench": "instruction_tuning", "train": {t: len(v[0]) for t, v in tasks.items()},
                      "test": {t: len(v[1]) for t, v in tasks.items()}}), flush=True)
    results = {}
    for k in [int(x) for x in args.templates.split(",")]:
        model_dir = args.base if k == 0 else sft(args, tasks, k)
        t = time.perf_counter()
        scores = evaluate(model_dir, tasks, args.budget)
        results[k] = {**summarize(scores), "scores": scores, "eval_s": round(time.perf_counter() - t, 1)}
        print(json.dumps({"bench": "instruction_tuning", "templates": k, **results[k]}, ensure_ascii=False),
              flush=True)
    if args.classify:
        results["classify"] = classify(args, tasks)
    for task in filter(None, args.single.split(",")):
        alone = {task: tasks[task]}
        scores = evaluate(sft(args, alone, 1, name=f"single-{task}"), alone, args.budget)
        results[f"single-{task}"] = {"scores": scores}
        print(json.dumps({"bench": "instruction_tuning", "single": task, "scores": scores},
                         ensure_ascii=False), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=1),
                                                 encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
