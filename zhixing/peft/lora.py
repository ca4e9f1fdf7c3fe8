"""LoRA (Hu et al. 2021): a frozen linear map plus a trainable low-rank update.

    h = W x + (α / r) · B A dropout(x),    A ∈ R^{r×in} (Kaiming-uniform),  B ∈ R^{out×r} (zeros)

so training starts from the pretrained function (B = 0) and only r·(in + out) numbers per matrix learn.
After training the update folds into the weight, W' = W + (α/r) B A, and costs nothing at inference;
`unmerge` subtracts it again.

zhixing fuses q | k | v into one `attn.qkv` Linear (and SwiGLU's gate | up into one `ffn.up`), while
LoRA papers and PEFT put an adapter on `query` and `value` separately. A `LoRALinear` therefore carries
one (A, B) pair per *part*: a named row range of the output (q, k, v of qkv; gate, up of a gated up;
`all` for the whole matrix), so "query,value" adapts exactly the query and value rows, each with its own
rank-r update, and "qkv" puts one rank-r update on the whole fused matrix (GPT-2's c_attn).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zhixing.errors import CheckpointError, ConfigError
from zhixing.nn.attention import Attention
from zhixing.nn.layers import FeedForward

WHOLE = "all"  # the part name of an update on the whole matrix

# Target names users write -> (module kind, part). Module kinds: the attribute paths below.
ALIASES: dict[str, tuple[str, str]] = {
    "query": ("attn.qkv", "q"), "q": ("attn.qkv", "q"), "q_proj": ("attn.qkv", "q"),
    "key": ("attn.qkv", "k"), "k": ("attn.qkv", "k"), "k_proj": ("attn.qkv", "k"),
    "value": ("attn.qkv", "v"), "v": ("attn.qkv", "v"), "v_proj": ("attn.qkv", "v"),
    "qkv": ("attn.qkv", WHOLE), "c_attn": ("attn.qkv", WHOLE),
    "o": ("attn.o", WHOLE), "output": ("attn.o", WHOLE), "o_proj": ("attn.o", WHOLE),
    "up": ("ffn.up", WHOLE), "gate": ("ffn.up", "gate"), "up_proj": ("ffn.up", "up"),
    "gate_proj": ("ffn.up", "gate"), "down": ("ffn.down", WHOLE), "down_proj": ("ffn.down", WHOLE),
    "cross.q": ("cross_attn.q", WHOLE), "cross.kv": ("cross_attn.kv", WHOLE),
    "cross.k": ("cross_attn.kv", "k"), "cross.v": ("cross_attn.kv", "v"),
    "cross.o": ("cross_attn.o", WHOLE),
}
ALL_LINEAR = ("qkv", "o", "up", "down", "cross.q", "cross.kv", "cross.o")


@dataclass
class LoRAConfig:
    """r: the rank; alpha: the scale numerator (update scaled by alpha / r); dropout on the adapter's input;
    targets: names from ALIASES ("query,value", "qkv", ...), "all-linear", or module paths ("layers.0.attn.o",
    "attn.qkv:q" for one part); modules_to_save: module names trained in full (a task head)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["query", "value"])
    modules_to_save: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = [t.strip() for t in self.targets.split(",") if t.strip()]
        if isinstance(self.modules_to_save, str):
            self.modules_to_save = [t.strip() for t in self.modules_to_save.split(",") if t.strip()]
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ConfigError(f"lora.r={self.r!r}: the rank must be a positive integer (e.g. 8)")
        if not self.alpha > 0:
            raise ConfigError(f"lora.alpha={self.alpha!r}: the scale must be > 0 (e.g. 16, twice r)")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout={self.dropout!r}: must be in [0, 1)")
        if not self.targets:
            raise ConfigError("lora.targets is empty: name the layers to adapt, "
                              "e.g. query,value or all-linear")

    @property
    def scale(self) -> float:
        return self.alpha / self.r

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoRALinear(nn.Linear):
    """A Linear whose weight and bias are the (frozen) base layer's own tensors, plus one low-rank update
    per part. State-dict names stay `<name>.weight` / `.bias`, so the base model's checkpoints still fit;
    the updates are `<name>.lora_A.<part>` (r, in) and `<name>.lora_B.<part>` (rows, r)."""

    def __init__(self, base: nn.Linear, parts: dict[str, tuple[int, int]], r: int, alpha: float,
                 dropout: float = 0.0):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.r, self.alpha, self.scale = r, alpha, alpha / r
        self.parts = dict(parts)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        w = base.weight
        self.lora_A = nn.ParameterDict({p: nn.Parameter(w.new_empty(r, self.in_features)) for p in parts})
        self.lora_B = nn.ParameterDict({p: nn.Parameter(w.new_zeros(b - a, r))
                                        for p, (a, b) in parts.items()})
        for a in self.lora_A.values():
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # nn.Linear's (and PEFT's) init
        self.merged = False

    def delta(self) -> torch.Tensor:
        """(α/r) B A as a full (out, in) matrix (zeros outside the adapted parts)."""
        d = torch.zeros_like(self.weight)
        for p, (a, b) in self.parts.items():
            d[a:b] += self.scale * (self.lora_B[p] @ self.lora_A[p]).to(d.dtype)
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.merged:
            return y
        h = self.lora_dropout(x)
        if list(self.parts.values()) == [(0, self.out_features)]:
            (p,) = self.parts
            return y + self.scale * F.linear(F.linear(h, self.lora_A[p]), self.lora_B[p])
        pieces, at = [], 0
        for p, (a, b) in sorted(self.parts.items(), key=lambda kv: kv[1]):
            if a > at:
                pieces.append(y.new_zeros(*y.shape[:-1], a - at))
            pieces.append(self.scale * F.linear(F.linear(h, self.lora_A[p]), self.lora_B[p]))
            at = b
        if at < self.out_features:
            pieces.append(y.new_zeros(*y.shape[:-1], self.out_features - at))
        return y + torch.cat(pieces, dim=-1)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight += self.delta()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight -= self.delta()
            self.merged = False

    def plain(self) -> nn.Linear:
        """An nn.Linear with the merged weight (the update folded in), sharing nothing with this one."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.weight if self.merged else self.weight + self.delta())
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}, parts={list(self.parts)}"


# -- finding the layers to adapt ------------------------------------------------------------------


def part_rows(module_path: str, owner: nn.Module, linear: nn.Linear) -> dict[str, tuple[int, int]]:
    """The named row ranges of one Linear: q/k/v of a fused qkv, k/v of cross-attention's kv, gate/up of a
    gated feed-forward, and always `all`."""
    n = linear.out_features
    rows = {WHOLE: (0, n)}
    leaf = module_path.rsplit(".", 1)[-1]
    if isinstance(owner, Attention) and leaf in ("qkv", "kv"):
        q, kv = owner.num_heads * owner.head_dim, owner.num_kv_heads * owner.head_dim
        if leaf == "qkv":
            rows.update(q=(0, q), k=(q, q + kv), v=(q + kv, q + 2 * kv))
        else:
            rows.update(k=(0, kv), v=(kv, 2 * kv))
    if isinstance(owner, FeedForward) and leaf == "up" and owner.gated:
        rows.update(gate=(0, n // 2), up=(n // 2, n))
    return rows


def candidates(model: nn.Module) -> dict[str, tuple[nn.Module, nn.Linear]]:
    """Every Linear inside the model's Transformer blocks, by its full path, with its owning module
    (heads, poolers and classifiers are not candidates: they go in modules_to_save)."""
    out = {}
    for name, owner in model.named_modules():
        if not isinstance(owner, (Attention, FeedForward)):
            continue
        for leaf, child in owner.named_children():
            if isinstance(child, nn.Linear):
                out[f"{name}.{leaf}"] = (owner, child)
    return out


def _kind(path: str) -> str:
    """layers.3.attn.qkv -> attn.qkv; decoder.1.cross_attn.kv -> cross_attn.kv."""
    parts = path.split(".")
    return ".".join(parts[-2:])


def resolve_targets(model: nn.Module, targets: list[str]) -> dict[str, list[str]]:
    """{module path: [part, ...]} for the targets; a target that matches nothing is a ConfigError listing
    what could be adapted."""
    found = candidates(model)
    names = [(t, True) for t in targets if t != "all-linear"]
    if "all-linear" in targets:  # every kind this model has; cross-attention only where there is some
        names += [(t, False) for t in ALL_LINEAR if t not in targets]
    chosen: dict[str, list[str]] = {}
    for target, explicit in names:
        hits = 0
        if target in ALIASES:
            kind, part = ALIASES[target]
            matches = [(p, part) for p in found if _kind(p) == kind]
        else:
            path_pat, _, part = target.partition(":")
            part = part or WHOLE
            matches = [(p, part) for p in found
                       if p == path_pat or p.endswith("." + path_pat) or re.fullmatch(path_pat, p)]
        for path, part in matches:
            rows = part_rows(path, *found[path])
            if part not in rows:
                if target in ALIASES:
                    continue
                raise ConfigError(f"lora target {target!r}: {path} has parts {', '.join(rows)}, not {part!r}")
            if part not in chosen.setdefault(path, []):
                chosen[path].append(part)
            hits += 1
        if hits == 0 and explicit:
            kinds = {_kind(p) for p in found}
            usable = sorted(a for a, (k, _) in ALIASES.items() if k in kinds)
            raise ConfigError(f"lora target {target!r} matches no layer of this {type(model).__name__}; "
                              f"candidates: {', '.join(usable)}, all-linear, or a path like "
                              f"{next(iter(found), 'layers.0.attn.o')}")
    for path, parts in chosen.items():  # an update on the whole matrix and one on a part would overlap
        if WHOLE in parts and len(parts) > 1:
            raise ConfigError(f"lora targets adapt {path} both whole and by part "
                              f"({', '.join(sorted(parts))}); "
                              "choose one (e.g. qkv or query,value)")
    return chosen


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def add_lora(model: nn.Module, config: LoRAConfig,
             layout: dict[str, list[str]] | None = None) -> nn.Module:
    """Put LoRA updates on `model` in place and freeze everything else except `config.modules_to_save`.

    `layout` ({module path: [part, ...]}) replaces target matching (used when loading a saved adapter).
    Returns the model; `model.lora_config` records the config."""
    if getattr(model, "lora_config", None) is not None:
        raise ConfigError("this model already has LoRA adapters; merge_lora() or load a fresh base model")
    layout = layout if layout is not None else resolve_targets(model, config.targets)
    found = candidates(model)
    for path in layout:  # a loaded adapter may adapt other Linears too (PEFT's "dense" hits BERT's pooler)
        module = _find_module(model, path)
        if path not in found and isinstance(module, nn.Linear):
            parent = path.rpartition(".")[0]
            found[path] = (model.get_submodule(parent) if parent else model, module)
    absent = [f"{p}:{part}" for p, parts in layout.items() for part in parts
              if p not in found or part not in part_rows(p, *found[p])]
    if absent:
        raise CheckpointError(f"the adapter adapts {', '.join(absent[:10])}, which this "
                              f"{type(model).__name__} lacks (an adapter for another base model?); "
                              f"its layers: {', '.join(list(found)[:6])}, ...")
    model.requires_grad_(False)
    for path, parts in layout.items():
        rows = part_rows(path, *found[path])
        layer = LoRALinear(found[path][1], {p: rows[p] for p in parts}, config.r, config.alpha,
                           config.dropout)
        _set_module(model, path, layer)
    saved = set()
    for name in config.modules_to_save:
        module = _find_module(model, name)
        if module is not None:
            module.requires_grad_(True)
            saved.add(name)
    missing = [n for n in config.modules_to_save if n not in saved]
    if missing:
        raise ConfigError(f"modules_to_save {missing} not in this {type(model).__name__}; "
                          f"its top-level modules: {', '.join(n for n, _ in model.named_children())}")
    model.lora_config = config
    return model


def _find_module(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_layout(model: nn.Module) -> dict[str, list[str]]:
    return {n: list(m.parts) for n, m in lora_layers(model).items()}


def merge_lora(model: nn.Module) -> None:
    """Fold every update into its weight (W += (α/r) B A); the forward then skips the adapters."""
    for m in lora_layers(model).values():
        m.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Undo merge_lora: W -= (α/r) B A."""
    for m in lora_layers(model).values():
        m.unmerge()


def remove_lora(model: nn.Module) -> nn.Module:
    """The plain model with every update folded in: LoRALinears become nn.Linears, all parameters
    trainable again, `lora_config` gone. In place; returns the model."""
    for path, m in lora_layers(model).items():
        _set_module(model, path, m.plain())
    model.requires_grad_(True)
    model.lora_config = None
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What an adapter file holds: the LoRA tensors and the modules_to_save, by our names."""
    cfg: LoRAConfig = model.lora_config
    keep = tuple(f"{n}." for n in cfg.modules_to_save)
    return {k: v for k, v in model.state_dict().items()
            if ".lora_A." in k or ".lora_B." in k or k.startswith(keep)}


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy an adapter's tensors into a model that has its layout; mismatching shapes (an adapter made for
    another base model) are a CheckpointError naming each one."""
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: adapter {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(state) & set(own)) if state[k].shape != own[k].shape]
    if unexpected or shapes:
        from zhixing.models.base import mismatch_report
        raise CheckpointError(mismatch_report(
            f"{source} does not fit this {type(model).__name__} (an adapter for another base model?):",
            [], unexpected, shapes))
    model.load_state_dict(state, strict=False)


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts (tied tensors once)."""
    seen, train, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        train += p.numel() if p.requires_grad else 0
    return train, total
