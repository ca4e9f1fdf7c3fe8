"""Permutation language modelling batches (XLNet, Yang et al. 2019, §2.2–2.3 and its data pipeline).

PLM maximises, over factorisation orders z of a sequence x of length T (permutations of its positions),

    E_z [ Σ_{t=c+1}^{T} log p(x_{z_t} | x_{z<t}) ]

predicting only the last T - c tokens of each order (partial prediction, T - c ≈ T/K, K = 6): the first
c tokens are context seen in full. Per sequence, as XLNet's `_sample_mask` / `_local_perm` do:

1. Targets are spans of whole words. Repeatedly: a span of n words, p(n) ∝ 1/n on 1..max_span, is put
   at a random offset inside a window K times its length (so about 1/K of the text becomes targets);
   when the text runs out, single tokens are added at random until num_predict targets are chosen.
   Special tokens (<sep>, <cls>, document separators, padding) are never targets.
2. The order z: every non-target first (they form the context and all see one another), then the
   targets in a uniformly random order, which is exactly "predict the last 1/K of a random order".
3. The masks: rank(non-target) = -1, rank(target) = its place in the random order;

       perm_mask[i, j] = 1  iff  j is a target and rank(j) >= rank(i)

   so a target sees the context and the targets before it, never itself or later ones (the model's
   content stream adds itself back); target_mapping[m] is the one-hot row of the m-th target (in
   position order), labels[m] its token. Inputs are not replaced by a mask token: the query stream,
   which starts from the learned mask embedding, is what predicts.

The loader (PLMLoader) follows zhixing/data/loaders.py: every batch is a pure function of
(seed, epoch, step), so resume and sharding are exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .collators import IGNORE
from .loaders import TAG_MASK, TAG_ORDER, BaseLoader, rng_for
from .shards import ShardError, TokenShards


def sample_targets(eligible: np.ndarray, starts: np.ndarray, goal: int, rng: np.random.Generator, *,
                   k: int = 6, max_span: int = 5) -> np.ndarray:
    """XLNet's span sampling for one sequence: bool (T,), True at exactly min(goal, eligible.sum())
    targets. eligible (T,): tokens that may be predicted; starts (T,): tokens that begin a word."""
    T = len(eligible)
    chosen = np.zeros(T, dtype=bool)
    goal = min(goal, int(eligible.sum()))
    # next_start[i] / next_barrier[i]: the first word start / non-eligible token at or after i (T: none)
    idx = np.arange(T + 1)
    next_start = np.minimum.accumulate(np.where(np.append(starts & eligible, True), idx, T)[::-1])[::-1]
    next_barrier = np.minimum.accumulate(np.where(np.append(~eligible, True), idx, T)[::-1])[::-1]
    lengths = np.arange(1, max_span + 1)
    p = (1.0 / lengths) / (1.0 / lengths).sum()
    count, cursor = 0, 0
    while count < goal and cursor < T:
        n = int(rng.choice(lengths, p=p))
        left = int(rng.integers(0, (k - 1) * n + 1))  # context before the span
        beg = int(next_start[min(cursor + left, T)])
        if beg >= T:
            break
        end = beg
        for _ in range(n):  # n whole words, stopping at a special token
            end = int(next_start[end + 1]) if end + 1 <= T else T
        end = min(end, int(next_barrier[beg]), beg + goal - count)
        chosen[beg:end] = True
        count += end - beg
        # the span and its context make a window k times its length: about 1 token in k is predicted
        cursor = end + max((k - 1) * (end - beg) - left, 0)
    if count < goal:  # top up with single tokens, as XLNet does
        free = np.flatnonzero(eligible & ~chosen)
        chosen[rng.choice(free, size=goal - count, replace=False)] = True
    return chosen


def default_num_predict(text_len: int, k: int) -> int:
    """Targets a row predicts by default: 1/k of its text tokens (85 of 510 at K = 6, as XLNet)."""
    return max(1, round(text_len / k))


def plm_masks(input_ids: np.ndarray, rng: np.random.Generator, *, special: np.ndarray, num_predict: int,
              word_starts: np.ndarray | None = None, k: int = 6, max_span: int = 5) -> dict[str, np.ndarray]:
    """perm_mask (b, T, T) float32, target_mapping (b, num_predict, T) float32, labels (b, num_predict)
    int64 (-100 on padding rows) for a batch of ids (b, T); special (b, T) marks tokens never predicted.
    The random numbers are drawn row by row in a fixed order: a pure function of the rng."""
    ids = np.asarray(input_ids, dtype=np.int64)
    b, T = ids.shape
    starts = np.ones((b, T), dtype=bool) if word_starts is None else np.asarray(word_starts) != 0
    starts = starts | special
    starts[:, 1:] |= special[:, :-1]  # a word never continues across a special token
    targets = np.stack([sample_targets(~special[r], starts[r], num_predict, rng, k=k, max_span=max_span)
                        for r in range(b)])
    order = rng.random((b, T))  # the targets' random order (ties have probability 0)
    rank = np.where(targets, order, -1.0)
    perm_mask = (targets[:, None, :] & (rank[:, None, :] >= rank[:, :, None])).astype(np.float32)
    target_mapping = np.zeros((b, num_predict, T), dtype=np.float32)
    labels = np.full((b, num_predict), IGNORE, dtype=np.int64)
    for r in range(b):
        pos = np.flatnonzero(targets[r])
        target_mapping[r, np.arange(len(pos)), pos] = 1.0
        labels[r, : len(pos)] = ids[r, pos]
    return {"perm_mask": perm_mask, "target_mapping": target_mapping, "labels": labels}


def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """ids and labels as int64, the masks as float32 (what the model and transformers take)."""
    return {key: torch.from_numpy(np.ascontiguousarray(v, np.float32 if v.dtype.kind == "f" else np.int64))
            for key, v in batch.items()}


class PLMLoader(BaseLoader):
    """Permutation-LM batches over token shards (see the module docstring).

    Rows are ``<block_size - 2 consecutive tokens> <sep> <cls>`` cut from the token stream (documents
    joined by their separator), shuffled per epoch, in XLNet's single-segment layout with <cls> last:
    token_type_ids are 0, and 2 for <cls>. Without <sep>/<cls> in the tokenizer a row is block_size
    tokens. Batch keys: input_ids, token_type_ids, perm_mask, target_mapping, labels. No padding: every
    row is full. num_predict defaults to round(text tokens / k) (85 for block_size 512, as XLNet).
    """

    kind = "plm"

    def __init__(self, shards: TokenShards, tokenizer, *, block_size: int, batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, k: int = 6, max_span: int = 5,
                 num_predict: int | None = None):
        super().__init__(shards, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size)
        shards.check_tokenizer(tokenizer)
        if k < 2 or max_span < 1:
            raise ValueError(f"k={k} must be >= 2 (predict 1/k of each order) and max_span={max_span} >= 1")
        self.sep_id, self.cls_id = tokenizer.sep_id, tokenizer.cls_id
        self.layout = self.sep_id is not None and self.cls_id is not None  # append <sep> <cls>
        self.text_len = block_size - 2 * self.layout
        if self.text_len < 2:
            raise ValueError(f"block_size={block_size} leaves no room for text; fix: block_size >= "
                             f"{2 + 2 * self.layout}")
        if len(shards) < self.text_len:
            raise ShardError(f"{shards.dir}: the {shards.split} split has {len(shards)} tokens, fewer than "
                             f"one row of {self.text_len}; fix: a smaller block_size")
        self.block_size, self.k, self.max_span = block_size, k, max_span
        self.num_predict = num_predict or default_num_predict(self.text_len, k)
        if not 1 <= self.num_predict <= self.text_len:
            raise ValueError(f"num_predict={num_predict} must be in [1, {self.text_len}]")
        self.special_ids = np.asarray(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
        if self.steps_per_epoch(0) == 0:
            raise ShardError(f"{shards.dir}: the {shards.split} split makes fewer rows than one global batch "
                             f"of {self.global_batch_size}; fix: a smaller batch_size or block_size")

    @property
    def tokens_per_batch(self) -> int:
        """Predicted tokens per (per-rank) batch (at most; rows with few eligible tokens predict fewer)."""
        return self.batch_size * self.num_predict

    def _num_rows(self) -> int:
        return len(self.shards) // self.text_len

    def steps_per_epoch(self, epoch: int | None = None) -> int:
        return self._num_rows() // self.global_batch_size

    def _row_order(self, epoch: int) -> np.ndarray:
        return rng_for(self.seed, epoch, TAG_ORDER).permutation(self._num_rows())

    def _assemble(self, rows: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The global batch for block indices `rows`, with its permutation masks."""
        src = rows[:, None] * self.text_len + np.arange(self.text_len)[None, :]
        ids = np.asarray(self.shards.tokens[src], dtype=np.int64)
        words = None if self.shards.word_starts is None else np.asarray(self.shards.word_starts[src])
        types = np.zeros_like(ids)
        if self.layout:
            g = len(rows)
            ids = np.concatenate([ids, np.full((g, 1), self.sep_id), np.full((g, 1), self.cls_id)], axis=1)
            types = np.concatenate([types, np.zeros((g, 1), np.int64), np.full((g, 1), 2)], axis=1)
            if words is not None:
                words = np.concatenate([words, np.ones((g, 2), words.dtype)], axis=1)
        special = np.isin(ids, self.special_ids)
        masks = plm_masks(ids, rng, special=special, num_predict=self.num_predict, word_starts=words,
                          k=self.k, max_span=self.max_span)
        return {"input_ids": ids, "token_type_ids": types, **masks}

    def _rows(self, epoch: int, step: int) -> dict[str, np.ndarray]:
        g = self.global_batch_size
        rows = self._row_order(epoch)[step * g : (step + 1) * g]
        # the whole global batch is drawn, then this rank keeps its rows: the same masks for any world size
        batch = self._assemble(rows, rng_for(self.seed, epoch, step, TAG_MASK))
        return {key: v[self._rank_slice()] for key, v in batch.items()}

    def batch(self, epoch: int, step: int) -> dict[str, torch.Tensor]:
        return to_tensors(self._rows(epoch, step))

    def num_eval_batches(self) -> int:
        """Global batches a full evaluation pass holds: the most an evaluation draws."""
        return self._num_rows() // self.global_batch_size

    def eval_batches(self, num_batches: int | None = None):
        """A finite, deterministic pass over the rows in stream order with fixed orders (the training
        position is untouched). num_batches=None: every full global batch of the split."""
        g = self.global_batch_size
        total = self._num_rows() // g if num_batches is None else min(num_batches, self._num_rows() // g)
        for step in range(total):
            batch = self._assemble(np.arange(step * g, (step + 1) * g), rng_for(self.seed, 0, step, TAG_MASK))
            yield to_tensors({key: v[self._rank_slice()] for key, v in batch.items()})

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "block_size": self.block_size, "k": self.k, "max_span": self.max_span,
                "num_predict": self.num_predict}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("block_size", "k", "max_span", "num_predict"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"loader state has {key}={state[key]!r} but this loader has "
                                 f"{getattr(self, key)!r}; fix: resume with the original {key}")
        super().load_state_dict(state)


__all__ = ["PLMLoader", "plm_masks", "sample_targets"]
