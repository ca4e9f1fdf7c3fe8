"""`generate()`: prompts in, tokens and text out, for decoder-only and encoder–decoder models."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zhixing.generation.config import GenerationConfig
from zhixing.generation.constraints import Constraints, poem_form
from zhixing.generation.engine import DecoderOnlyRunner, EncoderDecoderRunner
from zhixing.generation.processors import LogitsProcessor
from zhixing.generation.search import Decoding, StopStrings, beam_search, sample_steps

Prompt = str | Sequence[int] | torch.Tensor
Prompts = Prompt | Sequence[str] | Sequence[Sequence[int]]


@dataclass
class GenerationOutput:
    """What `generate` returns. Rows: prompt 0's num_return_sequences rows first, then prompt 1's, ...

    Decoder-only `sequences` hold the (left-padded) prompt then the new tokens; encoder–decoder ones
    hold decoder_start_token_id then the new tokens. After a row ends (eos / stop string) it holds pad,
    exactly as transformers' `generate` returns it.
    """

    sequences: torch.Tensor  # (rows, prompt_len + new)
    prompt_len: int  # columns of prompt (left-padded) or decoder start at the front of `sequences`
    scores: torch.Tensor | None = None  # (rows,): beam search's final score of each sequence
    texts: list[str] | None = None  # the new text of each row (with a tokenizer), cut before a stop string

    @property
    def tokens(self) -> torch.Tensor:
        """(rows, new): the generated part of `sequences`."""
        return self.sequences[:, self.prompt_len:]


def _tokenizer_attr(tokenizer: Any, name: str) -> int | None:
    return getattr(tokenizer, name, None) if tokenizer is not None else None


def special_ids(model, tokenizer, config: GenerationConfig) -> tuple[list[int], int]:
    """(eos ids, pad id): the config's, else the tokenizer's, else the model config's."""
    mc = model.config
    if config.eos_token_ids is not None:
        eos = list(config.eos_token_ids)
    else:
        one = _tokenizer_attr(tokenizer, "eos_id")
        one = one if one is not None else mc.eos_token_id
        eos = [one] if one is not None else []
    pad = config.pad_token_id
    for candidate in (_tokenizer_attr(tokenizer, "pad_id"), mc.pad_token_id, eos[0] if eos else None, 0):
        if pad is None:
            pad = candidate
    return eos, pad


def encode_prompts(model, prompts: Prompts, tokenizer, attention_mask: torch.Tensor | None = None,
                   ) -> list[list[int]]:
    """Normalise every accepted prompt form to a list of token-id lists (padding removed)."""
    if isinstance(prompts, torch.Tensor):
        ids = prompts if prompts.dim() == 2 else prompts[None]
        if attention_mask is None:
            return ids.tolist()
        mask = attention_mask if attention_mask.dim() == 2 else attention_mask[None]
        if model.config.arch != "transformer" and bool((mask[:, 1:] < mask[:, :-1]).any()):
            raise ValueError("attention_mask has right padding; decoder-only generation needs left padding "
                             "(pad at the start of each row)")
        return [[t for t, m in zip(row, mrow) if m] for row, mrow in zip(ids.tolist(), mask.tolist())]
    if isinstance(prompts, str) or len(prompts) == 0 or isinstance(prompts[0], int):
        prompts = [prompts]  # one prompt ([] is one empty prompt: it starts from BOS)
    out = []
    for p in prompts:
        if isinstance(p, str):
            if tokenizer is None:
                raise ValueError("text prompts need a tokenizer: pass tokenizer= (or token ids)")
            enc = tokenizer.encode(p)
            out.append(list(getattr(enc, "ids", enc)))
        else:
            out.append([int(t) for t in p])
    return out


def fit_prompts(prompts: list[list[int]], model, config: GenerationConfig, bos: int | None,
                ) -> list[list[int]]:
    """Empty prompts start from BOS; too-long prompts are an error or left-truncated (truncate_prompt)."""
    mc = model.config
    encoder_decoder = mc.arch == "transformer"
    budget = mc.max_seq_len if encoder_decoder else mc.max_seq_len - config.max_new_tokens
    if config.sliding_window and not encoder_decoder:  # the window slides over prompt and new tokens alike:
        budget = mc.max_seq_len  # only the last max_seq_len prompt tokens ever count
    if encoder_decoder and 1 + config.max_new_tokens > mc.max_seq_len:
        raise ValueError(f"max_new_tokens={config.max_new_tokens} is invalid: the decoder holds "
                         f"max_seq_len={mc.max_seq_len} positions, so at most {mc.max_seq_len - 1}")
    if encoder_decoder and config.sliding_window:
        raise ValueError("sliding_window=True is for decoder-only models; an encoder–decoder's decoder "
                         f"holds max_seq_len={mc.max_seq_len} positions")
    if not encoder_decoder and budget < 1:
        raise ValueError(f"max_new_tokens={config.max_new_tokens} is invalid: it leaves no room for a prompt "
                         f"in max_seq_len={mc.max_seq_len}; use at most {mc.max_seq_len - 1}")
    out = []
    for i, p in enumerate(prompts):
        if not p:
            if bos is None:
                raise ValueError(f"prompt {i} is empty and neither the tokenizer nor the model has a BOS "
                                 "token to start from; give at least one token")
            p = [bos]
        if len(p) > budget:
            if not config.truncate_prompt and not config.sliding_window:
                what = "source" if encoder_decoder else f"prompt + max_new_tokens={config.max_new_tokens}"
                raise ValueError(f"prompt {i} has {len(p)} tokens; {what} exceeds the model's context "
                                 f"(max_seq_len={mc.max_seq_len}). Shorten it, lower max_new_tokens, or "
                                 "pass truncate_prompt=True to keep its last tokens (or sliding_window=True "
                                 "to generate past the context)")
            p = p[len(p) - budget:]
        out.append(p)
    return out


def left_pad(prompts: list[list[int]], pad_id: int, device, right: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ids, mask) of shape (batch, longest), padded on the left (on the right with `right=True`); mask
    None when no row needed padding."""
    longest = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), longest), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), longest, dtype=torch.long)
    for i, p in enumerate(prompts):
        at = slice(0, len(p)) if right else slice(longest - len(p), longest)
        ids[i, at] = torch.tensor(p, dtype=torch.long)
        mask[i, at] = 1
    padded = bool((mask == 0).any())
    return ids.to(device), (mask.to(device) if padded else None)


class _Plan:
    """Everything one call resolves before decoding: ids, masks, special ids, runner, processors."""

    def __init__(self, model, prompts: Prompts, config: GenerationConfig | None, tokenizer,
                 attention_mask: torch.Tensor | None, overrides: dict[str, Any],
                 logits_processors: Sequence[Any] = ()):
        config = config if config is not None else GenerationConfig.for_model(model)
        self.config = cfg = (config.replace(**overrides) if overrides else config).validate()
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.encoder_decoder = model.config.arch == "transformer"
        if model.config.arch not in ("gpt", "transformer") or getattr(model, "head", None) is None:
            raise ValueError(f"generation needs a language-model head (gpt or transformer, head='lm'); this "
                             f"model is arch={model.config.arch!r}, head={model.config.head!r}")
        eos, self.pad_id = special_ids(model, tokenizer, cfg)
        if cfg.form is not None:  # a verse form fixes the length (its characters, then the end), before the
            # prompt is fitted into the context
            self.config = cfg = cfg.replace(max_new_tokens=poem_form(cfg.form).length + (1 if eos else 0))
        self.eos = torch.tensor(eos, dtype=torch.long, device=self.device) if eos else None
        bos = _tokenizer_attr(tokenizer, "bos_id")
        bos = bos if bos is not None else model.config.bos_token_id
        ids = fit_prompts(encode_prompts(model, prompts, tokenizer, attention_mask), model, cfg, bos)
        self.batch = len(ids)
        # every prompt row is repeated: K beams, or n samples per prompt
        self.expand = cfg.num_beams if cfg.num_beams > 1 else cfg.num_return_sequences
        self.stop = StopStrings(tokenizer, cfg.stop_strings) if cfg.stop_strings else None
        self.generator = None
        if cfg.seed is not None and cfg.sampling:
            self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        n_eos = self.eos.numel() if self.eos is not None else 0
        # A decoder-only prompt is padded on the left, so every row's next token comes last. An encoder's
        # source is padded on the right, as in training: with absolute positions (the Transformer's
        # sinusoids), left padding would move every real token to another position.
        ids, mask = left_pad(ids, self.pad_id, self.device, right=self.encoder_decoder)
        constraints = None
        if cfg.constrained:
            prompt_len = 1 if self.encoder_decoder else ids.size(1)
            constraints = Constraints(tokenizer, prompt_len, form=cfg.form, acrostic=cfg.acrostic,
                                      bad_words=cfg.bad_words, force_words=cfg.force_words, eos=eos)
        self.processor = LogitsProcessor(cfg, min_keep=n_eos + 1 if cfg.num_beams > 1 else 1,
                                         constraints=constraints, extra=logits_processors)
        self.source_mask = mask
        if self.encoder_decoder:
            start = model.config.decoder_start_token_id
            if start is None:
                raise ValueError("the model config has no decoder_start_token_id; set it to decode")
            self.runner = EncoderDecoderRunner(model, ids, mask, cfg.max_new_tokens, start, self.expand)
            rows = self.batch * self.expand
            self.prompt = torch.full((rows, 1), start, dtype=torch.long, device=self.device)
            self.prompt_mask = None
        else:
            if self.expand > 1:
                ids = ids.repeat_interleave(self.expand, dim=0)
                mask = mask.repeat_interleave(self.expand, dim=0) if mask is not None else None
            graph = cfg.cuda_graph and cfg.num_beams == 1
            self.runner = DecoderOnlyRunner(model, ids, mask, cfg.max_new_tokens, cuda_graph=graph,
                                            sliding_window=cfg.sliding_window)
            self.prompt, self.prompt_mask = ids, mask

    def buffers(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output token buffer (prompt + room for new tokens), the repetition penalty's ignore mask."""
        rows, p = self.prompt.shape
        total = p + self.config.max_new_tokens
        fill = self.pad_id
        if self.config.num_beams > 1:  # transformers' fill of beam buffers (seen only past a row's end)
            fill = (self.pad_id or int(self.eos[0])) if self.eos is not None else -1
        tokens = torch.full((rows, total), fill, dtype=torch.long, device=self.device)
        tokens[:, :p] = self.prompt
        ignore = None
        if self.prompt_mask is not None and self.config.repetition_penalty != 1.0:
            ignore = torch.zeros(rows, total, dtype=torch.bool, device=self.device)
            ignore[:, :p] = self.prompt_mask == 0
        return tokens, ignore

    def steps(self) -> Iterator[tuple[Decoding, torch.Tensor]]:
        tokens, ignore = self.buffers()
        sync_every = 8 if self.device.type == "cuda" else 1
        return sample_steps(self.runner, tokens, self.prompt.size(1), self.config, self.processor, self.eos,
                            self.pad_id, ignore, self.stop, self.generator, sync_every)

    def texts(self, new_tokens: torch.Tensor) -> list[str] | None:
        if self.tokenizer is None:
            return None
        eos = set(self.eos.tolist()) if self.eos is not None else set()
        out = []
        for row in new_tokens.tolist():
            end = next((i for i, t in enumerate(row) if t in eos), len(row))
            text = self.tokenizer.decode(row[:end], skip_special_tokens=True)
            for s in self.config.stop_strings:
                text = text.split(s, 1)[0]
            out.append(text)
        return out


@torch.no_grad()  # not inference_mode: returned tensors stay usable in autograd (e.g. as labels)
def generate(model, prompts: Prompts, config: GenerationConfig | None = None, tokenizer=None, *,
             attention_mask: torch.Tensor | None = None, logits_processors: Sequence[Any] = (),
             **overrides: Any) -> GenerationOutput:
    """Generate continuations of one or more prompts.

    model: a zhixing GPT (decoder-only) or Transformer (encoder–decoder) with an LM head.
    prompts: a string, a list of strings (needs `tokenizer`), a list of ids, a list of id lists, or a
        (batch, len) tensor with an optional left-padding `attention_mask`. Batches are left-padded.
    config: a GenerationConfig (default: the model's `generation_config`, else defaults); any field may
        be overridden per call as a keyword, e.g. `generate(model, "Hi", tok, max_new_tokens=20)`.
    logits_processors: extra callables `(scores (rows, vocab) float32, tokens (rows, length)) -> scores`,
        applied each step after the built-in penalties and constraints, before sampling's filters.
    """
    was_training = model.training
    model.eval()
    try:
        plan = _Plan(model, prompts, config, tokenizer, attention_mask, overrides, logits_processors)
        cfg = plan.config
        if cfg.num_beams > 1:
            tokens, ignore = plan.buffers()
            sequences, scores = beam_search(plan.runner, tokens, plan.batch, plan.prompt.size(1), cfg,
                                            plan.processor, plan.eos, ignore, plan.stop, plan.generator)
        else:
            state = None
            for state, _ in plan.steps():  # noqa: B007 (the last state is the result)
                pass
            sequences, scores = state.tokens[:, : state.final_length()], None
        prompt_len = plan.prompt.size(1)
        return GenerationOutput(sequences, prompt_len, scores, plan.texts(sequences[:, prompt_len:]))
    finally:
        model.train(was_training)
