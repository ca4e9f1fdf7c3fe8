"""Readers for fine-tuning data and the batch loader the training loop consumes.

- `read_table`: CSV / TSV / JSONL rows -> `TextExample` (text, optional pair, label), columns by name.
- `read_tagged`: CoNLL column files (`token POS chunk NER`, `-DOCSTART-` lines, blank line between
  sentences) and one-character-per-line BIO files (MSRA: `char\\tTAG`) -> `TaggedSentence`.
- `read_squad`: SQuAD v1.1 JSON (also CMRC 2018) -> `QAExample`; answers that do not sit at their
  `answer_start` are relocated when the text occurs elsewhere in the context, otherwise counted and
  warned about (they still count in evaluation, which compares texts).

Every error names the file (and line where there is one) and what to fix.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zhixing.data.corpora import read_lines, read_utf8
from zhixing.errors import DataError
from zhixing.tokenizers.layout import Layout

TEXT_COLUMNS = ("sentence", "text", "review", "sentence1", "question", "content")
PAIR_COLUMNS = ("sentence2", "text_b", "pair", "hypothesis")


@dataclass
class TextExample:
    text: str
    pair: str | None
    label: str | None  # None when the file has no label column (prediction)
    where: str = ""  # "file:line" for messages


@dataclass
class TaggedSentence:
    tokens: list[str]
    tags: list[str]
    where: str = ""
    doc: int | None = None  # document number in its file (CoNLL's -DOCSTART- lines); None when unknown


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[tuple[str, int]] = field(default_factory=list)  # (text, character start)


def _nonempty(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; pass a file with examples")
    return path


def table_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    return "csv"


def read_table(path: str | os.PathLike, *, text_column: str | None = None, pair_column: str | None = None,
               label_column: str | None = "label", require_label: bool = True) -> list[TextExample]:
    """Rows of a CSV (quoted fields), TSV (GLUE style: no quoting) or JSONL file with a header/keys.

    text_column None = the first of sentence/text/review/sentence1/question/content present; the pair
    column is used only when named (or sentence2/text_b present). Labels are kept as strings.
    """
    from zhixing.data import arrow

    if arrow.is_dataset(path) or arrow.is_arrow_file(path):  # Parquet / Arrow / datasets.Dataset
        source = path if arrow.is_dataset(path) else _nonempty(path)
        return text_examples(list(arrow.rows(source)), arrow.column_names(source),
                             "dataset" if arrow.is_dataset(path) else str(path), text_column, pair_column,
                             label_column, require_label, arrow.label_names(source, label_column or ""))
    path = _nonempty(path)
    fmt = table_format(path)
    rows: list[tuple[int, dict[str, Any]]] = []
    # Decoded line by line (a bad byte names its line); cells of any size (whole articles exceed csv's
    # default 128 KiB limit).
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    f = (line for _, line in read_lines(path, keepends=True, error=DataError))
    if fmt == "jsonl":
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: not valid JSON ({e.msg}); JSONL holds one object per line")\
                    from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{i}: expected a JSON object, got {type(obj).__name__}")
            rows.append((i, obj))
        columns = list(rows[0][1]) if rows else []
    else:
        # GLUE TSVs contain bare quote characters inside sentences: read them without quoting.
        reader = csv.reader(f, delimiter="\t" if fmt == "tsv" else ",",
                            quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: the file is empty; pass a file with a header line and examples")
            columns = [h.strip() for h in header]
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(columns):
                    raise DataError(f"{path}:{line}: {len(row)} fields but the header has {len(columns)} "
                                    f"({', '.join(columns)}); quote fields that contain the delimiter")
                rows.append((line, dict(zip(columns, row))))
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num + 1}: not readable as {fmt.upper()} ({e}); check the "
                            "quoting on this line") from None
    return text_examples([(f"{path}:{line}", row) for line, row in rows], columns, str(path), text_column,
                         pair_column, label_column, require_label)


def text_examples(rows: list[tuple[str, dict[str, Any]]], columns: list[str], path: str,
                  text_column: str | None, pair_column: str | None, label_column: str | None,
                  require_label: bool, class_names: list[str] | None = None) -> list[TextExample]:
    """TextExamples of table rows ((where, {column: value})), columns picked as `read_table` says;
    integer labels become `class_names[i]` when the data names its classes (a datasets ClassLabel)."""
    if not rows:
        raise DataError(f"{path}: no examples after the header")
    if text_column is None:
        text_column = next((c for c in TEXT_COLUMNS if c in columns), None)
        if text_column is None:
            raise DataError(f"{path}: no text column found among {columns}; name it with text_column=...")
        if pair_column is None:
            pair_column = next((c for c in PAIR_COLUMNS if c in columns), None)
    for name, col in (("text_column", text_column), ("pair_column", pair_column),
                      ("label_column", label_column if require_label else None)):
        if col is not None and col not in columns:
            raise DataError(f"{path}: {name}={col!r} is not a column; columns: {', '.join(columns)}")
    has_label = label_column is not None and label_column in columns
    out = []
    for where, row in rows:
        text = row.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: empty or missing {text_column!r}")
        pair = row.get(pair_column) if pair_column else None
        label = row.get(label_column) if has_label else None
        if has_label and (label is None or str(label).strip() == ""):
            raise DataError(f"{where}: empty label in column {label_column!r}")
        if class_names and isinstance(label, int) and 0 <= label < len(class_names):
            label = class_names[label]
        out.append(TextExample(text.strip(), None if pair is None else str(pair).strip(),
                               None if label is None else str(label).strip(), where))
    return out


def read_tagged(path: str | os.PathLike, *, token_column: int = 0,
                tag_column: int = -1) -> list[TaggedSentence]:
    """CoNLL column files and MSRA-style char-per-line files; blank lines separate sentences.

    Columns split on tabs when the line has one (so a space can be a token), else on whitespace. Every
    non-blank line must have the same number of columns as the file's first one. Each sentence carries its
    document number, counted at `-DOCSTART-` lines (all 0 in a file without them), for NER's document
    context. Parquet / Arrow files and datasets hold one sentence per row instead (tagged_rows).
    """
    from zhixing.data import arrow

    if arrow.is_dataset(path) or arrow.is_arrow_file(path):
        return tagged_rows(path if arrow.is_dataset(path) else _nonempty(path))
    path = _nonempty(path)
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    ncols = None
    doc = 0
    for i, line in read_lines(path, error=DataError):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if tokens:
                sentences.append(TaggedSentence(tokens, tags, f"{path}:{start}", doc))
            tokens, tags = [], []
            doc += line.startswith("-DOCSTART-") and bool(sentences)
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if ncols is None:
            ncols = len(cols)
            if ncols < 2:
                raise DataError(f"{path}:{i}: expected at least 2 columns (token and tag), got {line!r}")
            for name, col in (("token_column", token_column), ("tag_column", tag_column)):
                if not -ncols <= col < ncols:
                    raise DataError(f"{path}:{i}: {name}={col} but the file has {ncols} columns")
        if len(cols) != ncols:
            raise DataError(f"{path}:{i}: {len(cols)} columns where the file's first line has {ncols}: "
                            f"{line!r}; fix the line (tokens containing spaces need tab separators)")
        tag = cols[tag_column].strip()
        if tag != "O" and (len(tag) < 3 or tag[0] not in "BIES" or tag[1] not in "-_"):
            raise DataError(f"{path}:{i}: tag {tag!r} is not O or a B-/I-/E-/S- tag; check tag_column "
                            f"(now {tag_column}) and the file's tag scheme")
        if not tokens:
            start = i
        tokens.append(cols[token_column])
        tags.append(tag)
    if tokens:
        sentences.append(TaggedSentence(tokens, tags, f"{path}:{start}", doc))
    if not sentences:
        raise DataError(f"{path}: no sentences found")
    return sentences


TOKEN_COLUMNS, TAG_COLUMNS = ("tokens", "words"), ("ner_tags", "tags", "labels")


def tagged_rows(source: Any) -> list[TaggedSentence]:
    """Sentences of a Parquet / Arrow file or dataset with a list-of-tokens column (tokens / words) and a
    list-of-tags column (ner_tags / tags / labels): tag strings, or class indices that the data names
    (a datasets ClassLabel, as in conll2003)."""
    from zhixing.data import arrow

    columns = arrow.column_names(source)
    name = "dataset" if arrow.is_dataset(source) else str(source)
    tok_col = next((c for c in TOKEN_COLUMNS if c in columns), None)
    tag_col = next((c for c in TAG_COLUMNS if c in columns), None)
    if tok_col is None or tag_col is None:
        raise DataError(f"{name}: tagged sentences need a token column ({'/'.join(TOKEN_COLUMNS)}) and a tag "
                        f"column ({'/'.join(TAG_COLUMNS)}); columns: {', '.join(columns)}")
    names = arrow.label_names(source, tag_col)
    out = []
    for where, row in arrow.rows(source):
        tokens, tags = list(row.get(tok_col) or []), list(row.get(tag_col) or [])
        if len(tokens) != len(tags):
            raise DataError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
        if tags and isinstance(tags[0], int):
            if names is None:
                raise DataError(f"{where}: tags are class indices and the data does not name the classes; "
                                "store tag strings (B-PER, O, ...) instead")
            tags = [names[t] for t in tags]
        if tokens:
            out.append(TaggedSentence([str(t) for t in tokens], [str(t) for t in tags], where))
    if not out:
        raise DataError(f"{name}: no sentences found")
    return out


def qa_rows(source: Any) -> list[QAExample]:
    """QA examples of a Parquet / Arrow file or dataset in Hugging Face's squad layout: id, question,
    context, answers = {"text": [...], "answer_start": [...]}."""
    from zhixing.data import arrow

    columns = arrow.column_names(source)
    name = "dataset" if arrow.is_dataset(source) else str(source)
    missing = [c for c in ("id", "question", "context", "answers") if c not in columns]
    if missing:
        raise DataError(f"{name}: no column(s) {', '.join(missing)}; squad-style data has id, question, "
                        f"context, answers; columns: {', '.join(columns)}")
    out = []
    for where, row in arrow.rows(source):
        answers, context = row["answers"] or {}, row["context"]
        pairs = []
        for text, begin in zip(answers.get("text", []), answers.get("answer_start", [])):
            if context[begin:begin + len(text)] != text:
                hits = list(_find_all(context, text))
                begin = min(hits, key=lambda i: abs(i - begin)) if hits else -1
            pairs.append((text, begin))
        if not isinstance(context, str):
            raise DataError(f"{where}: context is not text")
        out.append(QAExample(str(row["id"]), str(row["question"]).strip(), context, pairs))
    if not out:
        raise DataError(f"{name}: no questions found")
    return out


def read_squad(path: str | os.PathLike) -> list[QAExample]:
    """SQuAD v1.1 JSON: data[].paragraphs[].{context, qas[].{id, question, answers[].{text, answer_start}}};
    or a Parquet / Arrow file / datasets Dataset in Hugging Face's squad layout (qa_rows).
    """
    from zhixing.data import arrow

    if arrow.is_dataset(path) or arrow.is_arrow_file(path):
        return qa_rows(path if arrow.is_dataset(path) else _nonempty(path))
    path = _nonempty(path)
    try:
        doc = json.loads(read_utf8(path, error=DataError))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{path}: expected SQuAD JSON with a top-level 'data' list")
    out: list[QAExample] = []
    moved = missing = 0

    def need(value: Any, kind: type, where: str) -> Any:
        if not isinstance(value, kind):
            raise DataError(f"{path}: {where} should be a JSON {kind.__name__.replace('dict', 'object')}, "
                            f"got {type(value).__name__}")
        return value

    for a, article in enumerate(doc["data"]):
        need(article, dict, f"data[{a}]")
        for p, para in enumerate(need(article.get("paragraphs", []), list, f"data[{a}].paragraphs")):
            need(para, dict, f"data[{a}].paragraphs[{p}]")
            context = para.get("context")
            if not isinstance(context, str):
                raise DataError(f"{path}: data[{a}].paragraphs[{p}] has no 'context' string")
            for q, qa in enumerate(need(para.get("qas", []), list, f"data[{a}].paragraphs[{p}].qas")):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                need(qa, dict, where)
                if "question" not in qa or "id" not in qa:
                    raise DataError(f"{path}: {where} lacks 'question' or 'id'")
                answers = []
                for n, ans in enumerate(need(qa.get("answers", []), list, f"{where}.answers")):
                    need(ans, dict, f"{where}.answers[{n}]")
                    text, begin = str(ans.get("text", "")), ans.get("answer_start", -1)
                    if isinstance(begin, str) and begin.strip().lstrip("-").isdigit():
                        begin = int(begin)
                    if not isinstance(begin, int) or isinstance(begin, bool):
                        raise DataError(f"{path}: {where}.answers[{n}].answer_start should be a character "
                                        f"offset (a whole number), got {begin!r}")
                    if not text.strip():
                        continue
                    if context[begin:begin + len(text)] != text:
                        # Off-by-some offsets are common (CMRC): take the occurrence nearest the given start.
                        hits = [i for i in _find_all(context, text)]
                        if hits:
                            begin = min(hits, key=lambda i: abs(i - begin))
                            moved += 1
                        else:
                            begin = -1
                            missing += 1
                    answers.append((text, begin))
                out.append(QAExample(str(qa["id"]), str(qa["question"]).strip(), context, answers))
    if not out:
        raise DataError(f"{path}: no questions found")
    if moved or missing:
        warnings.warn(f"{path}: {moved} answers were not at their answer_start and were relocated to the "
                      f"nearest occurrence; {missing} do not occur in their context (not used for training, "
                      "still used as references in evaluation)", stacklevel=2)
    return out


def _find_all(text: str, sub: str) -> Iterator[int]:
    i = text.find(sub)
    while i != -1:
        yield i
        i = text.find(sub, i + 1)


def holdout_split(items: Sequence[Any], fraction: float, seed: int = 0,
                  key: Any = None) -> tuple[list[Any], list[Any]]:
    """(train, held_out): an item is held out when a hash of (seed, its key) falls below `fraction`.

    Deterministic and independent of file order or Python's hash seed; key(item) defaults to its index.
    """
    train, held = [], []
    for i, item in enumerate(items):
        k = str(key(item) if key is not None else i)
        h = int.from_bytes(hashlib.sha256(f"{seed}:{k}".encode()).digest()[:8], "big") / 2**64
        (held if h < fraction else train).append(item)
    return train, held


# -- batches --------------------------------------------------------------------------------------------


def collate(features: Sequence[dict[str, Any]], pad: int | Layout) -> dict[str, torch.Tensor]:
    """Pad a list of features to the longest: input_ids (the pad id), attention_mask (0), token_type_ids
    (the layout's padding type, else 0), per-token labels (-100); scalar or fixed-size labels (and an
    "index") are stacked.

    `pad` is the pad id (right padding) or the tokenizer's `Layout`, which says on which side to pad
    (XLNet: left, so its <cls> stays the last token) and with which token type. A feature whose labels
    are positions in its input_ids (QA's start/end: "label_positions": True) has them shifted by the
    padding put before it."""
    layout = pad if isinstance(pad, Layout) else None
    pad_id = layout.pad_id if layout is not None else pad
    left = layout is not None and layout.pad_left
    n = max(len(f["input_ids"]) for f in features)
    out: dict[str, torch.Tensor] = {}
    ids = np.full((len(features), n), pad_id, dtype=np.int64)
    mask = np.zeros((len(features), n), dtype=np.int64)
    types = np.full((len(features), n), layout.pad_type_id if layout is not None else 0, dtype=np.int64)
    shift = [n - len(f["input_ids"]) if left else 0 for f in features]
    for i, f in enumerate(features):
        k = len(f["input_ids"])
        row = slice(shift[i], shift[i] + k)
        ids[i, row] = f["input_ids"]
        mask[i, row] = 1
        types[i, row] = f.get("token_type_ids", [0] * k)
    out["input_ids"], out["attention_mask"] = torch.from_numpy(ids), torch.from_numpy(mask)
    out["token_type_ids"] = torch.from_numpy(types)
    if "index" in features[0]:  # the example's row in a table kept beside the data (cached teacher logits)
        out["index"] = torch.tensor([f["index"] for f in features], dtype=torch.long)
    if "labels" in features[0]:
        first = features[0]["labels"]
        if isinstance(first, list) and len(first) == len(features[0]["input_ids"]) \
                and not features[0].get("label_positions"):  # per-token labels
            labels = np.full((len(features), n), -100, dtype=np.int64)
            for i, f in enumerate(features):
                labels[i, shift[i]:shift[i] + len(f["labels"])] = f["labels"]
            out["labels"] = torch.from_numpy(labels)
        else:
            rows = [[x + s for x in f["labels"]] if f.get("label_positions") else f["labels"]
                    for f, s in zip(features, shift)]
            out["labels"] = torch.tensor(rows, dtype=torch.long)
    return out


def first_real(batch: dict[str, torch.Tensor], row: int) -> int:
    """Where row `row`'s own tokens start in a collated batch (after any left padding): index i of a
    feature's input_ids is column first_real + i."""
    return int(batch["attention_mask"][row].argmax())


class TaskLoader:
    """Endless shuffled batches of task features for `Trainer` (train), and ordered batches (eval).

    The order of epoch e is a permutation drawn from (seed, e), so `state_dict()` = {epoch, position}
    resumes exactly. Batches are padded to their longest feature (no wasted positions on short texts);
    `pad_id`: the pad id, or the tokenizer's Layout (padding side and type, see `collate`).
    """

    def __init__(self, features: Sequence[dict[str, Any]], batch_size: int, pad_id: int | Layout,
                 seed: int = 0, shuffle: bool = True):
        if not features:
            raise DataError("no features to batch (the data set is empty after reading)")
        self.features = list(features)
        self.batch_size, self.pad_id, self.seed, self.shuffle = batch_size, pad_id, seed, shuffle
        self.epoch = self.position = 0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.features) / self.batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.features))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.features))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            order = self._order(self.epoch)
            while self.position < len(order):
                idx = order[self.position:self.position + self.batch_size]
                self.position += len(idx)
                yield self.collate([self.features[i] for i in idx])
            self.epoch, self.position = self.epoch + 1, 0

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """One ordered pass over every feature (evaluation, prediction)."""
        for i in range(0, len(self.features), self.batch_size):
            yield self.collate(self.features[i:i + self.batch_size])

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """One batch of `features` (subclasses with features of another shape override this alone)."""
        return collate(features, self.pad_id)

    def num_eval_batches(self) -> int:
        return self.steps_per_epoch

    def eval_batches(self, n: int) -> Iterator[dict[str, torch.Tensor]]:
        for i, batch in enumerate(self.batches()):
            if i >= n:
                break
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "size": len(self.features)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("size") != len(self.features) or state.get("seed") != self.seed:
            raise DataError(f"the checkpoint's data loader had {state.get('size')} features (seed "
                            f"{state.get('seed')}), this run has {len(self.features)} (seed {self.seed}); "
                            "resume with the same data and seed")
        self.epoch, self.position = state["epoch"], state["position"]


@torch.no_grad()
def forward_all(model: torch.nn.Module, features: Sequence[dict[str, Any]], batch_size: int,
                pad_id: int | Layout,
                description: str = "evaluating") -> Iterator[tuple[list[int], dict[str, torch.Tensor], Any]]:
    """(feature indices, CPU batch, output with CPU float logits) for all features; labels go in so the
    output carries the loss. Batches are formed from length-sorted features: evaluation needs no
    particular order, and similar lengths waste few padded positions (callers place rows by index; a
    row's own positions start at `first_real(batch, row)`). `pad_id`: as collate's `pad`."""
    from zhixing.train.logging import progress_bar

    device = next(model.parameters()).device
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    was_training = model.training
    model.eval()  # no dropout, whatever mode the caller left the model in
    try:
        with progress_bar(description, len(order)) as advance:  # shown on a terminal (or in the run's bar)
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                batch = collate([features[i] for i in idx], pad_id)
                out = model(**{k: v.to(device) for k, v in batch.items() if k != "index"})
                out.logits = out.logits.float().cpu()
                advance(len(idx))
                yield idx, batch, out
    finally:
        model.train(was_training)
