"""Continuous batching: many generation requests share one decoder-only model, one decode step at a time.

Between two decode steps new sequences join the running batch (their prompt is prefilled alone, its
keys/values copied into a free cache slot) and finished ones leave (their slot is handed to the next).
Every step decodes one token for every active row in one forward pass (Orca, Yu et al. 2022; vLLM).

The cache: per layer one preallocated buffer (slots, kv_heads, capacity, head_dim). Rows have different
lengths, so

- all rows write the new token's key/value at one shared column `t`; a row's keys sit in the columns
  [start_i, t], right-aligned at `t` when it joined. Attention is a set operation over keys (positions are
  in the keys already: learned, sinusoidal or rotary), so where a key sits does not matter, only which
  columns a row may see: an attention mask over cache slots (slots, capacity);
- each row has its own position id (its own token count), not the column;
- when `t` reaches the capacity (the model's max_seq_len), every row's columns are moved to the right
  end of a shorter window (one gather per layer) and `t` goes back to the longest row.

Active rows always occupy slots 0..n-1 (a row that leaves is replaced by the last one), so a step runs the
model on views [:n] of the buffers: no copy of the cache per step.

Sampling settings are per row and vectorised (temperature, top_p, presence/frequency penalties, seeds);
stop strings and character-safe text come from generation.streaming.TextStreamer, one per row.
"""

from __future__ import annotations

import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from zhixing.generation.streaming import TextStreamer
from zhixing.nn.attention import Cache


@dataclass
class SamplingParams:
    """One sequence's decoding settings (OpenAI's names)."""

    max_tokens: int = 16
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    logprobs: int | None = None  # None = off; k >= 0: the chosen token's logprob and the k most likely
    ignore_eos: bool = False


@dataclass
class TokenInfo:
    """A generated token with its log-probability (raw model distribution) and the top alternatives."""

    id: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


@dataclass
class Event:
    """What a sequence reports: a text piece (with the tokens that produced it since the last event), or
    the end (finish_reason set)."""

    index: int
    text: str = ""
    tokens: list[TokenInfo] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length" | "abort" | "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Sequence:
    """One sequence to generate. `emit(event)` is called from the scheduler thread."""

    def __init__(
        self,
        prompt: list[int],
        params: SamplingParams,
        emit: Callable[[Event], None],
        tokenizer,
        index: int = 0,
    ):
        self.prompt, self.params, self.emit, self.index = prompt, params, emit, index
        self.streamer = TextStreamer(tokenizer, params.stop)
        self.cancelled = False
        self.generated = 0
        self.pending: list[TokenInfo] = []
        self.rng = random.Random(params.seed) if params.seed is not None else None
        self.arrived = time.monotonic()

    def cancel(self) -> None:
        """Ask the scheduler to drop this sequence (client gone); its slot is freed before the next step."""
        self.cancelled = True


class QueueFull(Exception):
    """The waiting queue is full (HTTP 429)."""


class Batcher:
    """The scheduler: a thread that admits, steps and retires sequences.

    max_batch: rows decoded together (cache slots); max_queue: sequences waiting for a slot before
    `submit` refuses more. max_batch=1 serves requests one at a time (the benchmark's baseline).
    """

    def __init__(
        self,
        model,
        tokenizer,
        max_batch: int = 32,
        max_queue: int = 256,
        eos: list[int] | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        self.capacity = model.config.max_seq_len
        self.device = next(model.parameters()).device
        self.vocab = model.config.vocab_size
        if eos is None:
            one = getattr(tokenizer, "eos_id", None)
            one = one if one is not None else model.config.eos_token_id
            eos = [one] if one is not None else []
        self.eos = set(eos)
        self.on_step = on_step  # (active rows, waiting) after each step: metrics
        self.waiting: queue.Queue[Sequence] = queue.Queue()
        self.active: list[Sequence] = []
        self.K: list[torch.Tensor] | None = None  # per layer (slots, kv_heads, capacity, head_dim)
        self.V: list[torch.Tensor] | None = None
        self.mask = torch.zeros(max_batch, self.capacity, dtype=torch.long, device=self.device)
        self.start = [0] * max_batch  # first cache column of each slot's row
        self.pos = torch.zeros(
            max_batch, dtype=torch.long, device=self.device
        )  # position id of the next input
        self.last = torch.zeros(max_batch, dtype=torch.long, device=self.device)  # the next input token
        self.counts = torch.zeros(max_batch, self.vocab, device=self.device)  # generated token counts
        self.t = 0  # the shared write column
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.steps = 0
        self.prefill_batch = 8  # prompts prefilled together
        self.compactions = 0
        self.error: BaseException | None = None

    # -- the public side ------------------------------------------------------------------------------

    def start_thread(self) -> Batcher:
        self._thread = threading.Thread(target=self._run, name="zhixing-batcher", daemon=True)
        self._thread.start()
        return self

    def submit(self, seq: Sequence) -> None:
        if self.waiting.qsize() >= self.max_queue:
            raise QueueFull(f"{self.waiting.qsize()} requests are waiting (max_queue={self.max_queue})")
        self.waiting.put(seq)
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def num_active(self) -> int:
        return len(self.active)

    @property
    def num_waiting(self) -> int:
        return self.waiting.qsize()

    # -- the loop -------------------------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while not self._stop.is_set():
                try:
                    self._admit()
                    if not self.active:
                        self._wake.wait(0.05)
                        self._wake.clear()
                        continue
                    self._step()
                except Exception as e:  # a bug must not hang the clients: end every sequence with "error"
                    self.error = e
                    for s in self.active + self._drain_waiting():
                        s.emit(Event(s.index, finish_reason="error"))
                    self.active = []
                    self.mask.zero_()
                    self.t = 0
            for s in self.active + self._drain_waiting():
                s.emit(Event(s.index, finish_reason="abort"))
            self.active = []

    def _drain_waiting(self) -> list[Sequence]:
        out = []
        while True:
            try:
                out.append(self.waiting.get_nowait())
            except queue.Empty:
                return out

    def _retire_cancelled(self) -> None:
        for i in range(len(self.active) - 1, -1, -1):
            if self.active[i].cancelled:
                self._free(i)

    def _admit(self) -> None:
        self._retire_cancelled()
        batch = []
        while len(self.active) + len(batch) < self.max_batch:
            try:
                seq = self.waiting.get_nowait()
            except queue.Empty:
                break
            if not seq.cancelled:
                batch.append(seq)
        for i in range(0, len(batch), self.prefill_batch):
            self._prefill(batch[i : i + self.prefill_batch])

    def _prefill(self, seqs: list[Sequence]) -> None:
        """Run the new prompts together (left-padded, positions counted from each row's first real token),
        copy each row's keys/values into the next free slot right-aligned at column t, and choose each
        row's first token."""
        lengths = [len(s.prompt) for s in seqs]
        width = max(lengths)
        ids = torch.zeros(len(seqs), width, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(seqs), width, dtype=torch.long, device=self.device)
        for r, s in enumerate(seqs):
            ids[r, width - lengths[r] :] = torch.tensor(s.prompt, device=self.device)
            mask[r, width - lengths[r] :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = self.model.new_cache(width)
        padded = min(lengths) != width
        logits = (
            self.model(
                ids,
                attention_mask=mask if padded else None,
                position_ids=pos if padded else None,
                cache=cache,
                last_only=True,
            )
            .logits[:, -1]
            .float()
        )  # (rows, vocab)
        if self.K is None:
            k = cache.layers[0].k
            shape = (self.max_batch, k.size(1), self.capacity, k.size(3))
            self.K = [torch.zeros(shape, dtype=k.dtype, device=self.device) for _ in cache.layers]
            self.V = [torch.zeros(shape, dtype=k.dtype, device=self.device) for _ in cache.layers]
        if self.t < width:
            self.t = width  # the other rows' masks are 0 in the skipped columns
        t, rows = self.t, []
        for r, (s, p) in enumerate(zip(seqs, lengths)):
            i = len(self.active)
            for layer, c in enumerate(cache.layers):
                self.K[layer][i, :, t - p : t] = c.k[r, :, width - p : width]
                self.V[layer][i, :, t - p : t] = c.v[r, :, width - p : width]
            self.mask[i].zero_()
            self.mask[i, t - p : t] = 1
            self.start[i] = t - p
            self.pos[i] = p
            self.counts[i].zero_()
            self.active.append(s)
            rows.append(i)
        first = len(self.active) - len(seqs)
        self._advance(rows, *self._choose(logits, seqs, self.counts[first : first + len(seqs)]))

    def _step(self) -> None:
        n = len(self.active)
        longest = self.t - min(self.start[:n])
        # Compact when the window is full, or when more than half of it (and > 32 columns) is columns no row
        # uses any more: attention reads the whole window every step.
        if self.t + 1 > self.capacity or self.t > 2 * longest + 32:
            self._compact(extra=1)
        t = self.t
        self.mask[:n, t] = 1
        cache = Cache(len(self.K))
        for layer, c in enumerate(cache.layers):
            c.k, c.v = self.K[layer][:n], self.V[layer][:n]
        cache.length = t
        out = self.model(
            self.last[:n, None],
            attention_mask=self.mask[:n, : t + 1],
            position_ids=self.pos[:n, None],
            cache=cache,
            last_only=True,
        )
        self.t = t + 1
        self.pos[:n] += 1
        self._advance(list(range(n)), *self._choose(out.logits[:, -1].float(), self.active, self.counts[:n]))
        self.steps += 1
        if self.on_step is not None:
            self.on_step(len(self.active), self.num_waiting)

    def _compact(self, extra: int) -> None:
        """Move every row's columns to the right end of the window [0, longest row) (one gather per
        layer), so that `extra` more columns fit."""
        n = len(self.active)
        lengths = [self.t - self.start[i] for i in range(n)]
        new_t = max(lengths, default=0)
        if new_t + extra > self.capacity:
            raise RuntimeError(f"a row needs {new_t + extra} cache columns; the model holds {self.capacity}")
        cols = torch.arange(new_t, device=self.device)
        first = torch.tensor([new_t - ln for ln in lengths], device=self.device)  # new start of each row
        shift = torch.tensor([self.start[i] for i in range(n)], device=self.device) - first
        src = (cols[None] + shift[:, None]).clamp(0, self.capacity - 1)  # (n, new_t): source of column c
        for bufs in (self.K, self.V):
            for buf in bufs:
                index = src[:, None, :, None].expand(n, buf.size(1), new_t, buf.size(3))
                buf[:n, :, :new_t] = buf[:n].gather(2, index)
        self.mask[:n].zero_()
        self.mask[:n, :new_t] = (cols[None] >= first[:, None]).long()
        for i in range(n):
            self.start[i] = new_t - lengths[i]
        self.t = new_t
        self.compactions += 1

    def _free(self, i: int) -> None:
        """Slot i leaves: the last active row moves into it."""
        last = len(self.active) - 1
        if i != last:
            s0 = self.start[last]  # only the moving row's own columns need copying
            for bufs in (self.K, self.V):
                for buf in bufs:
                    buf[i, :, s0 : self.t] = buf[last, :, s0 : self.t]
            self.mask[i] = self.mask[last]
            self.start[i] = self.start[last]
            self.pos[i] = self.pos[last]
            self.last[i] = self.last[last]
            self.counts[i] = self.counts[last]
        self.mask[last].zero_()
        self.active[i] = self.active[last]
        self.active.pop()
        if not self.active:
            self.t = 0

    # -- choosing tokens ------------------------------------------------------------------------------

    def _choose(
        self, logits: torch.Tensor, seqs: list[Sequence], counts: torch.Tensor
    ) -> tuple[torch.Tensor, list[TokenInfo]]:
        """logits (rows, vocab) float32 -> one token per row (rows,), with the row's own settings;
        counts (rows, vocab): the tokens each row generated so far (for the penalties)."""
        params = [s.params for s in seqs]
        want_lp = [p.logprobs for p in params]
        logprobs = logits.log_softmax(-1) if any(k is not None for k in want_lp) else None
        pres = torch.tensor([p.presence_penalty for p in params], device=logits.device)
        freq = torch.tensor([p.frequency_penalty for p in params], device=logits.device)
        if bool((pres != 0).any() or (freq != 0).any()):
            # OpenAI's penalties, on the tokens generated so far: mu - c * alpha_freq - (c > 0) * alpha_pres
            logits = logits - freq[:, None] * counts - pres[:, None] * (counts > 0).float()
        temp = torch.tensor([p.temperature for p in params], device=logits.device)
        greedy = logits.argmax(-1)
        if bool((temp > 0).any()):
            scaled = logits / temp.clamp(min=1e-5)[:, None]
            top_p = torch.tensor([p.top_p for p in params], device=logits.device)
            if bool((top_p < 1).any()):
                sorted_scores, order = scaled.sort(
                    dim=-1
                )  # ascending; see generation.processors.top_p_filter
                tail = sorted_scores.softmax(-1).cumsum(-1)
                drop = tail <= (1 - top_p)[:, None]
                drop[:, -1] = False
                scaled = scaled.masked_fill(drop.scatter(1, order, drop), float("-inf"))
            probs = scaled.softmax(-1)
            cdf = probs.cumsum(-1)
            u = torch.tensor(
                [s.rng.random() if s.rng is not None else random.random() for s in seqs],
                device=logits.device,
                dtype=cdf.dtype,
            )
            sampled = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(1).clamp(max=self.vocab - 1)
            token = torch.where(temp > 0, sampled, greedy)
        else:
            token = greedy
        ids = token.tolist()
        out = [TokenInfo(t) for t in ids]
        if logprobs is not None:
            chosen = logprobs.gather(1, token[:, None]).squeeze(1).tolist()
            kmax = max(k for k in want_lp if k is not None)
            top_v, top_i = logprobs.topk(max(kmax, 1), dim=-1) if kmax > 0 else (None, None)
            for r, k in enumerate(want_lp):
                if k is None:
                    continue
                out[r].logprob = chosen[r]
                if k > 0:
                    out[r].top = list(zip(top_i[r, :k].tolist(), top_v[r, :k].tolist()))
        for info in out:  # JSON has no NaN / infinity
            if not math.isfinite(info.logprob if info.logprob is not None else 0.0):
                info.logprob = None
        return token, out

    def _advance(self, rows: list[int], token: torch.Tensor, tokens: list[TokenInfo]) -> None:
        """Record the chosen tokens, emit text, retire finished rows."""
        index = torch.tensor(rows, device=self.device)
        self.last[index] = token
        self.counts.index_put_(
            (index, token), torch.ones_like(token, dtype=self.counts.dtype), accumulate=True
        )
        finished = []
        for i, info in zip(rows, tokens):
            seq = self.active[i]
            seq.generated += 1
            reason = None
            if info.id in self.eos and not seq.params.ignore_eos:
                reason = "stop"
                piece = seq.streamer.finish()
            else:
                seq.pending.append(info)
                piece = seq.streamer.push(info.id)
                if seq.streamer.stopped:
                    reason = "stop"
                elif (
                    seq.generated >= seq.params.max_tokens or len(seq.prompt) + seq.generated > self.capacity
                ):
                    reason = "length"
                    piece += seq.streamer.finish()
            if piece or reason:
                seq.emit(Event(seq.index, piece, seq.pending, reason, len(seq.prompt), seq.generated))
                seq.pending = []
            if reason:
                finished.append(i)
        for i in sorted(finished, reverse=True):
            self._free(i)


def describe(b: Batcher) -> dict[str, Any]:
    """The scheduler's state, for /health and tests."""
    return {"active": b.num_active, "waiting": b.num_waiting, "max_batch": b.max_batch, "steps": b.steps}
