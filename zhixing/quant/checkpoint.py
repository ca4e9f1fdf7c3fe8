"""A quantized model on disk: `config.json` with a `quantization` section, `model.safetensors` with the
quantized tensors (weight-only.py's docstring lists them), the tokenizer beside them.

    {"arch": "gpt", ..., "quantization": {"method": "int4", "group_size": 64}}

`zhixing.load` (hub.py) sees the section and comes here, so `zhixing generate`, `zhixing.pipeline` and
`zhixing serve` open a quantized directory like any other. Loading builds the float model's skeleton,
swaps its Linear layers for empty quantized ones of the recorded method, and reads the tensors into them
(every missing, unexpected or mis-shaped tensor is named, as for a float checkpoint).

dynamic-int8 is stored as int8 weights with float64 per-channel scales (PyTorch's own packed form is
not a tensor safetensors can hold) and rebuilt from exactly those numbers on load.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zhixing.config import ModelConfig
from zhixing.errors import CheckpointError, ConfigError
from zhixing.io import staged_files
from zhixing.models.base import Model, read_safetensors, write_model_files
from zhixing.quant.dynamic import is_dynamic_linear
from zhixing.quant.methods import METHODS, quantization_of, weight_only_record
from zhixing.quant.weight_only import QuantLinear, quantize_weights, set_submodule


def save(model: Model, directory: str | os.PathLike, tokenizer: Any = None,
         extra_files: tuple[Path, ...] = ()) -> Path:
    """Write a quantized `model` (and `tokenizer`, default `model.tokenizer`) to `directory`, atomically;
    `extra_files` (e.g. the source's generation_config.json) are copied along."""
    record = quantization_of(model)
    if record is None:
        raise ConfigError("model: not quantized; save a float model with model.save_pretrained, or "
                          "quantize it first (zhixing.quant.quantize)")
    state = dynamic_state(model) if record["method"] == "dynamic-int8" else model.unique_state_dict()
    config = {**model.config.to_dict(), "quantization": dict(record)}
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    with staged_files(directory) as tmp:
        write_model_files(tmp, state, config, tokenizer,
                          metadata={"format": "pt", "library": "zhixing", "quantization": record["method"]})
        for f in extra_files:
            shutil.copyfile(f, tmp / Path(f).name)
    return Path(directory)


def dynamic_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of a dynamic-int8 model: each quantized Linear as qweight int8 (out, in), scales
    float64 (out,), bias; everything else as in the float model (tied tensors once)."""
    dynamic = {name: m for name, m in model.named_modules() if is_dynamic_linear(m)}
    state: dict[str, torch.Tensor] = {}
    for name, m in dynamic.items():
        w = m.weight()  # a per-channel quantized tensor, symmetric: zero points are 0
        state[f"{name}.qweight"] = w.int_repr()
        state[f"{name}.scales"] = w.q_per_channel_scales().double()
        if m.bias() is not None:
            state[f"{name}.bias"] = m.bias().detach().float()
    seen = set()
    for key, t in model.state_dict().items():
        if any(key.startswith(name + ".") for name in dynamic):
            continue
        ptr = (t.data_ptr(), t.shape, t.stride())
        if ptr in seen:
            continue
        seen.add(ptr)
        state[key] = t
    return state


def load(directory: str | os.PathLike, data: dict[str, Any], **config_overrides: Any) -> Model:
    """The quantized model in `directory` (whose config.json holds `data`); see the module docstring."""
    directory = Path(directory)
    config_file, weights = directory / "config.json", directory / "model.safetensors"
    record = data["quantization"]
    method = record.get("method") if isinstance(record, dict) else None
    if method not in METHODS:
        raise CheckpointError(f"{config_file}: quantization.method={method!r} unknown; this version reads "
                              f"{', '.join(METHODS)}")
    config = ModelConfig.from_dict(data, source=str(config_file), ignore=("zhixing_version", "quantization"))
    if config_overrides:
        config = config.replace(**config_overrides)
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: missing; a quantized model directory holds config.json + "
                                "model.safetensors")
    model = Model.build(config).eval()
    state = read_safetensors(weights)
    if method == "dynamic-int8":
        return load_dynamic(model, state, weights, record)
    try:
        checked = weight_only_record(model, method, record.get("group_size"))
    except ConfigError as e:
        raise CheckpointError(f"{config_file}: quantization: {e}") from None
    if method == "int4":
        check_groups(state, checked["group_size"], weights, config_file)
    quantize_weights(model, method, checked.get("group_size"), compute=False)
    model.load_weights(state, source=str(weights))
    model.quantization = checked
    return model


def check_groups(state: dict[str, torch.Tensor], group_size: int, weights: Path, config_file: Path) -> None:
    """An int4 file's scales must have in_features / group_size columns for the group size config.json
    names; a mismatch means the two files come from different quantizations."""
    for key, q in state.items():
        if not key.endswith(".qweight") or q.dim() != 2:
            continue
        scales = state.get(key[: -len("qweight")] + "scales")
        in_features = 2 * q.size(1)
        if scales is not None and scales.dim() == 2 and scales.size(1) * group_size != in_features:
            raise CheckpointError(
                f"{weights}: {key[:-8]} holds {scales.size(1)} int4 groups per row for {in_features} inputs "
                f"(group size {in_features / scales.size(1):g}), but {config_file} says group_size="
                f"{group_size}; the two files come from different quantizations: quantize the model again")


def load_dynamic(model: Model, state: dict[str, torch.Tensor], weights: Path, record: dict) -> Model:
    """Rebuild a dynamic-int8 model from its int8 weights and scales (not quantized again: the same
    numbers)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    linears = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    tied = {id(p) for name, m in model.named_modules() if not isinstance(m, nn.Linear)
            for p in m.parameters(recurse=False)}
    quantized = {}
    for name, lin in linears:
        q, s = state.pop(f"{name}.qweight", None), state.pop(f"{name}.scales", None)
        if q is None or s is None:
            raise CheckpointError(f"{weights}: {name}.qweight / {name}.scales missing; the file is not the "
                                  "dynamic-int8 quantization of this model")
        if q.shape != lin.weight.shape:
            raise CheckpointError(f"{weights}: {name}.qweight: checkpoint {tuple(q.shape)} vs model "
                                  f"{tuple(lin.weight.shape)}")
        quantized[name] = (q, s)
        if id(lin.weight) not in tied:  # stands in for the float weight in load_weights' completeness check
            state[f"{name}.weight"] = q.float() * s.float()[:, None]
    model.load_weights(state, source=str(weights))
    for name, lin in linears:
        q, s = quantized[name]
        with warnings.catch_warnings():  # quantized tensors are deprecated in favour of torchao
            warnings.simplefilter("ignore")
            qw = torch._make_per_channel_quantized_tensor(q, s, torch.zeros_like(s, dtype=torch.long), 0)
            dq = DynamicLinear(lin.in_features, lin.out_features, bias_=lin.bias is not None,
                               dtype=torch.qint8)
            dq.set_weight_bias(qw, None if lin.bias is None else lin.bias.detach().float())
        set_submodule(model, name, dq)
    model.quantization = {"method": "dynamic-int8", **{k: v for k, v in record.items() if k != "method"}}
    return model


__all__ = ["save", "load", "QuantLinear"]
