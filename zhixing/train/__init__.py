"""The one training loop and its parts: config, schedules, checkpoints, logging, distributed."""

from zhixing.train.checkpoint import CheckpointError, latest_checkpoint, resolve_run_dir
from zhixing.train.config import DataConfig, Recipe, TrainConfig
from zhixing.train.loop import Trainer, TrainingError, build_optimizer
from zhixing.train.schedule import lr_at

__all__ = ["Trainer", "TrainConfig", "DataConfig", "Recipe", "TrainingError", "CheckpointError",
           "build_optimizer", "lr_at", "resolve_run_dir", "latest_checkpoint"]
