"""Checkpoints: written atomically, read back with every field checked.

    runs/<name>/checkpoints/step-N/
        config.json  model.safetensors     the model (loadable on its own, like best/)
        tokenizer.json ...                 the tokenizer, when the run has one
        optimizer.pt                       AdamW moments (+ GradScaler); torch.save, read weights_only
        trainer_state.json                 step, tokens, best loss, per-rank RNG and data-loader states

A checkpoint is assembled in `checkpoints/.tmp-step-N/` and renamed into place only when complete, so a
crash or a full disk mid-save leaves the previous checkpoints as they were. Nothing here unpickles
arbitrary objects: weights are safetensors, `optimizer.pt` is loaded with `weights_only=True`, and the
rest is JSON.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from zhixing.config import ConfigError, ModelConfig

FORMAT = 1
STEP_DIR = re.compile(r"^step-(\d+)$")
# Fields that may change between a checkpoint and its resumption without changing the weights' meaning.
RESUMABLE_CHANGES = {"dropout", "attn_dropout", "classifier_dropout", "attn_impl"}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted or does not fit this run; the message names the file and fix."""


# -- locating ------------------------------------------------------------------------------------------


def step_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete step checkpoints of a run, oldest first (unfinished `.tmp-*` directories are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = step_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_run_dir(path: str | os.PathLike) -> Path:
    """The model directory inside a run: `best/`, else the newest `checkpoints/step-N/`; a model
    directory itself is returned unchanged. The same lookup `zhixing.load` uses (interop.hub), so a run
    resolves to one directory whichever way it is opened. Every returned run checkpoint also holds the
    run's tokenizer files."""
    from zhixing.interop.hub import model_directory

    return model_directory(Path(path))


# -- RNG states as JSON ----------------------------------------------------------------------------------


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, JSON-ready."""
    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


def _jsonable(obj: Any) -> Any:
    """Data-loader states may hold NumPy scalars/arrays or tensors; JSON gets plain lists and numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# -- writing -----------------------------------------------------------------------------------------------


def write_model_dir(directory: Path, state: dict[str, torch.Tensor], config: ModelConfig,
                    tokenizer: Any = None) -> None:
    """config.json + model.safetensors (+ tokenizer files) into `directory` (the caller makes it atomic)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt", "library": "zhixing"})
    (directory / "config.json").write_text(
        json.dumps(config.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save(directory)


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename the finished `tmp` to `final`; an existing `final` is replaced only after `tmp` is complete."""
    if final.exists():
        old = final.with_name(f".old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def save_checkpoint(run_dir: Path, step: int, model_state: dict[str, torch.Tensor], config: ModelConfig,
                    optimizer_state: dict[str, Any], trainer_state: dict[str, Any], tokenizer: Any = None,
                    keep_last: int = 2) -> Path:
    """Write checkpoints/step-<step>/ atomically, then delete all but the newest `keep_last`."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_model_dir(tmp, model_state, config, tokenizer)
        torch.save(optimizer_state, tmp / "optimizer.pt")
        state = {"format": FORMAT, **_jsonable(trainer_state)}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        final = root / f"step-{step}"
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in step_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_best(run_dir: Path, model_state: dict[str, torch.Tensor], config: ModelConfig,
              tokenizer: Any = None, info: dict[str, Any] | None = None) -> Path:
    """Replace best/ atomically with this model (no optimizer: best/ is for loading, not resuming)."""
    tmp = run_dir / ".tmp-best"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_model_dir(tmp, model_state, config, tokenizer)
        if info is not None:
            (tmp / "best.json").write_text(json.dumps(_jsonable(info), indent=1) + "\n", encoding="utf-8")
        _swap_in(tmp, run_dir / "best")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run_dir / "best"


def clean_partial(run_dir: Path) -> None:
    """Remove what an interrupted save left behind (`.tmp-*`, `.old-*`); complete checkpoints stay."""
    for root in (run_dir, run_dir / "checkpoints"):
        if root.is_dir():
            for p in root.iterdir():
                if p.is_dir() and p.name.startswith((".tmp-", ".old-")):
                    shutil.rmtree(p, ignore_errors=True)


# -- reading -----------------------------------------------------------------------------------------------


def load_checkpoint(path: Path, expected: ModelConfig) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(model state, optimizer state, trainer state) of checkpoint `path`, each checked.

    Raises CheckpointError naming the damaged or mismatched file, and what to do about it. Nothing is
    written, so a failed resume leaves the run directory as it was.
    """
    older = [p for _, p in step_checkpoints(path.parent.parent) if p != path]
    fallback = (f"; to resume from the previous checkpoint instead, move {path} aside "
                f"(the newest other is {older[-1].name})" if older else "")
    for name in ("config.json", "model.safetensors", "optimizer.pt", "trainer_state.json"):
        if not (path / name).is_file():
            raise CheckpointError(f"{path / name}: missing; this checkpoint is incomplete{fallback}")
    try:
        config = ModelConfig.load(path)
    except (ConfigError, ValueError) as e:
        raise CheckpointError(f"{path / 'config.json'}: unreadable ({e}){fallback}") from None
    diffs = [f"{k}: checkpoint {v!r} vs recipe {getattr(expected, k)!r}"
             for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES and getattr(expected, k) != v]
    if diffs:
        raise CheckpointError(
            f"{path} was trained with a different model:\n  " + "\n  ".join(diffs)
            + "\nfix: resume with the recipe the run was started with (see its config.yaml), or start a new"
            " run (train.resume=false name=<new name>)"
        )
    try:
        model_state = load_file(path / "model.safetensors")
    except Exception as e:  # safetensors raises its own error type for truncated / garbled files
        raise CheckpointError(f"{path / 'model.safetensors'}: corrupted ({e}){fallback}") from None
    try:
        optimizer_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path / 'optimizer.pt'}: corrupted or not a zhixing optimizer file ({e})"
                              f"{fallback}") from None
    try:
        trainer_state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path / 'trainer_state.json'}: corrupted ({e}){fallback}") from None
    if not isinstance(trainer_state, dict) or trainer_state.get("format") != FORMAT \
            or "step" not in trainer_state:
        raise CheckpointError(f"{path / 'trainer_state.json'}: not a zhixing trainer state (format {FORMAT})"
                              f"{fallback}")
    return model_state, optimizer_state, trainer_state
