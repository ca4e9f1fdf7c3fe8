"""Finding hyperparameters from the fine-tuning command: the learning-rate range test (--find-lr),
several seeds in one command (seeds=N: mean ± std, the best run), and the "still improving" advice."""

import json

import pytest
from click.testing import CliRunner
from task_synth import sentiment_rows

from zhixing.cli import main
from zhixing.tasks.data import TextExample
from zhixing.tasks.finetune import finetune, finetune_config, still_improving
from zhixing.train.callbacks import Callback

FAST = ["overwrite=true", "progress=false", "plots=false", "lr=3e-3", "batch_size=16", "num_threads=1"]


def write_tsv(path, rows):
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows))
    return path


def test_cli_find_lr_writes_the_curve_and_suggests_a_rate(tiny_bert, tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(200, 2))
    dev = write_tsv(tmp_path / "dev.tsv", sentiment_rows(30, 3))
    res = CliRunner().invoke(main, [
        "finetune", "--task", "classify", "--model", str(tiny_bert), "--train", str(train), "--dev", str(dev),
        "--find-lr", "--find-lr-steps", "60", "--find-lr-range", "1e-5:10", "max_seq_len=32", "name=lrf",
        f"train.out_dir={tmp_path}", "train.progress=false", "train.num_threads=1", "train.batch_size=16"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("suggested lr:"))
    lr = float(line.split()[2])
    assert 1e-5 < lr < 10
    found = json.loads((tmp_path / "lrf" / "lr_find.json").read_text())
    assert found["suggestion"] == pytest.approx(lr, rel=0.01) and len(found["losses"]) == found["steps"]
    assert (tmp_path / "lrf" / "lr_find.png").stat().st_size > 5000
    assert not (tmp_path / "lrf" / "best").exists()  # nothing was trained
    bad = CliRunner().invoke(main, [
        "finetune", "--task", "classify", "--model", str(tiny_bert), "--train", str(train), "--dev", str(dev),
        "--find-lr", "--find-lr-range", "1e-3", f"train.out_dir={tmp_path}"])
    assert bad.exit_code != 0 and "START:END" in bad.output


def test_seeds_report_mean_std_and_the_best_run(tiny_bert, tmp_path):
    train = [TextExample(t, None, lab, f"train:{i}") for i, (t, lab) in enumerate(sentiment_rows(120, 0))]
    dev = [TextExample(t, None, lab, f"dev:{i}") for i, (t, lab) in enumerate(sentiment_rows(40, 1))]
    cfg = finetune_config("classify", model=str(tiny_bert), epochs=2, max_seq_len=32, seeds=2)
    with pytest.warns(UserWarning):  # the fresh head
        report = finetune(cfg, name="s", train_examples=train, dev_examples=dev,
                          train_overrides=[f"out_dir={tmp_path}", *FAST, "seed=7"])
    runs = [tmp_path / "s-seed0", tmp_path / "s-seed1"]
    assert report["runs"] == [str(r) for r in runs] and report["seeds"] == [0, 1]
    values = [json.loads((r / "summary.json").read_text())["dev"]["accuracy"] for r in runs]
    assert report["dev"]["values"] == values
    assert report["dev"]["mean"] == pytest.approx(sum(values) / 2)
    assert report["best_run"] == str(runs[values.index(max(values))])
    # each run trained with its own seed (the given train.seed=7 is replaced by the seeds')
    import yaml
    assert [yaml.safe_load((r / "config.yaml").read_text())["train"]["seed"] for r in runs] == [0, 1]
    assert json.loads((tmp_path / "s-seeds.json").read_text()) == report


class Obj:
    metric, greater_is_better = "accuracy", True


def test_still_improving_advice():
    evals = lambda *v: [{"kind": "eval", "accuracy": x} for x in v]  # noqa: E731
    assert "still improving" in still_improving(evals(0.46, 0.62, 0.73, 0.77, 0.785), Obj())
    assert still_improving(evals(0.7, 0.8, 0.79), Obj()) is None  # peaked earlier
    assert still_improving(evals(0.8, 0.8), Obj()) is None  # flat
    assert still_improving(evals(0.9), Obj()) is None  # one evaluation says nothing

    class Loss:
        metric, greater_is_better = "val_loss", False
    assert still_improving([{"kind": "eval", "val_loss": x} for x in (2.0, 1.5, 1.2)], Loss()) is not None


def test_defaults_follow_the_model_and_the_data(tiny_bert, tmp_path):
    from zhixing.tasks.finetune import build_job, default_epochs, default_lr

    assert default_lr(768) == 5e-5 and default_lr(384) == 1e-4 and default_lr(32) == 5e-4
    assert default_epochs(2105) == 2 and default_epochs(281) == 6 and default_epochs(10) == 10
    train = [TextExample(t, None, lab, f"train:{i}") for i, (t, lab) in enumerate(sentiment_rows(96, 0))]
    dev = [TextExample(t, None, lab, f"dev:{i}") for i, (t, lab) in enumerate(sentiment_rows(16, 1))]
    cfg = finetune_config("classify", model=str(tiny_bert), max_seq_len=32)
    with pytest.warns(UserWarning):
        job = build_job(cfg, name="d", train_examples=train, dev_examples=dev,
                        train_overrides=[f"out_dir={tmp_path}", "batch_size=16", "progress=false"])
    # 96 examples / 16 = 6 steps an epoch -> the 10-epoch cap; dim 32 -> the 5e-4 cap
    assert job.chosen == {"epochs": 10.0, "lr": 5e-4, "early_stopping_patience": 3}
    assert job.trainer.cfg.lr == 5e-4 and job.trainer.cfg.max_steps == 60
    assert job.cfg.epochs == 10.0  # recorded resolved in task.json
    with pytest.warns(UserWarning):
        given = build_job(finetune_config("classify", model=str(tiny_bert), max_seq_len=32, epochs=1),
                          name="g", train_examples=train, dev_examples=dev,
                          train_overrides=[f"out_dir={tmp_path}", "lr=1e-3", "early_stopping_patience=0"])
    assert given.chosen == {} and given.trainer.cfg.lr == 1e-3
    assert given.trainer.cfg.early_stopping_patience == 0


class InterruptAt(Callback):
    """Sends this process SIGINT at a step, as Ctrl-C would."""

    def __init__(self, step):
        self.step = step

    def on_step(self, trainer, step, logs):
        if step == self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_run_stops_there_no_test_and_no_next_seed(tiny_bert, tmp_path, monkeypatch):
    """Ctrl-C saves the step and ends the command: no test evaluation of the half-trained model, no second
    seed, exit status 130 with how to resume (the trainer itself only saves and returns)."""
    train = [TextExample(t, None, lab, f"train:{i}") for i, (t, lab) in enumerate(sentiment_rows(120, 0))]
    dev = [TextExample(t, None, lab, f"dev:{i}") for i, (t, lab) in enumerate(sentiment_rows(40, 1))]
    cfg = finetune_config("classify", model=str(tiny_bert), epochs=2, max_seq_len=32, seeds=2)
    with pytest.warns(UserWarning):  # the fresh head
        s = finetune(cfg, name="i", train_examples=train, dev_examples=dev, test_examples=dev,
                     callbacks=[InterruptAt(3)], train_overrides=[f"out_dir={tmp_path}", *FAST])
    assert s["status"] == "interrupted" and s["step"] == 3 and "test" not in s
    assert s["run_dir"] == str(tmp_path / "i-seed0") and not (tmp_path / "i-seed1").exists()
    assert (tmp_path / "i-seed0" / "checkpoints" / "step-3").is_dir()

    from zhixing.train.loop import Trainer

    monkeypatch.setattr(Trainer, "fit", lambda self: {"status": "interrupted", "step": 5})
    trn = write_tsv(tmp_path / "train.tsv", sentiment_rows(40, 2))
    res = CliRunner().invoke(main, [
        "finetune", "--task", "classify", "--model", str(tiny_bert), "--train", str(trn), "--dev", str(trn),
        "max_seq_len=32", "name=cli", f"train.out_dir={tmp_path}", "train.progress=false"])
    assert res.exit_code == 130, res.output
    assert "interrupted at step 5" in res.output and "train.resume=true" in res.output
