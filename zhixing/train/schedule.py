"""Learning-rate schedules: linear warmup, then cosine, linear, constant or inverse square root.

The rate is a pure function of the step, so resuming needs nothing but the step count: there is no
scheduler object whose state could be lost or double-stepped (a known pain of resumed HF runs).

    warmup (s < W):        lr(s) = lr · (s + 1) / W
    cosine (W ≤ s < D):    lr(s) = min_lr + ½ (lr − min_lr) (1 + cos(π (s − W) / (D − W)))
    linear (W ≤ s < D):    lr(s) = lr − (lr − min_lr) (s − W) / (D − W)
    after D:               lr(s) = min_lr
    inverse_sqrt (s ≥ W):  lr(s) = max(min_lr, lr · sqrt(W / (s + 1)))   (Vaswani et al. 2017's decay)
"""

from __future__ import annotations

import math

from zhixing.train.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate for optimizer step `step` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps  # (step + 1): the first step does not waste a 0 lr
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "inverse_sqrt":
        return max(cfg.min_lr, cfg.lr * math.sqrt(max(cfg.warmup_steps, 1) / (step + 1)))
    decay_end = cfg.decay_steps if cfg.decay_steps is not None else cfg.max_steps
    if step >= decay_end:
        return cfg.min_lr
    span = max(1, decay_end - cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / span  # 0 -> 1
    if cfg.schedule == "cosine":
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))
    return cfg.lr - (cfg.lr - cfg.min_lr) * progress


def undecayed_note(step: int, cfg: TrainConfig) -> str | None:
    """Why a run stopped early by `max_time` at `step` trained at a high rate throughout, if it did: the
    decaying schedules span `max_steps` (or `decay_steps`), not the time — a time budget wants max_steps
    near the steps that fit. None when the rate had decayed at least halfway."""
    if cfg.schedule not in ("cosine", "linear"):
        return None
    lr = lr_at(step, cfg)
    if lr <= cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr):
        return None
    span = "decay_steps" if cfg.decay_steps is not None else "max_steps"
    return (f"note: the {cfg.schedule} schedule spans {span}={getattr(cfg, span):,}, so the rate is still "
            f"{lr:.3g} of lr {cfg.lr:.3g} at step {step:,}; to decay it within the time budget, set "
            f"train.max_steps to about {step:,}")

