"""Callbacks: code of yours that the training loop calls at its events, and the experiment trackers built
on them (Weights & Biases, MLflow).

    class PrintLoss(Callback):
        def on_step(self, trainer, step, logs):
            if logs is not None:            # a logged step: the loss was read back from the device
                print(step, logs["loss"])

    Trainer(model, objective, cfg, loader, run=..., callbacks=[PrintLoss(), WandbLogger(mode="offline")])

or, from a recipe / the command line, `train.loggers=wandb,mlflow` (each used only when its package is
installed; asking for one that is not is an error that says what to install).

The loop calls them on the main process only (rank 0 under torchrun), in the order given:

    on_start(trainer)                  after setup (a resumed run: trainer.step is the resumed step)
    on_step(trainer, step, logs)       after every optimizer step; logs is the train record
                                       ({"loss", "lr", "tokens_per_s", ...}) on logged steps, else None
    on_eval(trainer, step, metrics)    after each evaluation
    on_checkpoint(trainer, step, path) after a checkpoint (checkpoints/step-N/) or best/ is written
    on_end(trainer, summary)           after the run ends (completed, early-stopped, interrupted, timed out)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zhixing.errors import ConfigError


class Callback:
    """Base class: override the events you need; the others do nothing."""

    def on_start(self, trainer: Any) -> None:
        pass

    def on_step(self, trainer: Any, step: int, logs: dict[str, Any] | None) -> None:
        pass

    def on_eval(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_checkpoint(self, trainer: Any, step: int, path: Path) -> None:
        pass

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        pass


def _numbers(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    return {prefix + k: float(v) for k, v in record.items()
            if k not in ("kind", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _params(trainer: Any) -> dict[str, Any]:
    """The run's settings, flat: train.* and model.* (what a tracker shows as the run's config)."""
    out = {f"train.{k}": v for k, v in trainer.cfg.to_dict().items()}
    out.update({f"model.{k}": v for k, v in trainer.raw.config.to_dict().items()})
    return out


def _require(package: str, logger: str) -> Any:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"{logger} needs the {package} package, which is not installed: "
                          f"pip install {package} (or pip install 'zhixing[{package}]')") from None


class WandbLogger(Callback):
    """Logs train records, evaluations and the summary to Weights & Biases.

    mode: "online", "offline" (written under `dir`, synced later with `wandb sync`) or "disabled";
    default: WANDB_MODE, else wandb's own default. project / name / dir / init: passed to `wandb.init`
    (name defaults to the run directory's name, dir to the run directory)."""

    def __init__(self, project: str = "zhixing", name: str | None = None, mode: str | None = None,
                 dir: str | os.PathLike | None = None, **init: Any):
        self.wandb = _require("wandb", "WandbLogger (train.loggers=wandb)")
        self.options = {"project": project, "name": name, "mode": mode, "dir": dir, **init}
        self.run = None

    def on_start(self, trainer: Any) -> None:
        opts = dict(self.options)
        if trainer.run is not None:
            opts["name"] = opts["name"] or trainer.run.name
            opts["dir"] = opts["dir"] or str(trainer.run.path)
        opts = {k: v for k, v in opts.items() if v is not None}
        self.run = self.wandb.init(config=_params(trainer), reinit="finish_previous", **opts)

    def on_step(self, trainer: Any, step: int, logs: dict[str, Any] | None) -> None:
        if logs is not None and self.run is not None:
            self.run.log(_numbers(logs, "train/"), step=step)

    def on_eval(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        if self.run is not None:
            self.run.log(_numbers(metrics, "eval/"), step=step)

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
            self.run.finish()
            self.run = None


class MLflowLogger(Callback):
    """Logs parameters, train records, evaluations and the summary to MLflow.

    tracking_uri: where (default: MLFLOW_TRACKING_URI, else a local `mlruns/`; "file:/path" works
    offline). experiment: the experiment's name; run_name defaults to the run directory's name."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "zhixing",
                 run_name: str | None = None):
        self.mlflow = _require("mlflow", "MLflowLogger (train.loggers=mlflow)")
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.active = False

    def on_start(self, trainer: Any) -> None:
        mlflow = self.mlflow
        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_experiment(self.experiment)
        name = self.run_name or (trainer.run.name if trainer.run is not None else None)
        mlflow.start_run(run_name=name)
        self.active = True
        mlflow.log_params({k: str(v)[:500] for k, v in _params(trainer).items()})

    def on_step(self, trainer: Any, step: int, logs: dict[str, Any] | None) -> None:
        if logs is not None and self.active:
            self.mlflow.log_metrics(_numbers(logs, "train_"), step=step)

    def on_eval(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        if self.active:
            self.mlflow.log_metrics(_numbers(metrics, "eval_"), step=step)

    def on_end(self, trainer: Any, summary: dict[str, Any]) -> None:
        if self.active:
            final = {k: float(v) for k, v in summary.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.mlflow.log_metrics({f"summary_{k}": v for k, v in final.items()}, step=trainer.step)
            self.mlflow.set_tag("status", summary.get("status", ""))
            self.mlflow.end_run()
            self.active = False


LOGGERS = {"wandb": WandbLogger, "mlflow": MLflowLogger}


def loggers_from_names(names: list[str]) -> list[Callback]:
    """train.loggers=wandb,mlflow -> the loggers, each with its defaults (environment variables such as
    WANDB_MODE=offline or MLFLOW_TRACKING_URI configure them)."""
    out = []
    for name in names:
        if name not in LOGGERS:
            from zhixing.config import nearest

            raise ConfigError(f"train.loggers: unknown logger {name!r}{nearest(name, LOGGERS)}; known: "
                              f"{', '.join(LOGGERS)}")
        out.append(LOGGERS[name]())
    return out


__all__ = ["Callback", "WandbLogger", "MLflowLogger", "LOGGERS", "loggers_from_names"]
