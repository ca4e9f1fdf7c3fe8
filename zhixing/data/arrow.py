"""Data from the Hugging Face ecosystem: Parquet / Arrow files (through `pyarrow`) and `datasets` objects.

Rows are streamed — a Parquet file a row group at a time, an Arrow file memory-mapped a record batch at
a time, a `datasets.IterableDataset` as it arrives — so a corpus larger than memory is never loaded
whole. Both packages are optional: the readers import them when called and say what to install.

    for where, row in rows("train.parquet"):    # ("train.parquet:row 1", {"text": ..., "label": ...})
    for where, row in rows(dataset):            # a datasets.Dataset / IterableDataset, same shape
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from zhixing.errors import DataError

SUFFIXES = (".parquet", ".arrow", ".feather")
BATCH_ROWS = 1024  # rows per record batch read from a file


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataError("reading Parquet / Arrow files needs pyarrow: pip install pyarrow "
                        "(or pip install 'zhixing[data]')") from None
    return pyarrow


def is_arrow_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def is_dataset(obj: Any) -> bool:
    """A `datasets.Dataset` / `IterableDataset` (anything with column names that iterates over dicts)."""
    return hasattr(obj, "column_names") and hasattr(obj, "__iter__") and not isinstance(obj, (str, dict))


def is_dataset_dict(obj: Any) -> bool:
    """A `datasets.DatasetDict` / `IterableDatasetDict`: splits by name."""
    return isinstance(obj, dict) and bool(obj) and all(is_dataset(v) for v in obj.values())


def split_of(obj: Any, names: Sequence[str], what: str) -> Any:
    """The first split of a DatasetDict named in `names` (e.g. "validation", "dev"), or a DataError."""
    for name in names:
        if name in obj:
            return obj[name]
    raise DataError(f"{what}: the DatasetDict has splits {', '.join(obj)}, none of {', '.join(names)}; "
                    "pass the split itself (dataset['...'])")


def _batches(path: Path, columns: Sequence[str] | None):
    pa = _pyarrow()
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            yield from pa.parquet.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns)
            return
        source = pa.memory_map(str(path))
        try:  # the Arrow IPC file format (feather v2), else the stream format (datasets' cache files)
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                yield batch.select(columns) if columns else batch
        except pa.ArrowInvalid:
            source.seek(0)
            for batch in pa.ipc.open_stream(source):
                yield batch.select(columns) if columns else batch
    except (pa.ArrowInvalid, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DataError(f"{path}: not a readable {suffix[1:]} file ({e})") from None
    except KeyError as e:
        raise DataError(f"{path}: no column {e}; columns: {', '.join(column_names(path))}") from None


def column_names(source: Any) -> list[str]:
    """The columns of a Parquet / Arrow file or a dataset."""
    if is_dataset(source):
        return list(source.column_names or [])
    pa = _pyarrow()
    path = Path(source)
    if path.suffix.lower() == ".parquet":
        return list(pa.parquet.ParquetFile(path).schema_arrow.names)
    first = next(_batches(path, None), None)
    return list(first.schema.names) if first is not None else []


def label_names(source: Any, column: str) -> list[str] | None:
    """Class names of an integer label column, when the data carries them: a datasets ClassLabel (or a
    Sequence of them), from the dataset's features or the `huggingface` metadata datasets writes into
    Parquet / Arrow schemas."""
    features = None
    if is_dataset(source):
        features = getattr(source, "features", None)
        feat = features.get(column) if features else None
        feat = getattr(feat, "feature", feat)
        return list(feat.names) if hasattr(feat, "names") else None
    import json

    pa = _pyarrow()
    path = Path(source)
    if path.suffix.lower() == ".parquet":
        schema = pa.parquet.ParquetFile(path).schema_arrow
    else:
        first = next(_batches(path, None), None)
        schema = first.schema if first is not None else None
    meta = (schema.metadata or {}).get(b"huggingface") if schema is not None else None
    if not meta:
        return None
    info = json.loads(meta).get("info", {}).get("features", {}).get(column)
    while isinstance(info, dict) and info.get("_type") in ("Sequence", "List", "LargeList"):
        info = info.get("feature")
    if isinstance(info, list) and info:
        info = info[0]
    return list(info["names"]) if isinstance(info, dict) and "names" in info else None


def rows(source: Any, columns: Sequence[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row dict) for every row of a Parquet / Arrow file or a datasets Dataset, streamed;
    `where` names the file (or "dataset") and the 1-based row number, for error messages."""
    if is_dataset(source):
        for i, row in enumerate(source, 1):
            yield f"dataset row {i}", (row if columns is None else {c: row.get(c) for c in columns})
        return
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    n = 0
    for batch in _batches(path, columns):
        for row in batch.to_pylist():
            n += 1
            yield f"{path}: row {n}", row


def documents(source: Any, column: str = "text") -> Iterator[str]:
    """The non-empty strings of `column` (a corpus for pretraining), streamed."""
    names = column_names(source)
    if names and column not in names:
        from zhixing.config import nearest

        where = source if not is_dataset(source) else "dataset"
        raise DataError(f"{where}: no column {column!r}{nearest(column, names)}; columns: "
                        f"{', '.join(names)}; fix: pass field=<name> / column=<name> (CLI: --column)")
    for where, row in rows(source, [column] if not is_dataset(source) else None):
        text = row.get(column)
        if text is None:
            continue
        if not isinstance(text, str):
            raise DataError(f"{where}: column {column!r} holds {type(text).__name__}, not text")
        if text.strip():
            yield text


__all__ = ["SUFFIXES", "rows", "documents", "column_names", "label_names", "is_arrow_file", "is_dataset",
           "is_dataset_dict", "split_of"]
