"""Which device a process computes on, and the CPU threading settings that belong to a process.

Used by every layer that places a model (training, generation, fine-tuning, serving); torch is imported
inside the functions, so the command layer can call `openmp_defaults` before torch loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zhixing.errors import ConfigError

if TYPE_CHECKING:
    import torch


def openmp_defaults() -> dict[str, str]:
    """Environment settings for OpenMP, to be applied (without overriding the user's) before torch is
    first imported. OpenMP threads that spin while waiting for work turn a CPU shared with other
    processes into a disaster: on a busy 2-core machine a 2-thread training step took 4.3 s with the
    default (active) policy and 0.34 s with PASSIVE (benchmarks/RESULTS.md)."""
    return {"OMP_WAIT_POLICY": "PASSIVE"}


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
