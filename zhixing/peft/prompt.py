"""Soft prompts: trainable vectors in front of a frozen model.

- Prompt tuning (Lester et al. 2021): n virtual tokens P ∈ R^{n×d} are prepended to the input embeddings,
  [P; E(x)], and only P learns.
- P-tuning (Liu et al. 2021): the virtual tokens come out of a small prompt encoder, P = MLP(P₀) or
  MLP(LSTM(P₀)), which trains more stably than free vectors; only P₀ and the encoder learn.
- Prefix tuning / P-tuning v2 (Li & Liang 2021; Liu et al. 2022): every attention layer l gets n extra
  trainable keys and values, K_l = [P_l^K; X W_K], V_l = [P_l^V; X W_V]; the queries are the input's own,
  so the output length does not change. This uses the `prefix` hook of zhixing.nn.attention.Attention
  (one `is None` test on the fast path when unused). The input's positions start at n, as when the
  prefix is a past_key_values cache in transformers (what PEFT and P-tuning v2's code do).
  With `projection` = h, the prefixes are reparameterised as Li & Liang train them: every layer's keys and
  values come out of one MLP, [P_1^K; P_1^V; …; P_L^V] = W₂ tanh(W₁ E + b₁) + b₂ with E ∈ R^{n×d}, which
  trains more stably than free vectors; the MLP is folded into plain prefixes on export (PEFT's
  prefix_projection in inference mode).

Virtual tokens are added by forward hooks on the model: the pre-hook lengthens input_ids / attention_mask /
token_type_ids / token labels by n, the token embedding puts P at the first n positions, and the
forward hook cuts the n positions off token-level outputs, so callers see the shapes they passed in.
A sequence-classification head that reads position 0 (BERT's pooler) reads the first virtual token, as
in PEFT. They cover the model's `forward` (what fine-tuning tasks call), not `hidden()` or generation.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from zhixing.errors import ConfigError
from zhixing.nn.attention import Attention

IGNORE = -100
KINDS = ("prompt_tuning", "ptuning", "prefix")
TOKEN_HEADS = ("lm", "mlm", "token_cls", "qa", "none")  # heads whose outputs are per token


@dataclass
class PromptConfig:
    """kind: prompt_tuning | ptuning | prefix; tokens: virtual tokens (or prefix length);
    encoder (ptuning): mlp | lstm; hidden: the encoder's width (default the model's);
    init_std: the std of the initial vectors (prompt tuning and prefixes);
    projection (prefix): the hidden width of Li & Liang's MLP reparameterisation (0: free prefixes, as
    P-tuning v2 trains them);
    modules_to_save: modules trained in full (a task head)."""

    kind: str = "prompt_tuning"
    tokens: int = 20
    encoder: str = "mlp"
    hidden: int | None = None
    init_std: float = 0.02
    projection: int = 0
    modules_to_save: list[str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"method {self.kind!r}: soft-prompt methods are {', '.join(KINDS)}")
        if not isinstance(self.tokens, int) or isinstance(self.tokens, bool) or self.tokens <= 0:
            raise ConfigError(f"{self.kind}.tokens={self.tokens!r}: the number of virtual tokens must be a "
                              "positive integer (e.g. 20)")
        if not isinstance(self.projection, int) or isinstance(self.projection, bool) or self.projection < 0:
            raise ConfigError(f"prefix.projection={self.projection!r}: the MLP's hidden width must be an "
                              "integer >= 0 (0 = no reparameterisation; Li & Liang use 512)")
        if self.projection and self.kind != "prefix":
            raise ConfigError(f"{self.kind}: projection reparameterises prefixes only (method=prefix)")
        if self.encoder not in ("mlp", "lstm"):
            raise ConfigError(f"ptuning.encoder={self.encoder!r}: expected mlp or lstm")
        if isinstance(self.modules_to_save, str):
            self.modules_to_save = [t.strip() for t in self.modules_to_save.split(",") if t.strip()]
        self.modules_to_save = list(self.modules_to_save or [])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PromptEncoder(nn.Module):
    """The n virtual-token vectors: free (prompt tuning) or from P₀ through an MLP / LSTM+MLP (P-tuning)."""

    def __init__(self, n: int, dim: int, kind: str = "prompt_tuning", encoder: str = "mlp",
                 hidden: int | None = None, init_std: float = 0.02):
        super().__init__()
        self.kind = kind
        self.prompt_embeddings = nn.Parameter(torch.randn(n, dim) * init_std)
        self.lstm = self.mlp = None
        if kind == "ptuning":
            hidden = hidden or dim
            if encoder == "lstm":
                self.lstm = nn.LSTM(dim, hidden // 2, num_layers=2, bidirectional=True, batch_first=True)
                self.mlp = nn.Sequential(nn.Linear(2 * (hidden // 2), hidden), nn.ReLU(),
                                         nn.Linear(hidden, dim))
            else:
                self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self) -> torch.Tensor:
        p = self.prompt_embeddings
        if self.lstm is not None:
            p = self.lstm(p[None])[0][0]
        return self.mlp(p) if self.mlp is not None else p


class PromptedEmbedding(nn.Module):
    """The model's token embedding with the prompt vectors at the first n positions (which the model's
    pre-hook filled with placeholder ids). `weight` is the wrapped table's, so tied heads still see it."""

    def __init__(self, embed: nn.Embedding, prompt: PromptEncoder):
        super().__init__()
        self.embed, self.prompt = embed, prompt
        self.n = prompt.prompt_embeddings.size(0)

    @property
    def weight(self) -> torch.Tensor:
        return self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids[:, self.n:])
        p = self.prompt().to(x.dtype)
        return torch.cat([p[None].expand(x.size(0), -1, -1), x], dim=1)


class LayerPrefix(nn.Module):
    """One attention layer's trainable prefix: keys and values (kv_heads, n, head_dim) each."""

    def __init__(self, kv_heads: int, n: int, head_dim: int, init_std: float = 0.02):
        super().__init__()
        self.key = nn.Parameter(torch.randn(kv_heads, n, head_dim) * init_std)
        self.value = nn.Parameter(torch.randn(kv_heads, n, head_dim) * init_std)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.key, self.value


class PrefixEncoder(nn.Module):
    """Li & Liang's reparameterisation: every layer's prefix keys and values from one MLP over E (n, d)."""

    def __init__(self, n: int, dim: int, hidden: int, layers: int, kv_heads: int, head_dim: int,
                 init_std: float = 0.02):
        super().__init__()
        self.shape = (n, layers, 2, kv_heads, head_dim)
        self.embedding = nn.Parameter(torch.randn(n, dim) * init_std)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(),
                                 nn.Linear(hidden, layers * 2 * kv_heads * head_dim))

    def forward(self) -> torch.Tensor:
        """(layers, 2, kv_heads, n, head_dim): keys then values per layer."""
        return self.mlp(self.embedding).view(self.shape).permute(1, 2, 3, 0, 4)


class ProjectedPrefix(nn.Module):
    """Layer `index`'s slice of a shared PrefixEncoder (held outside this module's parameters: the model
    owns it once, as `prefix_encoder`)."""

    def __init__(self, encoder: PrefixEncoder, index: int):
        super().__init__()
        self._encoder = (encoder,)
        self.index = index

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        kv = self._encoder[0]()[self.index]
        return kv[0], kv[1]


def _self_attentions(model: nn.Module) -> list[tuple[str, Attention]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Attention) and not m.cross]


def add_prompt(model: nn.Module, config: PromptConfig) -> nn.Module:
    """Give `model` soft prompts (in place): freeze it, add the trainable vectors, keep
    `config.modules_to_save` trainable. Returns the model; `model.prompt_config` records the config."""
    if getattr(model, "prompt_config", None) is not None or getattr(model, "lora_config", None) is not None:
        raise ConfigError("this model already has an adapter; load a fresh base model")
    if model.config.arch not in ("bert", "gpt", "electra"):
        raise ConfigError(f"soft prompts support bert, electra and gpt models, "
                          f"not arch={model.config.arch!r}")
    model.requires_grad_(False)
    n = config.tokens
    if config.kind == "prefix":
        attentions = [attn for _, attn in _self_attentions(model)]
        device = next(attentions[0].parameters()).device
        if config.projection:
            first = attentions[0]
            model.prefix_encoder = PrefixEncoder(n, model.config.dim, config.projection, len(attentions),
                                                 first.num_kv_heads, first.head_dim, config.init_std)
            model.prefix_encoder.to(device)
            for i, attn in enumerate(attentions):
                attn.prefix = ProjectedPrefix(model.prefix_encoder, i)
        else:
            for attn in attentions:
                attn.prefix = LayerPrefix(attn.num_kv_heads, n, attn.head_dim, config.init_std).to(device)
        if _prefix_shifts_positions(model):
            if n + 1 > model.config.max_seq_len:
                raise ConfigError(f"prefix.tokens={n} leaves no positions in "
                                  f"max_seq_len={model.config.max_seq_len}")
            model._prompt_hooks = (model.register_forward_pre_hook(_prefix_positions, with_kwargs=True),)
    else:
        if model.config.position_offset:
            raise ConfigError("prompt tuning on RoBERTa-style positions (position_offset) is not supported")
        if n + 1 > model.config.max_seq_len:
            raise ConfigError(f"{config.kind}.tokens={n} leaves no room in "
                              f"max_seq_len={model.config.max_seq_len}")
        width = model.tok_embed.weight.size(1)  # ELECTRA's embeddings may be narrower than the model
        prompt = PromptEncoder(n, width, config.kind, config.encoder, config.hidden, config.init_std)
        model.tok_embed = PromptedEmbedding(model.tok_embed, prompt.to(model.tok_embed.weight.device))
        model._prompt_hooks = (model.register_forward_pre_hook(_lengthen, with_kwargs=True),
                               model.register_forward_hook(_shorten, with_kwargs=True))
    for name in config.modules_to_save:
        try:
            model.get_submodule(name).requires_grad_(True)
        except AttributeError:
            raise ConfigError(f"modules_to_save {name!r} not in this {type(model).__name__}; its top-level "
                              f"modules: {', '.join(k for k, _ in model.named_children())}") from None
    model.prompt_config = config
    return model


def _prefix_shifts_positions(model: nn.Module) -> bool:
    """Whether a prefix moves the input's positions to n.. (BERT / GPT positions; RoBERTa-style positions
    keep their own rule, and a model without positions has none to move)."""
    return not model.config.position_offset and model.config.position != "none"


def positions_taken(model: nn.Module) -> int:
    """How many of the model's max_seq_len positions the soft prompt takes before the input: the n virtual
    tokens of prompt tuning and P-tuning, the n prefix positions where the input's positions start after
    them; 0 for a model without soft prompts (or with LoRA)."""
    config = getattr(model, "prompt_config", None)
    if config is None or (config.kind == "prefix" and not _prefix_shifts_positions(model)):
        return 0
    return config.tokens


def _lengthen(model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    n = model.prompt_config.tokens
    kwargs = _as_keywords(model, args, kwargs)
    args = ()
    if kwargs.get("cache") is not None:
        raise ConfigError("prompt tuning does not support decoding with a KV cache")
    ids = kwargs["input_ids"]
    b = ids.size(0)
    pad = ids.new_zeros(b, n)
    kwargs["input_ids"] = torch.cat([pad, ids], dim=1)
    if kwargs.get("attention_mask") is not None:
        mask = kwargs["attention_mask"]
        kwargs["attention_mask"] = torch.cat([mask.new_ones(b, n), mask], dim=1)
    if kwargs.get("token_type_ids") is not None:
        kwargs["token_type_ids"] = torch.cat([pad, kwargs["token_type_ids"]], dim=1)
    if kwargs.get("position_ids") is not None:
        raise ConfigError("prompt tuning chooses the positions itself; do not pass position_ids")
    labels = kwargs.get("labels")
    per_token = labels is not None and labels.dim() == 2 and labels.size(1) == ids.size(1)
    if per_token and model.config.head in TOKEN_HEADS:
        kwargs["labels"] = torch.cat([labels.new_full((b, n), IGNORE), labels], dim=1)
    return args, kwargs


def _as_keywords(model: nn.Module, args: tuple, kwargs: dict) -> dict:
    """The call's arguments by name (the families order their positional arguments differently)."""
    if not args:
        return dict(kwargs)
    return dict(inspect.signature(model.forward).bind_partial(*args, **kwargs).arguments)


def _prefix_positions(model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Prefix tuning: the input's positions start after the n prefix positions (n..n+t-1), as when the
    prefix is a past_key_values cache in transformers (PEFT, P-tuning v2's code)."""
    kwargs = _as_keywords(model, args, kwargs)
    if kwargs.get("position_ids") is not None:
        return (), kwargs
    ids = kwargs["input_ids"]
    cache = kwargs.get("cache")
    past = cache.length if cache is not None else 0
    start = past + model.prompt_config.tokens
    limit = model.config.max_seq_len
    if start + ids.size(1) > limit:  # else an IndexError in the position table
        raise ValueError(f"input of {ids.size(1)} tokens after {start} prefix / cached positions needs "
                         f"positions up to {start + ids.size(1)}, above the model's max_seq_len {limit}; "
                         f"truncate the input to {limit - start} tokens")
    kwargs["position_ids"] = torch.arange(start, start + ids.size(1), device=ids.device)[None].expand_as(ids)
    return (), kwargs


def _shorten(model: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
    n = model.prompt_config.tokens
    out.last_hidden_state = out.last_hidden_state[:, n:]
    if out.logits is not None and model.config.head in ("lm", "mlm", "token_cls", "qa"):
        out.logits = out.logits[:, n:]
    return out


def remove_prompt(model: nn.Module) -> nn.Module:
    """The plain model again (the soft prompt dropped), in place."""
    if isinstance(model.tok_embed, PromptedEmbedding):
        model.tok_embed = model.tok_embed.embed
    for h in getattr(model, "_prompt_hooks", ()):
        h.remove()
    model._prompt_hooks = ()
    for _, attn in _self_attentions(model):
        attn.prefix = None
    if getattr(model, "prefix_encoder", None) is not None:
        del model.prefix_encoder
    model.requires_grad_(True)
    model.prompt_config = None
    return model


def prompt_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable soft-prompt tensors and the modules_to_save, by our names."""
    keep = ("tok_embed.prompt.", "prefix_encoder.", *(f"{n}." for n in model.prompt_config.modules_to_save))
    return {k: v for k, v in model.state_dict().items() if k.startswith(keep) or ".prefix." in k}
