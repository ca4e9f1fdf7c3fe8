"""Relation classification between two marked entities of a sentence (SemEval-2010 Task 8 style).

Entity markers (Baldini Soares et al. 2019, "Matching the Blanks"; R-BERT, Wu & He 2019): four reserved
tokens are put around the head and the tail entity,

    [CLS] the [E1] author [/E1] of a keygen uses a [E2] disassembler [/E2] ... [SEP]

and the classifier reads the pooled [CLS] state with the states of the two entity-start markers ("entity
start" pooling, the best variant of Baldini Soares et al.):

    p(r | x, e1, e2) = softmax(W [tanh(W_p h[CLS]); h[E1]; h[E2]] + b),      L = -log p(r* | x, e1, e2)

With `pooling=mean` — the default for a sentence-transformers checkpoint, as in classify — the first part
is the average of the real tokens' states instead of the pooled [CLS] (tasks/base.py: pooling_settings).

The markers are reserved vocabulary entries ([unused0]..[unused3] of BERT WordPiece vocabularies, or
<e1> </e1> <e2> </e2>) inserted at the id level, so the text itself is tokenized exactly as in
pretraining. Labels are directed ("Cause-Effect(e2,e1)": the cause is e2) — 19 classes on SemEval.

Score: `semeval_f1`, exactly the official scorer's (semeval2010_task8_scorer-v1.2.pl) "(9+1)-way evaluation
with directionality taken into account", macro-averaged over the relation types of the key except Other.

Files: SemEval's own format (`id<TAB>"sentence with <e1>..</e1> and <e2>..</e2>"`, the label line, a
Comment line, a blank line) or JSONL ({"text", "head": [start, end], "tail": [start, end], "label"},
character offsets, end exclusive).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zhixing.data.corpora import read_lines
from zhixing.errors import ConfigError, DataError
from zhixing.tasks.base import PooledConfig, Task, pooling_settings, settle_pooling
from zhixing.tasks.classify import check_labels as _check_seen_labels
from zhixing.tasks.classify import class_weights as _balanced_weights
from zhixing.tasks.data import forward_all

# Reserved tokens used as markers, in order of preference: [E1] [/E1] [E2] [/E2].
MARKER_TOKENS = (("[unused0]", "[unused1]", "[unused2]", "[unused3]"), ("<e1>", "</e1>", "<e2>", "</e2>"))
OTHER = "Other"  # the no-relation label, left out of the official macro average
_DIRECTION = re.compile(r"\((e[12]),(e[12])\)$")
_TAGGED = re.compile(r"<e1>(.*?)</e1>|<e2>(.*?)</e2>")


@dataclass
class RelationExample:
    text: str
    head: tuple[int, int]  # character span of e1 (the first argument of directed labels), end exclusive
    tail: tuple[int, int]  # character span of e2
    label: str | None  # None for unlabelled input
    where: str = ""  # "file:line" for messages
    id: str = ""  # the example's id in its file (SemEval's sentence number)


@dataclass
class RelationConfig(PooledConfig):
    """Settings of `zhixing finetune --task relation` (those of every task, class_weights included)."""


# -- reading --------------------------------------------------------------------------------------------


def parse_tagged(sentence: str, where: str = "") -> tuple[str, tuple[int, int], tuple[int, int]]:
    """ "... <e1>a</e1> ... <e2>b</e2> ..." -> (text without the tags, e1 span, e2 span)."""
    spans: dict[str, tuple[int, int]] = {}
    out, last = [], 0
    for m in _TAGGED.finditer(sentence):
        out.append(sentence[last : m.start()])
        start = sum(map(len, out))
        name, inner = ("e1", m.group(1)) if m.group(1) is not None else ("e2", m.group(2))
        if name in spans:
            raise DataError(f"{where}: <{name}> appears twice; mark each entity once")
        out.append(inner)
        spans[name] = (start, start + len(inner))
        last = m.end()
    out.append(sentence[last:])
    text = "".join(out)
    if set(spans) != {"e1", "e2"} or "<e1>" in text or "<e2>" in text:
        raise DataError(f"{where}: expected one <e1>...</e1> and one <e2>...</e2> in {sentence[:80]!r}")
    for name, (s, e) in spans.items():
        if not text[s:e].strip():
            raise DataError(f"{where}: entity <{name}> is empty")
    return text, spans["e1"], spans["e2"]


def read_semeval(path: str | Path, labeled: bool = True) -> list[RelationExample]:
    """SemEval-2010 Task 8 files: `id<TAB>"sentence"`, then (labelled files) the label line, an optional
    `Comment:` line and a blank line. TEST_FILE_CLEAN.TXT (sentences only) reads with labeled=False."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    out: list[RelationExample] = []
    pending: RelationExample | None = None
    for lineno, raw in read_lines(path, error=DataError):
        line = raw.rstrip("\r\n")
        where = f"{path}:{lineno}"
        if not line.strip() or line.startswith("Comment:"):
            continue
        head, tab, rest = line.partition("\t")
        if tab and head.strip().isdigit():
            if pending is not None and labeled:
                raise DataError(f"{pending.where}: sentence {pending.id} has no label line")
            sentence = rest.strip()
            if len(sentence) >= 2 and sentence[0] == sentence[-1] == '"':
                sentence = sentence[1:-1]
            text, e1, e2 = parse_tagged(sentence, where)
            ex = RelationExample(text, e1, e2, None, where, head.strip())
            out.append(ex)
            pending = ex if labeled else None
        elif pending is not None:
            pending.label = line.strip()
            pending = None
        else:
            raise DataError(
                f"{where}: expected 'id<TAB>\"sentence with <e1>..</e1> <e2>..</e2>\"'"
                + (" or a label line" if labeled else "")
                + f", got {line[:60]!r}"
            )
    if pending is not None:
        raise DataError(f"{pending.where}: sentence {pending.id} has no label line")
    if not out:
        raise DataError(f"{path}: no examples; expected SemEval-2010 Task 8 blocks or JSONL")
    return out


def _span(obj: dict, key: str, text: str, where: str) -> tuple[int, int]:
    value = obj.get(key)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise DataError(f"{where}: field {key!r} must be [start, end] character offsets, got {value!r}")
    s, e = value
    if not 0 <= s < e <= len(text):
        raise DataError(
            f"{where}: field {key!r} = {value} is outside the text (length {len(text)}) or "
            "empty; expected 0 <= start < end <= len(text)"
        )
    return s, e


def read_jsonl(path: str | Path, labeled: bool = True) -> list[RelationExample]:
    """{"text", "head": [start, end], "tail": [start, end], "label"} per line (label optional when
    labeled=False); spans are character offsets, end exclusive."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    out = []
    for lineno, line in read_lines(path, error=DataError):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg}); each line is one object") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise DataError(f"{where}: expected an object with a string field 'text'")
        text = obj["text"]
        label = obj.get("label")
        if labeled and not isinstance(label, str):
            raise DataError(f"{where}: field 'label' must be a string (the relation), got {label!r}")
        out.append(
            RelationExample(
                text,
                _span(obj, "head", text, where),
                _span(obj, "tail", text, where),
                label if isinstance(label, str) else None,
                where,
                str(obj.get("id", "")),
            )
        )
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def read(path: str, cfg: Any = None, labeled: bool = True) -> list[RelationExample]:
    """A .jsonl/.json file as JSONL, anything else as SemEval-2010 Task 8."""
    if not path:
        raise ConfigError("relation: no file given (train= / dev= / test=)")
    if str(path).lower().endswith((".jsonl", ".json")):
        return read_jsonl(path, labeled)
    return read_semeval(path, labeled)


def label_names(examples: Sequence[RelationExample]) -> list[str]:
    return sorted({e.label for e in examples if e.label is not None})


def check_labels(examples: Sequence[RelationExample], names: Sequence[str], source: str) -> None:
    _check_seen_labels(examples, names, source)  # same rule as classification: every label was trained


def class_weights(examples: Sequence[RelationExample], names: Sequence[str]) -> list[float]:
    return _balanced_weights(examples, names)


# -- the official score ---------------------------------------------------------------------------------


def relation_type(label: str) -> str:
    """ "Cause-Effect(e2,e1)" -> "Cause-Effect" (the scorer's 10-way label)."""
    return _DIRECTION.sub("", label)


def semeval_scores(gold: Sequence[str], pred: Sequence[str], other: str = OTHER) -> dict[str, Any]:
    """The official SemEval-2010 Task 8 score, "(9+1)-way evaluation with directionality taken into
    account" (semeval2010_task8_scorer-v1.2.pl, step 6), in percent.

    For each relation type R of the key (direction stripped) other than Other:
        correct_R = predictions equal to the gold label (type *and* direction) with gold type R
        P_R = correct_R / #predictions of type R (a right type with the wrong direction counts as wrong)
        R_R = correct_R / #gold examples of type R,      F1_R = 2 P_R R_R / (P_R + R_R)
    semeval_f1 = mean over those types of F1_R (the macro average of the per-type F1, not the F1 of the
    averaged P and R). Returns {"semeval_f1", "semeval_p", "semeval_r", "per_type": {R: (P, R, F1)}}.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    gold_types = Counter(relation_type(g) for g in gold)
    pred_types = Counter(relation_type(p) for p in pred)
    correct = Counter(relation_type(g) for g, p in zip(gold, pred) if g == p)
    per_type: dict[str, tuple[float, float, float]] = {}
    for r in sorted(gold_types):
        if r == other:
            continue
        p = 100.0 * correct[r] / pred_types[r] if pred_types[r] else 0.0
        rec = 100.0 * correct[r] / gold_types[r]
        per_type[r] = (p, rec, 2 * p * rec / (p + rec) if p + rec else 0.0)
    n = max(1, len(per_type))
    return {
        "semeval_f1": sum(v[2] for v in per_type.values()) / n,
        "semeval_p": sum(v[0] for v in per_type.values()) / n,
        "semeval_r": sum(v[1] for v in per_type.values()) / n,
        "per_type": per_type,
    }


# -- encoding -------------------------------------------------------------------------------------------


def marker_ids(tokenizer: Any) -> list[int]:
    """Ids of [E1] [/E1] [E2] [/E2]: the first set of MARKER_TOKENS the vocabulary holds."""
    for names in MARKER_TOKENS:
        ids = [tokenizer.token_to_id(t) for t in names]
        if all(i is not None for i in ids):
            return ids
    raise ConfigError(
        "relation classification needs four reserved tokens for the entity markers; the "
        "vocabulary has neither "
        + " nor ".join(" ".join(n) for n in MARKER_TOKENS)
        + " (train the tokenizer with them as special tokens)"
    )


def model_settings(cfg: Any) -> dict[str, Any]:
    """The head's ModelConfig fields: the [E1] and [E2] ids it reads the entity states at, and its pooling."""
    from zhixing.hub import load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    if tokenizer is None:
        raise ConfigError(f"{cfg.model}: no tokenizer next to the model; relation fine-tuning needs it")
    ids = marker_ids(tokenizer)
    return {"entity_markers": [ids[0], ids[2]], **pooling_settings(cfg)}


def _token_range(offsets: Sequence[tuple[int, int]], span: tuple[int, int], where: str) -> tuple[int, int]:
    """[first, last + 1) of the tokens overlapping the character span."""
    s, e = span
    inside = [i for i, (a, b) in enumerate(offsets) if a < e and b > s and b > a]
    if not inside:
        raise DataError(f"{where}: the entity span {list(span)} covers no token of the text")
    return inside[0], inside[-1] + 1


def encode(
    examples: Sequence[RelationExample], tokenizer: Any, max_seq_len: int, names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """[CLS] ... [E1] head [/E1] ... [E2] tail [/E2] ... [SEP] ids, with the label index when `names`.

    The text is tokenized once (without special tokens) and the markers are inserted by the tokens'
    character offsets. Longer than max_seq_len: a window of tokens around both entities is kept."""
    e1, e1_end, e2, e2_end = marker_ids(tokenizer)
    layout = tokenizer.layout
    room = max_seq_len - layout.single_extra
    encs = tokenizer.encode_batch([x.text for x in examples], add_special_tokens=False)
    index = {n: i for i, n in enumerate(names or [])}
    feats = []
    for x, enc in zip(examples, encs):
        ids = list(enc.ids)
        h0, h1 = _token_range(enc.offsets, x.head, x.where or "relation example")
        t0, t1 = _token_range(enc.offsets, x.tail, x.where or "relation example")
        # insert from the right so earlier positions stay valid
        inserts = sorted(
            [(h0, e1, 1), (h1, e1_end, 0), (t0, e2, 1), (t1, e2_end, 0)],
            key=lambda t: (t[0], t[2]),
            reverse=True,
        )
        for pos, tid, _ in inserts:
            ids.insert(pos, tid)
        if len(ids) > room:  # keep the stretch from the first marker to the last, centred in the window
            first = min(ids.index(e1), ids.index(e2))
            last = max(ids.index(e1_end), ids.index(e2_end))
            lo = max(0, min(first - (room - (last - first + 1)) // 2, len(ids) - room))
            ids = ids[lo : lo + room]
        built = layout.build(ids)
        f: dict[str, Any] = {"input_ids": built.ids, "token_type_ids": built.types}
        if names is not None and x.label is not None:
            f["labels"] = index[x.label]
        feats.append(f)
    return feats


def encode_train(
    examples: Sequence[RelationExample], tokenizer: Any, cfg: Any, names: Sequence[str]
) -> list[dict[str, Any]]:
    return encode(examples, tokenizer, cfg.max_seq_len, names)


# -- evaluation and prediction --------------------------------------------------------------------------


def _check_head(model: torch.nn.Module) -> None:
    if not model.config.entity_markers:
        raise ConfigError(
            "this model's classifier does not read entity markers (config.entity_markers is "
            "empty); fine-tune it with --task relation"
        )


def probabilities(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[RelationExample],
    max_seq_len: int,
    batch_size: int = 64,
) -> tuple[torch.Tensor, float | None]:
    """(n, num_labels) relation probabilities, and the mean loss when every example has a label."""
    _check_head(model)
    names = model.config.label_names or [str(i) for i in range(model.config.num_labels)]
    known = set(names)  # a label the head has no output for gets no loss (it is still scored as wrong)
    labeled = all(e.label in known for e in examples)
    feats = encode(examples, tokenizer, max_seq_len, names if labeled else None)
    probs, loss_sum = torch.zeros(len(feats), len(names)), 0.0
    for idx, _, out in forward_all(model, feats, batch_size, tokenizer.layout):
        probs[idx] = out.logits.softmax(-1)
        if out.loss is not None:
            loss_sum += float(out.loss) * len(idx)
    return probs, (loss_sum / len(examples) if labeled and examples else None)


def evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[RelationExample],
    cfg: Any,
) -> dict[str, float | None]:
    """semeval_f1 (official, percent), its macro P and R, accuracy (19-way, 0–1) and val_loss."""
    probs, loss = probabilities(model, tokenizer, examples, cfg.max_seq_len, cfg.eval_batch_size)
    names = model.config.label_names
    pred = [names[i] for i in probs.argmax(-1).tolist()]
    gold = [str(e.label) for e in examples]
    scores = semeval_scores(gold, pred)
    accuracy = sum(g == p for g, p in zip(gold, pred)) / max(1, len(gold))
    return {
        "semeval_f1": scores["semeval_f1"],
        "semeval_p": scores["semeval_p"],
        "semeval_r": scores["semeval_r"],
        "accuracy": accuracy,
        "val_loss": loss,
    }


def predict(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[RelationExample],
    cfg: Any,
) -> list[dict[str, Any]]:
    """Per example: {"label", "score", "scores": {label: probability}, "head", "tail"} (entity texts)."""
    probs, _ = probabilities(model, tokenizer, examples, cfg.max_seq_len, cfg.eval_batch_size)
    names = model.config.label_names or [str(i) for i in range(probs.size(1))]
    out = []
    for x, row in zip(examples, probs.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        out.append(
            {
                "label": names[best],
                "score": row[best],
                "scores": dict(zip(names, row)),
                "head": x.text[x.head[0] : x.head[1]],
                "tail": x.text[x.tail[0] : x.tail[1]],
            }
        )
    return out


def inputs(items: Sequence[Any]) -> list[RelationExample]:
    """Strings with <e1>..</e1> <e2>..</e2> tags, dicts {"text", "head": [s, e], "tail": [s, e]}, or
    RelationExamples, as unlabelled examples."""
    out = []
    for n, item in enumerate(items):
        where = f"input {n}"
        if isinstance(item, RelationExample):
            out.append(item)
        elif isinstance(item, str):
            text, e1, e2 = parse_tagged(item, where)
            out.append(RelationExample(text, e1, e2, None, where))
        elif isinstance(item, dict) and isinstance(item.get("text"), str) and "head" not in item:
            text, e1, e2 = parse_tagged(item["text"], where)  # {"text": "... <e1>a</e1> ... <e2>b</e2>"}
            out.append(RelationExample(text, e1, e2, None, where))
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            text = item["text"]
            out.append(
                RelationExample(
                    text, _span(item, "head", text, where), _span(item, "tail", text, where), None, where
                )
            )
        else:
            raise DataError(
                f"{where}: expected a string with <e1>..</e1> <e2>..</e2> or an object "
                f"{{'text', 'head': [start, end], 'tail': [start, end]}}, got {type(item).__name__}"
            )
    return out


TASK = Task(
    name="relation",
    head="seq_cls",
    metric="semeval_f1",
    config=RelationConfig,
    read=read,
    encode_train=encode_train,
    evaluate=evaluate,
    predict=predict,
    inputs=inputs,
    label_names=label_names,
    check_labels=check_labels,
    class_weights=class_weights,
    model_settings=model_settings,
    adapt=settle_pooling,
)

__all__ = [
    "RelationExample",
    "RelationConfig",
    "read",
    "read_semeval",
    "read_jsonl",
    "parse_tagged",
    "semeval_scores",
    "relation_type",
    "marker_ids",
    "encode",
    "evaluate",
    "predict",
    "inputs",
    "TASK",
]
