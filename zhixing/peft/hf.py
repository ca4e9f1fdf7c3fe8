"""Hugging Face PEFT's adapter format: `adapter_config.json` + `adapter_model.safetensors`.

PEFT names an adapter tensor by the module it adapts in the transformers model:
`base_model.model.<HF module>.lora_A.weight` (r, in) and `.lora_B.weight` (out, r), and a fully trained
module (`modules_to_save`, e.g. the classifier) by its HF tensor names, `base_model.model.classifier.weight`.
The interop rules (zhixing.interop) say which HF tensors make up each of ours, so the same table converts
the adapters in both directions:

- our fused `attn.qkv` carries parts q | k | v; BERT's HF model has three Linears `query`, `key`,
  `value`, so part q is PEFT's `...attention.self.query` adapter, and an update on the whole qkv (one A)
  is three PEFT adapters sharing a copy of A (B split by rows) — the same function;
- GPT-2's `c_attn` is one module (a Conv1D: PEFT keeps A and B as Linear weights and sets
  fan_in_fan_out), so only an update on the whole qkv maps to it.
Prompt tuning's tensor is `prompt_embeddings` (num_virtual_tokens, dim), the same in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from zhixing.errors import CheckpointError, ConfigError
from zhixing.interop import family_for_config
from zhixing.interop.core import check_rules
from zhixing.peft.lora import WHOLE, LoRAConfig, add_lora, lora_layers, part_rows

PREFIX = "base_model.model."
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"

# Our head -> PEFT task_type (the PeftModel subclass that wraps the transformers class)
TASK_TYPES = {"seq_cls": "SEQ_CLS", "token_cls": "TOKEN_CLS", "qa": "QUESTION_ANS", "lm": "CAUSAL_LM",
              "none": "FEATURE_EXTRACTION"}


class _Names:
    """Our tensor names <-> full HF tensor names (with the base-model prefix where HF puts it)."""

    def __init__(self, model: nn.Module):
        cfg = model.config
        self.family, self.model_type = family_for_config(cfg)
        prefix = self.family.prefix(self.model_type)
        keep = _unique_names(model)
        unique = {b: v for k, v in model.state_dict().items() if (b := _base_key(k)) in keep}
        rules = check_rules(unique, self.family.rules(cfg), self.model_type)
        self.rules = {r.ours: r for r in rules}

        def full(name: str) -> str:
            if cfg.head == "none" or name.startswith(self.family.outside_base):
                return name
            return f"{prefix}.{name}"

        self.full = full
        self.prefix = prefix
        self.to_ours: dict[str, tuple[str, int, int]] = {}  # HF module -> (our module, index, of n)
        for r in rules:
            if r.ours.endswith(".weight"):
                mods = [full(t.removesuffix(".weight")) for t in r.theirs]
                for i, m in enumerate(mods):
                    self.to_ours[m] = (r.ours.removesuffix(".weight"), i, len(mods))
        self.tensor_to_ours = {full(r.theirs[0]): r for r in rules if len(r.theirs) == 1}

    def hf_modules(self, ours: str) -> list[str]:
        rule = self.rules.get(f"{ours}.weight")
        if rule is None:
            raise ConfigError(f"{ours} has no Hugging Face {self.model_type} name; "
                              "PEFT cannot hold its adapter")
        return [self.full(t.removesuffix(".weight")) for t in rule.theirs]

    def canonical(self, hf: str) -> str:
        """An HF module name as PEFT saved it on whatever class (BertModel or BertFor...) -> our full form."""
        bare = hf.removeprefix(self.prefix + ".")
        return self.full(bare)


def _base_key(key: str) -> str | None:
    """A state-dict name of an adapted model -> the base model's name (None for adapter tensors)."""
    if ".lora_" in key or key.startswith(("tok_embed.prompt.", "prefix_encoder.")) or ".prefix." in key:
        return None
    return key.replace("tok_embed.embed.", "tok_embed.", 1) if key.startswith("tok_embed.embed.") else key


def _unique_names(model: nn.Module) -> set[str]:
    names = model.unique_state_dict() if hasattr(model, "unique_state_dict") else model.state_dict()
    return {b for b in map(_base_key, names) if b is not None}


def _split_parts(owner_rows: dict[str, tuple[int, int]], n: int) -> list[str]:
    """Our part names of the n HF modules a fused matrix splits into, in row order."""
    named = sorted(((p, r) for p, r in owner_rows.items() if p != WHOLE), key=lambda kv: kv[1])
    if len(named) != n:
        raise ConfigError(f"cannot split a fused matrix with parts {[p for p, _ in named]} "
                          f"into {n} HF modules")
    return [p for p, _ in named]


def _owner_rows(model: nn.Module, path: str) -> dict[str, tuple[int, int]]:
    parent, _, _ = path.rpartition(".")
    return part_rows(path, model.get_submodule(parent), model.get_submodule(path))


def peft_state(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(adapter_config.json dict, tensors by PEFT name) for a model with LoRA adapters."""
    cfg: LoRAConfig = model.lora_config
    names = _Names(model)
    tensors: dict[str, torch.Tensor] = {}
    targets: list[str] = []
    for path, layer in lora_layers(model).items():
        hf = names.hf_modules(path)
        A = {p: layer.lora_A[p].detach() for p in layer.parts}
        B = {p: layer.lora_B[p].detach() for p in layer.parts}
        if len(hf) == 1:
            if list(layer.parts) != [WHOLE]:
                raise ConfigError(
                    f"{path}: Hugging Face {names.model_type} keeps it as one module ({hf[0]}); "
                    f"PEFT cannot hold separate updates on its parts {list(layer.parts)} — "
                    "adapt it whole (lora.targets=qkv)")
            pairs = {hf[0]: (A[WHOLE], B[WHOLE])}
        else:
            rows = _owner_rows(model, path)
            order = _split_parts(rows, len(hf))
            pairs = {}
            for m, part in zip(hf, order):
                if part in layer.parts:
                    pairs[m] = (A[part], B[part])
                elif WHOLE in layer.parts:  # one update on the whole matrix: each module a copy of A
                    a, b = rows[part]
                    pairs[m] = (A[WHOLE], B[WHOLE][a:b])
        for m, (a, b) in pairs.items():
            tensors[f"{PREFIX}{m}.lora_A.weight"] = a.clone().contiguous()
            tensors[f"{PREFIX}{m}.lora_B.weight"] = b.clone().contiguous()
            targets.append(m)
    saved = _save_modules(model, names, cfg.modules_to_save, PREFIX, tensors)
    config = {
        "peft_type": "LORA", "task_type": TASK_TYPES.get(model.config.head),
        "base_model_name_or_path": getattr(model, "base_path", None),
        "r": cfg.r, "lora_alpha": cfg.alpha, "lora_dropout": cfg.dropout,
        "target_modules": _compact_targets(names, targets), "modules_to_save": saved or None,
        "bias": "none", "fan_in_fan_out": names.model_type == "gpt2", "init_lora_weights": True,
        "use_rslora": False, "use_dora": False, "rank_pattern": {}, "alpha_pattern": {},
        "layers_to_transform": None, "layers_pattern": None, "inference_mode": True,
    }
    return config, tensors


def _save_modules(model: nn.Module, names: _Names, modules: list[str], prefix: str,
                  tensors: dict[str, torch.Tensor]) -> list[str]:
    """Add the tensors of fully trained modules to `tensors` by PEFT name; returns their HF module names."""
    saved: list[str] = []
    state = {b: t for k, t in model.state_dict().items() if (b := _base_key(k)) is not None}
    unique = _unique_names(model)
    for mod in modules:
        for key in sorted(k for k in state if k.startswith(mod + ".") and k in unique):
            rule = names.rules.get(key)
            if rule is None or len(rule.theirs) != 1:
                raise ConfigError(f"modules_to_save {mod}: {key} has no single Hugging Face tensor")
            (hf_name, t), = rule.to_hf(state[key].detach()).items()
            full = names.full(hf_name)
            tensors[prefix + full] = t.clone().contiguous()
            module = full.rsplit(".", 1)[0]
            if module not in saved:
                saved.append(module)
    return saved


def _saved_module_tensors(names: _Names, name: str, t: torch.Tensor, heads: dict[str, torch.Tensor]) -> bool:
    """A PEFT modules_to_save tensor (name without the PEFT prefix) into `heads` by our name; False when it
    names none of our tensors."""
    full = names.canonical(name.replace(".modules_to_save.default.", "."))
    rule = names.tensor_to_ours.get(full)
    if rule is None:
        return False
    heads[rule.ours] = rule.from_hf({rule.theirs[0]: t})
    return True


def _prefix_layers(model: nn.Module) -> list[nn.Module]:
    from zhixing.nn.attention import Attention

    return [m for m in model.modules() if isinstance(m, Attention) and not m.cross]


def _check_prefix_family(model: nn.Module, what: str) -> None:
    names = _Names(model)
    if names.model_type != "gpt2" or model.config.head != "lm":
        raise ConfigError(f"{what}: PEFT's prefix tuning runs on transformers models that take "
                          f"past_key_values; zhixing maps it for GPT-2 language models (CAUSAL_LM), "
                          f"not {names.model_type} with head {model.config.head!r}")


def prompt_tuning_peft_state(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(adapter_config.json dict, tensors) of a prompt-tuned model: `prompt_embeddings` (tokens, dim) and the
    modules_to_save, which PEFT's prompt-learning models name `base_model.<HF tensor>`. Prefix tuning
    (GPT-2): `prompt_embeddings` (tokens, layers·2·dim), per layer l the keys then the values, heads in
    order — PEFT's past_key_values layout."""
    cfg = model.prompt_config
    mc = model.config
    if cfg.kind == "prefix":
        _check_prefix_family(model, "prefix export")
        if cfg.modules_to_save:
            raise ConfigError("PEFT's CAUSAL_LM prefix tuning holds no modules_to_save; export without them")
        parts = []
        with torch.no_grad():  # a projected prefix is folded: its MLP's output is the prefix
            for attn in _prefix_layers(model):  # (heads, n, head_dim) -> (n, heads·head_dim), keys, values
                for t in attn.prefix():
                    parts.append(t.detach().permute(1, 0, 2).reshape(t.size(1), -1))
        config = {"peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": cfg.tokens,
                  "token_dim": mc.dim, "num_transformer_submodules": 1, "num_attention_heads": mc.num_heads,
                  "num_layers": mc.num_layers, "encoder_hidden_size": mc.dim, "prefix_projection": False,
                  "inference_mode": True, "base_model_name_or_path": getattr(model, "base_path", None)}
        return config, {"prompt_embeddings": torch.cat(parts, dim=1).contiguous()}
    # P-tuning: PEFT saves its prompt encoder's output, the virtual tokens themselves (what its inference
    # mode uses), so the trained encoder is folded into fixed vectors on export.
    with torch.no_grad():
        tensors = {"prompt_embeddings": model.tok_embed.prompt().detach().clone()}
    saved = _save_modules(model, _Names(model), cfg.modules_to_save, "base_model.", tensors)
    kind = {"prompt_tuning": "PROMPT_TUNING", "ptuning": "P_TUNING"}[cfg.kind]
    extra = {"encoder_reparameterization_type": cfg.encoder.upper(), "encoder_num_layers": 2,
             "encoder_hidden_size": cfg.hidden or mc.dim} if cfg.kind == "ptuning" else {}
    config = {"peft_type": kind, **extra, "task_type": TASK_TYPES.get(mc.head),
              "num_virtual_tokens": cfg.tokens, "token_dim": mc.dim, "num_transformer_submodules": 1,
              "num_attention_heads": mc.num_heads, "num_layers": mc.num_layers,
              "prompt_tuning_init": "RANDOM", "inference_mode": True, "modules_to_save": saved or None,
              "base_model_name_or_path": getattr(model, "base_path", None)}
    return config, tensors


def load_prompt_tuning_peft(model: nn.Module, config: dict[str, Any], tensors: dict[str, torch.Tensor],
                            source: str) -> nn.Module:
    from zhixing.peft.prompt import PromptConfig, add_prompt

    emb = tensors.pop("prompt_embeddings", None)
    if emb is None or emb.dim() != 2:
        raise CheckpointError(f"{source}: a PROMPT_TUNING adapter holds prompt_embeddings (tokens, dim)")
    if emb.size(1) != model.config.dim:
        raise CheckpointError(f"{source}: prompt_embeddings is {tuple(emb.shape)}, but this model's width is "
                              f"{model.config.dim} (an adapter for another base model?)")
    names, heads = _Names(model), {}
    unknown = [k for k, t in tensors.items() if not _saved_module_tensors(
        names, k.removeprefix("base_model.").removeprefix("model."), t, heads)]
    if unknown:
        raise CheckpointError(f"{source}: tensors that name no module of this model: "
                              f"{', '.join(unknown[:5])}")
    add_prompt(model, PromptConfig(kind="prompt_tuning", tokens=emb.size(0),
                                   modules_to_save=sorted({k.rsplit(".", 1)[0] for k in heads})))
    from zhixing.peft.lora import load_adapter_state
    load_adapter_state(model, {"tok_embed.prompt.prompt_embeddings": emb, **heads}, source)
    return model


def load_prefix_peft(model: nn.Module, config: dict[str, Any], tensors: dict[str, torch.Tensor],
                     source: str) -> nn.Module:
    from zhixing.peft.prompt import PromptConfig, add_prompt

    _check_prefix_family(model, source)
    if config.get("prefix_projection"):
        raise ConfigError(f"{source}: prefix_projection=true (an MLP reparameterisation) is not supported")
    emb = tensors.get("prompt_embeddings")
    mc = model.config
    want = (int(config.get("num_virtual_tokens", 0)), mc.num_layers * 2 * mc.dim)
    if emb is None or tuple(emb.shape) != want:
        got = None if emb is None else tuple(emb.shape)
        raise CheckpointError(f"{source}: prompt_embeddings is {got}, this model needs {want} "
                              f"(tokens, layers·2·dim) — an adapter for another base model?")
    n = want[0]
    add_prompt(model, PromptConfig(kind="prefix", tokens=n))
    chunks = emb.split(mc.dim, dim=1)
    with torch.no_grad():
        for i, attn in enumerate(_prefix_layers(model)):
            for t, c in ((attn.prefix.key, chunks[2 * i]), (attn.prefix.value, chunks[2 * i + 1])):
                t.copy_(c.reshape(n, attn.num_heads, attn.head_dim).permute(1, 0, 2))
    return model


def _compact_targets(names: _Names, targets: list[str]) -> list[str]:
    """Leaf names (`query`, `value`) when they pick exactly the adapted modules, else full module names."""
    chosen = set(targets)
    leaves = {t.rsplit(".", 1)[-1] for t in chosen}
    picked = {m for m in names.to_ours if m.rsplit(".", 1)[-1] in leaves}
    return sorted(leaves) if picked == chosen else sorted(chosen)


def save_peft(model: nn.Module, directory: str | Path) -> Path:
    """Write the model's LoRA adapter (and modules_to_save) or prompt-tuning prompt in PEFT's format into
    `directory`."""
    import json

    from safetensors.torch import save_file

    from zhixing.io import staged_files

    if getattr(model, "prompt_config", None) is not None:
        config, tensors = prompt_tuning_peft_state(model)
    else:
        config, tensors = peft_state(model)
    with staged_files(directory) as tmp:
        save_file(tensors, tmp / WEIGHTS_FILE, metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return Path(directory)


def read_peft(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from zhixing.io import read_json_object
    from zhixing.models.base import read_safetensors

    directory = Path(directory)
    config = read_json_object(directory / CONFIG_FILE, "a PEFT adapter directory holds adapter_config.json + "
                              "adapter_model.safetensors")
    weights = directory / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: missing; a PEFT adapter directory holds "
                                f"{CONFIG_FILE} + {WEIGHTS_FILE}")
    return config, read_safetensors(weights)


def load_peft(model: nn.Module, directory: str | Path) -> nn.Module:
    """Put a PEFT adapter (LoRA or prompt tuning) saved by `peft` (or by save_peft) on a zhixing model, in
    place. The model is the base the adapter was trained on (zhixing.load of the HF directory or a zhixing
    export of it); an adapter for another base is a CheckpointError naming the mismatching shapes."""
    config, tensors = read_peft(directory)
    kind = config.get("peft_type")
    if kind in ("PROMPT_TUNING", "P_TUNING"):  # P_TUNING files hold the encoder's output: fixed vectors
        return load_prompt_tuning_peft(model, config, tensors, str(directory))
    if kind == "PREFIX_TUNING":
        return load_prefix_peft(model, config, tensors, f"{directory}/{WEIGHTS_FILE}")
    if kind != "LORA":
        raise ConfigError(f"{directory}/{CONFIG_FILE}: peft_type {kind!r} is not supported; "
                          "zhixing loads LORA, PROMPT_TUNING, P_TUNING and (GPT-2) PREFIX_TUNING adapters")
    for key, ok in (("use_dora", False), ("use_rslora", False), ("bias", "none"), ("rank_pattern", {}),
                    ("alpha_pattern", {})):
        if config.get(key, ok) not in (ok, None):
            raise ConfigError(f"{directory}/{CONFIG_FILE}: {key}={config[key]!r} is not supported "
                              f"(expected {ok!r})")
    names = _Names(model)
    layout: dict[str, list[str]] = {}
    lora: dict[str, torch.Tensor] = {}
    heads: dict[str, torch.Tensor] = {}
    unknown = []
    for key, t in tensors.items():
        name = key.removeprefix(PREFIX)
        for ab in ("lora_A", "lora_B"):
            if f".{ab}." in name:
                module = names.canonical(name.split(f".{ab}.")[0])
                if module not in names.to_ours:
                    unknown.append(key)
                    break
                ours, i, n = names.to_ours[module]
                part = WHOLE if n == 1 else _split_parts(_owner_rows(model, ours), n)[i]
                if part not in layout.setdefault(ours, []):
                    layout[ours].append(part)
                lora[f"{ours}.{ab}.{part}"] = t
                break
        else:
            if not _saved_module_tensors(names, name, t, heads):
                unknown.append(key)
    if unknown:
        raise CheckpointError(f"{directory}/{WEIGHTS_FILE}: {len(unknown)} tensors name no module of this "
                              f"{names.model_type} model (an adapter for another architecture?): "
                              f"{', '.join(unknown[:5])}")
    saved = sorted({k.rsplit(".", 1)[0] for k in heads})
    lcfg = LoRAConfig(r=int(config["r"]), alpha=float(config.get("lora_alpha", config["r"])),
                      dropout=float(config.get("lora_dropout", 0.0)), targets=sorted(layout),
                      modules_to_save=saved)
    add_lora(model, lcfg, layout=layout)
    from zhixing.peft.lora import load_adapter_state
    load_adapter_state(model, {**lora, **heads}, f"{directory}/{WEIGHTS_FILE}")
    return model
