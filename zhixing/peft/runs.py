"""Adapters in runs: a model wrapped by a method, what a run saves of it, and how it is opened again.

A run trained with a parameter-efficient method saves, in best/ and checkpoints/step-N/, config.json (the
model's config, with its task head) and a model.safetensors that holds only the trained tensors (the
adapters and the fully trained head); `adapter.json` in the run directory names the method, its settings
and the base model's directory. zhixing.load opens such a run as base + adapter (`open_adapter_run`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zhixing.errors import CheckpointError, ConfigError
from zhixing.peft.lora import LoRAConfig, add_lora, lora_layout
from zhixing.peft.prompt import KINDS, PromptConfig, add_prompt

ADAPTER_RECORD = "adapter.json"
METHODS = ("full", "lora", *KINDS)
HEAD_MODULES = ("pooler", "classifier", "score")  # task heads: trained in full next to the adapters


def head_modules(model: nn.Module) -> list[str]:
    """The model's task-head modules that exist (trained in full: PEFT's modules_to_save)."""
    return [n for n in HEAD_MODULES if getattr(model, n, None) is not None]


def apply_method(model: nn.Module, method: str, settings: dict[str, Any],
                 modules_to_save: list[str] | None = None) -> nn.Module:
    """Wrap `model` in place with `method` (lora | prompt_tuning | ptuning | prefix; full: unchanged).
    settings: LoRAConfig fields (r, alpha, dropout, targets) or PromptConfig fields (tokens, encoder,
    hidden). Sets `model.saved_keys`, the state-dict names a run saves (adapters + modules_to_save)."""
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    if method == "full":
        return model
    save = head_modules(model) if modules_to_save is None else list(modules_to_save)
    if method == "lora":
        if not settings.get("targets"):
            settings = {**settings, "targets": default_targets(model)}
        add_lora(model, LoRAConfig(**settings, modules_to_save=save))
    else:
        add_prompt(model, PromptConfig(kind=method, **settings, modules_to_save=save))
    model.saved_keys = trained_keys(model)
    return model


def default_targets(model: nn.Module) -> list[str]:
    """query,value (the LoRA paper's choice) for encoders; the whole fused qkv for decoders (what PEFT adapts
    in GPT-2, whose c_attn is one module)."""
    return ["qkv"] if getattr(model.config, "arch", "") == "gpt" else ["query", "value"]


def trained_keys(model: nn.Module) -> list[str]:
    """State-dict names of every trainable tensor (adapters and modules_to_save), tied ones once."""
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    out, seen = [], set()
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in trainable and id(t) not in seen:
            seen.add(id(t))
            out.append(name)
    return out


def record(model: nn.Module, base: str) -> dict[str, Any]:
    """adapter.json of a run: the method, its settings, (LoRA) the adapted layers, the base model."""
    if getattr(model, "lora_config", None) is not None:
        cfg = model.lora_config.to_dict()
        return {"method": "lora", "settings": cfg, "layout": lora_layout(model), "base": _abs(base)}
    if getattr(model, "prompt_config", None) is not None:
        cfg = model.prompt_config.to_dict()
        return {"method": cfg.pop("kind"), "settings": cfg, "base": _abs(base)}
    raise ConfigError("the model has no adapter")


def _abs(base: str) -> str:
    p = Path(base).expanduser()
    return str(p.resolve()) if p.exists() else base  # a Hub id stays as it is


def find_record(directory: Path) -> Path | None:
    """The adapter.json of the run a model directory belongs to (best/, checkpoints/step-N/, the run)."""
    candidates = [directory]
    if directory.name == "best":
        candidates.append(directory.parent)
    if directory.name.startswith("step-") and directory.parent.name == "checkpoints":
        candidates.append(directory.parent.parent)
    for d in candidates:
        if (d / ADAPTER_RECORD).is_file():
            return d / ADAPTER_RECORD
    return None


def open_adapter_run(config_model: nn.Module, base: nn.Module, info: dict[str, Any],
                     state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """The run's model: `config_model` (built from the run's config.json, freshly initialised) gets the
    base model's backbone tensors, the method's adapters, and the saved tensors (adapters + head)."""
    own = config_model.state_dict()
    needed = set(config_model.unique_state_dict()) if hasattr(config_model, "unique_state_dict") else set(own)
    base_state = base.state_dict()
    taken = {k: v for k, v in base_state.items() if k in own and own[k].shape == v.shape}
    mismatched = [f"{k}: base {tuple(base_state[k].shape)} vs run {tuple(own[k].shape)}"
                  for k in base_state if k in own and own[k].shape != base_state[k].shape and k not in state]
    if mismatched:
        raise CheckpointError(f"{source}: the base model {info.get('base')} does not fit the run's model: "
                              + "; ".join(mismatched[:10]))
    config_model.load_state_dict(taken, strict=False)
    method, settings = info.get("method"), dict(info.get("settings") or {})
    if method == "lora":
        layout = {k: list(v) for k, v in (info.get("layout") or {}).items()}
        add_lora(config_model, LoRAConfig(**settings), layout=layout)
    elif method in KINDS:
        add_prompt(config_model, PromptConfig(kind=method, **settings))
    else:
        raise ConfigError(f"{source}: method {method!r} is not one of {', '.join(METHODS[1:])}")
    config_model.saved_keys = trained_keys(config_model)
    expected = set(config_model.saved_keys)
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - set(config_model.state_dict()))
    from zhixing.models.base import mismatch_report
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in config_model.state_dict().items() if k in state and state[k].shape != v.shape]
    absent = sorted(needed - set(taken) - set(state))
    if missing or unexpected or shapes or absent:
        raise CheckpointError(mismatch_report(f"{source} does not fit base {info.get('base')} + {method}:",
                                              missing + absent, unexpected, shapes))
    config_model.load_state_dict(state, strict=False)
    return config_model


def base_path(info: dict[str, Any], source: str) -> str:
    base = info.get("base")
    if not base:
        raise CheckpointError(f"{source}: names no base model")
    if not os.path.exists(base) and os.path.isabs(base):
        raise FileNotFoundError(f"{source}: the base model {base} is gone; the run holds only the adapter "
                                "(restore the base model there, or edit 'base' in adapter.json)")
    return base

