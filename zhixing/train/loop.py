"""The one training loop: every run (GPT or BERT pretraining, fine-tuning, one CPU or N GPUs) goes through
`Trainer.fit`. It knows no model family and no loss: the `Objective` (zhixing.objectives) says what a
batch's targets are, computes their summed losses and scores an evaluation.

One optimizer step, with A micro-batches per step on each of W ranks, for each loss part p:

    L = Σ_p Σ_r Σ_i S_{p,r,i} / N_p,      N_p = Σ_r Σ_i n_{p,r,i}          (one mean over all targets)

S_{p,r,i} is the loss of part p summed over micro-batch i's n_{p,r,i} targets on rank r. Weighting every
micro-batch equally (the usual `loss / accum_steps`) would give targets in short or sparsely-masked
micro-batches more weight than the same targets in one large batch; with this weighting an accumulated
or data-parallel step is the large-batch step. DDP and FSDP average gradients over ranks, so each
rank's loss is multiplied by W to cancel that.

The host never waits for the device except every `log_interval` steps (loss read-back), at evaluation
and at checkpoints: target counts are taken on the CPU batch before it is copied over.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from zhixing.device import cpu_computes_bf16
from zhixing.errors import CheckpointError, ConfigError, TrainingError
from zhixing.io import RunDir, atomic_write_json, atomic_write_text
from zhixing.models.base import Model
from zhixing.objectives.base import Batch, Objective
from zhixing.train import checkpoint as ckpt
from zhixing.train import distributed as D
from zhixing.train.callbacks import Callback, loggers_from_names
from zhixing.train.config import TrainConfig
from zhixing.train.logging import (
    RunLogger,
    Throughput,
    flops_per_token,
    peak_flops,
    plot_curves,
    progress_bar,
)
from zhixing.train.schedule import lr_at, undecayed_note

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto": bf16 on a CUDA device that supports it, fp16 on an older one; bf16 on a CPU that computes
    it natively (AVX512-BF16 / AMX: zhixing.device.cpu_computes_bf16); fp32 elsewhere. Autocast keeps the
    weights, the optimizer and the reductions (softmax, norms, losses) in fp32 either way."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_computes_bf16():
        return torch.bfloat16
    return torch.float32


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device,
                    lr_scale: Callable[[str], float] | None = None,
                    extra: list[nn.Parameter] | tuple = ()) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only (linear weights, embeddings); norms' gains and
    biases are not decayed — shrinking them toward 0 only fights the normalisation (as nanoGPT / GPT-3).

    lr_scale(parameter name) -> factor gives parameters their own share of the scheduled rate (each group
    keeps it as "lr_scale"; the loop sets lr = schedule × lr_scale), e.g. layer-wise LR decay for
    fine-tuning (zhixing.tasks). `extra`: parameters trained besides the model's (an objective's own),
    at the full rate."""
    groups_by_key: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():  # tied parameters are yielded once
        if p.requires_grad:
            key = (p.dim() >= 2, float(lr_scale(name)) if lr_scale is not None else 1.0)
            groups_by_key.setdefault(key, []).append(p)
    for p in extra:
        groups_by_key.setdefault((p.dim() >= 2, 1.0), []).append(p)
    order = sorted(groups_by_key, key=lambda k: (not k[0], -k[1]))  # decayed first, as before
    groups = [{"params": groups_by_key[k], "weight_decay": cfg.weight_decay if k[0] else 0.0,
               "lr_scale": k[1]} for k in order]
    # PyTorch's fused kernel exists for CUDA and CPU; on CPU it took a 0.8M-parameter model's optimizer
    # step from 6 ms (the default per-tensor loop) to 1.5 ms, ~9% of its whole training step.
    fused = cfg.fused if cfg.fused is not None else device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused)


class ObjectiveModule(nn.Module):
    """The model and its objective as one module: what DDP, FSDP and torch.compile wrap. Every forward
    of a training or evaluation step runs through it, so the objective may call any part of the model
    (not only `forward`) and the wrappers still see (and synchronise) all of it."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: Batch, evaluate: bool = False):
        if evaluate:
            return self.objective.eval_sums(self.model, batch)
        return self.objective.losses(self.model, batch)


class Trainer:
    """Train `model` with `objective` on `train_data`, evaluating on `val_data`, writing the run to `run`.

    train_data: an infinite iterable of dict batches with `state_dict()` / `load_state_dict()` (exact
    resume; zhixing.data's loaders, zhixing.tasks' TaskLoader); val_data: anything with
    `eval_batches(n)`, or None (the objective may evaluate a dev set of its own: `objective.evaluate`).
    run: a RunDir (or a path) that receives config.yaml, metrics, checkpoints, best/ and summary.json
    (its `tokenizer` is saved with every model, its `config` and `records` when the run starts), or None
    to write nothing. lr_scale(name): a parameter's share of the learning rate (layer-wise decay).
    callbacks: zhixing.train.callbacks.Callback objects called at the loop's events (on rank 0); the
    loggers named in `config.loggers` (wandb, mlflow) are added after them.
    After `fit()`, `history` holds every logged record (train and eval) of this process.
    """

    def __init__(self, model: Model, objective: Objective, config: TrainConfig, train_data: Any,
                 val_data: Any = None, run: RunDir | str | Path | None = None, *,
                 dist: D.DistInfo | None = None, lr_scale: Callable[[str], float] | None = None,
                 callbacks: Sequence[Callback] = ()):
        objective.check(model)
        self.raw, self.objective, self.cfg = model, objective, config
        self.train_data, self.val_data = train_data, val_data
        self.run = run if isinstance(run, RunDir) or run is None else RunDir(run)
        self.lr_scale = lr_scale
        self.dist = dist or D.setup(config.device)
        self.device = self.dist.device
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.tokens = 0
        self.best_value: float | None = None  # the best value of objective.metric so far
        self.best_step = -1
        self.bad_evals = 0
        self.train_time = 0.0  # seconds of training over all sessions of this run
        self.status = "running"
        self._stop_signal: int | None = None
        self._stop_request: str | None = None  # request_stop(reason)
        self._in_eval = False  # a signal during an evaluation abandons it (EvalInterrupted)
        self._fresh = True
        self.run_id: str | None = None  # the run's id (run.json); repeated in checkpoints and the summary
        self._last_eval: dict[str, Any] = {}
        self._last_saved = -1
        self.callbacks = list(callbacks)
        if config.loggers and self.dist.is_main:
            self.callbacks += loggers_from_names(config.loggers)

    def _emit(self, event: str, *args: Any) -> None:
        if self.dist.is_main:
            for cb in self.callbacks:
                getattr(cb, event)(self, *args)

    @property
    def run_dir(self) -> Path | None:
        return self.run.path if self.run is not None else None

    # -- setup -------------------------------------------------------------------------------------------

    def _prepare_run_dir(self) -> tuple[dict, dict, dict] | None:
        """Check the run directory against resume/overwrite; load the checkpoint to resume from, if any.
        Writes nothing: what the run directory needs is decided here (self._fresh: start a new run, moving
        an earlier one aside) and done by `_write_records` once every check has passed."""
        cfg, run = self.cfg, self.run
        self._fresh = True
        if run is None:
            if cfg.resume is True:
                raise ConfigError("train.resume=true needs a run directory to resume from")
            return None
        existing = run.latest_checkpoint()
        if cfg.resume == "auto":
            if existing is None:
                return None
            other = self._other_run(existing)
            if other is None:
                return self._resume_from(existing)
            if not cfg.overwrite:
                raise TrainingError(
                    f"train.resume=auto: {run.path} holds {existing.relative_to(run.path)} of another run "
                    f"({other}); start this one under another name=..., or pass train.overwrite=true to "
                    "start it afresh there")
            return None
        if cfg.resume:
            if existing is None:  # (a run killed before its first checkpoint starts again from 0)
                if self.dist.is_main:
                    print(f"train.resume=true but {run.checkpoints_dir} holds none; starting from step 0",
                          flush=True)
                return None
            return self._resume_from(existing)
        if run.holds_run() and not cfg.overwrite:
            what = existing.relative_to(run.path) if existing is not None else "best/"
            raise TrainingError(
                f"{run.path} already holds {what}; to continue it pass "
                "train.resume=true, to start it again pass train.overwrite=true, or choose another name=..."
            )
        return None

    def _resume_from(self, existing: Path) -> tuple[dict, dict, dict]:
        """Load checkpoint `existing` (every file checked) to continue this run from it."""
        loaded = ckpt.load_checkpoint(existing, self.raw.config)
        self._check_same_run(existing, loaded[2])
        self._fresh = False
        return loaded

    def _check_same_run(self, path: Path, state: dict[str, Any]) -> None:
        """A checkpoint resumes only the run that wrote it (run.json's id; older checkpoints have none)."""
        own, theirs = self.run.run_id(), state.get("run_id")
        if own is not None and theirs is not None and own != theirs:
            raise CheckpointError(
                f"{path} belongs to run {theirs}, but {self.run.run_file} says this directory holds run "
                f"{own}; "
                "the checkpoint was copied in from another run: move it out, or start afresh with "
                "train.overwrite=true"
            )
        self.run_id = own or theirs or RunDir.new_run_id()

    def _config_doc(self) -> dict[str, Any]:
        """What config.yaml holds for this run: the recipe, or the model and loop settings."""
        run = self.run
        return run.config if run.config is not None else {"model": self.raw.config.to_dict(),
                                                          "train": self.cfg.to_dict()}

    def _other_run(self, existing: Path) -> str | None:
        """None when checkpoint `existing` belongs to this run (resume=auto may continue it), else why not:
        a run id that differs (when the run directory and the checkpoint both carry one), or a config.yaml
        that differs from this run's in anything but how to resume and how to show progress."""
        theirs = json.loads((existing / "trainer_state.json").read_text(encoding="utf-8")).get("run_id") \
            if (existing / "trainer_state.json").is_file() else None
        mine = self.run.run_id()
        if mine is not None and theirs is not None and mine != theirs:
            return f"run id {theirs}, this is {mine}"
        if not self.run.config_file.is_file():
            return f"no {RunDir.CONFIG} next to it"
        recorded = yaml.safe_load(self.run.config_file.read_text(encoding="utf-8"))
        new = yaml.safe_load(yaml.safe_dump(self._config_doc(), sort_keys=False, allow_unicode=True))
        for doc in (recorded, new):
            train = doc.get("train") if isinstance(doc, dict) else None
            for key in RESUME_NEUTRAL if isinstance(train, dict) else ():
                train.pop(key, None)
        if recorded != new:
            diff = _first_difference(recorded, new)
            return f"its {RunDir.CONFIG} differs: {diff}"
        return None

    def _write_records(self) -> None:
        """Start afresh (an earlier run moved aside) or continue, then write run.json, config.yaml (the
        run's configuration: the recipe, or the model and loop settings) and the run's other records
        (task.json) -- only now, once every check has passed."""
        run = self.run
        if self._fresh:
            aside = run.start_fresh()
            if aside is not None and self.cfg.overwrite:
                print(f"train.overwrite=true: removed the earlier run in {run.path}", flush=True)
            self.run_id = RunDir.new_run_id()
        run.write_run_id(self.run_id)
        doc = self._config_doc()
        atomic_write_text(run.config_file, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        for name, record in run.records.items():
            atomic_write_json(run.path / name, record)

    def _setup(self) -> dict | None:
        cfg, info = self.cfg, self.dist
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        elif self.device.type == "cpu" and info.local_world_size > 1:
            # N processes on one CPU would each start torch's default (all cores) threads and thrash.
            torch.set_num_threads(max(1, (torch.get_num_threads() or 1) // info.local_world_size))
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls on tensor cores (as nanoGPT)
            torch.backends.cudnn.allow_tf32 = True
        loaded = self._prepare_run_dir()  # raises before anything is written if the checkpoint is bad
        state = None
        if loaded is not None:
            model_state, optim_state, state = loaded
            if state.get("world_size", 1) != info.world_size:
                raise CheckpointError(
                    f"the checkpoint was written by {state.get('world_size', 1)} process(es) and this run "
                    f"has {info.world_size}; the per-rank data order would change, the resume would not be "
                    f"exact. Resume with --nproc_per_node={state.get('world_size', 1)}"
                )
            if getattr(self.raw, "saved_keys", None):  # an adapter run's checkpoint: the trained tensors
                from zhixing.peft.lora import load_adapter_state
                load_adapter_state(self.raw, model_state, "checkpoint")
            else:
                self.raw.load_weights(model_state, source="checkpoint")
        self.raw.to(self.device)
        self.raw.train()
        # Names saved to safetensors: tied tensors once (taken before wrapping changes the modules).
        # A model wrapped by a parameter-efficient method (zhixing.peft) names the tensors it trains:
        # its runs save those (adapters + head), not a copy of the frozen base model.
        self.save_keys = list(getattr(self.raw, "saved_keys", None) or self.raw.unique_state_dict())
        module: nn.Module = ObjectiveModule(self.raw, self.objective)
        strategy = "fsdp" if cfg.distributed == "fsdp" else "ddp"
        # Under FSDP the wrapper is the root that owns the sharded state (names "model.*"); else the model.
        self._state_owner = module if strategy == "fsdp" and info.enabled else self.raw
        if cfg.compile and strategy == "ddp":
            module = torch.compile(module)
        module = D.wrap(module, strategy, info, blocks=getattr(self.raw, "layers", []))
        if cfg.compile and strategy == "fsdp" and info.enabled:
            module = torch.compile(module)
        self.model = module
        self.optimizer = build_optimizer(self.raw, cfg, self.device, self.lr_scale,
                                         extra=self.objective.setup(self.device))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        if loaded is not None:
            D.load_optimizer_state(self._state_owner, self.optimizer, optim_state["optimizer"])
            if optim_state.get("scaler"):
                self.scaler.load_state_dict(optim_state["scaler"])
            self.step, self.tokens = state["step"], state["tokens"]
            self.best_value, self.best_step = _best_of(state, self.objective)
            self.bad_evals, self.train_time = state["bad_evals"], state["train_time_s"]
            self._last_saved = self.step
        return state

    # -- one step ----------------------------------------------------------------------------------------

    def _to_device(self, batch: Batch) -> Batch:
        if self.device.type == "cuda":  # pinned host memory lets the copy overlap with compute
            return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}
        return {k: v.to(self.device) for k, v in batch.items()}

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _totals(self, counts: list[tuple[float, ...]]) -> list[Any]:
        """N_p: each loss part's targets over the whole step (all micro-batches on all ranks), at least 1
        (a part with no target sums to 0, and 0 / 1 keeps it 0)."""
        totals = [sum(c[p] for c in counts) for p in range(len(counts[0]))]
        if not self.dist.enabled:
            return [max(n, 1) for n in totals]
        t = D.all_reduce_sum(torch.tensor(totals, dtype=torch.float32, device=self.device), self.dist)
        return list(t.clamp(min=1).unbind())  # device tensors: dividing by them needs no host sync

    def _train_step(self, batches: list[Batch]) -> torch.Tensor:
        counts = [tuple(self.objective.targets(b)) for b in batches]
        totals = self._totals(counts)
        world = self.dist.world_size
        step_loss = torch.zeros((), device=self.device)
        last = len(batches) - 1
        for i, batch in enumerate(batches):
            batch = self._to_device(batch)
            # Gradients are all-reduced once per step, on the last micro-batch.
            defer = self.dist.enabled and i < last and hasattr(self.model, "no_sync")
            sync = self.model.no_sync() if defer else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    sums = self.model(batch)
                loss = sum(s / n for s, n in zip(sums, totals))
                self.scaler.scale(loss * world).backward()
            step_loss += loss.detach()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            self._grad_norm = nn.utils.clip_grad_norm_(self.raw.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return step_loss

    # -- evaluation --------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """The objective's metrics: its own whole-dev-set evaluation, or its `eval_metrics` of the
        `eval_sums` summed over `eval_batches` validation batches on every rank (None without either)."""
        self.model.eval()
        self._in_eval = True
        try:
            own = self.objective.evaluate(self.raw)
            if own is not None:
                return {k: v for k, v in own.items() if v is not None}
            if self.val_data is None:
                return None
            total = None
            n = self._eval_batches()
            with progress_bar("evaluating", n, enabled=None if self.dist.is_main else False) as advance:
                for batch in self.val_data.eval_batches(n):
                    with self._autocast():
                        sums = self.model(self._to_device(batch), evaluate=True)
                    total = sums if total is None else total + sums
                    advance(1)
            if total is None:
                raise TrainingError("the validation data yielded no batches; check data.val_fraction")
            return self.objective.eval_metrics(D.all_reduce_sum(total, self.dist).tolist())
        finally:
            self._in_eval = False
            self.model.train()

    def _eval_batches(self) -> int:
        """train.eval_batches, capped (with a note, once) at the batches the validation set holds."""
        n = self.cfg.eval_batches
        available = _count_eval_batches(self.val_data)
        if available is not None and 0 < available < n:
            if not getattr(self, "_capped_note", False) and self.dist.is_main:
                print(f"note: train.eval_batches={n} is more than the {available} batches the validation "
                      f"set holds; evaluating on all {available}", flush=True)
            self._capped_note = True
            return available
        return n

    # -- checkpoints -------------------------------------------------------------------------------------

    def _model_state(self, with_optimizer: bool) -> tuple[dict, dict | None]:
        msd, osd = D.full_state_dicts(self._state_owner, self.optimizer if with_optimizer else None)
        # Under FSDP only rank 0 receives the gathered tensors; the others get an empty dict. The
        # wrapper (ObjectiveModule) names the model's tensors "model.*".
        if self._state_owner is not self.raw:
            msd = {k.removeprefix("model."): v for k, v in msd.items()}
        return {k: msd[k] for k in self.save_keys if k in msd}, osd

    def save(self) -> Path | None:
        """Checkpoint the current step (every rank must call it; rank 0 writes)."""
        ranks = D.gather_objects({"rng": ckpt.capture_rng(), "data": self.train_data.state_dict()}, self.dist)
        model_state, optim_state = self._model_state(with_optimizer=True)
        path = None
        if self.dist.is_main and self.run is not None:
            state = {"run_id": self.run_id, "step": self.step, "tokens": self.tokens,
                     "best_metric": self.objective.metric,
                     "best_value": self.best_value, "best_step": self.best_step, "bad_evals": self.bad_evals,
                     "train_time_s": self.train_time + (time.perf_counter() - self._t0),
                     "world_size": self.dist.world_size, "ranks": ranks}
            optim = {"optimizer": optim_state, "scaler": self.scaler.state_dict() if self.scaler.is_enabled()
                     else None}
            path = ckpt.save_checkpoint(self.run, self.step, model_state, self.raw.config, optim, state,
                                        self.run.tokenizer, self.cfg.keep_last)
            self._emit("on_checkpoint", self.step, path)
        D.barrier(self.dist)
        self._last_saved = self.step
        return path

    def _save_best(self, metrics: dict[str, float]) -> None:
        model_state, _ = self._model_state(with_optimizer=False)
        if self.dist.is_main and self.run is not None:
            ckpt.save_best(self.run, model_state, self.raw.config, self.run.tokenizer,
                           {"step": self.step, "run_id": self.run_id, **metrics})
            self._emit("on_checkpoint", self.step, self.run.best)
        D.barrier(self.dist)

    # -- signals -----------------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:  # a second Ctrl-C: stop now, without saving
            raise KeyboardInterrupt
        self._stop_signal = signum
        # An evaluation can take minutes: abandon it, the loop then saves the step (under torchrun the
        # ranks must agree, so there the evaluation ends first).
        if self._in_eval and not self.dist.enabled:
            raise EvalInterrupted

    @contextlib.contextmanager
    def _signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def request_stop(self, reason: str = "stopped") -> None:
        """Ask the loop to end the run cleanly at the next stop check (a checkpoint, the summary with
        status `reason`): for callbacks, e.g. a hyperparameter search pruning a bad trial."""
        self._stop_request = reason

    def _should_stop(self, deadline: float | None) -> str | None:
        """"interrupted" / a requested stop / "time_limit" / None, agreed by all ranks (their max)."""
        code = 0
        if self._stop_signal is not None:
            code = 3
        elif self._stop_request is not None:
            code = 2
        elif deadline is not None and time.perf_counter() >= deadline:
            code = 1
        if self.dist.enabled:
            code = int(D.all_reduce_max(torch.tensor([code], device=self.device), self.dist).item())
        return {0: None, 1: "time_limit", 2: self._stop_request or "stopped", 3: "interrupted"}[code]

    # -- the loop ----------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train to `max_steps` (or a stop: signal, time limit, early stopping); return the summary.
        The run directory is locked (runs/.<name>.lock) for the whole call, checks included."""
        lock = self.run.lock() if self.run is not None and self.dist.is_main else contextlib.nullcontext()
        with lock:
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        cfg, info = self.cfg, self.dist
        state = self._setup()
        main = info.is_main and self.run is not None
        if main:
            self.run.path.mkdir(parents=True, exist_ok=True)
            self.run.clean_partial()
            self._write_records()
        log = RunLogger(self.run_dir, enabled=main, progress=cfg.progress, tensorboard=cfg.tensorboard,
                        total_steps=cfg.max_steps, start_step=self.step)
        if state is not None:
            self.train_data.load_state_dict(state["ranks"][info.rank]["data"])
            ckpt.restore_rng(state["ranks"][info.rank]["rng"])
            log.message(f"resumed {self.run_dir} at step {self.step}")
        else:
            torch.manual_seed(cfg.seed + info.rank)  # dropout differs per rank; data order is the loader's
        self.history = list(log.records)
        self._t0 = time.perf_counter()
        self._emit("on_start")
        deadline = self._t0 + cfg.max_time if cfg.max_time else None
        check_every = cfg.log_interval if info.enabled else 1  # stop checks are collective under torchrun
        it = iter(self.train_data)
        meter = Throughput()
        loss_sum = torch.zeros((), device=self.device)
        loss_steps = 0
        self._grad_norm = None
        self._seq_len = 0
        try:
            with self._signals():
                while self.step < cfg.max_steps:
                    lr = lr_at(self.step, cfg)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr * group.get("lr_scale", 1.0)
                    batches = [next(it) for _ in range(cfg.grad_accum_steps)]
                    step_tokens = sum(b["input_ids"].numel() for b in batches) * info.world_size
                    self._seq_len = batches[0]["input_ids"].shape[1]
                    loss_sum += self._train_step(batches)
                    loss_steps += 1
                    self.step += 1
                    self.tokens += step_tokens
                    meter.add(step_tokens)
                    logs = None
                    if self.step % cfg.log_interval == 0 or self.step == cfg.max_steps:
                        logs = self._log_train(log, loss_sum, loss_steps, lr, meter.rate())
                        loss_sum.zero_()
                        loss_steps = 0
                    self._emit("on_step", self.step, logs)
                    if cfg.eval_interval and self.step % cfg.eval_interval == 0 and self.step < cfg.max_steps:
                        if self._run_eval(log):
                            self.status = "early_stopped"
                    ckpt_every = cfg.checkpoint_interval
                    if ckpt_every and self.step % ckpt_every == 0 and self.step < cfg.max_steps:
                        self.save()
                    if self.status == "early_stopped":
                        break
                    if self.step % check_every == 0:
                        reason = self._should_stop(deadline)
                        if reason is not None:
                            self.status = reason
                            log.message(f"{reason.replace('_', ' ')} at step {self.step}; saving")
                            note = undecayed_note(self.step, cfg) if reason == "time_limit" else None
                            if note:
                                log.message(note)
                            break
                if self.status == "running":
                    self.status = "completed"
                if loss_steps:
                    self._log_train(log, loss_sum, loss_steps, lr_at(self.step - 1, cfg), meter.rate())
                final_eval = self._last_eval.get("step") != self.step and self.status != "interrupted"
                if final_eval:  # a signal saves at once: no evaluation first
                    self._run_eval(log)
                if self._last_saved != self.step:
                    self.save()
        finally:
            log.close()
        summary = self._summary()
        if main:
            if cfg.plots:
                plot_curves(self.run_dir, self.history)
            self.run.write_summary(summary)
        self._emit("on_end", summary)
        return summary

    def _log_train(self, log: RunLogger, loss_sum: torch.Tensor, steps: int, lr: float, tok_s: float
                   ) -> dict[str, Any]:
        loss_t = D.all_reduce_sum(loss_sum.clone(), self.dist)  # ranks hold parts of one mean; sum them
        loss = loss_t.item() / steps  # the one host sync of a log interval
        if not math.isfinite(loss):
            raise TrainingError(
                f"the training loss is {loss} at step {self.step}; lower train.lr (now {self.cfg.lr}), raise "
                "train.warmup_steps, or use train.dtype=bfloat16 instead of float16"
            )
        record = {"kind": "train", "step": self.step, "loss": loss, "lr": lr, "tokens": self.tokens,
                  "tokens_per_s": tok_s, "elapsed_s": time.perf_counter() - self._t0}
        peak = peak_flops(self.device)
        if peak and self._seq_len:
            per_gpu = tok_s / self.dist.world_size
            record["mfu"] = per_gpu * flops_per_token(self.raw, self._seq_len) / peak
        if self._grad_norm is not None:
            gn = self._grad_norm.full_tensor() if hasattr(self._grad_norm, "full_tensor") else self._grad_norm
            record["grad_norm"] = float(gn)
        self.history.append(record)
        log.log(record)
        notes = [f"MFU {record['mfu']:.0%}"] if "mfu" in record else []
        log.progress(self.step, loss, lr, tok_s, note=" · ".join(notes + self._dev_note()))
        return record

    def _dev_note(self) -> list[str]:
        """The progress bar's view of the last evaluation: the selecting metric, and the best so far."""
        name = self.objective.metric
        value = self._last_eval.get(name)
        if not isinstance(value, (int, float)):
            return []
        shown = self.best_value is not None and self.best_value != value
        best = f" (best {self.best_value:.4f})" if shown else ""
        return [f"dev {name} {value:.4f}{best}"]

    def _improves(self, value: float) -> bool:
        """Whether `value` of the objective's metric beats the best so far by early_stopping_min_delta."""
        if self.best_value is None:
            return True
        delta = self.cfg.early_stopping_min_delta
        if self.objective.greater_is_better:
            return value > self.best_value + delta
        return value < self.best_value - delta

    def _run_eval(self, log: RunLogger) -> bool:
        """Evaluate, keep best/, and say whether early stopping has run out of patience. A signal during
        the evaluation abandons it (nothing is recorded) so the step can be saved at once."""
        if self._stop_signal is not None:
            return False
        try:
            metrics = self.evaluate()
        except EvalInterrupted:
            self.model.train()
            log.message(f"signal during the evaluation at step {self.step}: evaluation abandoned")
            return False
        if metrics is None:  # neither validation batches nor an evaluation of the objective's own
            return False
        record = {"kind": "eval", "step": self.step, **metrics}
        self._last_eval = record
        self.history.append(record)
        log.log(record)
        self._emit("on_eval", self.step, metrics)
        text = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        log.message(f"step {self.step}: {text}")
        name = self.objective.metric
        if name not in metrics:
            raise TrainingError(f"the metric {name!r} that selects the best model is not among the "
                                f"evaluation's metrics ({', '.join(metrics)})")
        if self._improves(metrics[name]):
            self.best_value, self.best_step, self.bad_evals = metrics[name], self.step, 0
            if self.cfg.save_best:
                self._save_best(metrics)
        else:
            self.bad_evals += 1
        log.progress(self.step, note=" · ".join(self._dev_note()))
        patience = self.cfg.early_stopping_patience
        return bool(patience and self.bad_evals >= patience)

    def _summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._t0
        train = [r for r in self.history if r["kind"] == "train"]
        summary: dict[str, Any] = {
            "name": self.run.name if self.run is not None else None, "run_id": self.run_id,
            "status": self.status, "step": self.step,
            "max_steps": self.cfg.max_steps, "tokens": self.tokens, "wall_time_s": round(wall, 3),
            "train_time_s": round(self.train_time + wall, 3),
            "tokens_per_s": round(self.tokens / max(self.train_time + wall, 1e-9), 1),
            "final_train_loss": train[-1]["loss"] if train else None,
            "parameters": self.raw.num_parameters(), "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""), "world_size": self.dist.world_size,
            "objective": self.objective.name,
        }
        if self.device.type == "cpu":  # what the step time depends on (docs/training.md, CPU threads)
            summary["threads"] = torch.get_num_threads()
            summary["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "default")
        if self._last_eval:
            summary.update({f"final_{k}": v for k, v in self._last_eval.items() if k not in ("kind", "step")})
            name = self.objective.metric
            # The best model's metric under its own name and sign: best_val_loss, best_accuracy, ...
            summary.update({"best_metric": name, f"best_{name}": self.best_value, "best_step": self.best_step,
                            "greater_is_better": self.objective.greater_is_better})
        if self.run is not None and self.dist.is_main:
            try:
                summary["model_dir"] = str(self.run.model_dir())
            except FileNotFoundError:
                pass
        return summary


class EvalInterrupted(BaseException):
    """Raised (from the signal handler) inside an evaluation that a SIGINT / SIGTERM abandons."""


def _count_eval_batches(val_data: Any) -> int | None:
    """How many batches a full pass over the validation data holds, when the loader can say."""
    count = getattr(val_data, "num_eval_batches", None)
    if callable(count):
        try:
            return int(count())
        except Exception:  # a loader that cannot count: no cap
            return None
    return None


# TrainConfig fields that may change between a run and its resumption (resume=auto still resumes)
RESUME_NEUTRAL = ("resume", "overwrite", "max_time", "progress", "num_threads", "device", "loggers")


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    """The first key path at which two config documents differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
    return f"{where or 'config'}: {a!r} there, {b!r} now"


def _best_of(state: dict[str, Any], objective: Objective) -> tuple[float | None, int]:
    """(best value, best step) from a trainer state; states written before the metric was named kept a
    loss-like `best_val_loss` (a metric to maximise stored negated)."""
    if "best_value" in state:
        return state["best_value"], state["best_step"]
    old = state.get("best_val_loss")
    if old is None or not math.isfinite(old):
        return None, state.get("best_step", -1)
    return (-old if objective.greater_is_better else old), state.get("best_step", -1)


__all__ = ["Trainer", "ObjectiveModule", "build_optimizer", "resolve_dtype"]
