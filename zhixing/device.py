"""Which device a process computes on, and the CPU threading settings that belong to a process.

Used by every layer that places a model (training, generation, fine-tuning, serving); torch is imported
inside the functions, so the command layer can call `openmp_defaults` before torch loads.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from zhixing.errors import ConfigError

if TYPE_CHECKING:
    import torch


def openmp_defaults(others: float | None = None) -> dict[str, str]:
    """Environment settings for OpenMP, to be applied (without overriding the user's) before torch is
    first imported: the wait policy of torch's worker threads, chosen from how busy the machine is now.

    Between two operations OpenMP threads spin for a while before they sleep (the default policy). On a
    machine with nothing else to run that is the fastest choice: the next operation finds its threads
    awake (PASSIVE, which puts them to sleep at once, made the gpt-shakespeare-char-cpu step ~1.4x slower
    on a quiet 2-core machine). With other processes wanting the same cores, the spinning threads take
    turns away from the thread that holds the actual work, and a 2-thread step got 2-15x slower than with
    PASSIVE (benchmarks/RESULTS.md, issue #23). So: PASSIVE when other processes are running at start,
    else OpenMP's default. others: how many CPUs other processes keep busy (default: others_running())."""
    if others is None:
        others = others_running()
    return {"OMP_WAIT_POLICY": "PASSIVE"} if others >= 0.5 else {}


def others_running(window: float = 0.06) -> float:
    """How many CPUs other processes kept busy over the last `window` seconds, read from /proc/stat
    (this process sleeps meanwhile, so every busy tick is someone else's). An instant count of runnable
    tasks proved too jumpy on a small VM. Where /proc is missing, the 1-minute load average; where that
    is missing too, infinity (assume busy)."""

    def ticks() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # user nice system idle iowait irq softirq steal

    try:
        total0, idle0 = ticks()
        time.sleep(window)
        total1, idle1 = ticks()
        span = total1 - total0
        if span <= 0:
            return 0.0
        return (os.cpu_count() or 1) * (span - (idle1 - idle0)) / span
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (OSError, AttributeError):
            return float("inf")


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): there, oneDNN's bf16 matrix
    products do twice the work per instruction of fp32 ones, and bf16 autocast pays as it does on a GPU
    (the gpt-shakespeare-char-cpu step: 1.24x, benchmarks/RESULTS.md). Elsewhere bf16 is emulated and
    slower than fp32."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: absent in some builds
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def pick_device(name: str, local_rank: int = 0, field: str = "train.device") -> torch.device:
    """"auto" -> cuda:<local_rank> when CUDA is available, else cpu. An explicit name is checked; a bad
    or unavailable one is a ConfigError naming `field` (the config key or CLI flag it came from)."""
    import torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{field}={name!r} is not a device; expected auto, cpu, cuda, cuda:N or mps"
                          ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{field}={name} but CUDA is not available here; use {field}=cpu")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
        elif device.index >= torch.cuda.device_count():
            raise ConfigError(f"{field}={name} but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s): cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{field}={name} but MPS is not available here; use {field}=cpu")
    elif device.type != "cpu":
        raise ConfigError(f"{field}={name}: zhixing runs on cpu, cuda or mps")
    return device
