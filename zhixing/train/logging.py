"""What a run tells its user: a live progress bar, `metrics.jsonl`, TensorBoard, PNG curves, `summary.json`.

Only rank 0 logs. Every record is one JSON line, `{"kind": "train"|"eval", "step": ..., ...}`, so a run
can be plotted or compared without TensorBoard; on resume the lines past the resumed step are dropped,
so the file always describes one consistent run.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch

from zhixing.io import atomic_write, atomic_write_text

# The live display of the run in progress: its rich Progress, False when the run shows none
# (train.progress=false), None outside a run. Evaluations add their bar to it (rich allows one live display).
_RUN_BAR: ContextVar[Any] = ContextVar("zhixing_run_bar", default=None)


@contextlib.contextmanager
def progress_bar(description: str, total: int,
                 enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)` for a loop of `total` items (an evaluation, a prediction): a second line in the
    training run's bar while one is live, else a bar of its own when `enabled` (None: when stderr is a
    terminal, so tests and logs stay clean); a no-op otherwise."""
    run_bar = _RUN_BAR.get()
    if run_bar is not None:
        if run_bar is False or enabled is False:
            yield lambda n: None
            return
        task = run_bar.add_task(description, total=total, info="")
        try:
            yield lambda n: run_bar.update(task, advance=n)
        finally:
            run_bar.remove_task(task)
        return
    if not (sys.stderr.isatty() if enabled is None else enabled) or total <= 0:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.update(task, advance=n)


def _fmt_tokens(x: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


class RunLogger:
    """Rank-0 logging sink; every method is a no-op on other ranks (`enabled=False`)."""

    def __init__(self, run_dir: Path | None, *, enabled: bool = True, progress: bool = True,
                 tensorboard: bool = True, total_steps: int = 0, start_step: int = 0):
        self.run_dir = run_dir
        self.enabled = enabled and run_dir is not None
        self.records: list[dict[str, Any]] = []
        self._bar = self._task = self._tb = None
        self._bar_token = None
        self.total_steps = total_steps
        if not self.enabled:
            return
        self.metrics_path = run_dir / "metrics.jsonl"
        self._truncate_after(start_step)
        self._file = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=start_step or None)
            except ImportError:  # the `tensorboard` package is optional
                self._tb = None
        if progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                refresh_per_second=4,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=total_steps, completed=start_step, info="")
        self._bar_token = _RUN_BAR.set(self._bar if self._bar is not None else False)

    def _truncate_after(self, step: int) -> None:
        """Keep the records of steps <= `step` (all of them on a fresh start: step 0 -> none)."""
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut by a crash
                continue
        self.records = [json.loads(x) for x in kept]
        atomic_write_text(self.metrics_path, "".join(x + "\n" for x in kept))

    def log(self, record: dict[str, Any]) -> None:
        """Append one record ({"kind", "step", metrics...}) to metrics.jsonl and TensorBoard."""
        if not self.enabled:
            return
        self.records.append(record)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            kind = record.get("kind", "train")
            for key, value in record.items():
                if key not in ("kind", "step") and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{kind}/{key}", value, record["step"])

    def progress(self, step: int, loss: float | None = None, lr: float | None = None,
                 tokens_per_s: float | None = None, note: str = "") -> None:
        if self._bar is None:
            return
        parts = []
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        if tokens_per_s is not None:
            parts.append(f"{_fmt_tokens(tokens_per_s)} tok/s")
        if note:
            parts.append(note)
        self._bar.update(self._task, completed=step, info=" · ".join(parts))

    def message(self, text: str) -> None:
        """A line above the progress bar (or on stdout)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self._bar_token is not None:
            _RUN_BAR.reset(self._bar_token)
            self._bar_token = None
        if self._tb is not None:
            self._tb.close()
        self._file.close()
        self.enabled = False


def plot_curves(run_dir: Path, records: list[dict[str, Any]]) -> list[Path]:
    """plots/loss.png (train + val loss), plots/lr.png, plots/accuracy.png (MLM / NSP, when measured)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        return []
    out_dir = run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        path = atomic_write(out_dir / name, lambda tmp: fig.savefig(tmp, format="png", dpi=120,
                                                                    bbox_inches="tight"))
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
    if evals:
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "loss.png")
    if train:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot([r["step"] for r in train], [r["lr"] for r in train])
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        save(fig, "lr.png")
    acc_keys = [k for k in ("mlm_accuracy", "nsp_accuracy") if any(k in r for r in evals)]
    if acc_keys:
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in acc_keys:
            pts = [(r["step"], r[key]) for r in evals if key in r]
            ax.plot(*zip(*pts), "o-", label=key.replace("_", " "))
        ax.set_xlabel("step")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "accuracy.png")
    return written


# Dense bf16 peak of one GPU (no sparsity), for model FLOPs utilisation; DESIGN.md §6.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12,
                   "4090": 165e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def flops_per_token(model: Any, seq_len: int) -> float:
    """nanoGPT / PaLM: 6N (forward + backward through the weights) + 12·L·H·Q·T (attention scores and
    the weighted sum), N without the position table, which is a lookup, not a matmul."""
    cfg = model.config
    n = model.num_parameters()
    pos = getattr(model, "pos_embed", None)
    if pos is not None:
        n -= pos.weight.numel()
    heads = sum(cfg.heads_per_layer) if cfg.heads_per_layer else cfg.num_layers * cfg.num_heads  # L·H
    return 6 * n + 12 * heads * cfg.head_dim * seq_len



class Throughput:
    """Tokens per second over the last log interval (wall clock between two reads)."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.tokens = 0

    def add(self, n: int) -> None:
        self.tokens += n

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self.tokens / max(now - self.t, 1e-9)
        self.t, self.tokens = now, 0
        return rate
