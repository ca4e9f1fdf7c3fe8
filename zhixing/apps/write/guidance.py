"""Classifier-guided decoding (FUDGE, Yang & Klein 2021): steer a language model toward an attribute `a`
(here: a review's sentiment) with a classifier that reads prefixes.

    p(x_t | x_<t, a)  ∝  p_LM(x_t | x_<t) · p(a | x_≤t)^λ

Only the LM's k most likely next tokens are candidates; the classifier scores each candidate prefix
x_<t + v (all rows × k prefixes in one batched forward) and the log-scores become

    s'_v = log p_LM(v | x_<t) + λ · log p(a | x_<t v)     for v in top-k,   -inf otherwise.

λ = 0 is plain top-k decoding; λ = 1 is FUDGE's Bayes-rule product; larger λ trades fluency for the
attribute. The guide plugs into generation as a logits processor (`generate(..., logits_processors=[g])`),
so greedy, sampling and streaming all take it.
"""

from __future__ import annotations

from typing import Any

import torch

from zhixing.errors import ConfigError
from zhixing.tasks import classify
from zhixing.tasks.data import TextExample


class StyleGuide:
    """A FUDGE logits processor: `guide(scores, tokens) -> scores` for `generate` / `stream`.

    classifier: a fine-tuned classification run / model directory (or an already loaded model with its
        `tokenizer`), e.g. runs/write-sentiment-guide from `zhixing app write sentiment`.
    target: one of the classifier's labels ("positive" / "negative").
    strength: λ >= 0, the exponent on p(a | prefix).
    top_k: candidates per step scored by the classifier.
    lm_tokenizer: the language model's tokenizer (decodes the prefixes); set by Writer when it uses the
        guide, or pass it for direct use.
    """

    def __init__(
        self,
        classifier: Any,
        target: str,
        strength: float = 1.0,
        top_k: int = 20,
        lm_tokenizer: Any = None,
        batch_size: int = 512,
        max_seq_len: int = 128,
    ):
        if isinstance(classifier, torch.nn.Module):
            self.model = classifier
        else:
            from zhixing.tasks.finetune import load_run

            self.model = load_run(classifier)[0]
        self.tokenizer = self.model.tokenizer
        labels = list(self.model.config.label_names or [])
        if target not in labels:
            raise ConfigError(
                f"target={target!r} is not a label of the classifier ({classifier}); choose one "
                f"of {', '.join(labels) or '(it has no label names)'}"
            )
        if strength < 0:
            raise ConfigError(f"strength={strength} is invalid: must be >= 0 (the exponent λ)")
        if top_k < 1:
            raise ConfigError(f"top_k={top_k} is invalid: must be >= 1")
        self.labels, self.target, self.index = labels, target, labels.index(target)
        self.strength, self.top_k = float(strength), int(top_k)
        self.lm_tokenizer, self.batch_size = lm_tokenizer, batch_size
        self.max_seq_len = min(max_seq_len, self.model.config.max_seq_len)

    def with_strength(self, strength: float) -> StyleGuide:
        """The same guide (same loaded classifier) with another λ."""
        if strength < 0:
            raise ConfigError(f"strength={strength} is invalid: must be >= 0 (the exponent λ)")
        other = object.__new__(StyleGuide)
        other.__dict__.update(self.__dict__)
        other.strength = float(strength)
        return other

    def retarget(self, target: str) -> StyleGuide:
        """The same guide steering toward another of the classifier's labels."""
        if target not in self.labels:
            raise ConfigError(
                f"target={target!r} is not a label of the classifier; choose one of {', '.join(self.labels)}"
            )
        other = self.with_strength(self.strength)
        other.target, other.index = target, self.labels.index(target)
        return other

    def target_probability(self, texts: list[str]) -> torch.Tensor:
        """(len(texts),) p(target | text) under the classifier."""
        if not texts:
            return torch.empty(0)
        examples = [TextExample(t, None, None) for t in texts]
        probs, _ = classify.probabilities(
            self.model, self.tokenizer, examples, self.max_seq_len, self.batch_size
        )
        return probs[:, self.index]

    @torch.no_grad()
    def __call__(self, scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """scores (rows, vocab) float32 logits; tokens (rows, length) the ids so far (prompt included,
        left padding decoded away as a special token) -> (rows, vocab) log-scores, -inf off the top-k."""
        if self.lm_tokenizer is None:
            raise ConfigError(
                "StyleGuide needs the language model's tokenizer (lm_tokenizer=) to read the "
                "prefixes; Writer sets it"
            )
        logp = scores.float().log_softmax(-1)
        top, cand = logp.topk(min(self.top_k, logp.size(-1)), dim=-1)  # (rows, k)
        if self.strength > 0:
            rows, k = cand.shape
            prefixes = self.lm_tokenizer.decode_batch(tokens.tolist())
            pieces = self.lm_tokenizer.decode_batch(cand.reshape(-1, 1).tolist())
            texts = [prefixes[i // k] + piece for i, piece in enumerate(pieces)]
            p_a = self.target_probability(texts).to(top.device).view(rows, k)
            top = top + self.strength * p_a.clamp_min(1e-12).log()
        return torch.full_like(logp, float("-inf")).scatter(1, cand, top)
