"""Weight-only quantization for decoding: int8 per output channel, int4 per group of inputs, bf16 / fp16.

Batch-1 decoding reads every weight once per token and does two flops with it, so its speed is set by
memory bandwidth, not arithmetic: the bytes of the weights are the cost. Storing them in fewer bits and
expanding them to floats inside the matmul kernel (in registers, never in memory) cuts that cost by 4x
(int8) or about 7x (int4 with its scales) against fp32.

int8, symmetric, one scale per output channel o:

    s_o = max_i |W_oi| / 127,   q_oi = round(W_oi / s_o) ∈ [-127, 127],   Ŵ_oi = s_o q_oi

int4, asymmetric, one scale and zero per group of g consecutive inputs (g = 32 / 64 / 128 / 256):

    s = (max W - min W) / 15,   z = min W + 8 s   (over the group),
    q = round((W - z) / s) + 8 ∈ [0, 15],   Ŵ = (q - 8) s + z

bf16 / fp16: Ŵ = W rounded to the half-precision format.

The matmul runs in bfloat16 on CPU, y = bf16(x) Ŵᵀ with float32 accumulation, through PyTorch's
weight-only kernels (`aten._weight_int8pack_mm`, `aten._weight_int4pack_mm_for_cpu`: AVX-512 code paths
for bf16 activations; their float32 paths are scalar and 20x slower). The int8 scales are applied to the
output in float32 (the kernel would round them to bf16); the int4 scales and zeros are rounded to bf16
when they are chosen, and q is chosen against the rounded values, so the stored numbers are exactly what
the kernel uses. Elsewhere (CUDA, or shapes the kernels do not take) the layer computes x Ŵᵀ from the
dequantized weight: the same function, without the speed.

Stored tensors (what `state_dict` and safetensors hold; portable, not the kernels' private layouts):
    int8: qweight int8 (out, in), scales float32 (out,)
    int4: qweight uint8 (out, in/2) — input 2j in the low nibble, 2j+1 in the high one —,
          scales and zeros bfloat16 (out, in/g)
    bf16 / fp16: weight (out, in) in that dtype
plus `bias` (float32) when the layer has one. The kernels' packed forms are built from them on first use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_ONLY = ("int8", "int4", "bf16", "fp16")
GROUP_SIZES = (32, 64, 128, 256)  # what aten._weight_int4pack_mm_for_cpu accepts
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


class QuantLinear(nn.Module):
    """A Linear layer whose weight is stored quantized (see the module docstring); inference only.

    x (..., in_features) -> (..., out_features) in x's dtype.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, method: str,
                 group_size: int | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.method, self.group_size = method, group_size
        n, k = out_features, in_features
        if method == "int8":
            self.register_buffer("qweight", torch.zeros(n, k, dtype=torch.int8))
            self.register_buffer("scales", torch.ones(n))
        elif method == "int4":
            assert group_size is not None and k % group_size == 0 and k % 2 == 0
            self.register_buffer("qweight", torch.zeros(n, k // 2, dtype=torch.uint8))
            self.register_buffer("scales", torch.ones(n, k // group_size, dtype=torch.bfloat16))
            self.register_buffer("zeros", torch.zeros(n, k // group_size, dtype=torch.bfloat16))
        elif method in HALF:
            self.register_buffer("weight", torch.zeros(n, k, dtype=HALF[method]))
        else:
            raise ValueError(f"method={method!r}: not a weight-only method ({', '.join(WEIGHT_ONLY)})")
        self.register_buffer("bias", torch.zeros(n) if bias else None)
        self._packed: tuple[torch.Tensor, ...] | None = None  # the kernel's layout, built on first use

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, method: str, group_size: int | None = None) -> QuantLinear:
        q = cls(linear.in_features, linear.out_features, linear.bias is not None, method, group_size)
        w = linear.weight.detach().float()
        if method == "int8":
            s = w.abs().amax(dim=1).clamp(min=1e-12) / 127
            q.qweight.copy_(torch.round(w / s[:, None]).clamp(-127, 127).to(torch.int8))
            q.scales.copy_(s)
        elif method == "int4":
            g = w.reshape(w.size(0), -1, group_size)  # (out, groups, g)
            lo, hi = g.amin(-1), g.amax(-1)
            s = ((hi - lo) / 15).clamp(min=1e-6).to(torch.bfloat16)
            z = (lo + 8 * s.float()).to(torch.bfloat16)
            codes = torch.round((g - z.float()[..., None]) / s.float()[..., None]) + 8
            codes = codes.clamp(0, 15).to(torch.uint8).reshape(w.size(0), -1)  # (out, in)
            q.qweight.copy_(codes[:, 0::2] | (codes[:, 1::2] << 4))
            q.scales.copy_(s)
            q.zeros.copy_(z)
        else:
            q.weight.copy_(w.to(HALF[method]))
        if linear.bias is not None:
            q.bias.copy_(linear.bias.detach().float())
        return q

    def codes(self) -> torch.Tensor:
        """int4: the 4-bit codes q ∈ [0, 15] as (out, in) uint8."""
        packed = self.qweight
        return torch.stack([packed & 15, packed >> 4], dim=-1).reshape(packed.size(0), -1)

    def dequantize(self) -> torch.Tensor:
        """Ŵ (out, in) in float32: the weight this layer multiplies by."""
        if self.method == "int8":
            return self.qweight.float() * self.scales[:, None]
        if self.method == "int4":
            codes = self.codes().float().reshape(self.out_features, -1, self.group_size)
            w = (codes - 8) * self.scales.float()[..., None] + self.zeros.float()[..., None]
            return w.reshape(self.out_features, self.in_features)
        return self.weight.float()

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Ŵ[index] (..., in) in float32, dequantizing only those rows (a tied embedding's lookup)."""
        if self.method == "int8":
            return self.qweight[index].float() * self.scales[index][..., None]
        if self.method == "int4":
            packed = self.qweight[index]  # (..., in/2)
            codes = torch.stack([packed & 15, packed >> 4], dim=-1).float()
            codes = codes.reshape(*index.shape, -1, self.group_size)  # (..., groups, g)
            w = (codes - 8) * self.scales[index].float()[..., None] + self.zeros[index].float()[..., None]
            return w.reshape(*index.shape, self.in_features)
        return self.weight[index].float()

    def _fast(self, x: torch.Tensor) -> bool:
        if x.device.type != "cpu" or self.in_features % 16:  # the CPU kernels' vector width over inputs
            return False
        return self.method != "fp16"  # fp16 has no faster path than dequantizing on a CPU without AVX512-FP16

    def _kernel_layout(self) -> tuple[torch.Tensor, ...]:
        if self._packed is None:
            if self.method == "int8":
                self._packed = (torch.ones(self.out_features, dtype=torch.bfloat16),)
            elif self.method == "int4":
                n_pad = -self.out_features % 16  # the kernel packs outputs in blocks of 16
                codes = F.pad(self.codes().to(torch.int32), (0, 0, 0, n_pad))
                packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
                sz = torch.stack([self.scales, self.zeros], dim=-1)  # (out, groups, 2)
                sz = F.pad(sz, (0, 0, 0, 0, 0, n_pad)).transpose(0, 1).contiguous()  # (groups, out, 2)
                self._packed = (packed, sz)
            else:
                self._packed = ()
        return self._packed

    def _apply(self, fn, recurse=True):
        """.to(device) moves the tensors; a dtype change (model.to(torch.float32), .half()) leaves them in
        the dtypes the format defines. The kernel layout is rebuilt on next use."""
        self._packed = None
        dtypes = {name: b.dtype for name, b in self._buffers.items() if b is not None}
        super()._apply(fn, recurse)
        for name, dtype in dtypes.items():
            if self._buffers[name].dtype != dtype:
                self._buffers[name] = self._buffers[name].to(dtype)
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        self._packed = None
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast(x):
            return F.linear(x, self.dequantize().to(x.dtype),
                            None if self.bias is None else self.bias.to(x.dtype))
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (rows, in)
        if self.method == "int8":
            (ones,) = self._kernel_layout()
            y = torch.ops.aten._weight_int8pack_mm(x2, self.qweight, ones).float() * self.scales
        elif self.method == "int4":
            packed, sz = self._kernel_layout()
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, packed, self.group_size, sz)
            y = y[:, : self.out_features].float()
        else:
            y = F.linear(x2, self.weight).float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.group_size else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, method={self.method}{group}")


class QuantEmbedding(nn.Module):
    """The token embedding of a model whose output layer is tied to it (GPT-2: logits = h Eᵀ), once
    that layer is quantized: the rows are looked up in the quantized matrix and dequantized, so the
    model holds the matrix once, in its quantized form. The QuantLinear is referenced, not registered
    (its tensors belong to the output layer's entry of the state dict)."""

    def __init__(self, linear: QuantLinear, padding_idx: int | None = None):
        super().__init__()
        object.__setattr__(self, "linear", linear)  # not a submodule: saved once, under the head's name
        self.num_embeddings, self.embedding_dim = linear.out_features, linear.in_features
        self.padding_idx = padding_idx
        self.dtype = torch.float32  # of the looked-up rows; follows model.to(dtype) as an Embedding would

    def _apply(self, fn, recurse=True):
        self.dtype = fn(torch.empty(0, dtype=self.dtype)).dtype
        return super()._apply(fn, recurse)

    @property
    def weight(self) -> torch.Tensor:
        """The whole dequantized matrix (float32): for code that reads an embedding's weight."""
        return self.linear.dequantize()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.linear.rows(ids).to(self.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, tied to a {self.linear.method} QuantLinear"


def quantize_weights(model: nn.Module, method: str, group_size: int | None = None,
                     compute: bool = True) -> int:
    """Swap every nn.Linear of `model` for a QuantLinear of `method` (in place); an nn.Embedding that shares
    its weight with one becomes a QuantEmbedding of it. compute=False builds the layers empty (shapes
    only) for a checkpoint to be loaded into. Returns the number of layers swapped. The caller has
    checked the method and that group_size divides every in_features."""
    embeddings = {id(m.weight): (name, m) for name, m in model.named_modules() if type(m) is nn.Embedding}
    linears = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    for name, lin in linears:
        if compute:
            q = QuantLinear.from_linear(lin, method, group_size)
        else:
            q = QuantLinear(lin.in_features, lin.out_features, lin.bias is not None, method, group_size)
        set_submodule(model, name, q)
        tied = embeddings.get(id(lin.weight))
        if tied is not None:
            emb_name, emb = tied
            set_submodule(model, emb_name, QuantEmbedding(q, emb.padding_idx))
    return len(linears)


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)
