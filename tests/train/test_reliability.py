"""Issue #22: one run per run directory (overwrite, run id), the run lock, and signals that save within
seconds — real signals sent to real training processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from toyloader import ToyLoader

from zhixing.errors import CheckpointError, TrainingError
from zhixing.io import RunDir
from zhixing.models import build_model
from zhixing.objectives import CausalLM
from zhixing.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[2]
FAST = dict(device="cpu", progress=False, tensorboard=False, plots=False, log_interval=1, eval_batches=2,
            warmup_steps=0, lr=3e-3, num_threads=1)


def gpt():
    torch.manual_seed(0)
    return build_model("gpt-tiny", vocab_size=48, dim=32, num_heads=2, max_seq_len=32, dropout=0.0)


def train(run_dir, val=True, **cfg):
    cfg = TrainConfig(**{**FAST, **cfg})
    trainer = Trainer(gpt(), CausalLM(), cfg, ToyLoader(batch_size=4), ToyLoader() if val else None,
                      run=run_dir)
    return trainer, trainer.fit()


def steps(run: Path) -> list[int]:
    return [s for s, _ in RunDir(run).checkpoints()]


# -- 1. overwrite never mixes two runs --------------------------------------------------------------------

def test_overwrite_moves_the_old_run_aside_and_resume_stays_in_the_new_run(tmp_path):
    run = tmp_path / "run"
    train(run, max_steps=6, eval_interval=2, keep_last=2)
    old_id = RunDir(run).run_id()
    assert steps(run) == [4, 6] and old_id
    # The new, shorter run: its checkpoints must not be pruned in favour of the old run's step-6.
    _, s = train(run, max_steps=4, eval_interval=2, keep_last=2, overwrite=True)
    assert steps(run) == [2, 4]
    new_id = RunDir(run).run_id()
    assert new_id != old_id and s["run_id"] == new_id
    assert json.loads((run / "best/best.json").read_text())["run_id"] == new_id
    assert json.loads((run / "summary.json").read_text())["run_id"] == new_id
    for _, ck in RunDir(run).checkpoints():
        assert json.loads((ck / "trainer_state.json").read_text())["run_id"] == new_id
    _, s = train(run, max_steps=4, eval_interval=2, resume=True)
    assert s["step"] == 4 and s["run_id"] == new_id
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.replaced")]


def test_failed_overwrite_leaves_no_mix_of_two_runs(tmp_path):
    """Old behaviour: the new config.yaml beside the old "completed" summary.json and old checkpoints."""
    run = tmp_path / "run"
    train(run, max_steps=4, eval_interval=2)
    old_id = RunDir(run).run_id()
    bad = build_model("gpt-tiny", vocab_size=48, dim=32, num_heads=2, max_seq_len=8, dropout=0.0)
    cfg = TrainConfig(**{**FAST, "max_steps": 4, "overwrite": True})
    with pytest.raises(Exception):  # noqa: B017 - 16-token batches do not fit 8 positions: fails in step 1
        Trainer(bad, CausalLM(), cfg, ToyLoader(batch_size=4), ToyLoader(), run=run).fit()
    assert RunDir(run).run_id() not in (None, old_id)
    assert not (run / "summary.json").exists() and not (run / "best").exists() and steps(run) == []
    assert "max_seq_len: 8" in (run / "config.yaml").read_text()


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(a, max_steps=2, eval_interval=2)
    train(b, max_steps=4, eval_interval=2)
    import shutil

    shutil.copytree(b / "checkpoints/step-4", a / "checkpoints/step-4")
    with pytest.raises(CheckpointError, match="belongs to run .* says this directory holds run"):
        train(a, max_steps=6, resume=True)


def test_a_leftover_without_checkpoints_is_cleared_not_mixed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text('{"status": "completed", "step": 300}')
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 300, "loss": 1.0}\n')
    _, s = train(run, max_steps=2, eval_interval=2)
    assert json.loads((run / "summary.json").read_text())["step"] == 2
    assert all(json.loads(x)["step"] <= 2 for x in (run / "metrics.jsonl").read_text().splitlines())


# -- 2. a refused run writes nothing -------------------------------------------------------------------

def test_refused_run_writes_nothing(tmp_path):
    run = tmp_path / "run"
    train(run, max_steps=2, eval_interval=2)
    (run / "task.json").write_text('{"task": "classify"}')
    before = {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    cfg = TrainConfig(**{**FAST, "max_steps": 3})
    rd = RunDir(run, config={"changed": True}, records={RunDir.TASK: {"task": "ner"}})
    with pytest.raises(TrainingError, match="already holds"):
        Trainer(gpt(), CausalLM(), cfg, ToyLoader(batch_size=4), ToyLoader(), run=rd).fit()
    after = {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    assert after == before


# -- 3. the lock -------------------------------------------------------------------------------------------

HOLD = """
import sys, time
from zhixing.io import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_names_its_holder_and_a_dead_holder_is_taken_over(tmp_path):
    run = RunDir(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run.path)], stdout=subprocess.PIPE, env=env,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(TrainingError, match=rf"in use by pid {proc.pid} on .*lock"):
            with run.lock():
                pass
        with pytest.raises(TrainingError, match=f"pid {proc.pid}"):
            train(run.path, max_steps=2)
    finally:
        proc.kill()  # kill -9: the lock file stays behind with a dead pid
        proc.wait()
    assert json.loads(run.lock_file.read_text())["pid"] == proc.pid
    _, s = train(run.path, max_steps=2, eval_interval=2)  # the stale lock is taken over
    assert s["status"] == "completed"
    assert not run.lock_file.exists()


# -- 4. signals save within seconds, evaluation included ---------------------------------------------

SLOW_EVAL = """
import sys, time, torch
sys.path.insert(0, {tests!r})
from toyloader import ToyLoader
from zhixing.models import build_model
from zhixing.objectives import CausalLM
from zhixing.train import TrainConfig, Trainer

class SlowVal(ToyLoader):
    def num_eval_batches(self):
        return 10_000
    def eval_batches(self, n):
        for k in range(n):
            if k == 1:
                print("evaluating", flush=True)
            time.sleep(0.05)
            yield self._batch(k, offset=10_000_000)

torch.manual_seed(0)
model = build_model("gpt-tiny", vocab_size=48, dim=32, num_heads=2, max_seq_len=32, dropout=0.0)
cfg = TrainConfig(device="cpu", progress=False, tensorboard=False, plots=False, log_interval=1,
                  eval_batches=10_000, eval_interval=3, max_steps=1000, num_threads=1)
print(Trainer(model, CausalLM(), cfg, ToyLoader(batch_size=4), SlowVal(), run=sys.argv[1]).fit()["status"])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_an_evaluation_abandons_it_and_saves(tmp_path, sig):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EVAL.format(tests=str(Path(__file__).parent)),
                             str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        for line in proc.stdout:  # the first evaluation (step 3) is under way: 10,000 x 50 ms
            if line.strip() == "evaluating":
                break
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == "interrupted"
    assert "evaluation abandoned" in out
    assert took < 10, took
    assert steps(run) == [3]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["step"] == 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    words = "the quick brown fox jumps over a lazy dog while cats sleep in warm sun".split()
    lines = [" ".join(random.Random(i).choices(words, k=24)) for i in range(300)]
    (d / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d / "text.txt"


def tiny_recipe(tmp_path: Path, corpus: Path, **train) -> Path:
    doc = {"name": "tiny",
           "model": {"preset": "gpt-tiny", "dim": 32, "num_heads": 2, "num_layers": 1, "max_seq_len": 32,
                     "dropout": 0.0},
           "data": {"corpus": str(corpus), "tokenizer_kind": "char", "vocab_size": 64, "block_size": 32,
                    "cache_dir": str(tmp_path / "prepared"), "val_fraction": 0.1},
           "train": {"out_dir": str(tmp_path / "runs"), "device": "cpu", "max_steps": 100_000,
                     "batch_size": 4, "eval_interval": 0, "save_interval": 0, "eval_batches": 2,
                     "progress": False, "tensorboard": False, "plots": False, "log_interval": 1, "lr": 1e-3,
                     "num_threads": 1,
                     **train}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_sigterm_to_pretrain_saves_the_last_step_within_seconds(tmp_path, corpus):
    """`zhixing pretrain` under a scheduler's SIGTERM: no final evaluation (eval_batches absurd), a
    checkpoint of the last completed step, exit in a few seconds."""
    recipe = tiny_recipe(tmp_path, corpus, eval_batches=10_000_000)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "zhixing.cli", "pretrain", "--config", str(recipe)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    metrics = tmp_path / "runs/tiny/metrics.jsonl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "train.resume=true" in err
    assert took < 10, took
    summary = json.loads((tmp_path / "runs/tiny/summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert steps(tmp_path / "runs/tiny") == [summary["step"]]
    assert "final_val_loss" not in summary  # no evaluation ran after the signal


def test_eval_batches_above_the_validation_set_are_capped(tmp_path, capsys):
    class Small(ToyLoader):
        def num_eval_batches(self):
            return 3

        def eval_batches(self, n):
            assert n == 3
            return super().eval_batches(n)

    cfg = TrainConfig(**{**FAST, "max_steps": 2, "eval_interval": 1, "eval_batches": 50})
    Trainer(gpt(), CausalLM(), cfg, ToyLoader(batch_size=4), Small(), run=tmp_path / "run").fit()
    assert capsys.readouterr().out.count("train.eval_batches=50 is more than the 3 batches") == 1


def test_warmup_longer_than_the_run_is_scaled_down():
    with pytest.warns(UserWarning, match="warmup_steps=100 exceeds train.max_steps=60; using warmup_steps=6"):
        cfg = TrainConfig(warmup_steps=100, max_steps=60)
    assert cfg.warmup_steps == 6


def test_evaluations_show_progress_in_the_run_bar(tmp_path):
    from zhixing.train.logging import RunLogger, progress_bar

    log = RunLogger(tmp_path, progress=True, tensorboard=False, total_steps=3)
    try:
        with progress_bar("evaluating", 5) as advance:
            advance(2)
            tasks = {t.description: t.completed for t in log._bar.tasks}
        after = [t.description for t in log._bar.tasks]
    finally:
        log.close()
    assert tasks == {"train": 0, "evaluating": 2} and after == ["train"]
    log = RunLogger(tmp_path, progress=False, tensorboard=False, total_steps=3)
    try:  # train.progress=false: no bar, not even one asked for
        with progress_bar("evaluating", 5, enabled=True) as advance:
            advance(1)
    finally:
        log.close()
