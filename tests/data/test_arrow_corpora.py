"""Corpora from Parquet / Arrow files (pyarrow, streamed) and datasets objects."""

from __future__ import annotations

import pytest

from zhixing.data import read_documents
from zhixing.errors import DataError

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install pyarrow)")
import pyarrow.parquet as pq  # noqa: E402

DOCS = ["知行合一。", "The quick brown fox.", "", "第三篇文章", "last one"]


def table():
    return pa.table({"id": list(range(len(DOCS))), "text": DOCS, "body": [d.upper() for d in DOCS]})


def test_parquet_arrow_and_feather_files(tmp_path):
    pq.write_table(table(), tmp_path / "a.parquet", row_group_size=2)  # several row groups: streamed
    with pa.ipc.new_stream(str(tmp_path / "b.arrow"), table().schema) as w:  # datasets' cache format
        w.write_table(table(), max_chunksize=2)
    with pa.ipc.new_file(str(tmp_path / "c.feather"), table().schema) as w:  # the IPC file format
        w.write_table(table())
    want = [d for d in DOCS if d]
    for name in ("a.parquet", "b.arrow", "c.feather"):
        assert list(read_documents(tmp_path / name)) == want
    assert list(read_documents(tmp_path / "a.parquet", column="body")) == [d.upper() for d in want]
    assert list(read_documents(tmp_path)) == want * 3  # a directory: every corpus file, sorted
    with pytest.raises(DataError, match="no column 'txt'.*did you mean 'text'"):
        list(read_documents(tmp_path / "a.parquet", column="txt"))
    with pytest.raises(DataError, match="holds int"):
        list(read_documents(tmp_path / "a.parquet", column="id"))


def test_datasets_objects():
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install datasets)")
    ds = datasets.Dataset.from_dict({"text": DOCS, "n": list(range(len(DOCS)))})
    want = [d for d in DOCS if d]
    assert list(read_documents(ds)) == want
    assert list(read_documents(datasets.DatasetDict({"train": ds, "test": ds.select([0])}))) == want
    assert list(read_documents(ds.to_iterable_dataset())) == want  # streaming datasets stream here too
