"""A tiny in-memory loader with the zhixing.data loader contract, for testing the loop on its own.

Row j of the stream is a deterministic function of (seed, j); a batch of size b at position k on rank r
of W holds rows k·b·W + r·b ... + b − 1, so batch 4 == two batches of 2 == two ranks of 2.
"""

from __future__ import annotations

import numpy as np
import torch

IGNORE = -100


class ToyLoader:
    def __init__(self, *, vocab_size: int = 48, block_size: int = 16, batch_size: int = 4, seed: int = 0,
                 rank: int = 0, world_size: int = 1, objective: str = "clm", ignore_frac: float = 0.0,
                 nsp: bool = False, mask_id: int = 1, on_batch=None):
        self.vocab_size, self.block_size, self.batch_size = vocab_size, block_size, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.objective, self.ignore_frac, self.nsp, self.mask_id = objective, ignore_frac, nsp, mask_id
        self.pos = 0  # batches consumed
        self.on_batch = on_batch  # test hook: called with the position before each batch

    def _row(self, j: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, j])
        # A learnable stream: x_{t+1} = (x_t + step) mod V with a per-row step, plus noise.
        step = int(rng.integers(1, 4))
        start = int(rng.integers(2, self.vocab_size))
        ids = (start + step * np.arange(self.block_size)) % (self.vocab_size - 2) + 2
        noise = rng.random(self.block_size) < 0.1
        ids[noise] = rng.integers(2, self.vocab_size, int(noise.sum()))
        labels = ids.copy()
        row = {}
        if self.objective == "mlm":
            masked = rng.random(self.block_size) < 0.25
            masked[0] = True  # at least one target per row
            labels[~masked] = IGNORE
            ids = ids.copy()
            ids[masked] = self.mask_id
            row["attention_mask"] = torch.ones(self.block_size, dtype=torch.long)
            if self.nsp:
                row["token_type_ids"] = torch.from_numpy((np.arange(self.block_size) >= self.block_size // 2)
                                                         .astype(np.int64))
                row["next_sentence_label"] = torch.tensor(int(rng.integers(0, 2)))
        elif self.ignore_frac:
            drop = rng.random(self.block_size) < self.ignore_frac
            labels[drop] = IGNORE
        row["input_ids"] = torch.from_numpy(ids.astype(np.int64))
        row["labels"] = torch.from_numpy(labels.astype(np.int64))
        return row

    def _batch(self, k: int, offset: int = 0) -> dict[str, torch.Tensor]:
        first = offset + k * self.batch_size * self.world_size + self.rank * self.batch_size
        rows = [self._row(first + i) for i in range(self.batch_size)]
        return {key: torch.stack([r[key] for r in rows]) for key in rows[0]}

    def __iter__(self):
        while True:
            if self.on_batch is not None:
                self.on_batch(self.pos)
            batch = self._batch(self.pos)
            self.pos += 1
            yield batch

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos = int(state["pos"])

    def eval_batches(self, num_batches: int) -> list[dict[str, torch.Tensor]]:
        return [self._batch(k, offset=10_000_000) for k in range(num_batches)]
