"""Callbacks at the loop's events, the W&B / MLflow loggers in their offline modes, and train.resume=auto."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from test_loop import FAST, gpt, losses, train
from toyloader import ToyLoader

from zhixing.errors import ConfigError
from zhixing.objectives import CausalLM
from zhixing.train import TrainConfig, Trainer, TrainingError
from zhixing.train.callbacks import Callback, MLflowLogger, WandbLogger


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_start(self, trainer):
        self.events.append(("start", trainer.step))

    def on_step(self, trainer, step, logs):
        self.events.append(("step", step, logs is not None and "loss" in logs))

    def on_eval(self, trainer, step, metrics):
        self.events.append(("eval", step, "val_loss" in metrics))

    def on_checkpoint(self, trainer, step, path):
        self.events.append(("checkpoint", step, path.name))

    def on_end(self, trainer, summary):
        self.events.append(("end", summary["status"]))


def fit(run, callbacks=(), **cfg):
    cfg = TrainConfig(**{**FAST, "max_steps": 4, "eval_interval": 2, "log_interval": 2, **cfg})
    trainer = Trainer(gpt(), CausalLM(), cfg, ToyLoader(batch_size=cfg.batch_size), ToyLoader(), run=run,
                      callbacks=callbacks)
    return trainer, trainer.fit()


def test_callbacks_see_every_event_in_order(tmp_path):
    rec = Recorder()
    fit(tmp_path / "run", [rec])
    assert rec.events == [
        ("start", 0),
        ("step", 1, False), ("step", 2, True), ("eval", 2, True), ("checkpoint", 2, "best"),
        ("checkpoint", 2, "step-2"), ("step", 3, False), ("step", 4, True), ("eval", 4, True),
        ("checkpoint", 4, "best"), ("checkpoint", 4, "step-4"), ("end", "completed")]


def test_unknown_or_missing_logger_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown logger 'wandbb'.*did you mean 'wandb'"):
        fit(tmp_path / "run", loggers=["wandbb"])


def test_wandb_logger_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="wandb is not installed (pip install wandb)")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(mode="offline", dir=str(tmp_path))
    fit(tmp_path / "run", [logger])
    assert logger.run is None  # finished
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())
    assert wandb.run is None


def test_mlflow_logger_to_a_local_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install mlflow)")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local file store: no server, no database
    uri = (tmp_path / "mlruns").as_uri()
    fit(tmp_path / "run", [MLflowLogger(tracking_uri=uri, experiment="zhixing-test")])
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("zhixing-test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "run" and run.data.params["train.max_steps"] == "4"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [2, 4]
    assert "eval_val_loss" in run.data.metrics and run.data.tags["status"] == "completed"


def test_resume_auto_starts_fresh_then_resumes_exactly(tmp_path):
    run = tmp_path / "b"
    straight, _ = train(gpt(dropout=0.1), tmp_path / "a", max_steps=12, eval_interval=6)
    # first start: nothing to resume, starts from step 0 (an empty or absent directory)
    loader = ToyLoader(batch_size=8, on_batch=lambda pos: pos == 4 and os.kill(os.getpid(), signal.SIGINT))
    first, s1 = train(gpt(dropout=0.1), run, loader=loader, max_steps=12, eval_interval=6, resume="auto")
    assert s1["status"] == "interrupted" and s1["step"] == 5
    # the scheduler restarts the same command: it resumes, exactly
    again, s2 = train(gpt(dropout=0.1), run, max_steps=12, eval_interval=6, resume="auto")
    assert s2["status"] == "completed" and losses(again) == losses(straight)
    for a, b in zip(again.raw.parameters(), straight.raw.parameters()):
        assert torch.equal(a, b)


def test_resume_auto_refuses_another_runs_checkpoint(tmp_path):
    run = tmp_path / "r"
    train(gpt(), run, max_steps=3, eval_interval=0)
    with pytest.raises(TrainingError, match="another run.*lr: 0.003 there, 0.001 now"):
        train(gpt(), run, max_steps=3, eval_interval=0, lr=1e-3, resume="auto")
    _, summary = train(gpt(), run, max_steps=3, eval_interval=0, lr=1e-3, resume="auto", overwrite=True)
    assert summary["step"] == 3  # started afresh, as asked


def test_resume_setting_reads_true_false_auto():
    assert TrainConfig.from_dict({"resume": "auto"}).resume == "auto"
    assert TrainConfig.from_dict({"resume": "true"}).resume is True
    assert TrainConfig.from_dict({"resume": "false"}).resume is False
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"resume": "sometimes"})
