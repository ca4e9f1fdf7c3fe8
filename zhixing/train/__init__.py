"""The one training loop and its parts: config, schedules, checkpoints, logging, distributed."""

from zhixing.errors import CheckpointError, TrainingError
from zhixing.train.config import DataConfig, Recipe, TrainConfig
from zhixing.train.loop import Trainer, build_optimizer
from zhixing.train.schedule import lr_at

__all__ = ["Trainer", "TrainConfig", "DataConfig", "Recipe", "TrainingError", "CheckpointError",
           "build_optimizer", "lr_at"]
