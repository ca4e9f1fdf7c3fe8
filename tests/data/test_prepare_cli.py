from click.testing import CliRunner

from zhixing.cli import main
from zhixing.data import TokenShards


def test_prepare_cli(docs_file, char_tok, tmp_path):
    out = tmp_path / "shards"
    args = ["prepare", "--corpus", str(docs_file), "--tokenizer", str(char_tok[1]), "--out", str(out), "-q",
            "--val-fraction", "0.2", "-j", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "train" in result.output and TokenShards(out, "val").num_docs > 0
    bad = CliRunner().invoke(main, ["prepare", "--corpus", str(tmp_path / "nope.txt"), "--tokenizer",
                                    str(char_tok[1]), "--out", str(out)])  # fmt: skip
    assert bad.exit_code == 1 and "nope.txt" in bad.output and "not found" in bad.output
