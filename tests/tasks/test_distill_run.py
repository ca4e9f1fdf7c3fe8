"""End to end: a fine-tuned tiny BERT teacher -> `zhixing distill` -> a 1-layer student run that the
pipeline loads; the teacher-logit cache is written once and reused; bad input fails in one line; a tiny
GPT teacher distills into a 1-layer student on a corpus."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from task_synth import WORDS, sentiment_rows

import zhixing
from zhixing.cli import main
from zhixing.tasks.data import TextExample
from zhixing.tasks.finetune import finetune, finetune_config

FAST = ["overwrite=true", "progress=false", "plots=false", "lr=3e-3", "batch_size=16", "num_threads=1"]


@pytest.fixture(scope="module")
def teacher_run(tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    train = [TextExample(t, None, lab) for t, lab in sentiment_rows(160, 0)]
    dev = [TextExample(t, None, lab) for t, lab in sentiment_rows(40, 1)]
    cfg = finetune_config("classify", model=str(tiny_bert), epochs=4, max_seq_len=32)
    with pytest.warns(UserWarning):
        s = finetune(cfg, name="teacher", train_examples=train, dev_examples=dev,
                     train_overrides=[f"out_dir={out}", *FAST])
    assert s["dev"]["accuracy"] >= 0.95
    return out / "teacher"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sst")
    train, dev = d / "train.tsv", d / "dev.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in sentiment_rows(160, 2)))
    dev.write_text("sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in sentiment_rows(40, 3)))
    return train, dev


def test_cli_distills_a_one_layer_student_with_a_reused_logit_cache(teacher_run, files, tmp_path):
    train, dev = files
    cache = tmp_path / "teacher-logits.safetensors"
    runner = CliRunner()
    base = ["distill", "--task", "classify", "--teacher", str(teacher_run), "--student", "layers=1",
            "--train", str(train), "--dev", str(dev), "temperature=2", "alpha=0.5", "epochs=3",
            "max_seq_len=32", f"teacher_cache={cache}", f"train.out_dir={tmp_path}",
            *(f"train.{x}" for x in FAST)]
    res = runner.invoke(main, [*base, "name=s1"])
    assert res.exit_code == 0, res.output
    assert "dev: accuracy" in res.output and "of the teacher's" in res.output
    info = json.loads((tmp_path / "s1" / "distill.json").read_text())
    assert info["cache_reused"] is False and info["student_parameters"] < info["teacher_parameters"]
    with safe_open(str(cache), "pt") as f:
        assert f.get_tensor("logits").shape == (160, 2)
    summary = json.loads((tmp_path / "s1" / "summary.json").read_text())
    assert summary["best_accuracy"] >= 0.9
    student = zhixing.load(tmp_path / "s1")
    assert student.config.num_layers == 1
    clf = zhixing.pipeline("classify", tmp_path / "s1")
    assert clf("the film was very great")["label"] == "pos"
    res = runner.invoke(main, [*base, "name=s2"])  # same data and teacher: the cache is read, not rebuilt
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "s2" / "distill.json").read_text())["cache_reused"] is True


def test_cli_bad_input_is_one_line(teacher_run, files, tiny_bert, tmp_path):
    train, dev = files
    runner = CliRunner()
    base = ["distill", "--task", "classify", "--teacher", str(teacher_run), "--train", str(train),
            "--dev", str(dev), "max_seq_len=32", f"train.out_dir={tmp_path}", *(f"train.{x}" for x in FAST)]
    cases = [(["temperature=0"], "temperature=0.0: the distillation temperature must be > 0"),
             (["--student", "layers=0,5"], "the teacher has layers 0..1; 5 not among them"),
             (["--student", "width=3"], "'width' is not a width setting"),
             (["temprature=2"], "unknown key 'temprature' (did you mean 'temperature'?)"),
             (["hidden_weight=1", f"teacher_cache={tmp_path / 'c.safetensors'}"],
              "teacher_cache holds logits")]
    for extra, message in cases:
        res = runner.invoke(main, [*base, *extra])
        assert res.exit_code != 0 and message in res.output, (extra, res.output)
        assert "Traceback" not in res.output
    # a student with another vocabulary
    other = tmp_path / "other"
    from zhixing.models import build_model

    build_model("bert-tiny", vocab_size=77, dim=32, num_heads=2, num_layers=1, head="seq_cls", num_labels=2,
                label_names=["neg", "pos"], max_seq_len=64).save_pretrained(other)
    res = runner.invoke(main, [*base, "--student", str(other)])
    assert res.exit_code != 0 and "vocabulary (77 tokens) differs from the teacher's" in res.output


def test_cli_lm_distillation_on_a_corpus(tmp_path):
    from zhixing.models import build_model
    from zhixing.tokenizers import Tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))) * 4)
    tok = Tokenizer.train(iter([corpus.read_text()]), kind="char", vocab_size=64, show_progress=False)
    torch.manual_seed(0)
    teacher = tmp_path / "gpt"
    build_model("gpt-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2, max_seq_len=64,
                dropout=0.0).save_pretrained(teacher)
    tok.save(teacher)
    res = CliRunner().invoke(main, ["distill", "--task", "lm", "--teacher", str(teacher), "--student",
                                    "layers=0", "--corpus", str(corpus), "block_size=32",
                                    f"cache_dir={tmp_path / 'cache'}", "train.max_steps=4",
                                    "train.eval_interval=2", "train.eval_batches=2", "train.batch_size=4",
                                    f"train.out_dir={tmp_path}", "train.progress=false", "train.plots=false",
                                    "train.num_threads=1"])
    assert res.exit_code == 0, res.output
    assert "student: held-out loss" in res.output
    assert zhixing.load(tmp_path / "distill-lm").config.num_layers == 1
    res = CliRunner().invoke(main, ["distill", "--task", "lm", "--teacher", str(teacher), "--corpus",
                                    str(corpus), "temperature=-1"])
    assert res.exit_code != 0 and "must be > 0" in res.output
