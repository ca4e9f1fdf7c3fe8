"""`zhixing models` and `zhixing info PATH`."""

from __future__ import annotations

import json
from pathlib import Path

import click


def console():
    """A rich console that does not squeeze tables when the output is a pipe or a file."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def _human(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per preset instead of a table.")
def models_cmd(as_json: bool) -> None:
    """List the model presets with their shapes and parameter counts."""
    import torch
    from rich.table import Table

    from zhixing.config import PRESETS, ModelConfig
    from zhixing.models import build_model

    table = Table(title="zhixing model presets  (ModelConfig.from_preset(name))")
    for col in ("preset", "family", "head"):
        table.add_column(col)
    for col in ("layers", "dim", "heads (kv)", "ffn", "vocab", "context", "params"):
        table.add_column(col, justify="right")
    for name in PRESETS:
        cfg = ModelConfig.from_preset(name)
        with torch.device("meta"):  # count parameters without allocating them
            n = build_model(cfg).num_parameters()
        if as_json:
            click.echo(json.dumps({"preset": name, "params": n, **cfg.to_dict()}))
            continue
        table.add_row(name, cfg.arch, cfg.head, str(cfg.num_layers), str(cfg.dim),
                      f"{cfg.num_heads} ({cfg.num_kv_heads})", str(cfg.ffn_dim), str(cfg.vocab_size),
                      str(cfg.max_seq_len), _human(n))
    if not as_json:
        console().print(table)


@click.command("info")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def info_cmd(path: Path) -> None:
    """Describe a model directory (zhixing or Hugging Face) or a run directory."""
    from rich.table import Table

    from zhixing.hub import load
    from zhixing.quant import num_parameters, quantization_of

    model = load(path)
    cfg = model.config
    table = Table(title=str(path), show_header=False)
    table.add_row("class", type(model).__name__)
    quantized = quantization_of(model)
    n = num_parameters(model) if quantized else model.num_parameters()
    table.add_row("parameters", f"{n:,} ({_human(n)})")
    if quantized:
        table.add_row("quantization", ", ".join(f"{k} {v}" for k, v in quantized.items()))
    for key, value in cfg.to_dict().items():
        table.add_row(key, str(value))
    tok = getattr(model, "tokenizer", None)
    table.add_row("tokenizer", "none found" if tok is None else f"{tok.kind}, {tok.vocab_size} tokens")
    for key, value in _run_summary(path).items():
        table.add_row(key, value)
    console().print(table)


def _run_summary(path: Path) -> dict[str, str]:
    """A run directory's state from its summary.json (written when a run ends): {} for a model directory."""
    from zhixing.errors import ConfigError
    from zhixing.io import RunDir

    try:
        s = RunDir(path).read_summary()
    except (OSError, ConfigError) as e:
        return {"run": f"{path / RunDir.SUMMARY} unreadable ({e})"}
    if s is None:
        return {}
    rows = {"run": f"{s.get('status', '?')} at step {s.get('step', '?')} of {s.get('max_steps', '?')}"}
    # The metric that selected best/, under its own name and sign (val_loss, accuracy, f1, ...).
    metric = s.get("best_metric") or "val_loss"
    label = metric.replace("_", " ")
    for key, row in ((f"final_{metric}", f"{label} (last)"), (f"best_{metric}", f"{label} (best)"),
                     ("final_train_loss", "train loss (last)")):
        if isinstance(s.get(key), (int, float)):
            rows[row] = f"{s[key]:.4f}"
    if f"{label} (best)" in rows and "best_step" in s:
        rows[f"{label} (best)"] += f" at step {s['best_step']}"
    if isinstance(s.get("wall_time_s"), (int, float)):
        rows["wall time"] = f"{s['wall_time_s']:.0f} s, {s.get('tokens_per_s', 0):,.0f} tokens/s"
    return rows
