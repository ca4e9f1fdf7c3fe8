"""Quantization: the same model in fewer bytes (docs/compression.md, "Quantization").

    quantize(model, "dynamic-int8")        int8 weights (per output channel) and int8 activations
                                           quantized at run time: encoders on CPU, batch 1 to 32+
    quantize(model, "int8")                weight-only int8, per output channel: decoding
    quantize(model, "int4", group_size=64) weight-only int4, one scale and zero per group of inputs
    quantize(model, "bf16" | "fp16")       half-precision weights

The model is changed in place (its Linear layers are swapped) and returned; `model.quantization` records
the method (and group size), and marks the model so that it is not quantized twice.

    save(model, "out/")      config.json (+ "quantization": {...}), model.safetensors, the tokenizer
    zhixing.load("out/")     the quantized model again (zhixing generate / pipeline / serve use it as is)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from zhixing.errors import ConfigError
from zhixing.quant.checkpoint import load, save
from zhixing.quant.dynamic import dynamic_int8
from zhixing.quant.methods import GROUP_SIZES, METHODS, num_parameters, quantization_of, weight_only_record
from zhixing.quant.weight_only import QuantEmbedding, QuantLinear, quantize_weights


def quantize(model: nn.Module, method: str = "dynamic-int8", group_size: int | None = None) -> nn.Module:
    """Quantize `model`'s Linear layers in place with `method` (see the module docstring); returns it.

    The model is put in eval mode: quantized layers are for inference.
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: unknown quantization method; choose from {', '.join(METHODS)}")
    done = quantization_of(model)
    if done is not None:
        raise ConfigError(f"model: already quantized ({done['method']}); quantize the float model it came "
                          "from instead")
    model.eval()
    if method == "dynamic-int8":
        if group_size is not None:
            raise ConfigError(f"group_size={group_size}: dynamic-int8 uses one scale per output channel, "
                              "not groups; leave group_size unset")
        dynamic_int8(model)
        record: dict[str, Any] = {"method": method}
    else:
        record = weight_only_record(model, method, group_size)
        quantize_weights(model, method, record.get("group_size"))
    model.quantization = record
    return model


__all__ = ["quantize", "quantization_of", "num_parameters", "save", "load", "METHODS", "GROUP_SIZES",
           "QuantLinear", "QuantEmbedding"]
