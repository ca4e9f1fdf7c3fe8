"""torchrun with 2 CPU processes (gloo) gives the losses of 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from toyloader import ToyLoader

from zhixing.models import build_model
from zhixing.objectives import CausalLM
from zhixing.train import TrainConfig, Trainer

WORKER = Path(__file__).parent / "ddp_worker.py"


def single_process(tmp_path: Path) -> dict:
    torch.manual_seed(0)
    model = build_model("gpt-tiny", vocab_size=48, dim=32, num_heads=2, max_seq_len=32, dropout=0.0)
    # fp32: the two runs are compared to 1e-4 (auto would be bf16 autocast on a CPU with bf16 arithmetic)
    cfg = TrainConfig(device="cpu", dtype="float32", progress=False, tensorboard=False, plots=False,
                      log_interval=1, eval_batches=2, warmup_steps=2, lr=3e-3, max_steps=6, eval_interval=3,
                      batch_size=4)
    trainer = Trainer(model, CausalLM(), cfg, ToyLoader(batch_size=4, ignore_frac=0.5),
                      ToyLoader(batch_size=4), run=tmp_path / "single")
    summary = trainer.fit()
    return {"history": trainer.history, "summary": summary}


def torchrun(tmp_path: Path, strategy: str) -> dict:
    out = tmp_path / f"{strategy}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(out), str(tmp_path / strategy), strategy, "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def compare(a: dict, b: dict) -> None:
    for kind, key in (("train", "loss"), ("eval", "val_loss")):
        la = [r[key] for r in a["history"] if r["kind"] == kind]
        lb = [r[key] for r in b["history"] if r["kind"] == kind]
        assert len(la) == len(lb) > 0
        assert max(abs(x - y) for x, y in zip(la, lb)) <= 1e-4, (la, lb)


def test_ddp_two_processes_match_one(tmp_path):
    one = single_process(tmp_path)
    two = torchrun(tmp_path, "ddp")
    compare(one, two)
    assert two["summary"]["world_size"] == 2 and two["summary"]["tokens"] == one["summary"]["tokens"]
    state = json.loads((tmp_path / "ddp/checkpoints/step-6/trainer_state.json").read_text())
    assert state["world_size"] == 2 and [r["data"]["pos"] for r in state["ranks"]] == [6, 6]
    assert (tmp_path / "ddp/best/model.safetensors").is_file()


@pytest.mark.slow
def test_fsdp_two_processes_match_one(tmp_path):
    one = single_process(tmp_path)
    two = torchrun(tmp_path, "fsdp")
    compare(one, two)
    assert (tmp_path / "fsdp/checkpoints/step-6/model.safetensors").is_file()
