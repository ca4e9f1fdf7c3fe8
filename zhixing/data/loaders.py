"""Batch loaders over token shards: sampling, rank sharding, exact resume. Objectives live in collators.py.

Every loader is an endless iterable of batches (dicts of int64 torch tensors, ready for the model).
Its stream is a pure function of (seed, epoch, step): batch `step` of `epoch` is built from a
generator seeded with ``(seed, epoch, step)``, never from state carried between batches. Hence

- resume is exact: `state_dict()` is just ``{epoch, step}`` (plus checks), and a loader restored from
  it yields the same batches an uninterrupted one would;
- sharding is exact: each step draws the *global* batch (``batch_size * world_size`` rows) and rank
  ``r`` keeps rows ``[r * batch_size, (r + 1) * batch_size)``. Two ranks with batch_size b together
  see exactly the rows one rank with batch_size 2b sees (masks included), so a DDP run and a
  single-process run with the same global batch compute the same gradient.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .shards import ShardError, TokenShards

# Stream tags: independent random streams derived from the same (seed, epoch, step).
TAG_ORDER, TAG_MASK, TAG_NSP, TAG_EVAL = 1, 2, 3, 4


def rng_for(*key: int) -> np.random.Generator:
    """A generator fixed by integer `key` (seed, epoch, step, tag...): PCG64 over a SeedSequence."""
    return np.random.default_rng([int(k) for k in key])


def as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


class BaseLoader:
    """Epochs, steps, rank slicing and state; subclasses define `steps_per_epoch` and `_rows`."""

    kind = "base"

    def __init__(
        self, shards: TokenShards, *, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ):
        if not isinstance(shards, TokenShards):
            raise TypeError(
                f"expected TokenShards, got {type(shards).__name__}; fix: TokenShards(dir, 'train')"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        if len(shards) == 0:
            raise ShardError(
                f"{shards.dir}: the {shards.split} split is empty; fix: prepare with a larger "
                "corpus or val_fraction > 0"
            )
        self.shards = shards
        self.batch_size = batch_size
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.step = 0  # next step to produce within `epoch`

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def steps_per_epoch(self, epoch: int | None = None) -> int:
        raise NotImplementedError

    def _rows(self, epoch: int, step: int) -> dict[str, np.ndarray]:
        """This rank's rows of global batch `step` of `epoch`."""
        raise NotImplementedError

    def _rank_slice(self) -> slice:
        return slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)

    def batch(self, epoch: int, step: int) -> dict[str, torch.Tensor]:
        """Batch `step` of `epoch` for this rank (random access; does not move the position)."""
        return {k: as_tensor(v) for k, v in self._rows(epoch, step).items()}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            if self.step >= self.steps_per_epoch(self.epoch):
                self.epoch, self.step = self.epoch + 1, 0
            out = self.batch(self.epoch, self.step)
            # Advance before yielding: a state_dict() taken after receiving a batch counts it as consumed.
            self.step += 1
            yield out

    def __len__(self) -> int:
        """Steps in the current epoch."""
        return self.steps_per_epoch(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        """The exact position (JSON-serialisable): the next batch is step `step` of `epoch`."""
        return {
            "kind": self.kind,
            "epoch": self.epoch,
            "step": self.step,
            "seed": self.seed,
            "global_batch_size": self.global_batch_size,
            "tokens": len(self.shards),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; refuses a state from a different stream (seed, batch, data)."""
        for key in ("kind", "seed", "global_batch_size", "tokens"):
            if key in state and state[key] != self.state_dict()[key]:
                raise ValueError(
                    f"loader state has {key}={state[key]!r} but this loader has {self.state_dict()[key]!r}; "
                    "resuming would not continue the same batches; fix: resume with the original data, seed "
                    "and batch_size * world_size"
                )
        self.epoch, self.step = int(state["epoch"]), int(state["step"])


class CLMLoader(BaseLoader):
    """Causal-LM batches: ``{"input_ids", "labels"}`` of shape (batch_size, block_size).

    sampling="random" (nanoGPT's get_batch): each row is a window starting at a uniformly random
    offset of the token stream; an "epoch" is len(tokens) // (block_size * global batch) steps.
    sampling="sequential": the stream cut into consecutive blocks, shuffled once per epoch, each
    block seen once per epoch (the last partial global batch is dropped).
    Documents are separated by the eos/sep token written at prepare time, so a window may cross a
    document boundary and learns to predict the separator, as in GPT-2.

    labels == input_ids: the models shift inside (position t predicts t + 1), so a row trains
    block_size - 1 predictions; `tokens_per_batch` counts them.
    """

    kind = "clm"

    def __init__(
        self,
        shards: TokenShards,
        *,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        eos_id: int | None = None,
        sampling: str = "random",
    ):
        super().__init__(shards, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size)
        if sampling not in ("random", "sequential"):
            raise ValueError(f"sampling={sampling!r}: use 'random' (nanoGPT) or 'sequential' (packed blocks)")
        if block_size < 2:
            raise ValueError(f"block_size must be >= 2 (one input and one target), got {block_size}")
        if len(shards) < block_size:
            raise ShardError(
                f"{shards.dir}: the {shards.split} split has {len(shards)} tokens, fewer than "
                f"block_size={block_size}; fix: a smaller block_size or a larger corpus"
            )
        if eos_id is not None and shards.separator_id is not None and eos_id != shards.separator_id:
            raise ShardError(
                f"{shards.dir}: documents are separated by id {shards.separator_id}, not "
                f"eos_id={eos_id}; fix: pass the tokenizer the shards were prepared with"
            )
        self.block_size = block_size
        self.sampling = sampling
        self.eos_id = eos_id if eos_id is not None else shards.separator_id
        self._perm: tuple[int, np.ndarray] | None = None  # (epoch, block order) cache

    @property
    def tokens_per_batch(self) -> int:
        """Predicted tokens per (per-rank) batch: batch_size * (block_size - 1)."""
        return self.batch_size * (self.block_size - 1)

    def _num_blocks(self) -> int:
        return len(self.shards) // self.block_size

    def steps_per_epoch(self, epoch: int | None = None) -> int:
        steps = self._num_blocks() // self.global_batch_size
        if self.sampling == "random":
            return max(1, steps)
        if steps == 0:
            raise ShardError(
                f"{self.shards.dir}: {self._num_blocks()} blocks of {self.block_size} tokens in the "
                f"{self.shards.split} split, fewer than one global batch of "
                f"{self.global_batch_size}; fix: a smaller batch or block_size"
            )
        return steps

    def _windows(self, starts: np.ndarray) -> dict[str, np.ndarray]:
        idx = starts[:, None] + np.arange(self.block_size)[None, :]
        x = np.asarray(self.shards.tokens[idx], dtype=np.int64)  # (batch, block_size)
        return {"input_ids": x, "labels": x.copy()}  # separate buffers: in-place edits stay local

    def _block_order(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, rng_for(self.seed, epoch, TAG_ORDER).permutation(self._num_blocks()))
        return self._perm[1]

    def _rows(self, epoch: int, step: int) -> dict[str, np.ndarray]:
        g = self.global_batch_size
        if self.sampling == "random":
            high = len(self.shards) - self.block_size + 1
            starts = rng_for(self.seed, epoch, step, TAG_ORDER).integers(0, high, size=g)
        else:
            starts = self._block_order(epoch)[step * g : (step + 1) * g] * self.block_size
        return self._windows(starts[self._rank_slice()])

    def num_eval_batches(self) -> int:
        """Global batches of distinct blocks the split holds: the most an evaluation draws."""
        return max(1, self._num_blocks() // self.global_batch_size)

    def eval_batches(self, num_batches: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """A finite, deterministic pass (same batches every call; training position untouched).

        num_batches=None: every full global batch of consecutive blocks (the whole split, in order).
        Otherwise `num_batches` batches of random windows (random sampling) or the first blocks.
        """
        g = self.global_batch_size
        n_blocks = self._num_blocks()
        if num_batches is None or self.sampling == "sequential":
            total = n_blocks // g if num_batches is None else min(num_batches, n_blocks // g)
            if total == 0:
                raise ShardError(
                    f"{self.shards.dir}: the {self.shards.split} split has {n_blocks} blocks of "
                    f"{self.block_size}, fewer than one global batch of {g}; fix: a smaller batch"
                )
            for b in range(total):
                starts = np.arange(b * g, (b + 1) * g) * self.block_size
                yield {k: as_tensor(v) for k, v in self._windows(starts[self._rank_slice()]).items()}
            return
        high = len(self.shards) - self.block_size + 1
        for b in range(num_batches):
            starts = rng_for(self.seed, b, TAG_EVAL).integers(0, high, size=g)
            yield {k: as_tensor(v) for k, v in self._windows(starts[self._rank_slice()]).items()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "sampling": self.sampling, "block_size": self.block_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("sampling", "block_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"loader state has {key}={state[key]!r} but this loader has "
                    f"{getattr(self, key)!r}; fix: resume with the original {key}"
                )
        super().load_state_dict(state)
