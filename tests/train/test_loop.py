"""The training loop on tiny models: accumulation, exact resume, checkpoints, signals, run directory."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from click.testing import CliRunner
from toyloader import ToyLoader

from zhixing.cli import main
from zhixing.io import RunDir
from zhixing.models import Model, build_model
from zhixing.objectives import CausalLM, MaskedLM
from zhixing.train import (
    CheckpointError,
    TrainConfig,
    Trainer,
    TrainingError,
    build_optimizer,
)
from zhixing.train import checkpoint as ckpt_mod
from zhixing.train.schedule import undecayed_note

# fp32: these tests compare runs to 1e-6 (accumulation == large batch, sparse == full head); the default
# dtype (auto) would train under bf16 autocast on a CPU that computes bf16 natively.
FAST = dict(device="cpu", progress=False, tensorboard=False, plots=False, log_interval=1, eval_batches=2,
            warmup_steps=2, lr=3e-3, num_threads=1, dtype="float32")


def gpt(dropout: float = 0.0, **kw) -> Model:
    torch.manual_seed(0)
    return build_model("gpt-tiny", vocab_size=48, dim=32, num_heads=2, max_seq_len=32, dropout=dropout, **kw)


def bert(head: str = "pretraining") -> Model:
    torch.manual_seed(0)
    return build_model("bert-tiny", vocab_size=48, dim=32, num_heads=2, max_seq_len=32, head=head,
                       dropout=0.0)


def objective_of(model):
    return CausalLM() if model.config.arch == "gpt" else MaskedLM(nsp=model.config.head == "pretraining")


def train(model, run_dir=None, loader=None, val=True, **cfg):
    cfg = TrainConfig(**{**FAST, **cfg})
    loader = loader or ToyLoader(batch_size=cfg.batch_size)
    trainer = Trainer(model, objective_of(model), cfg, loader, ToyLoader() if val else None, run=run_dir)
    summary = trainer.fit()
    return trainer, summary


def losses(trainer) -> list[float]:
    return [r["loss"] for r in trainer.history if r["kind"] == "train"]


def test_trains_and_writes_the_run_directory(tmp_path):
    run = tmp_path / "run"
    trainer, summary = train(gpt(), run, max_steps=40, eval_interval=20, keep_last=1, plots=True,
                             tensorboard=True)
    ls = losses(trainer)
    assert len(ls) == 40 and ls[-1] < ls[0] - 0.5, ls  # it learns the toy stream
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "best/model.safetensors", "best/config.json",
                 "checkpoints/step-40/optimizer.pt", "checkpoints/step-40/trainer_state.json",
                 "plots/loss.png", "plots/lr.png"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoints/step-20").exists()  # keep_last=1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb")).Reload()
    assert len(events.Scalars("train/loss")) == 40, events.Tags()["scalars"]
    assert summary["status"] == "completed" and summary["step"] == 40
    assert summary["final_val_loss"] == pytest.approx(summary["best_val_loss"]) or summary["best_step"] == 20
    assert summary["final_val_ppl"] == pytest.approx(2.718281828 ** summary["final_val_loss"], rel=1e-4)
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [20, 40]
    assert RunDir(run).model_dir() == run / "best"
    loaded = Model.from_pretrained(RunDir(run).model_dir())
    batch = ToyLoader().eval_batches(1)[0]
    model = trainer.raw.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    result = CliRunner().invoke(main, ["info", str(run)])  # the run's state next to its model
    assert result.exit_code == 0, result.output
    assert "completed at step 40 of 40" in result.output
    assert f"{summary['best_val_loss']:.4f} at step {summary['best_step']}" in result.output


@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_accumulated_run_equals_large_batch_run(kind):
    """Micro-batches with different numbers of targets: weighting by tokens makes 2x2 == 1x4."""
    make = gpt if kind == "gpt" else bert
    opts = dict(objective="clm", ignore_frac=0.6) if kind == "gpt" else dict(objective="mlm", nsp=True)
    big, _ = train(make(), loader=ToyLoader(batch_size=4, **opts), val=False, max_steps=6, batch_size=4)
    acc, _ = train(make(), loader=ToyLoader(batch_size=2, **opts), val=False, max_steps=6, batch_size=2,
                   grad_accum_steps=2)
    torch.testing.assert_close(torch.tensor(losses(acc)), torch.tensor(losses(big)), atol=2e-6, rtol=0)
    for (name, a), b in zip(acc.raw.named_parameters(), big.raw.parameters()):
        if name.endswith("qkv.bias"):
            # The key bias shifts every score of a query equally, so softmax ignores it: its gradient is
            # rounding noise, which Adam normalises to full-size steps. Compare the q and v parts only.
            a, b = torch.cat([a[:32], a[64:]]), torch.cat([b[:32], b[64:]])
        torch.testing.assert_close(a, b, atol=2e-6, rtol=0, msg=name)
    # The check has teeth: the micro-batches really differ in target count, so averaging their mean
    # losses (loss / accum_steps) would not be the large-batch loss.
    model = make()
    b1, b2 = ToyLoader(batch_size=2, **opts)._batch(0), ToyLoader(batch_size=2, **opts)._batch(1)
    whole = ToyLoader(batch_size=4, **opts)._batch(0)
    with torch.no_grad():
        naive = (model(**b1).loss + model(**b2).loss) / 2
        exact = model(**whole).loss
    assert abs(naive - exact) > 1e-4


def test_resume_is_exact(tmp_path):
    """16 steps straight == 5 steps, stop, resume, 11 more: same losses bit for bit (dropout on)."""
    straight, _ = train(gpt(dropout=0.1), tmp_path / "a", max_steps=16, eval_interval=8, schedule="cosine")
    # Interrupt run b during step 5 the way a user would: Ctrl-C, which finishes the step, saves, exits.
    loader = ToyLoader(batch_size=8, on_batch=lambda pos: pos == 4 and os.kill(os.getpid(), signal.SIGINT))
    first, s1 = train(gpt(dropout=0.1), tmp_path / "b", loader=loader, max_steps=16, eval_interval=8)
    assert s1["status"] == "interrupted" and s1["step"] == 5
    assert (tmp_path / "b/checkpoints/step-5/trainer_state.json").is_file()
    resumed, s2 = train(gpt(dropout=0.1), tmp_path / "b", max_steps=16, eval_interval=8, resume=True)
    assert s2["status"] == "completed" and s2["step"] == 16
    assert losses(first) + losses(resumed)[5:] == losses(straight)  # history of b holds steps 1..16
    assert losses(resumed) == losses(straight)
    for a, b in zip(resumed.raw.parameters(), straight.raw.parameters()):
        assert torch.equal(a, b)
    lines = (tmp_path / "b/metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines if '"train"' in x] == list(range(1, 17))


def _snapshot(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_resume_from_mismatched_checkpoint_fails_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    train(gpt(), run, max_steps=4, eval_interval=4)
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match=r"different model:\n  dim: checkpoint 32 vs recipe 64"):
        train(build_model("gpt-tiny", vocab_size=48, dim=64, num_heads=2, max_seq_len=32), run,
              max_steps=8, resume=True)
    assert _snapshot(run) == before


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_resume_from_corrupted_checkpoint_names_the_file(tmp_path):
    run = tmp_path / "run"
    train(gpt(), run, max_steps=4, eval_interval=2, keep_last=2)
    weights = run / "checkpoints/step-4/model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:100])
    before = _snapshot(run)
    with pytest.raises(CheckpointError,
                       match=r"step-4/model.safetensors: not a readable.*corrupted.*newest other is step-2"):
        train(gpt(), run, max_steps=8, resume=True)
    assert _snapshot(run) == before
    weights.write_bytes(good)
    (run / "checkpoints/step-4/optimizer.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="optimizer.pt"):
        train(gpt(), run, max_steps=8, resume=True)


def test_crash_mid_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: the disk is full
            raise OSError(28, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(ckpt_mod.torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        train(gpt(), run, max_steps=8, eval_interval=4, save_best=False)
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-4"]  # no step-8, no .tmp-step-8
    resumed, summary = train(gpt(), run, max_steps=8, eval_interval=4, resume=True)
    assert summary["step"] == 8 and len(losses(resumed)) == 8


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    run = tmp_path / "run"
    train(gpt(), run, max_steps=2)
    with pytest.raises(TrainingError, match="train.resume=true.*train.overwrite=true"):
        train(gpt(), run, max_steps=2)
    _, summary = train(gpt(), run, max_steps=3, overwrite=True)
    assert summary["step"] == 3


def test_early_stopping_and_time_limit(tmp_path):
    _, summary = train(gpt(), tmp_path / "es", max_steps=50, lr=1e-9, min_lr=0.0, warmup_steps=0,
                       eval_interval=2, early_stopping_patience=2, early_stopping_min_delta=0.1)
    assert summary["status"] == "early_stopped" and summary["step"] == 6  # best at 2, then 4 and 6 fail
    assert (tmp_path / "es/checkpoints/step-6").is_dir()
    _, summary = train(gpt(), None, val=False, max_steps=10_000, max_time=0.5)
    assert summary["status"] == "time_limit" and 0 < summary["step"] < 10_000


def test_a_time_limit_that_stops_the_schedule_early_says_so(tmp_path, capsys):
    """The cosine spans max_steps, not max_time: a run the clock stops at step 10 of 10,000 trained at full
    rate, and the log says how to fix it; a run that decayed says nothing."""
    _, summary = train(gpt(), tmp_path / "t", val=False, max_steps=10_000, max_time=0.5)
    out = capsys.readouterr().out
    assert summary["status"] == "time_limit"
    assert f"set train.max_steps to about {summary['step']:,}" in out and "spans max_steps=10,000" in out
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, max_steps=100, warmup_steps=0)
    assert undecayed_note(90, cfg) is None and undecayed_note(10, cfg) is not None
    assert undecayed_note(10, cfg.replace(schedule="constant")) is None


def test_weight_decay_only_on_matrices():
    model = gpt()
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_bert_pretraining_metrics_and_bf16(tmp_path):
    loader = ToyLoader(objective="mlm", nsp=True)
    cfg = TrainConfig(**{**FAST, "max_steps": 4, "eval_interval": 2, "dtype": "bfloat16"})
    trainer = Trainer(bert(), MaskedLM(nsp=True), cfg, loader, ToyLoader(objective="mlm", nsp=True),
                      run=tmp_path / "b")
    summary = trainer.fit()
    for key in ("final_mlm_accuracy", "final_nsp_accuracy", "final_nsp_loss", "final_val_ppl"):
        assert key in summary and summary[key] >= 0
    assert 0 <= summary["final_mlm_accuracy"] <= 1 and 0 <= summary["final_nsp_accuracy"] <= 1
    assert summary["dtype"] == "bfloat16"


def test_mlm_accuracy_from_the_sparse_head_equals_the_full_logits():
    """The loop runs BERT's MLM head on masked positions only; its accuracy and loss are those of the
    full (batch, seq, vocab) logits."""
    torch.manual_seed(0)
    model = bert()
    val = ToyLoader(objective="mlm", nsp=True)
    cfg = TrainConfig(**{**FAST, "eval_batches": 3, "max_steps": 2, "warmup_steps": 1, "eval_interval": 2})
    summary = Trainer(model, MaskedLM(nsp=True), cfg, ToyLoader(objective="mlm", nsp=True), val).fit()
    model.eval()
    correct = n = loss = 0.0
    with torch.no_grad():
        for batch in val.eval_batches(3):
            out = model(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"),
                        labels=batch["labels"])
            keep = batch["labels"] != -100
            correct += (out.logits.argmax(-1)[keep] == batch["labels"][keep]).sum().item()
            n += keep.sum().item()
            loss += out.loss.item() * keep.sum().item()
    assert summary["final_mlm_accuracy"] == pytest.approx(correct / n)
    assert summary["final_val_ppl"] == pytest.approx(math.exp(loss / n), rel=1e-5)
