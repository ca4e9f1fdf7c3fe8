"""`zhixing prompt`: zero-shot, fine-tuned and in-context scoring from files, one-line errors."""

import json

import pytest
import torch
from click.testing import CliRunner

from zhixing.cli import main
from zhixing.models import build_model
from zhixing.tokenizers import Tokenizer

WORDS = "good bad great terrible movie film it was fun boring the a so very".split()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("prompt-cli")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "!", "?", ",", *WORDS]
    (d / "bert").mkdir()
    (d / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = Tokenizer.load(d / "bert")
    torch.manual_seed(0)
    build_model("bert-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2, max_seq_len=64,
                head="mlm").save_pretrained(d / "bert")
    rows = ["fun movie,1", "boring film,0", "so fun the film,1", "a boring movie,0"]
    (d / "data.csv").write_text("text,label\n" + "\n".join(rows * 2) + "\n", encoding="utf-8")
    (d / "plain.csv").write_text("text\nfun movie\nboring film\n", encoding="utf-8")
    return d


def run(*args):
    return CliRunner().invoke(main, ["prompt", *map(str, args)])


def test_zero_shot_and_finetune_print_metrics(files):
    base = [files / "bert", "--template", "{text} it was {mask} .", "--verbalizer", "1=great,good;0=terrible"]
    r = run(*base, "--eval", files / "data.csv")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["mode"] == "zero-shot" and out["examples"] == 8 and 0 <= out["accuracy"] <= 1
    r = run(*base, "--eval", files / "plain.csv")
    lines = [json.loads(x) for x in r.output.splitlines()]
    assert [x["text"] for x in lines] == ["fun movie", "boring film"]
    assert set(lines[0]["scores"]) == {"1", "0"}
    r = run(*base, "--mode", "finetune", "--train", files / "data.csv", "--dev", files / "data.csv",
            "--eval", files / "data.csv", "--max-steps", 20, "--lr", 3e-3, "--save", files / "tuned")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.splitlines()[-1])["accuracy"] == 1.0
    assert (files / "tuned" / "model.safetensors").exists()


def test_errors_are_one_line(files):
    r = run(files / "bert", "--template", "{text} it was .", "--verbalizer", "1=great", "--input", "fun")
    assert r.exit_code != 0 and "exactly one {mask}" in r.output and "Traceback" not in r.output
    r = run(files / "bert", "--template", "{text} {mask}", "--verbalizer", "1=宝", "--input", "fun")
    assert "tokenises as ['[UNK]']" in r.output
    r = run(files / "bert", "--template", "{text} {mask}", "--verbalizer", "1=great", "--mode", "finetune",
            "--input", "fun")
    assert "needs --train" in r.output


def test_in_context_learning_from_the_command_line(files):
    from zhixing.interop import from_hf

    transformers = pytest.importorskip("transformers")
    tok = Tokenizer.train(iter([" ".join(WORDS)] * 20), kind="byte_bpe", vocab_size=280, min_frequency=1,
                          show_progress=False)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_layer=2,
                                                               n_head=4, n_positions=128))
    hf.save_pretrained(files / "gpt")
    model = from_hf(files / "gpt")
    model.save_pretrained(files / "gpt-zx")
    tok.save(files / "gpt-zx")
    r = run(files / "gpt-zx", "--mode", "icl", "--template", "{text} it was {mask}", "--verbalizer",
            "1=great;0=terrible", "--train", files / "data.csv", "--shots", 2, "--calibrate",
            "--demo-tokens", 4, "--eval", files / "data.csv")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["mode"] == "icl" and out["examples"] == 8
