"""Driving a model one token at a time: prefill the prompt once, then one cached step per new token.

A runner hides the model family from the search strategies: `prefill()` and `step(tokens)` return the
next-token logits (rows, vocab) in float32, `reorder(index)` follows beam search's choice of rows.

- Decoder-only (GPT-2, Llama): the KV cache is preallocated for prompt + new tokens. Left-padded rows
  get an attention mask over past + new positions and position ids cumsum(mask) - 1, as transformers
  does, so padded batches give the same tokens as one-by-one decoding.
- Encoder–decoder: the encoder runs once; cross-attention keys/values are computed at the first
  decoder step and kept in the cache.
- Past the context window (`sliding_window=True`), decoding goes on as nanoGPT's sampler does: each next
  token is predicted from the last max_seq_len tokens only. Absolute (learned, sinusoidal) positions make
  a rolled cache wrong — every cached key was computed at a position that changes when the window slides —
  so once the window is full the cache is rebuilt from the cropped context at every step: one forward over
  max_seq_len tokens per new token, exactly what recomputing the cropped context gives.
- On CUDA, `DecoderOnlyRunner(cuda_graph=True)` captures the decode step as one CUDA graph over a
  static cache: a decode step of a small model is a few hundred tiny kernels whose launch cost, not
  arithmetic or memory traffic, dominates; replaying a graph launches them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zhixing.nn.attention import Cache

MAX_GRAPHS = 4  # captured decode steps kept per model (one per batch size x total length x dtype)


@dataclass
class _DecodeGraph:
    """A captured decode step and the static tensors it reads and writes, reused across calls of the
    same shape: a capture costs a few forward passes, worth paying once rather than per call."""

    cache: Cache
    mask: torch.Tensor  # (rows, total)
    ids: torch.Tensor  # (rows, 1): the input token of the step
    write_pos: torch.Tensor  # (1,): the cache slot / mask column it writes
    graph: torch.cuda.CUDAGraph | None = None
    logits: torch.Tensor | None = None  # (rows, vocab): its output


class DecoderOnlyRunner:
    """Prefill + cached decode steps for a decoder-only model (`GPT`).

    ids: (rows, prompt) left-padded prompt; mask: (rows, prompt) 1 = real token, or None (no padding).
    sliding_window: go on past max_seq_len, predicting from the last max_seq_len tokens (see above).
    """

    def __init__(self, model, ids: torch.Tensor, mask: torch.Tensor | None, max_new_tokens: int,
                 cuda_graph: bool = False, static: bool | None = None, sliding_window: bool = False):
        self.model = model
        self.ids = ids
        rows, self.prompt_len = ids.shape
        self.window = model.config.max_seq_len
        self.history = None  # (rows, prompt + new) every token so far, when the window may slide
        if sliding_window and self.prompt_len + max_new_tokens > self.window:
            cuda_graph = static = False  # a rebuilt cache has no static shape to capture
            self.history = torch.zeros(rows, self.prompt_len + max_new_tokens, dtype=torch.long,
                                       device=ids.device)
            self.history[:, : self.prompt_len] = ids
            self.history_mask = torch.ones_like(self.history)
            if mask is not None:
                self.history_mask[:, : self.prompt_len] = mask
            max_new_tokens = self.window - self.prompt_len  # the cache holds one window
        self.total = self.prompt_len + max_new_tokens
        self.length = self.prompt_len
        self.use_graph = cuda_graph and ids.is_cuda
        # static: decode over fixed-shape buffers (what a graph needs; on its own, a check of that path)
        self.static = self.use_graph if static is None else static or self.use_graph
        self.padded = mask is not None
        self.positions = None
        self.mask = None  # the attention mask of all slots, written one column per step; unpadded
        self.g: _DecodeGraph | None = None  # eager decoding needs none
        if self.use_graph:
            graphs = model.__dict__.setdefault("_zhixing_decode_graphs", {})
            key = (rows, self.total, ids.device, next(model.parameters()).dtype)
            self.g = graphs.get(key)
            if self.g is None:
                if len(graphs) >= MAX_GRAPHS:
                    graphs.pop(next(iter(graphs)))
                self.g = graphs[key] = self._static_tensors(rows)
            self.g.cache.length, self.g.cache.positions = 0, None  # the prefill writes dynamically
        elif self.static:
            self.g = self._static_tensors(rows)
        self.cache: Cache = self.g.cache if self.g is not None else model.new_cache(self.total)
        if mask is not None or self.static:
            self.mask = self.g.mask if self.g is not None else torch.zeros(
                rows, self.total, dtype=torch.long, device=ids.device)
            self.mask.zero_()
            self.mask[:, : self.prompt_len] = 1 if mask is None else mask

    def _static_tensors(self, rows: int) -> _DecodeGraph:
        device = self.ids.device
        return _DecodeGraph(self.model.new_cache(self.total), torch.zeros(rows, self.total, dtype=torch.long,
                            device=device), torch.zeros(rows, 1, dtype=torch.long, device=device),
                            torch.zeros(1, dtype=torch.long, device=device))

    def prefill(self) -> torch.Tensor:
        mask = self.mask[:, : self.prompt_len] if self.padded else None
        pos = None
        if self.padded:
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            self.positions = pos[:, -1:]  # (rows, 1): position of each row's last token
        out = self.model(self.ids, attention_mask=mask, position_ids=pos, cache=self.cache, last_only=True)
        return out.logits[:, -1].float()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (rows,): the tokens just chosen -> logits for the one after them."""
        if self.history is not None:
            self.history[:, self.length] = tokens
            if self.length + 1 > self.window:
                return self._slide()
        if self.static:
            return self._static_step(tokens)
        mask = pos = None
        if self.padded:
            self.mask[:, self.length] = 1
            mask = self.mask[:, : self.length + 1]
            self.positions = pos = self.positions + 1
        out = self.model(tokens[:, None], attention_mask=mask, position_ids=pos, cache=self.cache,
                         last_only=True)
        self.length += 1
        return out.logits[:, -1].float()

    def _slide(self) -> torch.Tensor:
        """Recompute the cache over the last `window` tokens (the cropped context) and return the logits
        after it; position ids restart at 0 (or count each row's real tokens, left-padded rows)."""
        self.length += 1
        ids = self.history[:, self.length - self.window: self.length]
        mask = self.history_mask[:, self.length - self.window: self.length]
        padded = bool((mask == 0).any())
        pos = (mask.cumsum(-1) - 1).clamp(min=0) if padded else None
        self.cache = self.model.new_cache(self.window)
        out = self.model(ids, attention_mask=mask if padded else None, position_ids=pos, cache=self.cache,
                         last_only=True)
        return out.logits[:, -1].float()

    def reorder(self, index: torch.Tensor) -> None:
        """Beam search: row i continues old row index[i]."""
        self.cache.reorder(index)
        if self.mask is not None:
            self.mask = self.mask.index_select(0, index)
        if self.positions is not None:
            self.positions = self.positions.index_select(0, index)

    # -- static shapes and the CUDA graph ------------------------------------------------------------

    def _decode_static(self) -> torch.Tensor:
        """The decode step in static shapes, on the static input tensors (what the graph records)."""
        g = self.g
        g.mask.index_fill_(1, g.write_pos, 1)
        pos = g.mask.sum(-1, keepdim=True) - 1  # (rows, 1): real tokens before this one
        out = self.model(g.ids, attention_mask=g.mask, position_ids=pos, cache=g.cache, last_only=True)
        return out.logits[:, -1].float()

    def _static_step(self, tokens: torch.Tensor) -> torch.Tensor:
        g = self.g
        if g.cache.positions is None:  # first decode step of this call
            g.write_pos.fill_(self.length)
            g.cache.positions = g.write_pos
        g.ids.copy_(tokens[:, None])
        if not self.use_graph:
            logits = self._decode_static()
        elif g.graph is None:
            # Warm up on a side stream (lazy init, autotuning), then record. Each run writes the same
            # cache slot and mask column from the same inputs, so repeating the step is harmless.
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._decode_static()
            torch.cuda.current_stream().wait_stream(stream)
            g.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g.graph):
                g.logits = self._decode_static()
            g.graph.replay()
            logits = g.logits
        else:
            g.graph.replay()
            logits = g.logits
        g.write_pos += 1
        self.length += 1
        return logits


class EncoderDecoderRunner:
    """Encode once, then cached decoder steps for an encoder–decoder model (`Transformer`).

    src: (rows, src_len) source ids; src_mask: (rows, src_len) or None; start_id: decoder_start_token_id.
    expand: rows of output per source row (beam search); the encoder still runs once per source.
    """

    def __init__(self, model, src: torch.Tensor, src_mask: torch.Tensor | None, max_new_tokens: int,
                 start_id: int, expand: int = 1):
        self.model = model
        memory, _ = model.encode(src, src_mask)
        if expand > 1:
            memory = memory.repeat_interleave(expand, dim=0)
            src_mask = src_mask.repeat_interleave(expand, dim=0) if src_mask is not None else None
        self.memory, self.src_mask = memory, src_mask
        self.start = torch.full((memory.size(0), 1), start_id, dtype=torch.long, device=src.device)
        self.cache: Cache = model.new_cache(1 + max_new_tokens)

    def prefill(self) -> torch.Tensor:
        return self.step(self.start[:, 0])

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model(decoder_input_ids=tokens[:, None], attention_mask=self.src_mask, memory=self.memory,
                         cache=self.cache, last_only=True)
        return out.logits[:, -1].float()

    def reorder(self, index: torch.Tensor) -> None:
        # Beams only move within their own source, whose rows share memory, source mask and cross
        # keys/values; only the decoder's self-attention cache needs reordering.
        self.cache.reorder(index, cross=False)
