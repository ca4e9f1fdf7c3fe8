"""Translation with the encoder–decoder Transformer: parallel files in, batches by length out; BLEU.

Data: a directory holding `<split>.<lang>` files aligned line by line (Multi30k's `train.de` / `train.en`),
or the built-in name `multi30k` ($ZHIXING_DATA/multi30k). One joint BPE vocabulary is trained on both
sides of the training split, so source, target and output share one embedding (tied).

Batches: each epoch's order is a seeded permutation cut into pools of 100 batches; within a pool the pairs
are sorted by length and cut into batches, and the batches are shuffled — so a batch holds pairs of similar
length (little padding) while the order stays random and resumable (`state_dict`: epoch and position).

Translating and scoring (beam search, BLEU) live in zhixing.recipes.translation, above the generation
package.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zhixing.errors import DataError
from zhixing.models.heads import IGNORE
from zhixing.tasks.data import TaskLoader


def parallel_dir(corpus: str) -> Path:
    """The directory of a parallel corpus: a path, or the built-in `multi30k` under $ZHIXING_DATA."""
    if corpus == "multi30k":
        from zhixing.data.corpora import data_dir

        path = data_dir() / "multi30k"
        if not path.is_dir():
            raise DataError(f"{path} not found; set $ZHIXING_DATA to the folder holding multi30k/")
        return path
    path = Path(os.path.expandvars(corpus)).expanduser()
    if not path.is_dir():
        raise DataError(f"data.corpus={corpus!r}: expected a directory of <split>.<lang> files or 'multi30k'")
    return path


def read_parallel(source: str | os.PathLike, target: str | os.PathLike) -> list[tuple[str, str]]:
    """Aligned (source, target) lines of two files; one-line errors for files that do not align."""
    src_path, tgt_path = Path(source), Path(target)
    sides = []
    for path in (src_path, tgt_path):
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        try:
            sides.append(path.read_text(encoding="utf-8").splitlines())
        except UnicodeDecodeError as e:
            line = path.read_bytes()[: e.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: not UTF-8 text") from None
    src, tgt = sides
    if len(src) != len(tgt):
        longer, extra = (src_path, src) if len(src) > len(tgt) else (tgt_path, tgt)
        raise DataError(f"{src_path} has {len(src):,} lines but {tgt_path} has {len(tgt):,}: they are not "
                        f"aligned ({longer} has lines {min(len(src), len(tgt)) + 1}–{len(extra)} unmatched)")
    if not src:
        raise DataError(f"{src_path} and {tgt_path} are empty")
    for i, (s, t) in enumerate(zip(src, tgt), 1):
        if not s.strip() or not t.strip():
            empty, other, text = (src_path, tgt_path, t) if not s.strip() else (tgt_path, src_path, s)
            raise DataError(f"{empty}:{i}: empty line (its pair, {other}:{i}, is {text[:60]!r})")
    return list(zip(src, tgt))


def split_files(directory: Path, split: str, source_lang: str, target_lang: str) -> tuple[Path, Path]:
    return directory / f"{split}.{source_lang}", directory / f"{split}.{target_lang}"


def encode_pairs(pairs: Sequence[tuple[str, str]], tokenizer, max_len: int) -> list[dict[str, list[int]]]:
    """Features: source ids (truncated to max_len) and target ids + eos (truncated to max_len)."""
    eos = tokenizer.eos_id
    src = tokenizer.encode_batch([s for s, _ in pairs], add_special_tokens=False)
    tgt = tokenizer.encode_batch([t for _, t in pairs], add_special_tokens=False)
    return [{"input_ids": list(a.ids[:max_len]), "labels": list(b.ids[: max_len - 1]) + [eos]}
            for a, b in zip(src, tgt)]


class ParallelLoader(TaskLoader):
    """Batches of (source, target) features of similar length (see the module docstring)."""

    def __init__(self, features, batch_size: int, pad_id: int, start_id: int, seed: int = 0,
                 shuffle: bool = True, pool: int = 100):
        super().__init__(features, batch_size, pad_id, seed=seed, shuffle=shuffle)
        self.start_id, self.pool = start_id, pool
        self._lengths = np.array([len(f["input_ids"]) + len(f["labels"]) for f in self.features])

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.features))
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.features))
        size = self.batch_size * self.pool
        batches = []
        for s in range(0, len(order), size):
            chunk = order[s: s + size]
            chunk = chunk[np.argsort(self._lengths[chunk], kind="stable")]
            batches += [chunk[i: i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return np.concatenate([batches[i] for i in rng.permutation(len(batches))])

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = len(features)
        src_len = max(len(f["input_ids"]) for f in features)
        tgt_len = max(len(f["labels"]) for f in features)
        input_ids = torch.full((rows, src_len), self.pad_id, dtype=torch.long)
        mask = torch.zeros(rows, src_len, dtype=torch.long)
        labels = torch.full((rows, tgt_len), IGNORE, dtype=torch.long)
        decoder_input_ids = torch.full((rows, tgt_len), self.pad_id, dtype=torch.long)
        for r, f in enumerate(features):
            s, t = f["input_ids"], f["labels"]
            input_ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
            labels[r, : len(t)] = torch.tensor(t)
            decoder_input_ids[r, 0] = self.start_id  # teacher forcing: the target shifted right
            decoder_input_ids[r, 1: len(t)] = torch.tensor(t[:-1])
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels,
                "decoder_input_ids": decoder_input_ids}


__all__ = ["read_parallel", "parallel_dir", "split_files", "encode_pairs", "ParallelLoader"]
