import json

import pytest

from zhixing.data import BUILTIN_CORPORA, CorpusError, read_documents


def test_txt_lines_and_blank_line_blocks(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("\ufeffone\n\ntwo a\ntwo b\n\n\nthree\n", encoding="utf-8")
    assert list(read_documents(p)) == ["one", "two a", "two b", "three"]
    assert list(read_documents(p, blank_lines=True)) == ["one", "two a\ntwo b", "three"]


def test_jsonl_field_and_errors(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(
        json.dumps({"content": "你好"}) + "\n\n" + json.dumps({"content": "世界"}) + "\n", encoding="utf-8"
    )
    assert list(read_documents(p, field="content")) == ["你好", "世界"]
    with pytest.raises(
        CorpusError, match=r"a\.jsonl: line 1: no field 'contnt' \(did you mean 'content'\?\)"
    ):
        list(read_documents(p, field="contnt"))
    p.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"line 2: not valid JSON"):
        list(read_documents(p))


def test_csv_tsv_columns(tmp_path):
    c = tmp_path / "a.csv"
    c.write_text('id,sentence\n1,"hello, world"\n2,second\n', encoding="utf-8")
    assert list(read_documents(c, column="sentence")) == ["hello, world", "second"]
    t = tmp_path / "b.tsv"
    t.write_text('sentence\tlabel\nit "works\t1\n', encoding="utf-8")
    assert list(read_documents(t, column="sentence")) == ['it "works']
    with pytest.raises(CorpusError, match=r"no column 'sentense' \(did you mean 'sentence'\?\)"):
        list(read_documents(t, column="sentense"))


def test_directory_and_glob_are_sorted(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("B\n")
    (tmp_path / "sub" / "a.txt").write_text("A\n")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    assert list(read_documents(tmp_path)) == ["B", "A"]  # sorted paths: b.txt < sub/a.txt
    assert list(read_documents(str(tmp_path / "**" / "*.txt"))) == ["B", "A"]


def test_missing_source_names_builtins_and_nearest():
    with pytest.raises(CorpusError, match=r"'peoples-dialy' not found.*did you mean 'peoples-daily'"):
        read_documents("peoples-dialy")  # raised eagerly, before iteration


def test_invalid_utf8_names_file_and_line(tmp_path):
    p = tmp_path / "gbk.txt"
    p.write_bytes("好\n".encode() + "中文".encode("gbk") + b"\n")
    with pytest.raises(CorpusError, match=r"gbk\.txt: line 2: invalid UTF-8"):
        list(read_documents(p))


def test_peoples_daily_articles():
    it = read_documents("peoples-daily")
    first = next(it)
    assert first.startswith("迈向充满希望的新世纪——一九九八年新年讲话")
    assert "/" not in first and "  " not in first  # POS tags and separators stripped
    assert "江泽民" in first  # 江/nr 泽民/nr re-joined
    second = next(it)
    assert second.startswith("在十五大精神指引下胜利前进——元旦献辞")


def test_small_builtins():
    docs = list(read_documents("python-docs"))
    assert len(docs) > 50 and any("assert" in d for d in docs)
    assert set(BUILTIN_CORPORA) == {
        "peoples-daily",
        "reviews-zh",
        "python-docs",
        "tinyshakespeare",
        "wikitext-2",
        "tang-poetry",
        "tang300",
    }


def test_shared_data_corpora_need_the_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("ZHIXING_DATA", str(tmp_path))
    with pytest.raises(CorpusError, match=r"tinyshakespeare.*ZHIXING_DATA"):
        read_documents("tinyshakespeare")


def test_shared_data_corpora(shared_data):
    (text,) = list(read_documents("tinyshakespeare"))
    assert text.startswith("First Citizen:") and len(text) == 1115394
    arts = list(read_documents("wikitext-2"))
    assert arts[0].startswith("= Homarus gammarus =") and all(a.startswith("= ") for a in arts)


def test_tang_poetry_holds_out_tang300(shared_data):
    held = list(read_documents("tang300"))
    train = list(read_documents("tang-poetry"))
    assert len(held) == 366 and held[0].startswith("在嶽詠蟬\n西陸蟬聲唱，南冠客思侵。")
    assert len(train) == 57240 and train[0].startswith("帝京篇十首 一\n秦川雄帝宅，")
    poems = {d.split("\n", 1)[1] for d in held}
    assert not any(d.split("\n", 1)[1] in poems for d in train)
