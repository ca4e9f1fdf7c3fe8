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
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zhixing.config import ModelConfig
from zhixing.errors import CheckpointError, ConfigError
from zhixing.io import RunDir, jsonable, staged_dir
from zhixing.models.base import read_safetensors, write_model_files

FORMAT = 1
# Fields that may change between a checkpoint and its resumption without changing the weights' meaning.
RESUMABLE_CHANGES = {"dropout", "attn_dropout", "classifier_dropout", "attn_impl"}


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


# -- writing -----------------------------------------------------------------------------------------------


def save_checkpoint(run: RunDir, step: int, model_state: dict[str, torch.Tensor], config: ModelConfig,
                    optimizer_state: dict[str, Any], trainer_state: dict[str, Any], tokenizer: Any = None,
                    keep_last: int = 2) -> Path:
    """Write checkpoints/step-<step>/ atomically, then delete all but the newest `keep_last`."""
    final = run.checkpoint(step)
    with staged_dir(final) as tmp:
        write_model_files(tmp, model_state, config.to_dict(), tokenizer)
        torch.save(optimizer_state, tmp / "optimizer.pt")
        state = {"format": FORMAT, **jsonable(trainer_state)}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    run.prune_checkpoints(keep_last)
    return final


def save_best(run: RunDir, model_state: dict[str, torch.Tensor], config: ModelConfig,
              tokenizer: Any = None, info: dict[str, Any] | None = None) -> Path:
    """Replace best/ atomically with this model (no optimizer: best/ is for loading, not resuming)."""
    with staged_dir(run.best) as tmp:
        write_model_files(tmp, model_state, config.to_dict(), tokenizer)
        if info is not None:
            (tmp / "best.json").write_text(json.dumps(jsonable(info), indent=1) + "\n", encoding="utf-8")
    return run.best


# -- reading -----------------------------------------------------------------------------------------------


def load_checkpoint(path: Path, expected: ModelConfig) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(model state, optimizer state, trainer state) of checkpoint `path`, each checked.

    Raises CheckpointError naming the damaged or mismatched file, and what to do about it. Nothing is
    written, so a failed resume leaves the run directory as it was.
    """
    older = [p for _, p in RunDir(path.parent.parent).checkpoints() if p != path]
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
    model_state = read_safetensors(path / "model.safetensors",
                                   advice=fallback.lstrip("; ") or "start the run again")
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


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the model weights of `paths` (step checkpoints or model directories):

        θ̄ = 1/K Σ_k θ_k

    Averaging the last checkpoints of a run (Vaswani et al. 2017: the last 5, 10 minutes apart) smooths
    the noise of the final steps; integer tensors (buffers) are taken from the newest."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        state = read_safetensors(Path(path) / "model.safetensors", advice="average other checkpoints")
        if total and set(state) != set(total):
            raise CheckpointError(f"{path}: holds other weights than {paths[0]}; average the checkpoints "
                                  "of one run")
        for name, tensor in state.items():
            if tensor.is_floating_point():
                total[name] = total[name] + tensor.double() if name in total else tensor.double()
            else:
                total[name] = tensor
    return {n: (t / len(paths)).to(torch.float32) if t.is_floating_point() else t for n, t in total.items()}
