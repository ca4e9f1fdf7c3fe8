"""Text classification (single sentences and pairs, multi-class) on the pooled [CLS] state,

    p(y | x) = softmax(W tanh(W_p h_L[CLS] + b_p) + b),      L = -log p(y* | x)

or, with `pooling=mean` (the default for a sentence-transformers checkpoint: tasks/base.py), on the mean of
the real tokens' states, p(y | x) = softmax(W (1/T) Σ_t h_L[t] + b); GPT reads its last real token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zhixing.tasks.base import PooledConfig, Task, pooling_settings, settle_pooling
from zhixing.tasks.data import DataError, TextExample, forward_all, read_table
from zhixing.tasks.metrics import classification_metrics


@dataclass
class ClassifyConfig(PooledConfig):
    """Settings of `zhixing finetune --task classify`."""

    text_column: str = ""  # column with the text ("" = sentence/text/review/... whichever exists)
    pair_column: str = ""  # column with the second text of a pair ("" = none / sentence2)
    label_column: str = "label"  # column with the label


def read(path: str, cfg: Any, labeled: bool = True) -> list[TextExample]:
    """Examples of a CSV/TSV/JSONL file, columns as `cfg` names them (text_column, pair_column, ...)."""
    return read_table(path, text_column=cfg.text_column or None, pair_column=cfg.pair_column or None,
                      label_column=cfg.label_column, require_label=labeled)


def label_names(examples: Sequence[TextExample]) -> list[str]:
    """The training labels, sorted (numerically when they are all integers: "0", "1", ..., "10")."""
    names = {e.label for e in examples}
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def encode(examples: Sequence[TextExample], tokenizer: Any, max_seq_len: int,
           names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """[CLS] text [SEP] (pair [SEP]) ids truncated to max_seq_len (longest first), with label indices.

    A decoder's tokenizer adds no special tokens; its texts end with the tokenizer's eos instead — the
    end-of-document token pretraining saw (CLM shards separate documents with it), so the last position,
    where a decoder's classifier reads (models/gpt.py), is one that has learnt to sum up a whole text
    (GPT-1's "extract" token, Radford et al. 2018)."""
    texts = [e.text for e in examples]
    pairs = [e.pair or "" for e in examples] if any(e.pair is not None for e in examples) else None
    encs = tokenizer.encode_batch(texts, pairs, max_length=max_seq_len, truncation=True)
    index = {n: i for i, n in enumerate(names or [])}
    eos = getattr(tokenizer, "eos_id", None)
    feats = []
    for e, enc in zip(examples, encs):
        ids, types = list(enc.ids), list(enc.type_ids)
        if eos is not None and pairs is None and not any(enc.special_tokens_mask) and ids[-1:] != [eos]:
            ids = ids[: max_seq_len - 1] + [eos]
            types = types[: len(ids) - 1] + [0]
        f: dict[str, Any] = {"input_ids": ids, "token_type_ids": types}
        if names is not None and e.label is not None:
            f["labels"] = index[e.label]
        feats.append(f)
    return feats


def probabilities(model: torch.nn.Module, tokenizer: Any, examples: Sequence[TextExample], max_seq_len: int,
                  batch_size: int = 64) -> tuple[torch.Tensor, float | None]:
    """(n, num_labels) class probabilities, and the mean loss when every example has a label."""
    names = model.config.label_names or [str(i) for i in range(model.config.num_labels)]
    labeled = all(e.label is not None for e in examples)
    feats = encode(examples, tokenizer, max_seq_len, names if labeled else None)
    probs, loss_sum = torch.zeros(len(feats), len(names)), 0.0
    for idx, _, out in forward_all(model, feats, batch_size, tokenizer.layout):
        probs[idx] = out.logits.softmax(-1)
        if out.loss is not None:
            loss_sum += float(out.loss) * len(idx)
    return probs, (loss_sum / len(examples) if labeled else None)


def evaluate(model: torch.nn.Module, tokenizer: Any, examples: Sequence[TextExample], cfg: Any,
             ) -> dict[str, float]:
    """accuracy, macro_f1 and val_loss of the model on labelled examples."""
    probs, loss = probabilities(model, tokenizer, examples, cfg.max_seq_len, cfg.eval_batch_size)
    names = model.config.label_names
    pred = [names[i] for i in probs.argmax(-1).tolist()]
    return {**classification_metrics([e.label for e in examples], pred), "val_loss": loss}


def predict(model: torch.nn.Module, tokenizer: Any, examples: Sequence[TextExample], cfg: Any,
            ) -> list[dict[str, Any]]:
    """Per example: {"label", "score", "scores": {label: probability}}."""
    probs, _ = probabilities(model, tokenizer, examples, cfg.max_seq_len, cfg.eval_batch_size)
    names = model.config.label_names or [str(i) for i in range(probs.size(1))]
    out = []
    for row in probs.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        out.append({"label": names[best], "score": row[best], "scores": dict(zip(names, row))})
    return out


def class_weights(examples: Sequence[TextExample], names: Sequence[str]) -> list[float]:
    """"balanced" weights n / (k · n_c), as scikit-learn's compute_class_weight."""
    counts = {n: 0 for n in names}
    for e in examples:
        counts[e.label] += 1
    return [len(examples) / (len(names) * max(counts[n], 1)) for n in names]


def check_labels(examples: Sequence[TextExample], names: Sequence[str], source: str) -> None:
    """Every label of a dev/test set must have been seen in training (the head has no output for it)."""
    unseen = sorted({e.label for e in examples} - set(names))
    if unseen:
        first = {u: next(e.where for e in examples if e.label == u) for u in unseen}
        listed = ", ".join(f"{u!r} (first at {first[u]})" for u in unseen[:20])
        raise DataError(f"{source}: labels never seen in training: {listed}; training labels: "
                        f"{', '.join(map(repr, names))}. Fix the labels or add examples of them to training")


def encode_train(examples: Sequence[TextExample], tokenizer: Any, cfg: Any, names: Sequence[str]
                 ) -> list[dict[str, Any]]:
    return encode(examples, tokenizer, cfg.max_seq_len, names)


def inputs(items: Sequence[Any]) -> list[TextExample]:
    """Texts, or (text, pair) tuples, as unlabelled examples."""
    return [TextExample(*x, None) if isinstance(x, tuple) else TextExample(str(x), None, None) for x in items]


TASK = Task(name="classify", head="seq_cls", metric="accuracy", config=ClassifyConfig, read=read,
            encode_train=encode_train, evaluate=evaluate, predict=predict, inputs=inputs,
            label_names=label_names, check_labels=check_labels, class_weights=class_weights,
            model_settings=pooling_settings, adapt=settle_pooling)

__all__ = ["read", "label_names", "encode", "evaluate", "predict", "probabilities", "class_weights",
           "check_labels", "ClassifyConfig", "TASK"]
