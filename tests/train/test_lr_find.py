"""The learning-rate range test: the sweep, the suggestion, the divergence stop, and that the model, the
data stream and the run directory come out of it untouched."""

from __future__ import annotations

import math

import pytest
import torch
from toyloader import ToyLoader

from zhixing.errors import ConfigError
from zhixing.models import build_model
from zhixing.objectives import CausalLM
from zhixing.train import TrainConfig, Trainer
from zhixing.train.lr_find import lr_range_test, suggest

FAST = dict(device="cpu", progress=False, tensorboard=False, plots=False, log_interval=1, num_threads=1,
            max_steps=10)


def toy_trainer(run=None, **cfg):
    torch.manual_seed(0)
    model = build_model("gpt-tiny", vocab_size=48, dim=32, num_heads=2, max_seq_len=32, dropout=0.0)
    return Trainer(model, CausalLM(), TrainConfig(**{**FAST, **cfg}), ToyLoader(batch_size=8), run=run)


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = [1e-6 * 10 ** (i / 20) for i in range(121)]  # 1e-6 .. 1
    # A smooth curve falling fastest at log10(lr) = -3.5 (a logistic step), flat, then rising past 1e-2.
    x = [math.log10(lr) for lr in lrs]
    curve = [3 - 2 / (1 + math.exp(-(v + 3.5) * 4)) + max(0.0, v + 2) ** 2 for v in x]
    steep, at_min, notes = suggest(lrs, curve)
    assert math.log10(steep) == pytest.approx(-3.5, abs=0.06)
    assert -2.6 < math.log10(at_min) <= -2.0
    assert notes == []
    flat = suggest(lrs[:50], [1.0 + 1e-3 * i for i in range(50)])
    assert flat[0] is None and "never fell" in flat[2][0]
    falling = suggest(lrs[:60], [5.0 - 0.01 * i for i in range(60)])
    assert falling[0] is not None and "still falling at end_lr" in falling[2][0]


def test_range_test_sweeps_stops_on_divergence_and_restores_everything(tmp_path):
    trainer = toy_trainer(run=tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.raw.state_dict().items()}
    data_before = trainer.train_data.state_dict()
    result = lr_range_test(trainer, start_lr=1e-5, end_lr=100.0, steps=120)
    # an exponential sweep: constant ratio between consecutive rates, starting at start_lr
    assert result.lrs[0] == pytest.approx(1e-5)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-9)
    assert result.stopped_early and len(result.lrs) < 120  # lr 100 diverges long before the end
    assert result.suggestion is not None and 1e-4 < result.suggestion < 1.0
    assert min(result.losses) < result.losses[0] - 0.3  # it did train on the way up
    for k, v in trainer.raw.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert trainer.train_data.state_dict() == data_before
    assert not (tmp_path / "run").exists()  # nothing written to the run directory
    json_path, png = result.save(tmp_path / "out")
    assert png.stat().st_size > 5000 and json_path.read_text().count("suggestion") == 1
    # the run trains afterwards exactly as a run that never saw the test
    after = trainer.fit()
    fresh = toy_trainer(run=tmp_path / "fresh").fit()
    assert after["final_train_loss"] == pytest.approx(fresh["final_train_loss"], rel=1e-6)


def test_range_test_bad_input():
    trainer = toy_trainer()
    with pytest.raises(ConfigError, match="start_lr < end_lr"):
        lr_range_test(trainer, start_lr=1.0, end_lr=1e-3)
    with pytest.raises(ConfigError, match="steps=2"):
        lr_range_test(trainer, steps=2)
    for p in trainer.raw.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        lr_range_test(trainer)
