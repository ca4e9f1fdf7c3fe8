"""The one training loop and its parts: config, schedules, checkpoints, logging, distributed."""

import os

# OpenMP threads that spin while waiting for work turn a CPU shared with other processes into a
# disaster: on a busy 2-core machine a 2-thread training step took 4.3 s with the default (active)
# policy and 0.34 s with PASSIVE (benchmarks/RESULTS.md). It only takes effect when set before torch
# is first imported, and a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from zhixing.train.checkpoint import CheckpointError, latest_checkpoint, resolve_run_dir
from zhixing.train.config import DataConfig, Recipe, TrainConfig
from zhixing.train.loop import Trainer, TrainingError, build_optimizer
from zhixing.train.schedule import lr_at

__all__ = ["Trainer", "TrainConfig", "DataConfig", "Recipe", "TrainingError", "CheckpointError",
           "build_optimizer", "lr_at", "resolve_run_dir", "latest_checkpoint"]
