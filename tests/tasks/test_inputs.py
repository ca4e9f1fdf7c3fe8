"""Issue #22, items 5-8: inputs that used to crash with a traceback, inputs that were guessed, silent
garbage — each with real files, through the command line where a user meets it."""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml
from click.testing import CliRunner
from task_synth import sentiment_rows

from zhixing.cli import main
from zhixing.errors import ConfigError, DataError, TokenizerError
from zhixing.tasks.data import read_squad, read_table, read_tagged
from zhixing.tasks.finetune import finetune, finetune_config

FAST = ["overwrite=true", "progress=false", "plots=false", "lr=3e-3", "batch_size=16", "num_threads=1",
        "device=cpu", "tensorboard=false"]


def one_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output, result.output
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    return lines[-1]


# -- 5. crashes -> one-line errors --------------------------------------------------------------------

@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".tsv", "\t")])
def test_a_cell_over_128_kb_is_read(tmp_path, suffix, sep):
    path = tmp_path / f"big{suffix}"
    big = "word " * 40_000  # 200 KB, above csv's default field limit of 128 KiB
    path.write_text(f"text{sep}label\n{big}{sep}pos\nshort{sep}neg\n", encoding="utf-8")
    rows = read_table(path)
    assert len(rows) == 2 and len(rows[0].text) > 150_000


def test_bad_encodings_in_task_readers_name_file_and_line(tmp_path):
    bad = "caf\u00e9".encode("latin-1")
    table = tmp_path / "t.tsv"
    table.write_bytes(b"sentence\tlabel\ngood\tpos\n" + bad + b"\tneg\n")
    with pytest.raises(DataError, match=rf"{table}: line 3: invalid UTF-8.*iconv"):
        read_table(table)
    conll = tmp_path / "c.txt"
    conll.write_bytes(b"EU B-ORG\nrejects O\n\n" + bad + b" O\n")
    with pytest.raises(DataError, match=rf"{conll}: line 4: invalid UTF-8"):
        read_tagged(conll)
    squad = tmp_path / "s.json"
    squad.write_bytes(b'{"data": [\n{"paragraphs": [{"context": "' + bad + b'", "qas": []}]}]}')
    with pytest.raises(DataError, match=rf"{squad}: line 2: invalid UTF-8"):
        read_squad(squad)


def test_tokenizer_without_its_unknown_token_fails_at_load_in_prepare(tmp_path):
    from zhixing.tokenizers import Tokenizer

    tok_dir = tmp_path / "tok"
    Tokenizer.train(iter(["hello world", "hello there"] * 20), kind="wordpiece", vocab_size=40,
                    show_progress=False).save(tok_dir)
    doc = json.loads((tok_dir / "tokenizer.json").read_text())
    del doc["model"]["vocab"]["[UNK]"]
    (tok_dir / "tokenizer.json").write_text(json.dumps(doc))
    with pytest.raises(TokenizerError, match="unknown token '\\[UNK\\]' is not in its vocabulary"):
        Tokenizer.load(tok_dir)
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello zebra\n" * 50)
    res = CliRunner().invoke(main, ["prepare", "--corpus", str(corpus), "--tokenizer", str(tok_dir), "--out",
                                    str(tmp_path / "shards"), "-q", "-j", "2"])
    assert "tokenizer.json: the model's unknown token" in one_line(res)


def test_num_heads_zero_is_a_config_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "model": {"preset": "gpt-tiny", "num_heads": 0}}))
    res = CliRunner().invoke(main, ["pretrain", "--config", str(recipe)])
    assert "num_heads must be a whole number >= 1, got 0" in one_line(res)
    with pytest.raises(ConfigError):
        from zhixing.config import ModelConfig

        ModelConfig.from_preset("gpt-tiny", num_kv_heads=0)


# -- 6. predict: explicit inputs --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier(tiny_bert, tmp_path_factory):
    d = tmp_path_factory.mktemp("clf")
    train = d / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in sentiment_rows(40, 2)))
    cfg = finetune_config("classify", model=str(tiny_bert), train=str(train), dev=str(train), max_seq_len=32)
    finetune(cfg, name="clf", train_overrides=[*FAST, "max_steps=2", f"out_dir={d}"])
    return d / "clf"


def test_predict_reads_only_files_that_exist_and_says_what_it_read(classifier, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["predict", str(classifier), "--input", str(tmp_path / "nosuchfile.txt")])
    assert "nosuchfile.txt: no such file" in one_line(res) and "--text" in res.output
    plain = tmp_path / "in.txt"
    plain.write_text('{"not": "json to parse"} a plain line\nthe film was very good\n')
    res = runner.invoke(main, ["predict", str(classifier), "--input", str(plain)])
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in res.output.splitlines() if x.startswith('{"input"')]
    assert [o["input"] for o in out] == ['{"not": "json to parse"} a plain line', "the film was very good"]
    assert f"read 2 input(s) from {plain} (plain text, one input per line)" in res.output
    res = runner.invoke(main, ["predict", str(classifier), "--text", "nosuchfile.txt"])
    assert res.exit_code == 0 and json.loads(res.output.splitlines()[-1])["input"] == "nosuchfile.txt"
    res = runner.invoke(main, ["predict", str(classifier)])
    assert res.exit_code == 2 and "either --input FILE or --text TEXT" in res.output


def test_predict_jsonl_without_text_names_the_line(classifier, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "fine"}\n{"sentence": "no text key"}\n')
    res = CliRunner().invoke(main, ["predict", str(classifier), "--input", str(path)])
    assert f"{path}:2: expected a JSON object with a string 'text'" in one_line(res)


# -- 7. silent garbage --------------------------------------------------------------------------------

def test_prepare_warns_when_the_tokenizer_turns_the_corpus_into_unknowns(tmp_path):
    from zhixing.tokenizers import Tokenizer

    tok_dir = tmp_path / "zh"
    Tokenizer.train(iter(["知行合一，人民日报。"] * 30), kind="wordpiece", vocab_size=60,
                    show_progress=False).save(tok_dir)
    corpus = tmp_path / "en.txt"
    corpus.write_text("First Citizen: before we proceed any further, hear me speak.\n" * 40)
    with pytest.warns(UserWarning, match=r"520 of 560 tokens \(92.9%\) are the unknown token '\[UNK\]'.*"
                      "train a tokenizer on this corpus"):
        res = CliRunner().invoke(main, ["prepare", "--corpus", str(corpus), "--tokenizer", str(tok_dir),
                                        "--out", str(tmp_path / "shards"), "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "shards/meta.json").read_text())
    assert meta["unk_fraction"] > 0.5


# -- 8. smaller ----------------------------------------------------------------------------------------

def test_records_get_the_umask_default_mode(tmp_path):
    from zhixing.io import RunDir, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
        RunDir(tmp_path / "run").write_summary({"status": "completed"})
    finally:
        os.umask(old)
    for p in (tmp_path / "config.yaml", tmp_path / "run/summary.json"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_to_hf_of_a_model_without_biases_says_model_bias_true(tmp_path):
    from zhixing.interop import to_hf
    from zhixing.models import build_model

    model = build_model("gpt-tiny", vocab_size=64, dim=32, num_heads=2, bias=False)
    with pytest.raises(ConfigError, match="bias=False.*train it with model.bias=true"):
        to_hf(model, tmp_path / "hf")


def test_a_refused_finetune_leaves_task_json_and_the_run_as_they_were(classifier, tiny_bert):
    """Old behaviour: task.json was rewritten before the "already holds checkpoints" check, so `predict`
    on the run then used the refused run's settings."""
    from zhixing.errors import TrainingError

    before = {p.relative_to(classifier): p.read_bytes() for p in sorted(classifier.rglob("*")) if p.is_file()}
    train = classifier.parent / "train.tsv"
    cfg = finetune_config("classify", model=str(tiny_bert), train=str(train), dev=str(train), max_seq_len=16,
                          text_column="sentence")
    overrides = [x for x in FAST if x != "overwrite=true"]
    with pytest.raises(TrainingError, match="already holds checkpoints/step-2"):
        finetune(cfg, name="clf", train_overrides=[*overrides, "max_steps=2", f"out_dir={classifier.parent}"])
    after = {p.relative_to(classifier): p.read_bytes() for p in sorted(classifier.rglob("*")) if p.is_file()}
    assert after == before
    assert json.loads((classifier / "task.json").read_text())["max_seq_len"] == 32
