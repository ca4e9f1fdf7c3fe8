"""Driving a model one token at a time: prefill the prompt once, then one cached step per new token.

A runner hides the model family from the search strategies: `prefill()` and `step(tokens)` return the
next-token logits (rows, vocab) in float32, `reorder(index)` follows beam search's choice of rows.

- Decoder-only (GPT-2, Llama): the KV cache is preallocated for prompt + new tokens. Left-padded rows
  get an attention mask over past + new positions and position ids cumsum(mask) - 1, as transformers
  does, so padded batches give the same tokens as one-by-one decoding.
- Encoder–decoder: the encoder runs once; cross-attention keys/values are computed at the first
  decoder step and kept in the cache.
- On CUDA, `DecoderOnlyRunner(cuda_graph=True)` captures the decode step as one CUDA graph over a
  static cache: a decode step of a small model is a few hundred tiny kernels whose launch cost, not
  arithmetic or memory traffic, dominates; replaying a graph launches them all at once.
"""

from __future__ import annotations

import torch

from zhixing.nn.attention import KVCache


class DecoderOnlyRunner:
    """Prefill + cached decode steps for a decoder-only model (`GPT`).

    ids: (rows, prompt) left-padded prompt; mask: (rows, prompt) 1 = real token, or None (no padding).
    """

    def __init__(self, model, ids: torch.Tensor, mask: torch.Tensor | None, max_new_tokens: int,
                 cuda_graph: bool = False, static: bool | None = None):
        self.model = model
        self.ids = ids
        rows, self.prompt_len = ids.shape
        self.total = self.prompt_len + max_new_tokens
        self.cache: KVCache = model.new_cache(self.total)
        self.length = self.prompt_len
        self.use_graph = cuda_graph and ids.is_cuda
        # static: decode over fixed-shape buffers (what a graph needs; on its own, a check of that path)
        self.static = self.use_graph if static is None else static or self.use_graph
        self.graph: torch.cuda.CUDAGraph | None = None
        self.write_pos: torch.Tensor | None = None
        # the attention mask of all slots, written one column per step (no per-step tensor growth);
        # unpadded eager decoding needs none at all
        self.mask = None
        if mask is not None or self.static:
            self.mask = torch.zeros(rows, self.total, dtype=torch.long, device=ids.device)
            self.mask[:, : self.prompt_len] = 1 if mask is None else mask
        self.padded = mask is not None
        self.positions = None

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
        self.mask.index_fill_(1, self.write_pos, 1)
        pos = self.mask.sum(-1, keepdim=True) - 1  # (rows, 1): real tokens before this one
        out = self.model(self.static_ids, attention_mask=self.mask, position_ids=pos, cache=self.cache,
                         last_only=True)
        return out.logits[:, -1].float()

    def _static_step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.write_pos is None:
            self.static_ids = tokens[:, None].clone()
            self.write_pos = torch.tensor([self.length], device=tokens.device)
            self.cache.positions = self.write_pos
        if not self.use_graph:
            self.static_ids.copy_(tokens[:, None])
            logits = self._decode_static()
        elif self.graph is None:
            # Warm up on a side stream (lazy init, autotuning), then record. Each run writes the same
            # cache slot and mask column from the same inputs, so repeating the step is harmless.
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._decode_static()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_logits = self._decode_static()
            self.graph.replay()
            logits = self.static_logits
        else:
            self.static_ids.copy_(tokens[:, None])
            self.graph.replay()
            logits = self.static_logits
        self.write_pos += 1
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
        self.cache: KVCache = model.new_cache(1 + max_new_tokens)

    def prefill(self) -> torch.Tensor:
        return self.step(self.start[:, 0])

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model(decoder_input_ids=tokens[:, None], attention_mask=self.src_mask, memory=self.memory,
                         cache=self.cache, last_only=True)
        return out.logits[:, -1].float()

    def reorder(self, index: torch.Tensor) -> None:
        # Beams only move within their own source, whose rows share memory, source mask and cross
        # keys/values; only the decoder's self-attention cache needs reordering.
        cross, self.cache.cross = self.cache.cross, [None] * self.cache.num_layers
        self.cache.reorder(index)
        self.cache.cross = cross
