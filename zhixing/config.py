"""Typed configuration: one dataclass per concern, named presets, YAML/JSON files, key=value overrides.

Unknown or mistyped keys are errors that name the key and the nearest valid one (DESIGN.md §2.3).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhixing.errors import ConfigError
from zhixing.io import atomic_write_text, read_json_object


def nearest(name: str, choices: typing.Iterable[str]) -> str:
    """' (did you mean X?)' for the closest of `choices`, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Turn a value read from YAML/JSON/the command line into the field's declared type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: cannot read {value!r} as {tp}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            hint = nearest(str(value), map(str, allowed))
            raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}{hint}")
        return value
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        return [_coerce(v, inner, key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


class Config:
    """Mixin for config dataclasses: validated construction from dicts, files and overrides."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config", ignore: typing.Iterable[str] = ()):
        """Build from a plain dict; unknown keys raise ConfigError naming the nearest valid key."""
        hints = typing.get_type_hints(cls)
        names = cls.field_names()
        kwargs = {}
        for key, value in data.items():
            if key in ignore:
                continue
            if key not in names:
                raise ConfigError(f"{source}: unknown key {key!r}{nearest(key, names)}")
            kwargs[key] = _coerce(value, hints[key], f"{source}: {key}")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def replace(self, **overrides: Any):
        return type(self).from_dict({**self.to_dict(), **overrides}, source=type(self).__name__)

    def override(self, items: typing.Iterable[str]):
        """Apply command-line style `key=value` strings."""
        updates = {}
        for item in items:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: expected key=value")
            key, value = item.split("=", 1)
            updates[key.strip()] = value.strip()
        return self.replace(**updates)

    def save_json(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")


Arch = typing.Literal["bert", "gpt", "transformer", "electra", "xlnet"]
PRUNABLE = ("bert", "electra", "gpt")  # families built from nn.layers.Block, one per layer: per-layer widths
Head = typing.Literal["none", "lm", "mlm", "pretraining", "seq_cls", "token_cls", "qa", "rtd"]


@dataclass
class ModelConfig(Config):
    """Every architecture zhixing builds, in one vocabulary (DESIGN.md §3)."""

    arch: Arch = "gpt"  # family: bert (encoder), gpt (decoder), transformer (encoder–decoder), electra, xlnet
    head: Head = "lm"  # task head on top of the backbone ("none" = backbone only; "rtd" = ELECTRA's detector)
    vocab_size: int = 50257  # number of token ids
    dim: int = 768  # width of the residual stream
    embed_dim: int | None = None  # width of the embeddings, projected to dim (ELECTRA; None = dim)
    num_layers: int = 12  # Transformer blocks (per stack for encoder–decoder)
    num_heads: int = 12  # query heads
    num_kv_heads: int | None = None  # key/value heads for grouped-query attention (None = num_heads)
    head_dim: int | None = None  # per-head width (None = dim // num_heads)
    ffn_dim: int | None = None  # feed-forward hidden width (None = 4 * dim)
    max_seq_len: int = 1024  # longest sequence the positions cover
    dropout: float = 0.0  # dropout on embeddings, residual branches and heads
    attn_dropout: float | None = None  # dropout on attention weights (None = dropout)
    activation: typing.Literal["gelu", "gelu_tanh", "relu", "silu", "swiglu"] = "gelu_tanh"  # FFN activation
    norm: typing.Literal["layernorm", "rmsnorm"] = "layernorm"  # normalisation layer
    norm_eps: float = 1e-5  # epsilon inside the norms
    pre_norm: bool = True  # pre-LN (GPT-2, Llama) or post-LN (BERT, original Transformer)
    position: typing.Literal["learned", "sinusoidal", "rotary", "none"] = "learned"  # positional encoding
    rope_theta: float = 10000.0  # rotary base frequency
    bias: bool = True  # biases in attention and FFN linear layers
    tie_embeddings: bool = True  # output projection shares the token embedding matrix
    type_vocab_size: int = 0  # BERT segment embeddings (0 = none)
    position_offset: int = 0  # RoBERTa: positions start at pad_token_id + 1 (0 = plain 0..T-1)
    embed_norm: bool = False  # LayerNorm right after the embeddings (BERT)
    final_norm: bool = True  # norm after the last block (pre-LN models)
    embed_scale: bool = False  # multiply token embeddings by sqrt(dim) (original Transformer)
    num_labels: int = 2  # classes for seq_cls / token_cls heads
    classifier_dropout: float | None = None  # dropout before classifier heads (None = dropout)
    # GPT seq_cls: read the last real token (GPT2ForSequenceClassification) or the mean over real tokens
    seq_pooling: typing.Literal["last", "mean"] = "last"
    # BERT seq_cls for relations (Baldini Soares et al. 2019, "entity start"): ids of the two entity-start
    # marker tokens; the classifier then reads [pooled; h(first marker); h(second marker)] ([] = pooled only)
    entity_markers: list[int] = field(default_factory=list)
    pad_token_id: int | None = None  # padding id (RoBERTa positions, encoder–decoder shifting)
    bos_token_id: int | None = None  # beginning-of-sequence id
    eos_token_id: int | None = None  # end-of-sequence id
    decoder_start_token_id: int | None = None  # first decoder input of encoder–decoder models
    initializer_range: float = 0.02  # std of the normal init
    attn_impl: typing.Literal["sdpa", "eager"] = "sdpa"  # fast fused attention or the explicit reference
    label_names: list[str] = field(default_factory=list)  # class names for classification heads
    generator_size: float = 0.25  # ELECTRA pretraining: generator width / discriminator width, in (0, 1]
    attn_type: typing.Literal["bi", "uni"] = "bi"  # XLNet: bidirectional, or causal ("uni", Transformer-XL)
    mem_len: int | None = None  # XLNet: past states per layer kept in `mems` (None = all of them)
    clamp_len: int | None = None  # XLNet: relative distances beyond ±clamp_len are clamped (None = none)
    heads_per_layer: list[int] = field(default_factory=list)  # heads per layer after pruning ([] = all)
    ffn_dims: list[int] = field(default_factory=list)  # FFN width per layer after pruning ([] = ffn_dim)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "num_layers", "num_heads", "max_seq_len"):  # before dividing by any
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("num_kv_heads", "head_dim", "ffn_dim"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1 (or null: the default), got {value!r}")
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        if self.head_dim is None:
            if self.dim % self.num_heads:
                raise ConfigError(
                    f"dim={self.dim} is not divisible by num_heads={self.num_heads}; set head_dim explicitly"
                )
            self.head_dim = self.dim // self.num_heads
        if self.ffn_dim is None:
            self.ffn_dim = 4 * self.dim
        if self.attn_dropout is None:
            self.attn_dropout = self.dropout
        if self.classifier_dropout is None:
            self.classifier_dropout = self.dropout
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.mem_len is not None and self.mem_len < 0:
            raise ConfigError(f"mem_len must be >= 0 (or None to keep every past state), got {self.mem_len}")
        if self.clamp_len is not None and self.clamp_len < 1:
            raise ConfigError(f"clamp_len must be >= 1 (or None for no clamping), got {self.clamp_len}")
        for name in ("vocab_size", "dim", "num_layers", "num_heads", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        projected = self.embed_dim is not None and self.embed_dim != self.dim
        if self.embed_dim is not None and (self.embed_dim < 1 or (projected and self.arch != "electra")):
            raise ConfigError(f"embed_dim={self.embed_dim}: expected a width >= 1, and only arch=electra "
                              f"projects its embeddings (use embed_dim=None for arch={self.arch})")
        if not 0 < self.generator_size <= 1:
            raise ConfigError(f"generator_size={self.generator_size}: expected 0 < generator_size <= 1, the "
                              "generator's width as a fraction of the discriminator's (ELECTRA-small: 0.25)")
        self._check_pruned()
        if self.label_names and len(self.label_names) != self.num_labels:
            raise ConfigError(
                f"label_names has {len(self.label_names)} names but num_labels={self.num_labels}"
            )

    def _check_pruned(self) -> None:
        """heads_per_layer / ffn_dims (written by zhixing.compress.prune): one entry per layer, each a
        width the unpruned layer had (heads: 1..num_heads, at least one head per layer)."""
        for name, top in (("heads_per_layer", self.num_heads), ("ffn_dims", self.ffn_dim)):
            sizes = getattr(self, name)
            if not sizes:
                continue
            if self.arch not in PRUNABLE:
                raise ConfigError(f"{name}: per-layer widths are supported for arch {', '.join(PRUNABLE)}, "
                                  f"not {self.arch}")
            if len(sizes) != self.num_layers:
                raise ConfigError(f"{name} has {len(sizes)} entries for num_layers={self.num_layers}; "
                                  "give one per layer (or [] for the unpruned widths)")
            bad = [s for s in sizes if not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= top]
            if bad:
                raise ConfigError(f"{name}: {bad[0]!r} is not a width between 1 and {top}")
        if self.heads_per_layer and self.num_kv_heads != self.num_heads:
            raise ConfigError("heads_per_layer: head pruning needs one key/value head per query head "
                              f"(num_kv_heads={self.num_kv_heads}, num_heads={self.num_heads})")

    def layer_heads(self, layer: int) -> int:
        """Attention heads of block `layer` (fewer than num_heads after head pruning)."""
        return self.heads_per_layer[layer] if self.heads_per_layer else self.num_heads

    def layer_ffn_dim(self, layer: int) -> int:
        """Feed-forward width of block `layer` (narrower than ffn_dim after neuron pruning)."""
        return self.ffn_dims[layer] if self.ffn_dims else self.ffn_dim

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named architecture (see `zhixing models`), with optional field overrides."""
        if not isinstance(name, str):
            raise ConfigError(f"preset must be a preset name (see `zhixing models`), got {name!r}")
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}{nearest(name, PRESETS)}; known: {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides}, source=f"preset {name}")

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelConfig:
        """Read a zhixing `config.json` (a directory or the file itself)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        data = read_json_object(path, "no config.json here; is this a model directory?")
        try:
            return cls.from_dict(data, source=str(path), ignore=("zhixing_version",))
        except ConfigError as e:
            if str(path) in str(e):
                raise
            raise ConfigError(f"{path}: {e}") from None


_BERT = dict(
    arch="bert", head="mlm", vocab_size=30522, max_seq_len=512, activation="gelu", norm_eps=1e-12,
    pre_norm=False, type_vocab_size=2, embed_norm=True, final_norm=False, dropout=0.1, pad_token_id=0,
)
_GPT2 = dict(arch="gpt", head="lm", vocab_size=50257, max_seq_len=1024, activation="gelu_tanh",
             bos_token_id=50256, eos_token_id=50256)
_LLAMA = dict(arch="gpt", head="lm", activation="swiglu", norm="rmsnorm", norm_eps=1e-6, position="rotary",
              bias=False, tie_embeddings=False)
_TRANSFORMER = dict(arch="transformer", head="lm", activation="relu", pre_norm=False, final_norm=False,
                    position="sinusoidal", embed_scale=True, dropout=0.1, pad_token_id=0, bos_token_id=1,
                    eos_token_id=2, decoder_start_token_id=1)
# XLNet: post-LN, relative positions (no absolute table; max_seq_len bounds one segment), tied LM head
_XLNET = dict(arch="xlnet", head="lm", vocab_size=32000, max_seq_len=512, activation="gelu", norm_eps=1e-12,
              pre_norm=False, final_norm=False, position="none", dropout=0.1, pad_token_id=5, bos_token_id=1,
              eos_token_id=2)

# ELECTRA (Clark et al. 2020, Table 6): BERT's encoder; head "pretraining" = generator + discriminator.
_ELECTRA = dict(
    arch="electra", head="pretraining", vocab_size=30522, max_seq_len=512, activation="gelu", norm_eps=1e-12,
    pre_norm=False, type_vocab_size=2, embed_norm=True, final_norm=False, dropout=0.1, pad_token_id=0,
)

PRESETS: dict[str, dict[str, Any]] = {
    # BERT (Devlin et al. 2019; Turc et al. 2019 for the small ones)
    "bert-tiny": {**_BERT, "dim": 128, "num_layers": 2, "num_heads": 2},
    "bert-mini": {**_BERT, "dim": 256, "num_layers": 4, "num_heads": 4},
    "bert-small": {**_BERT, "dim": 512, "num_layers": 4, "num_heads": 8},
    "bert-base": {**_BERT, "dim": 768, "num_layers": 12, "num_heads": 12},
    "bert-large": {**_BERT, "dim": 1024, "num_layers": 24, "num_heads": 16},
    "bert-base-chinese": {**_BERT, "vocab_size": 21128, "dim": 768, "num_layers": 12, "num_heads": 12},
    "roberta-base": {**_BERT, "vocab_size": 50265, "type_vocab_size": 1, "pad_token_id": 1,
                     "position_offset": 2, "norm_eps": 1e-5},
    # ELECTRA: the generator has the same depth, generator_size x the width, FFN and heads
    "electra-tiny": {**_ELECTRA, "embed_dim": 32, "dim": 64, "num_layers": 2, "num_heads": 4,
                     "max_seq_len": 128},
    "electra-small": {**_ELECTRA, "embed_dim": 128, "dim": 256, "num_layers": 12, "num_heads": 4,
                      "ffn_dim": 1024, "generator_size": 0.25},
    "electra-base": {**_ELECTRA, "dim": 768, "num_layers": 12, "num_heads": 12, "generator_size": 1 / 3},
    "electra-large": {**_ELECTRA, "dim": 1024, "num_layers": 24, "num_heads": 16, "generator_size": 0.25},
    # GPT-2 (Radford et al. 2019)
    "gpt-tiny": {**_GPT2, "dim": 64, "num_layers": 2, "num_heads": 4, "max_seq_len": 256},
    "gpt-mini": {**_GPT2, "dim": 384, "num_layers": 6, "num_heads": 6, "max_seq_len": 256},
    "gpt2": {**_GPT2, "dim": 768, "num_layers": 12, "num_heads": 12},
    "gpt2-medium": {**_GPT2, "dim": 1024, "num_layers": 24, "num_heads": 16},
    "gpt2-large": {**_GPT2, "dim": 1280, "num_layers": 36, "num_heads": 20},
    # Llama-style decoders (RoPE, RMSNorm, SwiGLU, grouped-query attention)
    "llama-tiny": {**_LLAMA, "vocab_size": 32000, "dim": 64, "num_layers": 2, "num_heads": 4,
                   "num_kv_heads": 2, "ffn_dim": 172, "max_seq_len": 512},
    "llama-160m": {**_LLAMA, "vocab_size": 32000, "dim": 768, "num_layers": 12, "num_heads": 12,
                   "ffn_dim": 3072, "max_seq_len": 2048},
    # The original encoder–decoder (Vaswani et al. 2017)
    "transformer-tiny": {**_TRANSFORMER, "vocab_size": 8000, "dim": 64, "num_layers": 2, "num_heads": 4,
                         "ffn_dim": 256, "max_seq_len": 256},
    "transformer-base": {**_TRANSFORMER, "vocab_size": 37000, "dim": 512, "num_layers": 6, "num_heads": 8,
                         "ffn_dim": 2048, "max_seq_len": 512},
    "transformer-big": {**_TRANSFORMER, "vocab_size": 37000, "dim": 1024, "num_layers": 6, "num_heads": 16,
                        "ffn_dim": 4096, "max_seq_len": 512, "dropout": 0.3},
    # XLNet (Yang et al. 2019)
    "xlnet-tiny": {**_XLNET, "dim": 64, "num_layers": 2, "num_heads": 4, "ffn_dim": 256, "max_seq_len": 256},
    "xlnet-base-cased": {**_XLNET, "dim": 768, "num_layers": 12, "num_heads": 12, "ffn_dim": 3072},
    "xlnet-large-cased": {**_XLNET, "dim": 1024, "num_layers": 24, "num_heads": 16, "ffn_dim": 4096},
}
