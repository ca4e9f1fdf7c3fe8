"""Training objectives: what a model is trained to do (losses, targets, fast paths, metrics)."""

from zhixing.objectives.base import Batch, Objective

__all__ = ["Objective", "Batch"]
