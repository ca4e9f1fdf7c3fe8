"""The one training loop: every recipe (GPT, BERT MLM/NSP, one CPU or N GPUs) runs through `Trainer.fit`.

One optimizer step, with A micro-batches per step on each of W ranks:

    L = Σ_r Σ_i Σ_{t ∈ targets(r,i)} ℓ_t / N,      N = Σ_r Σ_i |targets(r,i)|       (one mean over tokens)

The model returns the mean loss over its micro-batch's n_i labelled tokens, so micro-batch i is weighted
by n_i / N. Weighting every micro-batch equally (the usual `loss / accum_steps`) would give tokens in
short or sparsely-masked micro-batches more weight than the same tokens in one large batch; with this
weighting an accumulated or data-parallel step is the large-batch step. DDP and FSDP average gradients
over ranks, so each rank's loss is multiplied by W to cancel that.

The host never waits for the device except every `log_interval` steps (loss read-back), at evaluation
and at checkpoints: target counts are taken on the CPU batch before it is copied over.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from zhixing.config import ConfigError, atomic_write_text
from zhixing.errors import CheckpointError, TrainingError
from zhixing.io import RunDir
from zhixing.models.base import Model
from zhixing.models.heads import IGNORE, classification_loss
from zhixing.train import checkpoint as ckpt
from zhixing.train import distributed as D
from zhixing.train.config import Recipe, TrainConfig
from zhixing.train.logging import (
    RunLogger,
    Throughput,
    flops_per_token,
    peak_flops,
    plot_curves,
)
from zhixing.train.schedule import lr_at

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto": bf16 on a CUDA device that supports it, fp16 on an older one, fp32 elsewhere."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device,
                    lr_scale: Callable[[str], float] | None = None) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only (linear weights, embeddings); norms' gains and
    biases are not decayed — shrinking them toward 0 only fights the normalisation (as nanoGPT / GPT-3).

    lr_scale(parameter name) -> factor gives parameters their own share of the scheduled rate (each group
    keeps it as "lr_scale"; the loop sets lr = schedule × lr_scale), e.g. layer-wise LR decay for
    fine-tuning (zhixing.tasks)."""
    groups_by_key: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():  # tied parameters are yielded once
        if p.requires_grad:
            key = (p.dim() >= 2, float(lr_scale(name)) if lr_scale is not None else 1.0)
            groups_by_key.setdefault(key, []).append(p)
    order = sorted(groups_by_key, key=lambda k: (not k[0], -k[1]))  # decayed first, as before
    groups = [{"params": groups_by_key[k], "weight_decay": cfg.weight_decay if k[0] else 0.0,
               "lr_scale": k[1]} for k in order]
    # PyTorch's fused kernel exists for CUDA and CPU; on CPU it took a 0.8M-parameter model's optimizer
    # step from 6 ms (the default per-tensor loop) to 1.5 ms, ~9% of its whole training step.
    fused = cfg.fused if cfg.fused is not None else device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused)


def count_targets(batch: dict[str, torch.Tensor], causal: bool) -> int:
    """Labelled tokens in a (CPU) batch; causal models predict labels[:, 1:] (the shift is inside GPT)."""
    labels = batch.get("labels")
    if labels is None:
        return 0
    if causal:
        labels = labels[:, 1:]
    return int((labels != IGNORE).sum())


class Trainer:
    """Train `model` on `train_data`, evaluating on `val_data`, writing the run to `run_dir` (or nowhere).

    train_data: an infinite iterable of dict batches with `state_dict()` / `load_state_dict()`
    (zhixing.data's CLMLoader / MLMLoader); val_data: anything with `eval_batches(n)`.
    After `fit()`, `history` holds every logged record (train and eval) of this process.

    Hooks for fine-tuning (zhixing.tasks), all optional: `evaluator(model) -> metrics` replaces the
    loss-based evaluation (task metrics such as accuracy or F1 on the whole dev set); `best_metric` /
    `greater_is_better` name the metric that selects best/ and drives early stopping; `loss_fn(output,
    batch) -> loss` replaces the model's own loss (e.g. class-weighted cross-entropy); `lr_scale(name)`
    scales a parameter's learning rate (layer-wise decay), see `build_optimizer`.
    """

    def __init__(self, model: Model, config: TrainConfig, train_data: Any, val_data: Any = None, *,
                 run_dir: str | Path | None = None, tokenizer: Any = None, recipe: Recipe | None = None,
                 dist: D.DistInfo | None = None,
                 evaluator: Callable[[nn.Module], dict[str, float]] | None = None,
                 best_metric: str = "val_loss", greater_is_better: bool = False,
                 loss_fn: Callable[[Any, dict[str, torch.Tensor]], torch.Tensor] | None = None,
                 lr_scale: Callable[[str], float] | None = None):
        self.raw = model
        self.cfg = config
        self.train_data = train_data
        self.val_data = val_data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.tokenizer = tokenizer
        self.recipe = recipe
        self.dist = dist or D.setup(config.device)
        self.device = self.dist.device
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.causal = model.config.arch == "gpt"
        # BERT's MLM head runs only on the masked positions (logits (n_masked, vocab)): the same loss
        # and accuracy for ~1/0.15 less head work.
        self.sparse_mlm = model.config.arch == "bert" and model.config.head in ("mlm", "pretraining")
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.tokens = 0
        self.best_val = math.inf
        self.best_step = -1
        self.bad_evals = 0
        self.train_time = 0.0  # seconds of training over all sessions of this run
        self.status = "running"
        self._stop_signal: int | None = None
        self._last_eval: dict[str, Any] = {}
        self._last_saved = -1
        self.evaluator, self.loss_fn, self.lr_scale = evaluator, loss_fn, lr_scale
        self.best_metric, self.greater_is_better = best_metric, greater_is_better

    # -- setup -------------------------------------------------------------------------------------------

    def _prepare_run_dir(self) -> tuple[dict, dict, dict] | None:
        """Check the run directory against resume/overwrite; load the checkpoint to resume from, if any."""
        cfg, run = self.cfg, self.run_dir
        if run is None:
            if cfg.resume:
                raise ConfigError("train.resume=true needs a run directory to resume from")
            return None
        existing = RunDir(run).latest_checkpoint()
        if cfg.resume:
            if existing is None:
                if self.dist.is_main:
                    print(f"train.resume=true but {run}/checkpoints holds none; starting from step 0",
                          flush=True)
                return None
            return ckpt.load_checkpoint(existing, self.raw.config)
        if existing is not None and not cfg.overwrite:
            raise TrainingError(
                f"{run} already holds {existing.relative_to(run)}; to continue it pass train.resume=true, to "
                "start it again pass train.overwrite=true, or choose another name=..."
            )
        return None

    def _write_config(self) -> None:
        path = self.run_dir / "config.yaml"
        if self.recipe is not None:
            self.recipe.save(path)
        else:
            doc = {"model": self.raw.config.to_dict(), "train": self.cfg.to_dict()}
            atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))

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
            model_state, self._optim_state, state = loaded
            if state.get("world_size", 1) != info.world_size:
                raise CheckpointError(
                    f"the checkpoint was written by {state.get('world_size', 1)} process(es) and this run "
                    f"has {info.world_size}; the per-rank data order would change, the resume would not be "
                    f"exact. Resume with --nproc_per_node={state.get('world_size', 1)}"
                )
            self.raw.load_weights(model_state, source="checkpoint")
        self.raw.to(self.device)
        self.raw.train()
        # Names saved to safetensors: tied tensors once (taken before wrapping changes the modules).
        self.save_keys = list(self.raw.unique_state_dict())
        model: nn.Module = self.raw
        strategy = "fsdp" if cfg.distributed == "fsdp" else "ddp"
        if cfg.compile and strategy == "ddp":
            model = torch.compile(model)
        model = D.wrap(model, strategy, info)
        if cfg.compile and strategy == "fsdp" and info.enabled:
            model = torch.compile(model)
        self.model = model
        self.optimizer = build_optimizer(self.raw, cfg, self.device, self.lr_scale)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        if loaded is not None:
            osd = self._optim_state
            D.load_optimizer_state(self.raw, self.optimizer, osd["optimizer"])
            if osd.get("scaler"):
                self.scaler.load_state_dict(osd["scaler"])
            self.step, self.tokens = state["step"], state["tokens"]
            self.best_val, self.best_step = state["best_val_loss"], state["best_step"]
            self.bad_evals, self.train_time = state["bad_evals"], state["train_time_s"]
            self._last_saved = self.step
        return state

    # -- one step ----------------------------------------------------------------------------------------

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.device.type == "cuda":  # pinned host memory lets the copy overlap with compute
            return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}
        return {k: v.to(self.device) for k, v in batch.items()}

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _forward(self, batch: dict[str, torch.Tensor], loss_only: bool = True):
        """The model's forward on a batch; NSP labels are kept out so its loss can be weighted apart.
        The model is told what is used: BERT's MLM head always scores the labelled positions only (the
        loss and the accuracy need no more); GPT skips the full logits unless loss_only=False."""
        kwargs = {k: v for k, v in batch.items() if k != "next_sentence_label"}
        if self.sparse_mlm and "labels" in kwargs:
            kwargs["labelled_logits_only"] = True
        if self.causal and loss_only and self.loss_fn is None and "labels" in kwargs:
            kwargs["loss_only"] = True
        with self._autocast():
            return self.model(**kwargs)

    def _totals(self, counts: list[tuple[int, int]]) -> tuple[Any, Any]:
        """(N targets, N NSP pairs) over the whole step: all micro-batches on all ranks."""
        n = sum(c[0] for c in counts)
        s = sum(c[1] for c in counts)
        if not self.dist.enabled:
            return n, s
        t = D.all_reduce_sum(torch.tensor([n, s], dtype=torch.float32, device=self.device), self.dist)
        return t[0], t[1]  # device tensors: dividing by them needs no host sync

    def _train_step(self, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        counts = [(count_targets(b, self.causal),
                   int((b["next_sentence_label"] != IGNORE).sum()) if "next_sentence_label" in b else 0)
                  for b in batches]
        n_total, nsp_total = self._totals(counts)
        world = self.dist.world_size
        step_loss = torch.zeros((), device=self.device)
        last = len(batches) - 1
        for i, (batch, (n, s)) in enumerate(zip(batches, counts)):
            batch = self._to_device(batch)
            # Gradients are all-reduced once per step, on the last micro-batch.
            defer = self.dist.enabled and i < last and hasattr(self.model, "no_sync")
            sync = self.model.no_sync() if defer else contextlib.nullcontext()
            with sync:
                out = self._forward(batch, loss_only=n > 0)
                # A micro-batch without targets (possible with sparse labels) still joins the graph, so
                # DDP sees every parameter used; its weight is zero.
                own = self.loss_fn(out, batch) if self.loss_fn is not None and n else out.loss
                loss = own * (n / n_total) if n else out.logits.sum() * 0.0
                if s:
                    nsp = classification_loss(out.nsp_logits, batch["next_sentence_label"])
                    loss = loss + nsp * (s / nsp_total)
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
    def evaluate(self) -> dict[str, float]:
        """Token-weighted val loss and perplexity; MLM and NSP accuracy for BERT pretraining (or the
        `evaluator`'s metrics when one was given)."""
        self.model.eval()
        if self.evaluator is not None:
            try:
                return dict(self.evaluator(self.model))
            finally:
                self.model.train()
        # loss·n, n, correct masked predictions, nsp loss·pairs, pairs, correct nsp
        sums = torch.zeros(6, dtype=torch.float64, device=self.device)
        for batch in self.val_data.eval_batches(self.cfg.eval_batches):
            n = count_targets(batch, self.causal)
            batch = self._to_device(batch)
            out = self._forward(batch)
            if n:
                sums[0] += out.loss.double() * n
                sums[1] += n
                if not self.causal:
                    labels = batch["labels"]
                    keep = labels != IGNORE
                    pred = out.logits.argmax(-1)
                    pred = pred if pred.dim() == 1 else pred[keep]  # sparse MLM: already the kept rows
                    sums[2] += (pred == labels[keep]).sum()
            if "next_sentence_label" in batch:
                nsl = batch["next_sentence_label"]
                sums[3] += classification_loss(out.nsp_logits, nsl).double() * nsl.numel()
                sums[4] += nsl.numel()
                sums[5] += (out.nsp_logits.argmax(-1) == nsl).sum()
        D.all_reduce_sum(sums, self.dist)
        s = sums.tolist()
        self.model.train()
        if s[1] == 0:
            raise TrainingError("the validation batches hold no labelled tokens; check data.val_fraction")
        loss = s[0] / s[1]
        out = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}
        if not self.causal:
            out["mlm_accuracy"] = s[2] / s[1]
        if s[4]:
            out["nsp_loss"] = s[3] / s[4]
            out["nsp_accuracy"] = s[5] / s[4]
            out["val_loss"] = loss + out["nsp_loss"]  # the pretraining objective: MLM + NSP
            out["val_ppl"] = math.exp(min(loss, 50.0))  # perplexity of the MLM part
        return out

    # -- checkpoints -------------------------------------------------------------------------------------

    def _model_state(self, with_optimizer: bool) -> tuple[dict, dict | None]:
        msd, osd = D.full_state_dicts(self.raw, self.optimizer if with_optimizer else None)
        # Under FSDP only rank 0 receives the gathered tensors; the others get an empty dict.
        return {k: msd[k] for k in self.save_keys if k in msd}, osd

    def save(self) -> Path | None:
        """Checkpoint the current step (every rank must call it; rank 0 writes)."""
        ranks = D.gather_objects({"rng": ckpt.capture_rng(), "data": self.train_data.state_dict()}, self.dist)
        model_state, optim_state = self._model_state(with_optimizer=True)
        path = None
        if self.dist.is_main and self.run_dir is not None:
            state = {"step": self.step, "tokens": self.tokens, "best_val_loss": self.best_val,
                     "best_step": self.best_step, "bad_evals": self.bad_evals,
                     "train_time_s": self.train_time + (time.perf_counter() - self._t0),
                     "world_size": self.dist.world_size, "ranks": ranks}
            optim = {"optimizer": optim_state, "scaler": self.scaler.state_dict() if self.scaler.is_enabled()
                     else None}
            path = ckpt.save_checkpoint(RunDir(self.run_dir), self.step, model_state, self.raw.config, optim,
                                        state, self.tokenizer, self.cfg.keep_last)
        D.barrier(self.dist)
        self._last_saved = self.step
        return path

    def _save_best(self, metrics: dict[str, float]) -> None:
        model_state, _ = self._model_state(with_optimizer=False)
        if self.dist.is_main and self.run_dir is not None:
            ckpt.save_best(RunDir(self.run_dir), model_state, self.raw.config, self.tokenizer,
                           {"step": self.step, **metrics})
        D.barrier(self.dist)

    # -- signals -----------------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:  # a second Ctrl-C: stop now, without saving
            raise KeyboardInterrupt
        self._stop_signal = signum

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

    def _should_stop(self, deadline: float | None) -> str | None:
        """"interrupted" / "time_limit" / None, agreed by all ranks (the max over ranks)."""
        code = 0
        if self._stop_signal is not None:
            code = 2
        elif deadline is not None and time.perf_counter() >= deadline:
            code = 1
        if self.dist.enabled:
            code = int(D.all_reduce_max(torch.tensor([code], device=self.device), self.dist).item())
        return {0: None, 1: "time_limit", 2: "interrupted"}[code]

    # -- the loop ----------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train to `max_steps` (or a stop: signal, time limit, early stopping); return the summary."""
        cfg, info = self.cfg, self.dist
        state = self._setup()
        main = info.is_main and self.run_dir is not None
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            RunDir(self.run_dir).clean_partial()
            self._write_config()
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
                    if self.step % cfg.log_interval == 0 or self.step == cfg.max_steps:
                        self._log_train(log, loss_sum, loss_steps, lr, meter.rate())
                        loss_sum.zero_()
                        loss_steps = 0
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
                            break
                if self.status == "running":
                    self.status = "completed"
                if loss_steps:
                    self._log_train(log, loss_sum, loss_steps, lr_at(self.step - 1, cfg), meter.rate())
                if self.val_data is not None and self._last_eval.get("step") != self.step:
                    self._run_eval(log)
                if self._last_saved != self.step:
                    self.save()
        finally:
            log.close()
        summary = self._summary()
        if main:
            if cfg.plots:
                plot_curves(self.run_dir, self.history)
            RunDir(self.run_dir).write_summary(summary)
        return summary

    def _log_train(self, log: RunLogger, loss_sum: torch.Tensor, steps: int, lr: float, tok_s: float) -> None:
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
        log.progress(self.step, loss, lr, tok_s, note=f"MFU {record['mfu']:.0%}" if "mfu" in record else "")

    def _run_eval(self, log: RunLogger) -> bool:
        """Evaluate, keep best/, and say whether early stopping has run out of patience."""
        if self.val_data is None:
            return False
        metrics = self.evaluate()
        record = {"kind": "eval", "step": self.step, **metrics}
        self._last_eval = record
        self.history.append(record)
        log.log(record)
        text = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        log.message(f"step {self.step}: {text}")
        if self.best_metric not in metrics:
            raise TrainingError(f"best_metric {self.best_metric!r} is not among the evaluation's metrics "
                                f"({', '.join(metrics)})")
        # best_val is kept as a loss (lower is better): a metric to maximise is stored negated.
        score = -metrics[self.best_metric] if self.greater_is_better else metrics[self.best_metric]
        if score < self.best_val - self.cfg.early_stopping_min_delta:
            self.best_val, self.best_step, self.bad_evals = score, self.step, 0
            if self.cfg.save_best:
                self._save_best(metrics)
        else:
            self.bad_evals += 1
        patience = self.cfg.early_stopping_patience
        return bool(patience and self.bad_evals >= patience)

    def _summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._t0
        train = [r for r in self.history if r["kind"] == "train"]
        summary: dict[str, Any] = {
            "name": self.run_dir.name if self.run_dir else None, "status": self.status, "step": self.step,
            "max_steps": self.cfg.max_steps, "tokens": self.tokens, "wall_time_s": round(wall, 3),
            "train_time_s": round(self.train_time + wall, 3),
            "tokens_per_s": round(self.tokens / max(self.train_time + wall, 1e-9), 1),
            "final_train_loss": train[-1]["loss"] if train else None,
            "parameters": self.raw.num_parameters(), "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""), "world_size": self.dist.world_size,
        }
        if self._last_eval:
            summary.update({f"final_{k}": v for k, v in self._last_eval.items() if k not in ("kind", "step")})
            summary.update(best_val_loss=self.best_val, best_step=self.best_step)
        if self.run_dir is not None and self.dist.is_main:
            try:
                summary["model_dir"] = str(RunDir(self.run_dir).model_dir())
            except FileNotFoundError:
                pass
        return summary
