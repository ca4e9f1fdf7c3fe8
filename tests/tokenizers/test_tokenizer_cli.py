"""`zhixing tokenizer train|encode` end to end through click."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from zhixing.cli import main


def test_train_then_encode(tmp_path, shakespeare_lines):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(shakespeare_lines[:3000]) + "知行合一，知是行之始。\n", encoding="utf-8")
    out = tmp_path / "tok"
    runner = CliRunner()
    result = runner.invoke(main, ["tokenizer", "train", "--kind", "wordpiece", "--vocab-size", "1200",
                                  "--input", str(corpus), "--out", str(out), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "tokenizer.json").is_file() and "vocab_size=1,200" in result.output
    result = runner.invoke(main, ["tokenizer", "encode", str(out), "Before we proceed, 知行"])
    assert result.exit_code == 0, result.output
    assert "[CLS]" in result.output and "知" in result.output and "0-6" in result.output  # token, offsets
    result = runner.invoke(main, ["tokenizer", "encode", str(out), "Before we proceed", "--json"])
    data = json.loads(result.output)
    assert data["tokens"][0] == "[CLS]" and data["offsets"][1] == [0, 6]
    assert len(data["ids"]) == len(data["tokens"])


def test_cli_errors_are_clear(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café\n".encode("latin-1"))
    runner = CliRunner()
    args = ["tokenizer", "train", "--kind", "char", "--vocab-size", "50", "--out", str(tmp_path / "t"), "-q"]
    result = runner.invoke(main, [*args, str(bad)])
    assert result.exit_code == 1 and "line 1, byte offset 3" in result.output
    assert "--errors replace" in result.output
    result = runner.invoke(main, [*args, "--errors", "replace", str(bad)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, [*args, str(tmp_path / "missing.txt")])
    assert result.exit_code == 1 and "input file not found" in result.output
    result = runner.invoke(main, [*args[:-2], "-q"])
    assert result.exit_code != 0 and "no input files" in result.output
    result = runner.invoke(main, ["tokenizer", "encode", str(tmp_path), "text"])
    assert result.exit_code == 1 and "holds no tokenizer" in result.output


def test_cli_module_imports_no_engine():
    code = "import sys, zhixing.cli.tokenizer; print('tokenizers' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_train_from_a_builtin_corpus(tmp_path):
    runner = CliRunner()
    out = tmp_path / "tok"
    result = runner.invoke(main, ["tokenizer", "train", "--corpus", "python-docs", "--kind", "byte_bpe",
                                  "--vocab-size", "600", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    from zhixing.tokenizers import Tokenizer

    tok = Tokenizer.load(out)
    assert tok.vocab_size == 600
    assert tok.decode(tok.encode("def f(x): return x").ids) == "def f(x): return x"
    bad = runner.invoke(main, ["tokenizer", "train", "--corpus", "no-such-corpus", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "built-ins: peoples-daily" in bad.output
