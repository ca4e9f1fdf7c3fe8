"""Writing-material recommendation: an index of passages (poems, review sentences, any lines) and, for a
draft, the nearest passages with their cosine similarity.

Two embeddings, both ours:
- `tfidf`: character n-grams (1..n) weighted by sublinear tf · smoothed idf and scaled to unit length,

      w(g, d) = (1 + log tf(g, d)) · (1 + log((1 + N) / (1 + df(g)))),     v_d = w_d / ||w_d||,

  stored as a sparse CSR matrix: the strong baseline for Chinese, where characters carry meaning.
- `encoder`: the mean of a zhixing model's last hidden states over the text's tokens, unit length
  (zhixing.tasks.pretrained.EmbeddingPipeline): any encoder, or a GPT trained on the domain (the
  Tang-poetry GPT for poems: mean pooling over a causal model's states).

Score = v_draft · v_passage (cosine). The index is a directory: `passages.jsonl` (text, source, title),
`index.json` (kind, settings, the n-gram vocabulary and idf for tfidf), `vectors.safetensors`.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from zhixing.errors import ConfigError, DataError
from zhixing.io import atomic_write_text, staged_dir

KINDS = ("tfidf", "encoder")


def char_ngrams(text: str, n: int) -> Counter:
    """Counts of the character 1..n-grams of `text` (whitespace removed: it separates nothing in Chinese)."""
    chars = "".join(text.split())
    return Counter(chars[i : i + k] for k in range(1, n + 1) for i in range(len(chars) - k + 1))


class TfidfEmbedder:
    """Character n-gram TF-IDF vectors (see the module docstring), fitted on the indexed passages."""

    def __init__(self, vocab: dict[str, int], idf: torch.Tensor, ngram: int):
        self.vocab, self.idf, self.ngram = vocab, idf, ngram

    @classmethod
    def fit(cls, texts: Sequence[str], ngram: int = 2, min_df: int = 1) -> TfidfEmbedder:
        df: Counter = Counter()
        for t in texts:
            df.update(char_ngrams(t, ngram).keys())
        grams = sorted(g for g, c in df.items() if c >= min_df)
        n = len(texts)
        idf = torch.tensor([1.0 + math.log((1 + n) / (1 + df[g])) for g in grams], dtype=torch.float32)
        return cls({g: i for i, g in enumerate(grams)}, idf, ngram)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), vocab) sparse (COO) float32, rows of unit length (all-zero for unseen text)."""
        rows, cols, vals = [], [], []
        for r, t in enumerate(texts):
            row = {
                self.vocab[g]: (1.0 + math.log(c)) * float(self.idf[self.vocab[g]])
                for g, c in char_ngrams(t, self.ngram).items()
                if g in self.vocab
            }
            norm = math.sqrt(sum(v * v for v in row.values())) or 1.0
            for j, v in row.items():
                rows.append(r)
                cols.append(j)
                vals.append(v / norm)
        return sparse(
            torch.tensor([rows, cols], dtype=torch.int64).view(2, -1),
            torch.tensor(vals, dtype=torch.float32),
            (len(texts), len(self.vocab)),
        )


def sparse(indices: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A coalesced sparse COO matrix (indices (2, nnz), values (nnz,)); the indices are ours, built or
    read from our own file with their count checked, so torch's per-call invariant check is skipped."""
    return torch.sparse_coo_tensor(indices, values, size, check_invariants=False).coalesce()


def read_passages(source: str | os.PathLike, limit: int | None = None) -> list[dict[str, str]]:
    """Passages of a file: `.jsonl` poems (title / rhythmic, author, paragraphs: one passage per poem, as
    chinese-poetry writes them) or objects with a "text" field; `.csv` with a `review` or `text` column
    (one passage per sentence); `.txt`, one passage per non-blank line."""
    from zhixing.data.corpora import read_lines

    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: no such file (a .jsonl of poems / texts, a .csv of reviews or a .txt)")
    out: list[dict[str, str]] = []
    if path.suffix == ".jsonl":
        for i, line in read_lines(path, error=DataError):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: not a JSON object ({e.msg})") from None
            if not isinstance(obj, dict) or not (isinstance(obj.get("paragraphs"), list) or "text" in obj):
                raise DataError(f"{path}:{i}: expected an object with 'paragraphs' (a poem) or 'text'")
            text = "".join(obj["paragraphs"]) if "paragraphs" in obj else str(obj["text"])
            title = str(obj.get("title") or obj.get("rhythmic") or "")
            out.append(
                {
                    "text": text,
                    "title": title,
                    "author": str(obj.get("author", "")),
                    "source": f"{path.name}:{i}",
                }
            )
            if limit and len(out) >= limit:
                break
    elif path.suffix in (".csv", ".tsv"):
        import csv

        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
            column = next((c for c in ("review", "text", "sentence") if c in (reader.fieldnames or [])), None)
            if column is None:
                raise DataError(f"{path}:1: no review / text / sentence column in the header")
            for row in reader:  # empty cells are skipped: the shared review files have a few
                for sentence in split_sentences(row.get(column) or ""):
                    out.append(
                        {
                            "text": sentence,
                            "title": "",
                            "author": "",
                            "source": f"{path.name}:{reader.line_num}",
                        }
                    )
                if limit and len(out) >= limit:
                    break
    else:
        for i, line in read_lines(path, error=DataError):
            if line.strip():
                out.append({"text": line.strip(), "title": "", "author": "", "source": f"{path.name}:{i}"})
            if limit and len(out) >= limit:
                break
    return out[:limit] if limit else out


def split_sentences(text: str, min_chars: int = 6) -> list[str]:
    """Sentences of a review, cut after 。！？!?; and newlines; short scraps (< min_chars) dropped."""
    import re

    parts = re.split(r"(?<=[。！？!?；;])|\n", text)
    return [p.strip() for p in parts if p and len(p.strip()) >= min_chars]


class MaterialIndex:
    """Passages and their unit vectors; `search(draft, k)` -> the k nearest with scores."""

    def __init__(
        self,
        passages: list[dict[str, str]],
        vectors: torch.Tensor,
        kind: str,
        settings: dict[str, Any],
        embedder: Any,
    ):
        self.passages, self.vectors, self.kind = passages, vectors, kind
        self.settings, self.embedder = settings, embedder

    @classmethod
    def build(
        cls,
        passages: list[dict[str, str]],
        kind: str = "tfidf",
        ngram: int = 2,
        encoder: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> MaterialIndex:
        """Embed `passages` (dicts with "text"; see read_passages) with `kind` = tfidf or encoder."""
        if not passages:
            raise DataError("no passages to index")
        texts = [p["text"] for p in passages]
        if kind == "tfidf":
            if ngram < 1:
                raise ConfigError(f"ngram={ngram} is invalid: must be >= 1")
            embedder = TfidfEmbedder.fit(texts, ngram)
            return cls(passages, embedder(texts), kind, {"ngram": ngram}, embedder)
        if kind == "encoder":
            if not encoder:
                raise ConfigError("kind=encoder needs encoder= (a zhixing model or run directory)")
            embedder = _encoder(encoder, device, batch_size)
            return cls(passages, embedder(texts), kind, {"encoder": str(encoder)}, embedder)
        raise ConfigError(f"kind={kind!r} is invalid: choose one of {', '.join(KINDS)}")

    def search(
        self, draft: str | Sequence[str], k: int = 5
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """The k passages nearest to the draft: [{"text", "title", "author", "source", "score"}], best
        first; a list of drafts gives one such list each."""
        single = isinstance(draft, str)
        drafts = [draft] if single else list(draft)
        if k < 1:
            raise ConfigError(f"k={k} is invalid: must be >= 1")
        if any(not d.strip() for d in drafts):
            raise ConfigError("the draft is empty: give some text to find material for")
        scores, idx = self.scores(drafts).topk(min(k, len(self.passages)), dim=-1)
        out = [
            [{**self.passages[j], "score": round(float(s), 4)} for s, j in zip(srow.tolist(), jrow.tolist())]
            for srow, jrow in zip(scores, idx)
        ]
        return out[0] if single else out

    def scores(self, drafts: Sequence[str]) -> torch.Tensor:
        """(len(drafts), passages) cosine similarities."""
        q = self.embedder(list(drafts))
        if self.kind == "tfidf":  # sparse passages x dense query columns
            return torch.sparse.mm(self.vectors, q.to_dense().T).T
        return q @ self.vectors.T

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index directory atomically (a half-written index never replaces a good one)."""
        meta: dict[str, Any] = {"kind": self.kind, "settings": self.settings, "count": len(self.passages)}
        tensors: dict[str, torch.Tensor] = {}
        if self.kind == "tfidf":
            v = self.vectors
            tensors = {"indices": v.indices(), "values": v.values(), "idf": self.embedder.idf}
            meta["vocab"] = sorted(self.embedder.vocab, key=self.embedder.vocab.get)
            meta["dim"] = len(self.embedder.vocab)
        else:
            tensors = {"vectors": self.vectors.contiguous()}
        with staged_dir(directory) as tmp:
            save_file({k: t.contiguous() for k, t in tensors.items()}, str(Path(tmp) / "vectors.safetensors"))
            atomic_write_text(Path(tmp) / "index.json", json.dumps(meta, ensure_ascii=False))
            atomic_write_text(
                Path(tmp) / "passages.jsonl",
                "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in self.passages),
            )
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str = "cpu") -> MaterialIndex:
        d = Path(directory)
        for name in ("index.json", "passages.jsonl", "vectors.safetensors"):
            if not (d / name).is_file():
                raise DataError(
                    f"{d}: not a material index (no {name}); build one with `zhixing app write index`"
                )
        from zhixing.io import read_json_object

        meta = read_json_object(d / "index.json")
        passages = [
            json.loads(line)
            for line in (d / "passages.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        t = load_file(str(d / "vectors.safetensors"))
        kind = meta.get("kind")
        if kind == "tfidf":
            vocab = {g: i for i, g in enumerate(meta["vocab"])}
            embedder = TfidfEmbedder(vocab, t["idf"], int(meta["settings"]["ngram"]))
            idx = t["indices"]
            if (
                idx.dim() != 2
                or idx.size(0) != 2
                or idx.numel()
                and (
                    int(idx[0].max()) >= len(passages)
                    or int(idx[1].max()) >= len(vocab)
                    or int(idx.min()) < 0
                )
            ):
                raise DataError(
                    f"{d / 'vectors.safetensors'}: indices out of range for {len(passages)} "
                    f"passages and {len(vocab)} n-grams"
                )
            vectors = sparse(idx, t["values"], (len(passages), len(vocab)))
        elif kind == "encoder":
            embedder, vectors = _encoder(meta["settings"]["encoder"], device, 64), t["vectors"]
        else:
            raise DataError(f"{d / 'index.json'}: kind={kind!r} is not one of {', '.join(KINDS)}")
        if vectors.size(0) != len(passages):
            raise DataError(f"{d}: {vectors.size(0)} vectors for {len(passages)} passages")
        return cls(passages, vectors, kind, meta["settings"], embedder)


def _encoder(path: str, device: str, batch_size: int) -> Any:
    from zhixing.tasks.pretrained import EmbeddingPipeline

    pipe = EmbeddingPipeline(path, device=device, pooling="mean", normalize=True, batch_size=batch_size)

    def embed(texts: Iterable[str]) -> torch.Tensor:
        out = pipe(list(texts))
        return out if out.dim() == 2 else out[None]

    return embed


def evaluate_poem_retrieval(
    held_out: str | os.PathLike,
    distractors: str | os.PathLike | None = None,
    n_distractors: int = 5000,
    kind: str = "tfidf",
    encoder: str | None = None,
    ks: tuple[int, ...] = (1, 5, 10),
    ngram: int = 2,
) -> dict[str, Any]:
    """Recall@k of finding a poem from one of its lines: every poem of `held_out` (a chinese-poetry .jsonl
    with >= 3 lines) is indexed without its last line, among the first `n_distractors` poems of
    `distractors` (whole); its last line is the query. Recall@k = share of queries whose own poem is among
    the k best. Returns {"queries", "passages", "recall@k"..., "kind", "wall_s"}."""
    import time

    poems = [p for p in read_passages_lines(held_out) if len(p["lines"]) >= 3]
    passages = [
        {"text": "".join(p["lines"][:-1]), "title": p["title"], "author": p["author"], "source": p["source"]}
        for p in poems
    ]
    queries = [p["lines"][-1] for p in poems]
    if distractors:
        passages += read_passages(distractors, limit=n_distractors)
    start = time.perf_counter()
    index = MaterialIndex.build(passages, kind=kind, ngram=ngram, encoder=encoder)
    ranks = []
    for s in range(0, len(queries), 64):
        scores = index.scores(queries[s : s + 64])  # (q, passages)
        own = torch.arange(s, s + scores.size(0))
        ranks += (scores > scores[torch.arange(scores.size(0)), own][:, None]).sum(-1).tolist()
    ranks_t = torch.tensor(ranks)
    out: dict[str, Any] = {
        "kind": kind,
        "encoder": encoder,
        "queries": len(queries),
        "passages": len(passages),
    }
    for k in ks:
        out[f"recall@{k}"] = round(float((ranks_t < k).float().mean()), 4)
    out["mrr"] = round(float((1.0 / (ranks_t + 1).float()).mean()), 4)
    out["wall_s"] = round(time.perf_counter() - start, 1)
    return out


def read_passages_lines(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Poems of a chinese-poetry .jsonl with their lines (paragraphs) kept apart."""
    from zhixing.data.corpora import read_lines

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    out = []
    for i, line in read_lines(path, error=DataError):
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: not a JSON object ({e.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("paragraphs"), list):
                raise DataError(f"{path}:{i}: expected a poem object with a 'paragraphs' list")
            out.append(
                {
                    "lines": [str(x) for x in obj["paragraphs"]],
                    "title": str(obj.get("title", "")),
                    "author": str(obj.get("author", "")),
                    "source": f"{path.name}:{i}",
                }
            )
    return out
