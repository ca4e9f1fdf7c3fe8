"""The machinery every Hugging Face mapping shares: renaming rules, checkpoint files, checks, atomic writes.

A family module (bert.py, gpt2.py, llama.py) describes itself with a `Family`: how an HF `config.json`
becomes a `ModelConfig` and back, and a list of `Rule`s, each saying which HF tensors make up one of our
tensors. Everything else — reading weight files, stripping the `bert.` / `transformer.` / `model.`
prefix, checking names and shapes, filling in fused matrices, writing a directory transformers loads —
is done here once, from those rules. The same rules drive both directions, so import and export
cannot drift apart.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zhixing.config import ConfigError, ModelConfig, read_json_object
from zhixing.models.base import CheckpointError, mismatch_report, read_safetensors

# Files of a tokenizer in Hugging Face format; copied along when a directory is converted.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "vocab.json", "merges.txt", "added_tokens.json", "tokenizer.model", "spiece.model")


@dataclass(frozen=True)
class Rule:
    """One of our tensors <- one or more HF tensors concatenated along dim 0 (in the order given).

    `transpose`: the HF tensor is stored (in, out) — GPT-2's Conv1D — while nn.Linear stores (out, in).
    """

    ours: str
    theirs: tuple[str, ...]
    transpose: bool = False

    def to_hf(self, t: torch.Tensor, sizes: list[int] | None = None) -> dict[str, torch.Tensor]:
        """Our tensor -> {HF name: tensor}; `sizes` splits a fused tensor (rows per HF tensor)."""
        parts = t.split(sizes, dim=0) if len(self.theirs) > 1 else (t,)
        if self.transpose:
            parts = tuple(p.t() if p.dim() == 2 else p for p in parts)
        return {name: p.contiguous() for name, p in zip(self.theirs, parts)}

    def from_hf(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [state[name] for name in self.theirs]
        if self.transpose:
            parts = [p.t() if p.dim() == 2 else p for p in parts]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


def rename(ours: str, theirs: str, *, bias: bool = True, transpose: bool = False) -> list[Rule]:
    """Rules for a module's `.weight` (and `.bias`) that are only renamed."""
    return [Rule(f"{ours}.{p}", (f"{theirs}.{p}",), transpose) for p in ("weight", "bias")[: 1 + bias]]


def fuse(ours: str, theirs: list[str], bias: bool) -> list[Rule]:
    """Rules for a fused module (our qkv, SwiGLU up) built from separate HF modules, rows in order."""
    out = [Rule(f"{ours}.weight", tuple(f"{t}.weight" for t in theirs))]
    if bias:
        out.append(Rule(f"{ours}.bias", tuple(f"{t}.bias" for t in theirs)))
    return out


@dataclass
class Family:
    """What one HF model family (or two close ones, like BERT and RoBERTa) needs to say about itself."""

    model_types: tuple[str, ...]
    prefix: Callable[[str], str]  # model_type -> base-model prefix in HF names ("bert", "transformer", ...)
    architectures: dict[str, str]  # HF class name -> our head
    config_from_hf: Callable[[dict[str, Any], str], ModelConfig]  # (HF config dict, head) -> ours
    config_to_hf: Callable[[ModelConfig], dict[str, Any]]  # ours -> HF config dict (no architectures)
    rules: Callable[[ModelConfig], list[Rule]]  # every tensor of our model, in HF's canonical names
    default_head: Callable[[dict[str, Any]], str]  # head when config.json names no architecture
    ignored: tuple[str, ...] = ()  # regexes of HF buffers that carry no weights (position_ids, masks)
    aliases: dict[str, str] = field(default_factory=dict)  # older HF names -> current ones
    head_prefixes: tuple[str, ...] = ()  # HF names that belong to a task head, not the backbone
    outside_base: tuple[str, ...] = ()  # HF names that sit next to the base model, not under its prefix

    def architecture(self, model_type: str, head: str) -> str:
        """The HF class for our head (e.g. roberta + seq_cls -> RobertaForSequenceClassification)."""
        for arch, h in self.architectures.items():
            if h == head and arch.lower().startswith(model_type):
                return arch
        supported = sorted({h for a, h in self.architectures.items() if a.lower().startswith(model_type)})
        raise ConfigError(f"head {head!r} has no Hugging Face {model_type} class; "
                          f"exportable heads: {supported}")


# -- reading checkpoints -----------------------------------------------------------------------------


def read_config(directory: Path) -> dict[str, Any]:
    return read_json_object(directory / "config.json", "a model directory holds config.json + weights")


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of an HF directory: model.safetensors (or its shards), else pytorch_model.bin (or its
    shards) read with weights_only=True, so no pickled code runs."""
    def shards(index: Path) -> list[Path]:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [directory / name for name in sorted(set(weight_map.values()))]

    if (directory / "model.safetensors").exists():
        files, reader = [directory / "model.safetensors"], "safetensors"
    elif (directory / "model.safetensors.index.json").exists():
        files, reader = shards(directory / "model.safetensors.index.json"), "safetensors"
    elif (directory / "pytorch_model.bin").exists():
        files, reader = [directory / "pytorch_model.bin"], "torch"
    elif (directory / "pytorch_model.bin.index.json").exists():
        files, reader = shards(directory / "pytorch_model.bin.index.json"), "torch"
    else:
        raise FileNotFoundError(
            f"{directory}: no weights found; expected model.safetensors or pytorch_model.bin "
            f"(or their sharded .index.json forms)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        if reader == "safetensors":
            state.update(read_safetensors(f))
        else:
            try:
                state.update(torch.load(f, map_location="cpu", weights_only=True))
            except Exception as e:  # an unpickling error names the forbidden global; pass it on
                raise CheckpointError(f"{f}: cannot be read safely with weights_only=True: {e}") from None
    return state


# -- converting ------------------------------------------------------------------------------------


def _split_sizes(rule: Rule, t: torch.Tensor, cfg: ModelConfig) -> list[int] | None:
    """Rows per HF tensor of a fused tensor: q|k|v by head counts, SwiGLU gate|up in halves."""
    n = len(rule.theirs)
    if n == 1:
        return None
    if n == 3:  # q, k, v
        q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        return [q, kv, kv]
    return [t.size(0) // n] * n


def state_to_hf(
    state: dict[str, torch.Tensor], cfg: ModelConfig, rules: list[Rule]
) -> dict[str, torch.Tensor]:
    """Our unique state dict -> HF canonical names (no base-model prefix)."""
    out: dict[str, torch.Tensor] = {}
    for rule in rules:
        t = state[rule.ours]
        out.update(rule.to_hf(t, _split_sizes(rule, t, cfg)))
    return out


def check_rules(own: dict[str, torch.Tensor], rules: list[Rule], family: str) -> list[Rule]:
    """Keep the rules for tensors the model has (a tied output matrix is stored once) and make sure
    every tensor has one: a gap here is a bug in the mapping, not in the checkpoint."""
    rules = [r for r in rules if r.ours in own]
    uncovered = sorted(set(own) - {r.ours for r in rules})
    if uncovered:
        raise NotImplementedError(f"interop/{family}: no Hugging Face name for {', '.join(uncovered)}")
    return rules


def normalise(state: dict[str, torch.Tensor], family: Family, prefix: str) -> dict[str, torch.Tensor]:
    """HF names as saved (with or without the `prefix.` of the base model, old aliases, buffers)
    -> canonical names without prefix."""
    ignored = [re.compile(p) for p in family.ignored]
    out = {}
    for name, t in state.items():
        if name.startswith(prefix + "."):
            name = name[len(prefix) + 1:]
        if any(p.search(name) for p in ignored):
            continue
        if name.endswith(".gamma"):  # TF-era LayerNorm names, still in some BERT checkpoints
            name = name[: -len("gamma")] + "weight"
        elif name.endswith(".beta"):
            name = name[: -len("beta")] + "bias"
        out[name] = t
    for old, new in family.aliases.items():
        if old in out:
            t = out.pop(old)
            out.setdefault(new, t)
    return out


def convert_state(
    ckpt: dict[str, torch.Tensor], own: dict[str, torch.Tensor], cfg: ModelConfig, family: Family,
    family_name: str, source: str, fresh_head: bool,
) -> dict[str, torch.Tensor]:
    """Checked HF tensors -> our state dict. Backbone tensors must match one for one (names and shapes);
    tensors of other heads than ours (e.g. BERT's pooler and NSP layer in an MLM checkpoint) are dropped
    with a warning; our head's tensors may be missing only when `fresh_head` (the caller asked for a new
    head), and are then left at their fresh initialisation."""
    rules = check_rules(own, family.rules(cfg), family_name)
    expected = state_to_hf(own, cfg, rules)
    # A tied output matrix is the embedding; HF keeps a copy under its own name in some files.
    tied_out = {n for n in ("lm_head.weight", "cls.predictions.decoder.weight", "lm_head.decoder.weight",
                            "generator_lm_head.weight") if n not in expected}
    ckpt = {k: v for k, v in ckpt.items() if k not in tied_out}

    def is_head(name: str) -> bool:
        return name.startswith(family.head_prefixes)

    missing = sorted(set(expected) - set(ckpt))
    unexpected = sorted(set(ckpt) - set(expected))
    dropped = [k for k in unexpected if is_head(k)]
    unexpected = [k for k in unexpected if not is_head(k)]
    fresh = [k for k in missing if fresh_head and is_head(k)]
    missing = [k for k in missing if k not in fresh]
    shapes = [f"{k}: checkpoint {tuple(ckpt[k].shape)} vs expected {tuple(expected[k].shape)}"
              for k in sorted(set(ckpt) & set(expected)) if ckpt[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(mismatch_report(
            f"{source} does not fit a {family_name} model with head {cfg.head!r} (Hugging Face names):",
            missing, unexpected, shapes,
            hint="check that config.json belongs to these weights (sizes, vocab_size, num_labels)"))
    if dropped:
        warnings.warn(f"{source}: ignoring {len(dropped)} tensors of a head this model does not have: "
                      f"{', '.join(dropped[:10])}", stacklevel=3)
    if fresh:
        warnings.warn(f"{source}: head {cfg.head!r} is not in the checkpoint; {len(fresh)} tensors are "
                      f"freshly initialised ({', '.join(fresh[:10])}) — train them before use", stacklevel=3)
        ckpt = {**ckpt, **{k: expected[k] for k in fresh}}
    return {r.ours: r.from_hf(ckpt) for r in rules}


# -- writing ---------------------------------------------------------------------------------------


def copy_writer(src: Path) -> Callable[[Path], None]:
    return lambda p: shutil.copyfile(src, p)


def label_names_from_hf(hf: dict[str, Any]) -> tuple[int, list[str]]:
    """(num_labels, label names) from id2label; HF's placeholder names LABEL_i are not kept."""
    id2label = hf.get("id2label") or {}
    num = hf.get("num_labels") or len(id2label) or 2
    names = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(num)]
    return num, [] if names == [f"LABEL_{i}" for i in range(num)] else names


def label_names_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    names = cfg.label_names or [f"LABEL_{i}" for i in range(cfg.num_labels)]
    return {"id2label": {str(i): n for i, n in enumerate(names)},
            "label2id": {n: i for i, n in enumerate(names)}}


def single_id(value: Any) -> int | None:
    """HF allows a list of ids (several EOS tokens, Llama 3); our config holds one: take the first."""
    if isinstance(value, list):
        return int(value[0]) if value else None
    return value


def require(hf: dict[str, Any], checks: dict[str, tuple[Any, Any]], model_type: str) -> None:
    """Refuse HF options that change the computation and that zhixing does not implement.

    checks: field -> (default when absent, the value zhixing supports)."""
    bad = [f"{k}={hf.get(k, default)!r} (supported: {want!r})" for k, (default, want) in checks.items()
           if hf.get(k, default) != want]
    if bad:
        raise ConfigError(f"{model_type} config.json: unsupported setting(s): {'; '.join(bad)}")


def pick(hf: dict[str, Any], key: str, model_type: str) -> Any:
    if key not in hf:
        raise ConfigError(f"{model_type} config.json: required field {key!r} is missing")
    return hf[key]


# Activation names: HF's ACT2FN keys <-> ours. Only exact equivalents are listed ("gelu_new" is the tanh
# approximation, which is what torch computes with approximate="tanh").
ACT_FROM_HF = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
               "silu": "silu", "swish": "silu"}
ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def activation_from_hf(name: Any, model_type: str, key: str = "hidden_act") -> str:
    if name not in ACT_FROM_HF:
        raise ConfigError(f"{model_type} config.json: {key}={name!r} is not supported; "
                          f"supported: {sorted(ACT_FROM_HF)}")
    return ACT_FROM_HF[name]


def exportable(cfg: ModelConfig, model_type: str, wants: dict[str, tuple[Any, ...]]) -> None:
    """Raise naming every config field whose value the HF `model_type` cannot express."""
    bad = [f"{k}={getattr(cfg, k)!r} (needs one of {list(v)})"
           for k, v in wants.items() if getattr(cfg, k) not in v]
    if bad:
        def value(v: Any) -> str:
            return str(v).lower() if isinstance(v, bool) or v is None else str(v)

        fix = " ".join(f"model.{k}={value(v[0])}" for k, v in wants.items() if getattr(cfg, k) not in v)
        raise ConfigError(f"cannot export to Hugging Face {model_type}: {'; '.join(bad)}; these fix the "
                          f"architecture, so a trained model cannot be converted: train it with {fix} "
                          "(e.g. appended to `zhixing pretrain`), or keep it as a zhixing model "
                          "(zhixing.load reads it)")
