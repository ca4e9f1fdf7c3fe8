"""Fine-tuning data from the Hugging Face ecosystem: Parquet / Arrow files and datasets objects for the
classify, ner and qa readers, with class names from datasets' ClassLabel features."""

from __future__ import annotations

import warnings

import pytest
from task_synth import ner_sentences, sentiment_rows

from zhixing.tasks.data import read_squad, read_table, read_tagged
from zhixing.tasks.finetune import finetune, finetune_config

datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install datasets)")
pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install pyarrow)")

FAST = ["overwrite=true", "progress=false", "plots=false", "lr=3e-3", "batch_size=16", "num_threads=1"]


def sentiment_dataset(n, seed):
    rows = sentiment_rows(n, seed)
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    return datasets.Dataset.from_dict({"sentence": [t for t, _ in rows],
                                       "label": [["neg", "pos"].index(lab) for _, lab in rows]}, features)


def test_classify_rows_from_parquet_and_datasets(tmp_path):
    ds = sentiment_dataset(20, 0)
    ds.to_parquet(tmp_path / "train.parquet")
    from_file = read_table(tmp_path / "train.parquet")
    from_ds = read_table(ds)
    want = sentiment_rows(20, 0)
    assert [(e.text, e.label) for e in from_file] == [(e.text, e.label) for e in from_ds] == want
    assert from_file[3].where.endswith("train.parquet: row 4")
    renamed = ds.rename_column("sentence", "review_body")
    assert read_table(renamed, text_column="review_body")[0].text == from_ds[0].text  # column mapping


def test_ner_and_qa_rows(tmp_path):
    sents = ner_sentences(5, 0)
    names = sorted({t for s in sents for _, t in s})
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    ds = datasets.Dataset.from_dict({"tokens": [[w for w, _ in s] for s in sents],
                                     "ner_tags": [[names.index(t) for _, t in s] for s in sents]}, features)
    ds.to_parquet(tmp_path / "ner.parquet")
    for source in (ds, tmp_path / "ner.parquet"):
        got = read_tagged(source)
        assert [(g.tokens, g.tags) for g in got] == [([w for w, _ in s], [t for _, t in s]) for s in sents]
    qa = datasets.Dataset.from_dict({
        "id": ["q1"], "question": ["Who visited Paris?"], "context": ["John visited Paris in May."],
        "answers": [{"text": ["John"], "answer_start": [0]}]})
    qa.to_parquet(tmp_path / "qa.parquet")
    for source in (qa, tmp_path / "qa.parquet"):
        (ex,) = read_squad(source)
        assert (ex.id, ex.question, ex.answers) == ("q1", "Who visited Paris?", [("John", 0)])


def test_finetune_takes_a_dataset_dict(tiny_bert, tmp_path):
    splits = datasets.DatasetDict({"train": sentiment_dataset(160, 0),
                                   "validation": sentiment_dataset(40, 1)})
    cfg = finetune_config("classify", model=str(tiny_bert), epochs=3, max_seq_len=32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*freshly initialised")
        summary = finetune(cfg, name="clf-ds", train_examples=splits, train_overrides=[f"out_dir={tmp_path}",
                                                                                         *FAST])
    assert summary["dev_examples"] == 40 and summary["dev"]["accuracy"] >= 0.9
