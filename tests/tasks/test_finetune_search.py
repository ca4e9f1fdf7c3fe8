"""zhixing finetune --search: the space's grammar and its errors, trials as runs, pruning through the
loop's request_stop, and a killed search that continues where it stopped."""

import json

import optuna
import pytest
from click.testing import CliRunner
from task_synth import sentiment_rows

from zhixing.cli import main
from zhixing.errors import ConfigError
from zhixing.tasks.data import TextExample
from zhixing.tasks.finetune import finetune, finetune_config
from zhixing.tasks.search import Dimension, _ReportToTrial, parse_space, search

FAST = ["progress=false", "plots=false", "num_threads=1", "batch_size=16"]


def rows(n, seed, prefix):
    return [TextExample(t, None, lab, f"{prefix}:{i}") for i, (t, lab) in enumerate(sentiment_rows(n, seed))]


def test_space_grammar_and_errors():
    dims = parse_space({"lr": "1e-5:1e-3:log", "batch_size": "16,32", "epochs": "1:3:int",
                        "warmup_ratio": "0:0.2"})
    assert dims == [Dimension("lr", "log", 1e-5, 1e-3), Dimension("batch_size", "choice", choices=(16, 32)),
                    Dimension("epochs", "int", 1, 3), Dimension("warmup_ratio", "float", 0.0, 0.2)]
    with pytest.raises(ConfigError, match=r"search.lrr: not a searchable key \(did you mean 'lr'\?\)"):
        parse_space({"lrr": "1e-5:1e-3"})
    with pytest.raises(ConfigError, match=r"search.lr='1e-3:1e-5': an empty range"):
        parse_space({"lr": "1e-3:1e-5"})
    with pytest.raises(ConfigError, match="a log scale needs lo > 0"):
        parse_space({"warmup_ratio": "0:0.2:log"})
    with pytest.raises(ConfigError, match="must be ints"):
        parse_space({"batch_size": "16,3x"})
    with pytest.raises(ConfigError, match="unknown scale 'exp'"):
        parse_space({"lr": "1e-5:1e-3:exp"})


class PruneAtOnce:
    def report(self, value, step):
        self.reported = (value, step)

    def should_prune(self):
        return True


def test_a_pruned_trial_ends_its_run_cleanly(tiny_bert, tmp_path):
    reporter = _ReportToTrial(PruneAtOnce(), "accuracy")
    cfg = finetune_config("classify", model=str(tiny_bert), epochs=4, max_seq_len=32)
    with pytest.warns(UserWarning):
        s = finetune(cfg, name="p", train_examples=rows(64, 0, "t"), dev_examples=rows(16, 1, "d"),
                     callbacks=[reporter], train_overrides=[f"out_dir={tmp_path}", *FAST, "lr=3e-3"])
    assert reporter.pruned and s["status"] == "pruned"
    assert s["step"] == 4  # stopped after the first evaluation (epoch 1 of 4: 64 / 16 steps)
    assert reporter.trial.reported == (s["dev"]["accuracy"], 4)


def test_search_runs_trials_and_continues_after_a_kill(tiny_bert, tmp_path):
    cfg = finetune_config("classify", model=str(tiny_bert), epochs=1, max_seq_len=32)
    data = dict(train_examples=rows(64, 0, "t"), dev_examples=rows(24, 1, "d"))
    space = {"lr": "1e-4:1e-2:log", "epochs": "1:2:int"}
    with pytest.warns(UserWarning):
        first = search(cfg, space=space, trials=2, name="s", train_overrides=[f"out_dir={tmp_path}", *FAST],
                       **data)
    assert [r["state"] for r in first["trials"]] == ["complete", "complete"]
    best = first["best_run"]
    assert (tmp_path / "s-trial0" / "best").is_dir()
    assert best in {str(tmp_path / f"s-trial{i}") for i in (0, 1)}
    assert json.loads((tmp_path / "s-search" / "trials.json").read_text()) == first
    # A search killed mid-trial leaves that trial RUNNING in the study: it is run again, not lost.
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's-search' / 'study.db'}")
    stale = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                       "epochs": optuna.distributions.IntDistribution(1, 2)})
    with pytest.warns(UserWarning):
        again = search(cfg, space=space, trials=3, name="s", train_overrides=[f"out_dir={tmp_path}", *FAST],
                       **data)
    done = [r for r in again["trials"] if r["state"] == "complete"]
    assert len(done) == 3 and done[:2] == first["trials"]  # the first two kept, one more run
    assert done[2]["params"] == stale.params  # the killed trial's parameters, run again
    with pytest.raises(ConfigError, match="searched another space"):
        search(cfg, space={"lr": "1e-5:1e-3:log"}, trials=3, name="s",
               train_overrides=[f"out_dir={tmp_path}", *FAST], **data)


def test_cli_search_needs_the_flag(tiny_bert, tmp_path):
    res = CliRunner().invoke(main, ["finetune", "--task", "classify", "--model", str(tiny_bert),
                                    "--train", "x.tsv", "--dev", "y.tsv", "search.lr=1e-5:1e-3:log"])
    assert res.exit_code != 0 and "needs --search" in res.output


def test_cli_search_prints_the_table(tiny_bert, tmp_path):
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    for path, (n, seed) in ((train, (64, 0)), (dev, (24, 1))):
        path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in sentiment_rows(n, seed)))
    res = CliRunner().invoke(main, [
        "finetune", "--task", "classify", "--model", str(tiny_bert), "--train", str(train), "--dev", str(dev),
        "--search", "--trials", "1", "search.lr=1e-3:1e-2:log", "epochs=1", "max_seq_len=32", "name=c",
        f"train.out_dir={tmp_path}", *(f"train.{x}" for x in FAST)])
    assert res.exit_code == 0, res.output
    assert "trial   0  complete  accuracy 0." in res.output and "lr=" in res.output
    assert "best: trial 0 (accuracy 0." in res.output and str(tmp_path / "c-trial0") in res.output
