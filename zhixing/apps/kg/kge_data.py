"""Knowledge-graph triples for representation learning: the reader of FB15k-237 / WN18RR style splits,
the entity and relation vocabularies, and the index of known answers that filtered ranking needs.

Files hold one triple per line, `head<TAB>relation<TAB>tail` (the layout of the ConvE release of
FB15k-237 and WN18RR). Entities come from train, then the entities that appear only in valid/test (so
every evaluated triple can be scored: the standard FB15k-237 / WN18RR protocol); relations come from
train only: a relation never seen in training has no embedding, so it is an error, named with its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from zhixing.errors import DataError

SPLITS = ("train", "valid", "test")


def read_triples(path: str | Path) -> list[tuple[str, str, str]]:
    """Read `head\\trelation\\ttail` lines; blank lines are skipped, anything else raises a DataError
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; expected a file of head<TAB>relation<TAB>tail lines")
    triples = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3 or not all(p.strip() for p in parts):
                raise DataError(
                    f"{path}:{lineno}: expected head<TAB>relation<TAB>tail (3 non-empty "
                    f"tab-separated fields), found {len(parts)} field(s): {line[:80]!r}"
                )
            triples.append((parts[0].strip(), parts[1].strip(), parts[2].strip()))
    if not triples:
        raise DataError(f"{path}: holds no triples")
    return triples


@dataclass
class KGData:
    """A knowledge graph as id tensors. `splits[name]` is a (n, 3) int64 tensor of (head, relation, tail)
    ids into `entities` / `relations`."""

    entities: list[str]
    relations: list[str]
    splits: dict[str, torch.Tensor]
    root: str = ""

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def all_triples(self) -> torch.Tensor:
        """Every known true triple (train + valid + test): what filtered ranking removes. (n, 3)"""
        return torch.cat([self.splits[s] for s in SPLITS if s in self.splits])


def load_kg(directory: str | Path, splits: tuple[str, ...] = SPLITS) -> KGData:
    """Read `<directory>/{train,valid,test}.txt` into id tensors with the vocabularies described above."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory}: not a directory; expected one holding train.txt, valid.txt, "
            "test.txt (head<TAB>relation<TAB>tail lines)"
        )
    if "train" not in splits:
        raise DataError(f"{directory}: the train split is required (it defines the relations)")
    raw = {name: read_triples(directory / f"{name}.txt") for name in splits}
    entity_ids: dict[str, int] = {}
    relation_ids: dict[str, int] = {}
    for _, r, _ in raw["train"]:
        relation_ids.setdefault(r, len(relation_ids))
    for name in splits:  # train first: its entities get the low ids
        for h, _, t in raw[name]:
            entity_ids.setdefault(h, len(entity_ids))
            entity_ids.setdefault(t, len(entity_ids))
    tensors = {}
    for name in splits:
        ids = []
        for lineno, (h, r, t) in enumerate(raw[name], 1):
            if r not in relation_ids:
                raise DataError(
                    f"{directory / (name + '.txt')}: triple {lineno} ({h}, {r}, {t}): relation "
                    f"{r!r} does not occur in train.txt, so it has no embedding"
                )
            ids.append((entity_ids[h], relation_ids[r], entity_ids[t]))
        tensors[name] = torch.tensor(ids, dtype=torch.long)
    return KGData(list(entity_ids), list(relation_ids), tensors, str(directory))


class AnswerIndex:
    """All known answers of each query, for filtered ranking (Bordes et al. 2013): for tail prediction
    the query is (h, r) and the answers the set {t : (h, r, t) known}; for head prediction (r, t) → {h}.

    Stored as CSR: query keys sorted, with offsets into one array of answers, so a batch of queries turns
    into a (batch, num_entities) mask with a searchsorted and a scatter, no Python loop per query.
    """

    def __init__(self, triples: torch.Tensor, num_entities: int, num_relations: int):
        self.num_entities, self.num_relations = num_entities, num_relations
        h, r, t = triples.unbind(1)
        self.tail = self._csr(h * num_relations + r, t)  # (h, r) -> tails
        self.head = self._csr(t * num_relations + r, h)  # (t, r) -> heads

    @staticmethod
    def _csr(keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pairs = torch.unique(torch.stack([keys, values], 1), dim=0)  # sorted by key, duplicates removed
        uniq, counts = torch.unique_consecutive(pairs[:, 0], return_counts=True)
        offsets = torch.zeros(len(uniq) + 1, dtype=torch.long)
        offsets[1:] = counts.cumsum(0)
        return uniq, offsets, pairs[:, 1].contiguous()

    def mask(self, anchor: torch.Tensor, relation: torch.Tensor, direction: str) -> torch.Tensor:
        """(batch, num_entities) bool: True where the entity is a known answer of the query.
        direction "tail": anchor = heads, queries (h, r, ?); "head": anchor = tails, queries (?, r, t)."""
        uniq, offsets, values = self.tail if direction == "tail" else self.head
        keys = anchor * self.num_relations + relation
        pos = torch.searchsorted(uniq, keys).clamp(max=len(uniq) - 1)
        found = uniq[pos] == keys
        start = offsets[pos]
        counts = torch.where(found, offsets[pos + 1] - start, torch.zeros_like(start))
        rows = torch.repeat_interleave(torch.arange(len(keys)), counts)
        # position of each answer inside its query's run: a running index minus the run's first index
        first = torch.cumsum(counts, 0) - counts
        within = torch.arange(int(counts.sum())) - first[rows]
        out = torch.zeros(len(keys), self.num_entities, dtype=torch.bool)
        out[rows, values[start[rows] + within]] = True
        return out


def filtered_ranks(scores: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Filtered rank of each target among all entities (higher score = better).

    scores: (batch, num_entities); target: (batch,) entity ids; known: (batch, num_entities) bool, the
    true answers to remove (the target itself may be marked, it is kept). The rank is
    1 + #{e : s_e > s_target} + ½·#{e ≠ target : s_e = s_target} over unfiltered e: the mean of the
    optimistic and pessimistic rank, so a model that scores everything equal gets the random rank
    (N+1)/2 and not rank 1. Returns float (batch,).
    """
    target_score = scores.gather(1, target[:, None])  # (batch, 1)
    drop = known.clone()
    drop.scatter_(1, target[:, None], True)  # the target is compared with the others, not with itself
    higher = ((scores > target_score) & ~drop).sum(1)
    ties = ((scores == target_score) & ~drop).sum(1)
    return 1.0 + higher.double() + 0.5 * ties.double()


def ranking_metrics(ranks: torch.Tensor) -> dict[str, float]:
    """MRR and Hits@1/3/10 of a 1-D tensor of ranks."""
    ranks = ranks.double()
    return {
        "mrr": float((1.0 / ranks).mean()),
        "hits@1": float((ranks <= 1).double().mean()),
        "hits@3": float((ranks <= 3).double().mean()),
        "hits@10": float((ranks <= 10).double().mean()),
        "mr": float(ranks.mean()),
        "count": int(ranks.numel()),
    }


__all__ = ["read_triples", "load_kg", "KGData", "AnswerIndex", "filtered_ranks", "ranking_metrics", "SPLITS"]
