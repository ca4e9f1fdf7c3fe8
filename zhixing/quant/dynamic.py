"""Dynamic int8 quantization of the Linear layers (for encoders on CPU).

Each weight matrix W (out, in) is stored as int8 with one scale per output channel,

    s_o = max_i |W_oi| / 127,    q_oi = round(W_oi / s_o) ∈ [-127, 127],

and at run time each input x is quantized on the fly ("dynamically") with a scale taken from its own
range, the product q_x q_Wᵀ is computed in int8 x int8 -> int32 arithmetic (fbgemm's AVX-512 VNNI / AVX2
kernels on x86), and rescaled to float:  y ≈ s_x (q_x q_Wᵀ) s_W + b.  Weights take a quarter of the
bytes and the multiply-adds run on 8-bit lanes, which is where the speed-up at batch 32 comes from.

The kernels are PyTorch's (`torch.ao.quantization.quantize_dynamic`); what this module adds is the
choice of layers, the per-channel weight scales (more accurate than one scale per tensor) and the
`quantization` record that marks the model as quantized.
"""

from __future__ import annotations

import warnings

from torch import nn


def dynamic_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of `model` in place by a dynamically quantized int8 Linear (per-channel
    weight scales); returns the model. CPU inference only (no gradients, no CUDA)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = {name for name, m in model.named_modules() if type(m) is nn.Linear}
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name in names}, inplace=True)
    return model


def is_dynamic_linear(module: nn.Module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return isinstance(module, DynamicLinear)
