"""The quantization methods, their settings and the record a quantized model carries."""

from __future__ import annotations

from typing import Any

from torch import nn

from zhixing.errors import ConfigError
from zhixing.quant.weight_only import GROUP_SIZES, WEIGHT_ONLY

METHODS = ("dynamic-int8", *WEIGHT_ONLY)
DEFAULT_GROUP_SIZE = 64


def quantization_of(model: nn.Module) -> dict[str, Any] | None:
    """The `quantization` record of a quantized model ({"method": ..., ...}), None for a float one."""
    return getattr(model, "quantization", None)


def weight_only_record(model: nn.Module, method: str, group_size: int | None) -> dict[str, Any]:
    """{"method", "group_size" (int4)} after checking that the group size suits every Linear of `model`."""
    if method != "int4":
        if group_size is not None:
            raise ConfigError(f"group_size={group_size}: only int4 quantizes in groups; {method} uses "
                              + ("one scale per output channel" if method == "int8" else "no scales")
                              + "; leave group_size unset")
        return {"method": method}
    group_size = DEFAULT_GROUP_SIZE if group_size is None else group_size
    if group_size not in GROUP_SIZES:
        sizes = ", ".join(map(str, GROUP_SIZES))
        raise ConfigError(f"group_size={group_size}: int4 groups must have {sizes} inputs (what the CPU "
                          "int4 kernel takes)")
    for name, m in model.named_modules():
        if type(m) is nn.Linear and m.in_features % group_size:
            raise ConfigError(f"group_size={group_size} does not divide in_features={m.in_features} of "
                              f"{name}; choose a group size that divides every layer's input width")
    return {"method": method, "group_size": group_size}


def num_parameters(model: nn.Module) -> int:
    """The parameters a quantized model stands for: its float ones (Model.num_parameters) plus the
    weights and biases of its quantized layers, which are buffers, not parameters."""
    from zhixing.quant.dynamic import is_dynamic_linear
    from zhixing.quant.weight_only import QuantLinear

    total = model.num_parameters()
    for m in model.modules():
        if isinstance(m, QuantLinear):
            total += m.in_features * m.out_features + (m.out_features if m.bias is not None else 0)
        elif is_dynamic_linear(m):
            total += m.in_features * m.out_features + (m.out_features if m.bias() is not None else 0)
    return total
