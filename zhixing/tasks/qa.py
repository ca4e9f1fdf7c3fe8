"""Extractive question answering (SQuAD v1.1 style): predict the answer span's start and end tokens.

    p_start(i) = softmax_i(w_s · h_L[i]),   p_end(j) = softmax_j(w_e · h_L[j])
    L = -(log p_start(s*) + log p_end(e*)) / 2,   span = argmax_{i ≤ j < i + max_answer_len} s_i + e_j

Inputs are `[CLS] question [SEP] context-window [SEP]` (XLNet: `question <sep> context-window <sep> <cls>`,
as the tokenizer's layout says). A context longer than the window is covered
by several windows whose starts are `doc_stride` tokens apart (BERT's run_squad); a window that does
not contain the whole answer is trained to point at the classification token ([CLS] at position 0, XLNet's
<cls> at the end). At prediction the `n_best` top
starts and ends of every window are paired, spans outside the context or longer than `max_answer_len`
are dropped, and the best-scoring span over all windows is mapped back to the original text through
the tokenizer's character offsets.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zhixing.tasks.base import FinetuneConfig, Task
from zhixing.tasks.data import DataError, QAExample, first_real, forward_all, read_squad
from zhixing.tasks.metrics import qa_scores


@dataclass
class QAConfig(FinetuneConfig):
    """Settings of `zhixing finetune --task qa`."""

    doc_stride: int = 128  # tokens between the starts of two windows over a long context
    max_query_len: int = 64  # question tokens kept
    max_answer_len: int = 30  # longest answer span considered (tokens)
    n_best: int = 20  # start/end candidates per window in span decoding
    qa_metric: typing.Literal["auto", "squad", "cmrc"] = "auto"  # auto: cmrc when contexts are Chinese


_CJK = re.compile(r"[\u4e00-\u9fff]")


def read(path: str, cfg: Any, labeled: bool = True) -> list[QAExample]:
    return read_squad(path)


def metric_style(examples: Sequence[QAExample], cfg: Any) -> str:
    """cmrc (character-level) when the contexts are mostly Chinese, else squad."""
    if cfg.qa_metric != "auto":
        return cfg.qa_metric
    sample = "".join(e.context[:200] for e in examples[:50])
    return "cmrc" if len(_CJK.findall(sample)) > 0.3 * max(len(sample), 1) else "squad"


def encode(examples: Sequence[QAExample], tokenizer: Any, cfg: Any, train: bool = False,
           ) -> list[dict[str, Any]]:
    """Window features: input_ids, token_type_ids, labels (start, end) and, for decoding, the example
    index, where the context starts in the input and which context tokens the window holds.

    With train=True, examples without a locatable answer are skipped (read_squad counted them)."""
    if tokenizer.cls_id is None or tokenizer.sep_id is None:
        raise DataError("QA needs a tokenizer with classification and separator tokens ([CLS]/[SEP] or "
                        "XLNet's <cls>/<sep>)")
    layout = tokenizer.layout
    contexts = sorted({e.context for e in examples})
    ctx_encs = dict(zip(contexts, tokenizer.encode_batch(contexts, add_special_tokens=False)))
    q_encs = tokenizer.encode_batch([e.question for e in examples], add_special_tokens=False)
    feats = []
    for n, (ex, q) in enumerate(zip(examples, q_encs)):
        answer = next(((t, s) for t, s in ex.answers if s >= 0), None)
        if train and answer is None:
            continue
        ctx = ctx_encs[ex.context]
        offsets = ctx.offsets
        q_ids = q.ids[:cfg.max_query_len]
        room = cfg.max_seq_len - len(q_ids) - layout.pair_extra
        if room < 8:
            raise DataError(f"max_seq_len={cfg.max_seq_len} leaves {room} context tokens after the question; "
                            "raise max_seq_len or lower max_query_len")
        stride = min(cfg.doc_stride, room)
        a_tok = b_tok = None
        if answer is not None:  # answer character span -> first and last context token
            a_chr, b_chr = answer[1], answer[1] + len(answer[0])
            inside = [i for i, (s, e) in enumerate(offsets) if s < b_chr and e > a_chr]
            if inside:
                a_tok, b_tok = inside[0], inside[-1]
        start = 0
        while True:
            end = min(start + room, len(offsets))
            built = layout.build(q_ids, ctx.ids[start:end])  # [CLS] q [SEP] c [SEP] / q <sep> c <sep> <cls>
            c0, none = built.starts[1], built.cls or 0
            f: dict[str, Any] = {"input_ids": built.ids, "token_type_ids": built.types, "example": n,
                                 "ctx_start": c0, "window": (start, end), "label_positions": True}
            if a_tok is not None and start <= a_tok and b_tok < end:
                f["labels"] = [c0 + a_tok - start, c0 + b_tok - start]
            else:
                f["labels"] = [none, none]  # answer not (wholly) in this window: point at the cls token
            if not (train and f["labels"] == [none, none] and a_tok is None):
                feats.append(f)
            if end >= len(offsets):
                break
            start += stride
    return feats


def decode(examples: Sequence[QAExample], feats: Sequence[dict[str, Any]],
           start_logits: Sequence[torch.Tensor], end_logits: Sequence[torch.Tensor], tokenizer: Any,
           cfg: Any) -> list[list[dict[str, Any]]]:
    """n-best answers per example: [{"answer", "start", "end" (characters), "score" (probability over
    the n-best), "logit"}], best first; an example whose windows yield no valid span gets []."""
    offsets_of: dict[str, list[tuple[int, int]]] = {}
    cands: list[list[tuple[float, int, int]]] = [[] for _ in examples]
    for f, s_log, e_log in zip(feats, start_logits, end_logits):
        ex = examples[f["example"]]
        if ex.context not in offsets_of:
            offsets_of[ex.context] = tokenizer.encode(ex.context, add_special_tokens=False).offsets
        offsets = offsets_of[ex.context]
        a, b = f["window"]
        c0, length = f["ctx_start"], b - a
        s, e = s_log[c0:c0 + length], e_log[c0:c0 + length]  # context positions only
        k = min(cfg.n_best, length)
        s_top, e_top = s.topk(k).indices, e.topk(k).indices
        score = s[s_top][:, None] + e[e_top][None, :]  # (k, k): start i, end j
        span = e_top[None, :] - s_top[:, None]
        score = score.masked_fill((span < 0) | (span >= cfg.max_answer_len), -math.inf)
        flat = score.flatten()
        for idx in flat.topk(min(cfg.n_best, flat.numel())).indices.tolist():
            if flat[idx] == -math.inf:
                break
            i, j = int(s_top[idx // k]) + a, int(e_top[idx % k]) + a
            cands[f["example"]].append((float(flat[idx]), offsets[i][0], offsets[j][1]))
    out = []
    for ex, cs in zip(examples, cands):
        cs = sorted(set(cs), reverse=True)[:cfg.n_best]
        if not cs:
            out.append([])
            continue
        z = torch.tensor([c[0] for c in cs]).softmax(0).tolist()
        out.append([{"answer": ex.context[s:e], "start": s, "end": e, "score": p, "logit": lg}
                    for (lg, s, e), p in zip(cs, z)])
    return out


def run(model: torch.nn.Module, tokenizer: Any, examples: Sequence[QAExample], cfg: Any
        ) -> tuple[list[list[dict[str, Any]]], float | None]:
    """(n-best answers per example, mean span loss over windows)."""
    feats = encode(examples, tokenizer, cfg)
    starts: list[Any] = [None] * len(feats)
    ends: list[Any] = [None] * len(feats)
    loss_sum = 0.0
    for idx, batch, out in forward_all(model, feats, cfg.eval_batch_size, tokenizer.layout):
        for r, i in enumerate(idx):
            at = first_real(batch, r)  # the feature's own positions, after any left padding (XLNet)
            own = out.logits[r, at:at + len(feats[i]["input_ids"])]
            starts[i], ends[i] = own[:, 0], own[:, 1]
        loss_sum += float(out.loss) * len(idx)
    return decode(examples, feats, starts, ends, tokenizer, cfg), loss_sum / max(len(feats), 1)


def evaluate(model: torch.nn.Module, tokenizer: Any, examples: Sequence[QAExample], cfg: Any
             ) -> dict[str, float]:
    """exact_match and f1 (percent; SQuAD's or CMRC 2018's definition, see metric_style) and val_loss."""
    nbest, loss = run(model, tokenizer, examples, cfg)
    preds = {ex.id: (nb[0]["answer"] if nb else "") for ex, nb in zip(examples, nbest)}
    refs = {ex.id: [t for t, _ in ex.answers] for ex in examples}
    return {**qa_scores(preds, refs, metric_style(examples, cfg)), "val_loss": loss}


def predict(model: torch.nn.Module, tokenizer: Any, pairs: Sequence[tuple[str, str]], cfg: Any
            ) -> list[dict[str, Any]]:
    """Best answer per (question, context): {"answer", "start", "end", "score", "n_best": [...]}."""
    examples = [QAExample(str(i), q, c) for i, (q, c) in enumerate(pairs)]
    nbest, _ = run(model, tokenizer, examples, cfg)
    return [{**(nb[0] if nb else {"answer": "", "start": -1, "end": -1, "score": 0.0}), "n_best": nb}
            for nb in nbest]


def encode_train(examples: Sequence[QAExample], tokenizer: Any, cfg: Any, labels: Any = None
                 ) -> list[dict[str, Any]]:
    return encode(examples, tokenizer, cfg, train=True)


def inputs(items: Sequence[Any]) -> list[tuple[str, str]]:
    """{"question", "context"} dicts or (question, context) pairs."""
    pairs = []
    for x in items:
        if isinstance(x, dict):
            if "question" not in x or "context" not in x:
                raise DataError(f"a QA input needs 'question' and 'context', got keys {sorted(x)}")
            pairs.append((str(x["question"]), str(x["context"])))
        elif isinstance(x, (tuple, list)) and len(x) == 2:
            pairs.append((str(x[0]), str(x[1])))
        else:
            raise DataError(f"a QA input is a {{'question', 'context'}} object or a (question, context) "
                            f"pair, got {type(x).__name__}")
    return pairs


TASK = Task(name="qa", head="qa", metric="f1", config=QAConfig, read=read, encode_train=encode_train,
            evaluate=evaluate, predict=predict, inputs=inputs, objective="span")
