"""What a model is trained to do: the `Objective` contract between a model and the one training loop.

The loop (zhixing.train.Trainer) knows no model family and no loss. For each optimizer step it asks
the objective, per micro-batch i and loss part p (e.g. MLM and NSP are two parts):

    n_{p,i} = objective.targets(batch)[p]          the target mass (e.g. labelled tokens), counted on
                                                   the CPU batch before the copy to the device
    S_{p,i} = objective.losses(model, batch)[p]    the summed loss over those targets

and trains on  L = Σ_p Σ_i S_{p,i} / N_p,  N_p = Σ_i n_{p,i} over all micro-batches and ranks: one mean
over all targets of the step, so an accumulated or data-parallel step equals the large-batch step (see
zhixing/train/loop.py). A part without targets in a micro-batch sums to a zero that is still part of
the graph (a sum over nothing), so data-parallel training sees every parameter used. The target mass
need not be a count: a class-weighted loss gives Σ_i w_{y_i}, so the step is the weighted mean.

Evaluation: the loop sums `eval_sums(model, batch)` (float64 sums, e.g. Σ loss·n and n) over its
validation batches and all ranks and hands the totals to `eval_metrics`. A task objective that scores
a whole dev set its own way (accuracy, entity F1, span F1 with n-best decoding) returns its metrics from
`evaluate(model)` instead. `metric` / `greater_is_better` name the metric that selects best/ and drives
early stopping.

The loop calls `losses` and `eval_sums` through one module that holds the model (and is what DDP,
FSDP and torch.compile wrap), so an objective may call any part of the model, not only `forward`.

An objective chooses its fast path itself (the fused output layer + cross-entropy, the MLM head on the
masked positions only) by calling the model's named parts (`model.hidden(...)`, `model.head`, ...);
a model's `forward` always returns the same thing for the same arguments.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zhixing.errors import TrainingError

Batch = dict[str, torch.Tensor]


class Objective:
    """Base class: one loss part named "loss", the mean loss as metric, evaluation by summed losses.

    Subclasses define `targets` and `losses`; those with their own metrics define `eval_sums` /
    `eval_metrics` (or `evaluate`). An objective may hold modules of its own that are not trained
    (a teacher for distillation): keep them out of `model`.
    """

    name = "objective"
    parts: tuple[str, ...] = ("loss",)
    metric = "val_loss"  # the evaluation metric that selects best/ and drives early stopping
    greater_is_better = False

    def check(self, model: nn.Module) -> None:
        """Raise ConfigError when the model cannot be trained with this objective (wrong head, ...)."""

    def setup(self, device: torch.device) -> list[nn.Parameter]:
        """Called by the loop once the model is on `device`: move the objective's own modules there (a
        teacher) and return the parameters it trains besides the model's (a distillation projection; they
        join the optimizer but not the saved model). Default: none."""
        return []

    def targets(self, batch: Batch) -> tuple[float, ...]:
        """Target mass per loss part in a batch (the count of labelled tokens, examples, ...): what the
        step's mean of each part is taken over. Called on the CPU batch, so it costs no device sync."""
        raise NotImplementedError

    def losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
        """Per loss part, the loss summed over this batch's targets of that part (0 when it has none)."""
        raise NotImplementedError

    # -- evaluation ----------------------------------------------------------------------------------

    def eval_sums(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """float64 sums over one validation batch (on the device); default [Σ loss, n] of the first part."""
        (n, *_) = self.targets(batch)
        (loss, *_) = self.losses(model, batch)
        return torch.stack([loss.detach().double(), torch.tensor(float(n), dtype=torch.float64,
                                                                 device=loss.device)])

    def eval_metrics(self, sums: list[float]) -> dict[str, float]:
        """Metrics from the `eval_sums` totals over all batches and ranks; default loss and perplexity."""
        if sums[1] == 0:
            raise TrainingError("the validation batches hold no targets; check data.val_fraction")
        loss = sums[0] / sums[1]
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}

    def evaluate(self, model: nn.Module) -> dict[str, float] | None:
        """A whole-dev-set evaluation of the objective's own (task objectives), or None: the loop then
        sums `eval_sums` over its validation data."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


__all__ = ["Objective", "Batch"]
