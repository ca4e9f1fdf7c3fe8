"""`zhixing ngram train|eval|sample` end to end through click."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from zhixing.cli import main


def test_train_eval_sample(tmp_path, shakespeare):
    corpus = tmp_path / "train.txt"
    corpus.write_text("\n".join(shakespeare[:800]) + "\n", encoding="utf-8")
    held = tmp_path / "held.txt"
    held.write_text("\n".join(shakespeare[800:900]) + "\n", encoding="utf-8")
    runner = CliRunner()
    for out in ("m.npz", "m.arpa"):
        r = runner.invoke(main, ["ngram", "train", str(corpus), "--order", "4", "--unit", "word",
                                 "--out", str(tmp_path / out), "-q"])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "4-gram" in r.output and "discounts" in r.output
    r = runner.invoke(main, ["ngram", "eval", str(tmp_path / "m.npz"), str(held), "--json", "-q"])
    assert r.exit_code == 0, r.output
    npz = json.loads(r.output)
    r = runner.invoke(main, ["ngram", "eval", str(tmp_path / "m.arpa"), str(held), "--json", "-q"])
    arpa = json.loads(r.output)
    assert npz["sentences"] == 100 and abs(npz["perplexity"] - arpa["perplexity"]) < 1e-3
    r = runner.invoke(main, ["ngram", "eval", str(tmp_path / "m.npz"), "--text", "First Citizen:", "-q"])
    assert r.exit_code == 0 and "perplexity" in r.output and "1 sentences, 3 predictions" in r.output
    args = ["ngram", "sample", str(tmp_path / "m.npz"), "--seed", "7", "-n", "2", "--max-tokens", "20"]
    a, b = runner.invoke(main, args), runner.invoke(main, args)
    assert a.exit_code == 0 and a.output == b.output and len(a.output.splitlines()) >= 2


def test_train_char_on_a_builtin_corpus(tmp_path):
    r = CliRunner().invoke(main, ["ngram", "train", "python-docs", "--order", "3", "--out",
                                  str(tmp_path / "py.npz"), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "char-level 3-gram" in r.output


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    out = str(tmp_path / "m.npz")
    r = runner.invoke(main, ["ngram", "train", "python-docs", "--order", "0", "--out", out])
    assert r.exit_code == 1 and "order=0: must be an integer from 1 to 10" in r.output
    r = runner.invoke(main, ["ngram", "train", "python-docs", "--order", "11", "--out", out])
    assert r.exit_code == 1 and "order=11" in r.output
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    r = runner.invoke(main, ["ngram", "train", str(empty), "--out", out, "-q"])
    assert r.exit_code == 1 and "is empty" in r.output
    r = runner.invoke(main, ["ngram", "train", "no-such-corpus", "--out", out, "-q"])
    assert r.exit_code == 1 and "not found" in r.output
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t<unk>\n", encoding="utf-8")
    r = runner.invoke(main, ["ngram", "eval", str(bad), "--text", "x", "-q"])
    assert r.exit_code == 1 and f"{bad}: line 5: the file ends after 1 of the 3 1-grams" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(main, ["ngram", "eval", str(bad), "-q"])
    assert r.exit_code != 0 and "give SOURCE or --text" in r.output


def test_cli_module_imports_no_numpy():
    code = "import sys, zhixing.cli.ngram; print('numpy' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
