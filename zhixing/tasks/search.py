"""Hyperparameter search for fine-tuning with Optuna: each trial a fine-tuning run, bad trials pruned on
the dev metric, resumable.

    zhixing finetune --task classify --model M --train T --dev D --search --trials 20 \
        search.lr=1e-5:3e-4:log search.batch_size=16,32 search.epochs=2:5:int name=sst2

A search space maps a key to a spec: `lo:hi` (uniform), `lo:hi:log` (log-uniform), `lo:hi:int` (an
integer in [lo, hi]) or `a,b,c` (a choice). Keys: the loop's lr, batch_size, weight_decay, warmup_steps
and the task's epochs, warmup_ratio, layer_decay, dropout (SEARCHABLE). Trial k trains `<name>-trial<k>`;
after each evaluation the trial reports its dev metric, and Optuna's median pruner stops a trial whose
metric is below the median of earlier trials at the same step (the run ends cleanly, status "pruned").
The study lives in `<out_dir>/<name>-search/study.db` (SQLite): run the same command again and it
continues — finished trials are kept, the one that was running when the search was killed is run again.
`<name>-search/trials.json` holds the table; the best trial's `best/` is ready for `zhixing predict`.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhixing.errors import ConfigError
from zhixing.io import atomic_write_text
from zhixing.tasks import get_task
from zhixing.tasks.base import FinetuneConfig
from zhixing.train.callbacks import Callback

# key -> (where it goes: "train" = TrainConfig override, "task" = FinetuneConfig field, its type)
SEARCHABLE: dict[str, tuple[str, type]] = {
    "lr": ("train", float), "batch_size": ("train", int), "weight_decay": ("train", float),
    "warmup_steps": ("train", int), "epochs": ("task", float), "warmup_ratio": ("task", float),
    "layer_decay": ("task", float), "dropout": ("task", float),
}
# What a search explores when no space is given: the rate (log scale), the batch and the length of
# training — the three a fine-tuning result depends on most.
DEFAULT_SPACE = {"lr": "1e-5:3e-4:log", "batch_size": "16,32", "epochs": "2:5:int"}


@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str  # "float", "log", "int", "choice"
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()

    def sample(self, trial: Any) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log")


def parse_space(space: dict[str, str]) -> list[Dimension]:
    """{"lr": "1e-5:3e-4:log", ...} -> dimensions; unknown keys (with the nearest valid one), empty or
    reversed ranges and values of the wrong type are one-line errors naming the key."""
    from zhixing.config import nearest

    dims = []
    for key, spec in space.items():
        if key not in SEARCHABLE:
            raise ConfigError(f"search.{key}: not a searchable key{nearest(key, list(SEARCHABLE))}; "
                              f"searchable: {', '.join(SEARCHABLE)}")
        typ = SEARCHABLE[key][1]
        spec = str(spec).strip()
        try:
            if "," in spec:
                choices = tuple(typ(x.strip()) for x in spec.split(",") if x.strip())
                if len(choices) < 1:
                    raise ConfigError(f"search.{key}={spec!r}: no choices")
                dims.append(Dimension(key, "choice", choices=choices))
                continue
            parts = spec.split(":")
            if len(parts) not in (2, 3):
                raise ConfigError(f"search.{key}={spec!r}: expected lo:hi, lo:hi:log, lo:hi:int or a,b,c")
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise ConfigError(f"search.{key}={spec!r}: the values must be {typ.__name__}s") from None
        kind = parts[2] if len(parts) == 3 else ("int" if typ is int else "float")
        if kind not in ("log", "int", "float"):
            raise ConfigError(f"search.{key}={spec!r}: unknown scale {kind!r}; expected log or int")
        if not low < high:
            raise ConfigError(f"search.{key}={spec!r}: an empty range (need lo < hi)")
        if kind == "log" and low <= 0:
            raise ConfigError(f"search.{key}={spec!r}: a log scale needs lo > 0")
        if typ is int and kind != "int":
            kind = "int"
        dims.append(Dimension(key, kind, low, high))
    if not dims:
        raise ConfigError("the search space is empty: give search.KEY=SPEC items (or none for the default)")
    return dims


class _ReportToTrial(Callback):
    """A Trainer callback: after each evaluation report the dev metric to the Optuna trial and stop the
    run (cleanly) when the pruner says so."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric, self.pruned = trial, metric, False

    def on_eval(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            self.pruned = True
            trainer.request_stop("pruned")


def search(cfg: FinetuneConfig, *, space: dict[str, str] | None = None, trials: int = 20,
           name: str = "finetune", train_overrides: typing.Sequence[str] = (), seed: int = 0,
           **examples: Any) -> dict[str, Any]:
    """Run (or continue) an Optuna study of `trials` fine-tuning runs; return the table and the best trial.
    `examples`: train_examples / dev_examples / test_examples as for `finetune`."""
    try:
        import optuna
    except ImportError as e:  # a dependency of zhixing; only a broken install lacks it
        raise ConfigError("the hyperparameter search needs optuna: pip install optuna") from e
    from zhixing.tasks.finetune import finetune, loop_config

    if trials < 1:
        raise ConfigError(f"trials={trials}; expected at least 1")
    if cfg.seeds != 1:
        raise ConfigError("seeds=N and --search do not combine: search first, then run the best with seeds=N")
    dims = parse_space(space or DEFAULT_SPACE)
    task = get_task(cfg.task)
    metric = cfg.metric or task.metric
    base = [o for o in train_overrides if o.split("=", 1)[0].strip() not in {d.key for d in dims}]
    out_dir = Path(loop_config(base).out_dir)
    home = out_dir / f"{name}-search"
    home.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name, storage=f"sqlite:///{home / 'study.db'}", load_if_exists=True,
        direction="maximize" if task.greater_is_better(metric) else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    recorded = study.user_attrs.get("space")
    wanted = {d.key: [d.kind, d.low, d.high, list(d.choices)] for d in dims}
    if recorded is not None and recorded != wanted:
        raise ConfigError(f"{home}: this study searched another space ({recorded}); use another name=... "
                          "or delete the directory to start again")
    study.set_user_attr("space", wanted)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # killed mid-trial: mark it failed and run the same parameters again
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)

    def objective(trial: Any) -> float:
        params = {d.key: d.sample(trial) for d in dims}
        task_part = {k: v for k, v in params.items() if SEARCHABLE[k][0] == "task"}
        train_part = [f"{k}={v}" for k, v in params.items() if SEARCHABLE[k][0] == "train"]
        reporter = _ReportToTrial(trial, metric)
        run_name = f"{name}-trial{trial.number}"
        trial.set_user_attr("run_dir", str(out_dir / run_name))
        summary = finetune(cfg.replace(**task_part), name=run_name, callbacks=[reporter],
                           train_overrides=[*base, *train_part, "overwrite=true"], **examples)
        if summary.get("status") == "interrupted":  # Ctrl-C: end the study; a rerun runs this trial again
            raise KeyboardInterrupt
        value = summary["dev"].get(metric)
        if reporter.pruned:
            raise optuna.TrialPruned()
        if value is None:
            raise ConfigError(f"trial {trial.number}: the dev metric {metric!r} was not measured")
        return float(value)

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = trials - len(study.get_trials(deepcopy=False, states=done))
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=())
    return _report(study, home, metric)


def _report(study: Any, home: Path, metric: str) -> dict[str, Any]:
    import optuna

    rows = []
    for t in study.trials:
        if t.state == optuna.trial.TrialState.FAIL:
            continue
        last = max(t.intermediate_values) if t.intermediate_values else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), "params": t.params,
                     metric: t.value if t.value is not None else
                     (t.intermediate_values[last] if last is not None else None),
                     "run_dir": t.user_attrs.get("run_dir")})
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    report: dict[str, Any] = {"metric": metric, "direction": study.direction.name.lower(), "trials": rows}
    if complete:
        best = study.best_trial
        report.update(best_trial=best.number, best_value=best.value, best_params=best.params,
                      best_run=best.user_attrs.get("run_dir"))
    atomic_write_text(home / "trials.json", json.dumps(report, indent=1) + "\n")
    return report
