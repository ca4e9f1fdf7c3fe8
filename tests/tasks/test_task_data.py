"""Readers (CSV/TSV/JSONL, CoNLL/MSRA, SQuAD) and their errors; the split; the loader's exact resume."""

import json
import os
from pathlib import Path

import pytest

from zhixing.tasks.data import (
    DataError,
    QAExample,
    TaskLoader,
    holdout_split,
    read_squad,
    read_table,
    read_tagged,
)

DATA = Path(os.environ.get("ZHIXING_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_tables_in_three_formats(tmp_path):
    tsv = write(tmp_path / "a.tsv", 'sentence\tlabel\nit \'s "quoted" . \t1\nbad \t0\n')
    csv = write(tmp_path / "a.csv", 'label,review\n1,"good, really"\n0,bad\n')
    jsonl = write(tmp_path / "a.jsonl", '{"premise": "p", "hypothesis": "h", "gold": "yes"}\n')
    rows = read_table(tsv)
    assert [(r.text, r.label) for r in rows] == [('it \'s "quoted" .', "1"), ("bad", "0")]
    assert rows[0].where == f"{tsv}:2"
    assert [(r.text, r.label) for r in read_table(csv)] == [("good, really", "1"), ("bad", "0")]
    pair = read_table(jsonl, text_column="premise", pair_column="hypothesis", label_column="gold")[0]
    assert (pair.text, pair.pair, pair.label) == ("p", "h", "yes")
    auto = write(tmp_path / "b.jsonl", '{"sentence1": "p", "sentence2": "h", "label": 0}\n')
    assert read_table(auto)[0].pair == "h"  # columns found by their usual names


def test_table_errors_name_file_line_and_column(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_table(write(tmp_path / "e.tsv", ""))
    with pytest.raises(DataError, match=r"b\.tsv:3: 3 fields but the header has 2"):
        read_table(write(tmp_path / "b.tsv", "sentence\tlabel\nok\t1\nx\ty\tz\n"))
    with pytest.raises(DataError, match="label_column='gold' is not a column; columns: sentence, label"):
        read_table(write(tmp_path / "c.tsv", "sentence\tlabel\nok\t1\n"), label_column="gold")
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid JSON"):
        read_table(write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n{oops\n'))
    with pytest.raises(DataError, match="no text column"):
        read_table(write(tmp_path / "f.csv", "foo,label\na,1\n"))


def test_conll_and_msra_readers(tmp_path):
    conll = write(tmp_path / "c.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                  "Peter NNP B-NP B-PER\n")
    sents = read_tagged(conll)
    assert [(s.tokens, s.tags) for s in sents] == [(["EU", "rejects"], ["B-ORG", "O"]),
                                                   (["Peter"], ["B-PER"])]
    assert [s.doc for s in sents] == [0, 0]
    two = write(tmp_path / "d.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n\n-DOCSTART- -X- -X- O\n\n"
                "Peter NNP B-NP B-PER\n\nDrives VBZ B-VP O\n")
    assert [(s.tokens, s.doc) for s in read_tagged(two)] == [(["EU"], 0), (["Peter"], 1), (["Drives"], 1)]
    msra = write(tmp_path / "m.txt", "中\tB-ORG\n共\tI-ORG\n \tO\n是\tO\n\n我\tO\n")
    sents = read_tagged(msra)
    assert sents[0].tokens == ["中", "共", " ", "是"]  # tab-separated: a space is a token
    assert sents[0].tags == ["B-ORG", "I-ORG", "O", "O"]


def test_malformed_conll_line_is_file_line(tmp_path):
    bad = write(tmp_path / "bad.txt", "EU NNP B-NP B-ORG\nrejects VBZ O\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: 3 columns where the file's first line has 4"):
        read_tagged(bad)
    tag = write(tmp_path / "tag.txt", "EU NNP B-NP ORG\n")
    with pytest.raises(DataError, match=r"tag\.txt:1: tag 'ORG' is not O or a B-/I-/E-/S- tag"):
        read_tagged(tag)
    with pytest.raises(DataError, match="empty"):
        read_tagged(write(tmp_path / "empty.txt", ""))


def squad(tmp_path: Path, answers: list[dict]) -> Path:
    doc = {"data": [{"paragraphs": [{"context": "Paris is the capital of France. Paris is big.",
                                     "qas": [{"id": "q1", "question": "What is the capital?",
                                              "answers": answers}]}]}]}
    return write(tmp_path / "squad.json", json.dumps(doc))


def test_squad_answers_not_at_offsets_are_counted_and_warned(tmp_path):
    ok = read_squad(squad(tmp_path, [{"text": "France", "answer_start": 24}]))
    assert ok[0].answers == [("France", 24)]
    with pytest.warns(UserWarning, match="1 answers were not at their answer_start.*0 do not occur"):
        moved = read_squad(squad(tmp_path, [{"text": "Paris", "answer_start": 30}]))
    assert moved[0].answers == [("Paris", 32)]  # the occurrence nearest the given offset
    with pytest.warns(UserWarning, match="0 answers were not.*1 do not occur"):
        missing = read_squad(squad(tmp_path, [{"text": "Berlin", "answer_start": 0}]))
    assert missing[0].answers == [("Berlin", -1)]  # kept as a reference for evaluation
    with pytest.raises(DataError, match="top-level 'data' list"):
        read_squad(write(tmp_path / "x.json", "[]"))


def test_holdout_split_is_deterministic_and_disjoint():
    items = [f"review {i}" for i in range(2000)]
    train, held = holdout_split(items, 0.1, seed=0, key=str)
    assert holdout_split(items, 0.1, seed=0, key=str) == (train, held)
    assert holdout_split(list(reversed(items)), 0.1, seed=0, key=str)[1] == list(reversed(held))
    assert not set(train) & set(held) and len(train) + len(held) == 2000
    assert 150 < len(held) < 250


def test_loader_pads_and_resumes_exactly():
    feats = [{"input_ids": list(range(1, 2 + i % 5)), "labels": i % 2} for i in range(23)]
    a = TaskLoader(feats, batch_size=4, pad_id=0, seed=3)
    it = iter(a)
    first = next(it)
    assert first["input_ids"].shape[0] == 4
    assert (first["attention_mask"].sum(1) == (first["input_ids"] != 0).sum(1)).all()
    for _ in range(7):  # into the second epoch (6 batches per epoch)
        next(it)
    state = a.state_dict()
    expected = [next(it)["labels"].tolist() for _ in range(5)]
    b = TaskLoader(feats, batch_size=4, pad_id=0, seed=3)
    b.load_state_dict(state)
    it_b = iter(b)
    assert [next(it_b)["labels"].tolist() for _ in range(5)] == expected
    with pytest.raises(DataError, match="same data and seed"):
        TaskLoader(feats[:-1], batch_size=4, pad_id=0, seed=3).load_state_dict(state)


@pytest.mark.skipif(not (DATA / "cmrc2018").is_dir(), reason=f"CMRC 2018 not found under {DATA}")
def test_real_files_read():
    trial = read_squad(DATA / "cmrc2018/cmrc2018_trial.json")
    assert len(trial) == 1002 and isinstance(trial[0], QAExample)
    located = [a for e in trial for a in e.answers if a[1] >= 0]
    assert all(e.context[s:s + len(t)] == t for e in trial for t, s in e.answers if s >= 0)
    assert len(located) > 0.95 * sum(len(e.answers) for e in trial)
    assert len(read_table(DATA / "sst2/dev.tsv")) == 872
    assert len(read_tagged(DATA / "conll2003/valid.txt")) == 3250
