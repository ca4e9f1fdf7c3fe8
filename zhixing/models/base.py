"""What every zhixing model shares: the output dataclass, weight init, save / load."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from zhixing.config import ModelConfig
from zhixing.errors import CheckpointError
from zhixing.io import staged_files


@dataclass
class ModelOutput:
    """What a forward pass returns. Shapes: (batch, seq, ...) unless noted."""

    last_hidden_state: torch.Tensor  # (batch, seq, dim): the top of the stack (decoder's, for enc–dec)
    logits: torch.Tensor | None = None  # head scores: (b,s,vocab) | (b,labels) | (b,s,labels) | (b,s,2)
    loss: torch.Tensor | None = None  # scalar, when labels were given
    pooled: torch.Tensor | None = None  # (batch, dim): BERT's pooled [CLS]
    nsp_logits: torch.Tensor | None = None  # (batch, 2): next-sentence prediction scores
    attentions: list[torch.Tensor] | None = None  # per layer (batch, heads, q_len, k_len), when asked
    cross_attentions: list[torch.Tensor] | None = None  # per decoder layer, when asked
    hidden_states: list[torch.Tensor] | None = None  # embeddings + each layer's output, when asked
    encoder_last_hidden_state: torch.Tensor | None = None  # (batch, src_seq, dim), encoder–decoder only
    mems: list[torch.Tensor] | None = None  # XLNet (use_mems): per layer (batch, mem, dim) for the next call

    @property
    def start_logits(self) -> torch.Tensor:  # span QA: (batch, seq)
        return self.logits[..., 0]

    @property
    def end_logits(self) -> torch.Tensor:
        return self.logits[..., 1]


def read_safetensors(path: str | os.PathLike, advice: str = "save or download it again"
                     ) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file; a truncated or garbled file is a CheckpointError naming it."""
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error type, which names no file
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); it is corrupted or was only "
                              f"partly written — {advice}") from None


class Model(nn.Module):
    """Base class: `config`, weight init, `save_pretrained`, `from_pretrained`, parameter counts.

    A family declares `arch = "<name>"` (the ModelConfig.arch it builds) and is registered in
    `Model.families` when its class is defined; zhixing.models imports every family.
    """

    config: ModelConfig
    arch: ClassVar[str] = ""
    # the special-token layout the family's inputs follow (zhixing.tokenizers.layout.LAYOUTS), given to a
    # tokenizer trained for it; None: the tokenizer's own (BERT's [CLS] A [SEP], a decoder's none)
    tokenizer_layout: ClassVar[str | None] = None
    families: ClassVar[dict[str, type[Model]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.arch:
            Model.families[cls.arch] = cls

    @classmethod
    def build(cls, config: ModelConfig) -> Model:
        """A freshly initialised model of the family `config.arch` names."""
        if config.arch not in Model.families:
            raise CheckpointError(f"no model family {config.arch!r}; known: {', '.join(Model.families)}")
        return Model.families[config.arch].from_config(config)

    @classmethod
    def from_config(cls, config: ModelConfig) -> Model:
        """The family's model for `config` (a family whose heads need different classes overrides it)."""
        return cls(config)

    def init_weights(self) -> None:
        """N(0, initializer_range) for matrices and embeddings, zero biases, unit norms (BERT / GPT-2)."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Distinct parameters (tied matrices counted once)."""
        seen, total = set(), 0
        for name, p in self.named_parameters():
            if id(p) in seen or (exclude_embeddings and "embed" in name):
                continue
            seen.add(id(p))
            total += p.numel()
        return total

    def extend_positions(self, max_seq_len: int) -> bool:
        """Let a model whose positions are all rotary read up to `max_seq_len` tokens: the rotary angles
        are computed for the longer range and the config (saved with the model) says so. Rotary positions
        are relative and have no weights, so nothing learned changes; positions beyond those seen in
        pretraining are new to the weights, which fine-tuning adapts to. False, and nothing changed, for a
        model with learned or sinusoidal tables (their limit is real) or when it already reads that far."""
        from zhixing.nn.position import RotaryEmbedding

        cfg = self.config
        if max_seq_len <= cfg.max_seq_len or cfg.position != "rotary":
            return False
        ropes = [m for m in self.modules() if isinstance(m, RotaryEmbedding)]
        if not ropes:
            return False
        for rope in ropes:
            rope.extend(max_seq_len)
        for module in self.modules():  # the model and any sub-model (ELECTRA's generator) keep a config
            own = getattr(module, "config", None)
            if isinstance(own, ModelConfig) and own.max_seq_len < max_seq_len:
                module.config = own.replace(max_seq_len=max_seq_len)
        return True

    def require_positions(self, max_seq_len: int) -> None:
        """A one-line error when inputs of `max_seq_len` tokens do not fit the model's positions (after
        `extend_positions` had its chance): what fine-tuning and the apps check before training."""
        if max_seq_len > self.config.max_seq_len:
            from zhixing.errors import ConfigError

            raise ConfigError(f"max_seq_len={max_seq_len} exceeds the model's {self.config.max_seq_len} "
                              f"(position={self.config.position!r}; only rotary positions extend past it)")

    # -- save / load --------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `config.json` and `model.safetensors`. Files are written to a temporary directory and
        moved in only when complete, so a failed save never leaves a half-written checkpoint."""
        if getattr(self, "quantization", None) is not None:  # set by zhixing.quant.quantize
            raise CheckpointError(f"{directory}: the model is quantized ({self.quantization['method']}); "
                                  "save it with zhixing.quant.save, which records how")
        with staged_files(directory) as tmp:
            write_model_files(tmp, self.unique_state_dict(), self.config.to_dict())
        return Path(directory)

    def unique_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict without the second name of tied tensors (safetensors stores each once)."""
        out, seen = {}, set()
        for name, t in self.state_dict().items():
            key = (t.data_ptr(), t.shape, t.stride()) if t.numel() else name
            if key in seen:
                continue
            seen.add(key)
            out[name] = t
        return out

    def load_weights(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Copy `state` into the model; any missing, unexpected or mis-shaped tensor is an error naming it."""
        own = self.state_dict()
        tied = set(own) - set(self.unique_state_dict())
        missing = sorted(set(own) - set(state) - tied)
        unexpected = sorted(set(state) - set(own))
        shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(state) & set(own)) if state[k].shape != own[k].shape]
        if missing or unexpected or shapes:
            raise CheckpointError(mismatch_report(f"{source} does not fit {type(self).__name__}:",
                                                  missing, unexpected, shapes))
        self.load_state_dict(state, strict=False)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **config_overrides) -> Model:
        """Load a directory written by `save_pretrained` (any zhixing family; see zhixing.load)."""
        directory = Path(directory)
        config = ModelConfig.load(directory)
        if config_overrides:
            config = config.replace(**config_overrides)
        model = Model.build(config)
        weights = directory / "model.safetensors"
        if not weights.exists():
            raise FileNotFoundError(
                f"{weights}: missing; a zhixing model directory holds config.json + model.safetensors"
            )
        model.load_weights(read_safetensors(weights), source=str(weights))
        return model


def write_model_files(directory: Path, state: dict[str, torch.Tensor], config: dict[str, Any],
                      tokenizer: Any = None, metadata: dict[str, str] | None = None) -> None:
    """config.json + model.safetensors (+ the tokenizer's files) into an existing `directory`. Not atomic
    on its own: callers write into a staged directory (zhixing.io.staged_files / staged_dir)."""
    # clone: split views of one fused tensor share storage, which safetensors refuses to write
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}
    save_file(tensors, directory / "model.safetensors",
              metadata=metadata or {"format": "pt", "library": "zhixing"})
    (directory / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save(directory)


def mismatch_report(header: str, missing: list[str], unexpected: list[str], shapes: list[str],
                    hint: str | None = None) -> str:
    """The message of a CheckpointError: every missing, unexpected and mis-shaped tensor (20 of each)."""
    lines = [header]
    if missing:
        lines.append(f"  missing ({len(missing)}): {', '.join(missing[:20])}")
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): {', '.join(unexpected[:20])}")
    if shapes:
        lines.append(f"  mis-shaped ({len(shapes)}): " + "; ".join(shapes[:20]))
    if hint:
        lines.append(f"  {hint}")
    return "\n".join(lines)


def check_length(seq_len: int, max_seq_len: int) -> None:
    if seq_len > max_seq_len:
        raise ValueError(
            f"input has {seq_len} positions but the model's max_seq_len is {max_seq_len}; "
            "truncate the input (tokenizer max_length) or use a model with longer positions"
        )
