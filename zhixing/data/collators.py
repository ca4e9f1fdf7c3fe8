"""Masked-LM objectives: BERT's masking (token or whole-word), NSP sentence pairs, RoBERTa full sentences.

MLM (Devlin et al. 2019) maximises  sum_{i in M} log p(x_i | x_{\\M})  over a random set M of positions:
each non-special token is chosen with probability p = 0.15; a chosen token is replaced by [MASK]
80% of the time, by a random token 10%, and kept 10% (so the model cannot rely on seeing [MASK]).
Labels are the original ids at chosen positions and -100 elsewhere. Whole-word masking chooses
words instead of tokens (every token of a chosen word is masked); Chinese words come from jieba
via the tokenizer's word_ids, stored as word starts in the shards at prepare time.

NSP adds  log p(IsNext | [CLS] A [SEP] B [SEP]): B is the true continuation of A half of the time and a
random segment of another document otherwise (label 0 = IsNext, 1 = random, as in Hugging Face).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .loaders import TAG_MASK, TAG_NSP, TAG_ORDER, BaseLoader, as_tensor, rng_for
from .shards import ShardError, TokenShards

IGNORE = -100


def mask_tokens(
    input_ids: np.ndarray,
    rng: np.random.Generator,
    *,
    mask_id: int,
    special_ids: np.ndarray,
    random_ids: np.ndarray,
    mlm_probability: float = 0.15,
    mask_ratio: float = 0.8,
    random_ratio: float = 0.1,
    word_starts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking, vectorised. Returns (masked input_ids, labels), both (batch, seq) int64.

    special_ids: ids never chosen ([CLS], [SEP], [PAD], ...). random_ids: the pool random replacements
    are drawn from. word_starts (batch, seq) of 0/1: whole-word masking; a word is a start token and
    the tokens after it up to the next start (special tokens always bound a word).
    Random numbers are drawn in a fixed order and shape, so the result is a pure function of the rng.
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    special = np.isin(ids, special_ids)
    u_choose = rng.random(ids.shape)
    u_action = rng.random(ids.shape)
    u_token = rng.integers(0, len(random_ids), size=ids.shape)
    if word_starts is not None:
        # Every token takes the draw of its word's first token: whole words are in or out together.
        starts = (np.asarray(word_starts) != 0) | special
        starts[:, 1:] |= special[:, :-1]  # the token after [CLS]/[SEP] opens a word even mid-word
        starts[:, 0] = True
        pos = np.where(starts, np.arange(ids.shape[1])[None, :], 0)
        first = np.maximum.accumulate(pos, axis=1)  # (batch, seq): index of each token's word start
        u_choose = np.take_along_axis(u_choose, first, axis=1)
    chosen = (u_choose < mlm_probability) & ~special
    labels = np.where(chosen, ids, IGNORE)
    out = ids.copy()
    out[chosen & (u_action < mask_ratio)] = mask_id
    randomise = chosen & (u_action >= mask_ratio) & (u_action < mask_ratio + random_ratio)
    out[randomise] = np.asarray(random_ids, dtype=np.int64)[u_token[randomise]]
    return out, labels


class MLMLoader(BaseLoader):
    """Masked-LM batches over token shards, with optional NSP pairs and whole-word masking.

    nsp=False (RoBERTa "full-sentences"): rows are ``[CLS] <block_size - 2 consecutive tokens> [SEP]``
    cut from the token stream (documents joined by [SEP]), shuffled per epoch; no padding.
    nsp=True (BERT): rows are ``[CLS] A [SEP] B [SEP] [PAD]...``; adds token_type_ids (0 for [CLS] A [SEP],
    1 for B [SEP]) and next_sentence_label. Pairs are rebuilt every epoch from the documents.
    Masks are drawn fresh for every (epoch, step) (dynamic masking, RoBERTa) from the global batch,
    so they too are identical across world sizes and after resume.
    Batch keys: input_ids, attention_mask, labels (+ token_type_ids, next_sentence_label).
    """

    kind = "mlm"

    def __init__(
        self,
        shards: TokenShards,
        tokenizer,
        *,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        mlm_probability: float = 0.15,
        whole_word: bool = False,
        nsp: bool = False,
        nsp_probability: float = 0.5,
        short_seq_prob: float = 0.1,
        mask_ratio: float = 0.8,
        random_ratio: float = 0.1,
    ):
        super().__init__(shards, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size)
        shards.check_tokenizer(tokenizer)
        missing = [r for r in ("cls", "sep", "mask", "pad") if getattr(tokenizer, f"{r}_id") is None]
        if missing:
            raise ShardError(f"masked-LM batches need the tokenizer roles {missing}; fix: a tokenizer with "
                             "[CLS] [SEP] [MASK] [PAD] (e.g. kind='wordpiece')")  # fmt: skip
        if not 0 < mlm_probability < 1 or mask_ratio + random_ratio > 1:
            raise ValueError(f"mlm_probability={mlm_probability} must be in (0, 1) and mask_ratio + "
                             f"random_ratio <= 1 (got {mask_ratio} + {random_ratio})")  # fmt: skip
        if whole_word and shards.word_starts is None:
            raise ShardError(f"{shards.dir}: no word starts ({shards.split}.words.bin) for whole-word "
                             "masking; fix: re-run `zhixing prepare` (for Chinese with a tokenizer trained "
                             "with chinese_words='jieba')")  # fmt: skip
        min_len = 5 if nsp else 3
        if block_size < min_len:
            raise ValueError(f"block_size={block_size} leaves no room for text; fix: block_size >= {min_len}")
        self.block_size = block_size
        self.nsp = nsp
        self.whole_word = whole_word
        self.mlm_probability, self.mask_ratio, self.random_ratio = mlm_probability, mask_ratio, random_ratio
        self.nsp_probability, self.short_seq_prob = nsp_probability, short_seq_prob
        self.cls_id, self.sep_id = tokenizer.cls_id, tokenizer.sep_id
        self.mask_id, self.pad_id = tokenizer.mask_id, tokenizer.pad_id
        self.special_ids = np.asarray(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
        # Random replacements come from ordinary tokens only: a random [CLS] would be a second signal.
        self.random_ids = np.setdiff1d(np.arange(tokenizer.vocab_size), self.special_ids)
        self._cache: dict[int, np.ndarray] = {}  # epoch -> its rows (the current epoch and epoch 0 for eval)
        if nsp:
            starts, ends = shards.doc_spans()
            keep = ends > starts
            self._doc_starts, self._doc_ends = starts[keep], ends[keep]
            if len(self._doc_starts) < 2:
                raise ShardError(f"{shards.dir}: NSP needs at least 2 non-empty documents in the "
                                 f"{shards.split} split, found {len(self._doc_starts)}")  # fmt: skip
        elif len(shards) < block_size - 2:
            raise ShardError(f"{shards.dir}: the {shards.split} split has {len(shards)} tokens, fewer than "
                             f"one block of {block_size - 2}; fix: a smaller block_size")  # fmt: skip
        if self.steps_per_epoch(0) == 0:
            raise ShardError(f"{shards.dir}: the {shards.split} split makes fewer rows than one global batch "
                             f"of {self.global_batch_size}; fix: a smaller batch_size or "
                             "block_size")  # fmt: skip

    @property
    def tokens_per_batch(self) -> int:
        """Input positions per (per-rank) batch; the loss counts only masked ones: (labels != -100).sum()."""
        return self.batch_size * self.block_size

    # ---- rows of an epoch -------------------------------------------------------------------

    def _epoch_rows(self, epoch: int) -> np.ndarray:
        """(n, 5) int64 per row: a_start, a_len, b_start, b_len, nsp_label (b_len = 0 without NSP)."""
        if epoch not in self._cache:
            if self.nsp:
                rows = self._nsp_pairs(epoch)
            else:
                n = len(self.shards) // (self.block_size - 2)
                rows = np.zeros((n, 5), dtype=np.int64)
                rows[:, 0] = np.arange(n) * (self.block_size - 2)
                rows[:, 1] = self.block_size - 2
            order = rng_for(self.seed, epoch, TAG_ORDER).permutation(len(rows))
            for old in [e for e in self._cache if e not in (0, epoch - 1)]:
                del self._cache[old]
            self._cache[epoch] = rows[order]
        return self._cache[epoch]

    def _nsp_pairs(self, epoch: int) -> np.ndarray:
        """BERT's create_instances_from_document over token spans, fresh for every epoch.

        Each document is consumed in chunks of a target length (max, or with probability
        short_seq_prob a random shorter one); a chunk is cut at a random point into A and B. With
        probability nsp_probability B is replaced by a segment of another document, and the unused
        true B is put back for the next chunk (as BERT does), so no text is wasted.
        """
        rng = rng_for(self.seed, epoch, TAG_NSP)
        max_tokens = self.block_size - 3  # [CLS] A [SEP] B [SEP]
        starts, ends = self._doc_starts, self._doc_ends
        n_docs = len(starts)
        out: list[tuple[int, int, int, int, int]] = []
        for d in range(n_docs):
            pos, end = int(starts[d]), int(ends[d])
            while end - pos >= 2:
                target = (
                    max_tokens
                    if rng.random() >= self.short_seq_prob
                    else int(rng.integers(2, max_tokens + 1))
                )
                chunk = min(target, end - pos)
                if chunk < 2:
                    break
                a_len = int(rng.integers(1, chunk))
                if rng.random() < self.nsp_probability:
                    other = int(rng.integers(n_docs - 1))
                    other += other >= d  # any document but this one
                    o_start, o_end = int(starts[other]), int(ends[other])
                    b_len = min(target - a_len, o_end - o_start)
                    b_start = int(rng.integers(o_start, o_end - b_len + 1))
                    out.append((pos, a_len, b_start, b_len, 1))
                    pos += a_len
                else:
                    out.append((pos, a_len, pos + a_len, chunk - a_len, 0))
                    pos += chunk
        return np.asarray(out, dtype=np.int64).reshape(-1, 5)

    def steps_per_epoch(self, epoch: int | None = None) -> int:
        return len(self._epoch_rows(self.epoch if epoch is None else epoch)) // self.global_batch_size

    # ---- assembling a batch -----------------------------------------------------------------

    def _assemble(self, rows: np.ndarray, mask_rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Vectorised [CLS] A [SEP] (B [SEP]) [PAD]... for the global batch `rows`, then mask it."""
        g, length = len(rows), self.block_size
        a_start, a_len, b_start, b_len = (rows[:, i : i + 1] for i in range(4))
        j = np.arange(length)[None, :]
        in_a = (j >= 1) & (j <= a_len)
        b0 = a_len + 2  # first position of B
        in_b = (j >= b0) & (j < b0 + b_len) & (b_len > 0)
        src = np.where(in_a, a_start + j - 1, np.where(in_b, b_start + j - b0, 0))
        ids = np.asarray(self.shards.tokens[src], dtype=np.int64)
        text = in_a | in_b
        ids = np.where(text, ids, self.pad_id)
        ids[:, 0] = self.cls_id
        sep = (j == a_len + 1) | ((j == b0 + b_len) & (b_len > 0))
        ids[sep] = self.sep_id
        last = np.where(b_len > 0, b0 + b_len, a_len + 1)  # position of the final [SEP]
        attention = (j <= last).astype(np.int64)
        words = None
        if self.whole_word:
            # A row may start mid-word; mask_tokens opens a word after every special token.
            words = np.where(text, np.asarray(self.shards.word_starts[src]), 1)
        masked, labels = mask_tokens(ids, mask_rng, mask_id=self.mask_id, special_ids=self.special_ids,
                                     random_ids=self.random_ids, mlm_probability=self.mlm_probability,
                                     mask_ratio=self.mask_ratio, random_ratio=self.random_ratio,
                                     word_starts=words)  # fmt: skip
        out = {"input_ids": masked, "attention_mask": attention, "labels": labels}
        if self.nsp:
            out["token_type_ids"] = ((j >= b0) & (j <= last)).astype(np.int64) * np.ones((g, 1), np.int64)
            out["next_sentence_label"] = rows[:, 4].copy()
        return out

    def _rows(self, epoch: int, step: int) -> dict[str, np.ndarray]:
        g = self.global_batch_size
        rows = self._epoch_rows(epoch)[step * g : (step + 1) * g]
        # Mask the whole global batch, then keep this rank's rows: identical masks for any world size.
        batch = self._assemble(rows, rng_for(self.seed, epoch, step, TAG_MASK))
        return {k: v[self._rank_slice()] for k, v in batch.items()}

    def num_eval_batches(self) -> int:
        """Global batches a full evaluation pass holds: the most an evaluation draws."""
        return len(self._epoch_rows(0)) // self.global_batch_size

    def eval_batches(self, num_batches: int | None = None):
        """A finite, deterministic pass over epoch 0's rows (fixed masks); the training position is untouched.

        num_batches=None: every full global batch of the split.
        """
        rows = self._epoch_rows(0)
        total = len(rows) // self.global_batch_size
        total = total if num_batches is None else min(num_batches, total)
        g = self.global_batch_size
        for step in range(total):
            batch = self._assemble(rows[step * g : (step + 1) * g], rng_for(self.seed, 0, step, TAG_MASK))
            yield {k: as_tensor(v[self._rank_slice()]) for k, v in batch.items()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "block_size": self.block_size, "nsp": self.nsp,
                "whole_word": self.whole_word}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("block_size", "nsp", "whole_word"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"loader state has {key}={state[key]!r} but this loader has "
                                 f"{getattr(self, key)!r}; fix: resume with the original {key}")  # fmt: skip
        super().load_state_dict(state)
