"""Logits processors: what reshapes the next-token distribution before a token is chosen.

All work on a whole batch at once: `scores` is (rows, vocab) float32, `tokens` (rows, length) the ids so
far. No Python loop over rows or the vocabulary; penalties are gathers and scatters.

Order (the one transformers uses, so results match it): repetition penalty, no-repeat n-grams, then the
form / content constraints (zhixing.generation.constraints), then the caller's own processors
(`generate(..., logits_processors=[...])`), then, only when sampling, temperature, top-k,
top-p, min-p.
"""

from __future__ import annotations

import torch

from zhixing.generation.config import GenerationConfig

NEG_INF = float("-inf")


def repetition_penalty(
    scores: torch.Tensor, tokens: torch.Tensor, penalty: float, ignore: torch.Tensor | None = None
) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019) on every token already present in the row, applied once per token:

        s'_v = s_v * penalty   if s_v < 0          (more negative: less likely)
        s'_v = s_v / penalty   otherwise           (smaller positive: less likely)

    ignore: (rows, length) bool, True for positions to leave out (left padding).
    """
    vocab = scores.size(-1)
    # Ignored positions point at a spare column past the vocabulary, dropped at the end.
    index = tokens if ignore is None else tokens.masked_fill(ignore, vocab)
    padded = torch.nn.functional.pad(scores, (0, 1))
    seen = padded.gather(1, index)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return padded.scatter(1, index, seen)[:, :vocab]


def no_repeat_ngram(scores: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """Ban every token that would complete an n-gram already in the row (Paulus et al. 2017).

    The n-grams that can be completed next are those whose first n-1 tokens equal the row's last n-1
    tokens: compare that suffix with every window of the row and ban each matching window's last token.
    """
    length = tokens.size(1)
    if length < n:
        return scores
    vocab = scores.size(-1)
    windows = tokens.unfold(1, n, 1)  # (rows, length - n + 1, n)
    suffix = tokens[:, length - n + 1:]  # (rows, n - 1)
    hit = (windows[..., :-1] == suffix[:, None, :]).all(-1)  # (rows, windows)
    # non-matching windows scatter into a spare column, so they cannot unban anything
    target = torch.where(hit, windows[..., -1], vocab)
    banned = torch.zeros(scores.size(0), vocab + 1, dtype=torch.bool, device=scores.device)
    banned.scatter_(1, target, True)
    return scores.masked_fill(banned[:, :vocab], NEG_INF)


def top_k_filter(scores: torch.Tensor, k: int, min_keep: int = 1) -> torch.Tensor:
    """Keep the k highest scores (ties with the k-th kept too), set the rest to -inf."""
    k = min(max(k, min_keep), scores.size(-1))
    kth = scores.topk(k, dim=-1).values[:, -1:]
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p_filter(scores: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2020): keep the smallest set V_p of most likely tokens with

        sum_{v in V_p} softmax(s)_v >= p

    Sorting ascending, a token is dropped when the mass of it and everything less likely is <= 1 - p.
    """
    sorted_scores, order = scores.sort(dim=-1)  # ascending
    tail_mass = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = tail_mass <= 1 - p
    drop_sorted[:, -min_keep:] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return scores.masked_fill(drop, NEG_INF)


def min_p_filter(scores: torch.Tensor, min_p: float, min_keep: int = 1) -> torch.Tensor:
    """Min-p sampling (Nguyen et al. 2024): drop tokens with p_v < min_p * max_u p_u."""
    probs = scores.softmax(dim=-1)
    drop = probs < min_p * probs.amax(dim=-1, keepdim=True)
    keep = probs.topk(min(min_keep, probs.size(-1)), dim=-1).indices
    drop.scatter_(1, keep, False)
    return scores.masked_fill(drop, NEG_INF)


class LogitsProcessor:
    """The configured chain of processors, built once per `generate` call.

    min_keep: tokens every filter must keep (beam sampling keeps one more than there are eos tokens,
    so that a beam can always continue).
    """

    def __init__(self, config: GenerationConfig, min_keep: int = 1, constraints=None, extra=()):
        self.config = config
        self.min_keep = min_keep
        self.constraints = constraints  # a zhixing.generation.constraints.Constraints, or None
        # callables (scores, tokens) -> scores given by the caller (e.g. a classifier's guidance, as the
        # writing assistant's FUDGE weighting): applied after the constraints, before sampling's filters
        self.extra = tuple(extra)

    @property
    def needs_tokens(self) -> bool:
        """Whether the processors read the token history (otherwise callers may skip slicing it)."""
        c = self.config
        return (c.repetition_penalty != 1.0 or c.no_repeat_ngram_size > 0 or self.constraints is not None
                or bool(self.extra))

    def __call__(
        self, scores: torch.Tensor, tokens: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> torch.Tensor:
        """scores (rows, vocab) float32; tokens (rows, length); ignore (rows, length) bool for padding."""
        c = self.config
        if c.repetition_penalty != 1.0:
            scores = repetition_penalty(scores, tokens, c.repetition_penalty, ignore)
        if c.no_repeat_ngram_size > 0:
            scores = no_repeat_ngram(scores, tokens, c.no_repeat_ngram_size)
        if self.constraints is not None:  # hard constraints: what the text may not contain next
            scores = self.constraints(scores, tokens)
        for process in self.extra:
            scores = process(scores, tokens)
        if c.sampling:
            if c.temperature != 1.0:
                # softmax(s / T): T < 1 sharpens the distribution, T > 1 flattens it
                scores = scores / c.temperature
            if c.top_k > 0:
                scores = top_k_filter(scores, c.top_k, self.min_keep)
            if c.top_p < 1.0:
                scores = top_p_filter(scores, c.top_p, self.min_keep)
            if c.min_p is not None:
                scores = min_p_filter(scores, c.min_p, self.min_keep)
        return scores
