"""The learning-rate range test (Smith 2017; fastai's `lr_find`, Lightning's `Tuner.lr_find`).

Train for a few hundred steps while the rate grows exponentially from `start_lr` to `end_lr`,

    lr_i = start_lr · (end_lr / start_lr)^(i / (n − 1)),      i = 0 … n − 1

and record the loss of each step. The loss is noisy, so it is smoothed with a bias-corrected exponential
moving average, s_i = (β s_{i−1} + (1 − β) loss_i) / (1 − β^(i+1)); the test stops early once s_i exceeds
`diverge` × its minimum (the rate is past useful). The suggestion is the rate where the smoothed loss falls
fastest: the most negative slope ds/d(log lr) before the minimum (the first tenth of the sweep, where the
moving average is still settling, is skipped). `lr_at_min / 10`, the older rule of thumb, is reported too.

The model, its optimizer and the data stream are restored afterwards, so a run can follow at once with
the chosen rate from exactly the state it would have had without the test.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zhixing.errors import ConfigError, TrainingError
from zhixing.io import atomic_write, atomic_write_text


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None  # the steepest descent of the smoothed loss
    lr_at_min: float | None  # the rate of the lowest smoothed loss
    stopped_early: bool  # the loss diverged before end_lr
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"suggestion": self.suggestion, "lr_at_min": self.lr_at_min,
                "lr_at_min_over_10": self.lr_at_min / 10 if self.lr_at_min else None,
                "stopped_early": self.stopped_early, "steps": len(self.lrs), "notes": self.notes,
                "lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed}

    def save(self, out_dir: str | Path, title: str = "") -> tuple[Path, Path]:
        """out_dir/lr_find.json (every step) and out_dir/lr_find.png (loss vs lr, the suggestion marked)."""
        import json

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        js = atomic_write_text(out / "lr_find.json", json.dumps(self.to_dict(), indent=1) + "\n")
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(self.lrs, self.losses, lw=0.8, alpha=0.4, label="loss")
        ax.plot(self.lrs, self.smoothed, lw=1.5, label="smoothed")
        if self.suggestion is not None:
            i = self.lrs.index(self.suggestion)
            ax.plot([self.suggestion], [self.smoothed[i]], "ro", label=f"suggested lr {self.suggestion:.2e}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        lo = min(self.smoothed)
        top = min(max(self.smoothed), 1.5 * self.smoothed[0])  # a diverged tail would flatten the rest
        ax.set_ylim(lo - 0.05 * (top - lo + 1e-8), top + 0.05 * (top - lo + 1e-8))
        ax.set_title(f"learning-rate range test{': ' + title if title else ''}")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        png = atomic_write(out / "lr_find.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120,
                                                                          bbox_inches="tight"))
        plt.close(fig)
        return js, png


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float | None, list[str]]:
    """(steepest-descent lr, lr at the minimum, notes) of a smoothed loss-vs-lr curve."""
    notes: list[str] = []
    n = len(lrs)
    if n < 5:
        return None, None, [f"only {n} steps: too few for a suggestion"]
    i_min = min(range(n), key=smoothed.__getitem__)
    skip = max(1, n // 10)
    lo, hi = skip, max(skip + 2, i_min + 1)
    logs = [math.log(x) for x in lrs]
    slopes = [(smoothed[i + 1] - smoothed[i - 1]) / (logs[i + 1] - logs[i - 1]) for i in range(1, n - 1)]
    window = range(max(1, lo), min(hi, n - 1))
    if not window:
        return None, lrs[i_min], ["the loss was lowest at the very start: lower start_lr"]
    best = min(window, key=lambda i: slopes[i - 1])
    if slopes[best - 1] >= 0:
        notes.append("the smoothed loss never fell: no rate in the range trains this model; lower start_lr "
                     "or check the data")
        return None, lrs[i_min], notes
    if i_min == n - 1:
        notes.append("the loss was still falling at end_lr: raise end_lr to see where it diverges")
    return lrs[best], lrs[i_min], notes


def lr_range_test(trainer: Any, *, start_lr: float = 1e-7, end_lr: float = 1.0, steps: int = 200,
                  beta: float | None = None, diverge: float = 4.0) -> LRFindResult:
    """Run the range test with a `zhixing.train.loop.Trainer` (its model, objective, data, micro-batching,
    precision, clipping and parameter groups: the same step the run will take) and restore everything.
    The trainer is used as built (no run directory is written); call it before `fit()`. beta: the
    smoothing factor (None: min(0.98, 1 − 5 / steps), an average over about a fifth of the sweep, so the
    smoothed curve does not lag far behind the rate on short sweeps)."""
    if beta is None:
        beta = min(0.98, 1 - 5 / max(steps, 5))
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"lr range test: need 0 < start_lr < end_lr, got start_lr={start_lr}, "
                          f"end_lr={end_lr}")
    if steps < 5:
        raise ConfigError(f"lr range test: steps={steps}; at least 5 (a few hundred is usual)")
    if not 0 <= beta < 1:
        raise ConfigError(f"lr range test: beta={beta}; expected 0 <= beta < 1 (the smoothing factor)")
    if diverge <= 1:
        raise ConfigError(f"lr range test: diverge={diverge}; expected > 1 (stop once the smoothed loss "
                          "exceeds diverge x its minimum)")
    model = trainer.raw
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("lr range test: the model has no trainable parameters (all requires_grad=False)")
    weights = copy.deepcopy(model.state_dict())
    data_state = trainer.train_data.state_dict() if hasattr(trainer.train_data, "state_dict") else None
    run, trainer.run = trainer.run, None  # nothing of the test is written to the run directory
    rng = torch.get_rng_state()
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best, stopped = 0.0, math.inf, False
    try:
        trainer._setup()
        torch.manual_seed(trainer.cfg.seed)
        it = iter(trainer.train_data)
        ratio = end_lr / start_lr
        for i in range(steps):
            lr = start_lr * ratio ** (i / (steps - 1))
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            batches = [next(it) for _ in range(trainer.cfg.grad_accum_steps)]
            loss = float(trainer._train_step(batches))
            if not math.isfinite(loss):
                if not lrs:
                    raise TrainingError(f"lr range test: the loss is {loss} at the first step (lr {lr:.2e})")
                stopped = True
                break
            avg = beta * avg + (1 - beta) * loss
            s = avg / (1 - beta ** (i + 1))
            lrs.append(lr)
            losses.append(loss)
            smoothed.append(s)
            best = min(best, s)
            if i > steps // 10 and s > diverge * best:
                stopped = True
                break
    finally:
        model.load_state_dict(weights)
        model.zero_grad(set_to_none=True)
        if data_state is not None:
            trainer.train_data.load_state_dict(data_state)
        trainer.run = run
        torch.set_rng_state(rng)
    suggestion, at_min, notes = suggest(lrs, smoothed)
    return LRFindResult(lrs, losses, smoothed, suggestion, at_min, stopped, notes)
