"""zhixing.device: the per-process CPU settings (OpenMP wait policy) and the CPU's bf16 default."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from zhixing import device
from zhixing.train.loop import resolve_dtype


def test_openmp_policy_passive_only_when_others_run():
    assert device.openmp_defaults(others=2.0) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert device.openmp_defaults(others=0.4) == {}
    assert device.openmp_defaults(others=0.0) == {}


def test_others_running_reads_this_machine():
    n = device.others_running(window=0.02)
    assert 0 <= n <= (os.cpu_count() or 1) + 1e-9


def test_the_command_never_overrides_the_users_policy():
    code = "import os, zhixing.cli as c; c.set_process_defaults(); print(os.environ.get('OMP_WAIT_POLICY'))"
    for chosen in ("ACTIVE", "PASSIVE"):
        env = {**os.environ, "OMP_WAIT_POLICY": chosen}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == chosen


def test_auto_dtype_on_cpu_follows_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("zhixing.train.loop.cpu_computes_bf16", lambda: True)
    assert resolve_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr("zhixing.train.loop.cpu_computes_bf16", lambda: False)
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("float32", cpu) == torch.float32  # an explicit choice is kept
    assert isinstance(device.cpu_computes_bf16(), bool)
