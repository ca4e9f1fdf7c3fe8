"""Search strategies: greedy, sampling, and beam search, over a runner (engine.py).

Greedy:   y_t = argmax_v s_t(v)
Sampling: y_t ~ softmax(s'_t),  s' = the processed scores (temperature, top-k, top-p, min-p)
Beam search keeps the K best partial sequences by accumulated log-probability
    score(y_1..t) = sum_i log p(y_i | y_<i, x)
and ranks finished ones by score / len**length_penalty, len = generated tokens (transformers' rule).

Every tensor is preallocated at its final size: the token buffer (rows, prompt + max_new) is written one
column per step. Finished rows keep receiving the pad token, as in transformers, so rows of a batch
finish independently and the batch stops when all have finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from zhixing.generation.config import GenerationConfig
from zhixing.generation.processors import LogitsProcessor


class StopStrings:
    """Stop a row once its generated text contains one of `strings` (decoded through `tokenizer`).

    Only the tail of each row is decoded: enough tokens to hold the longest stop string even when
    every character takes several byte-level tokens.
    """

    def __init__(self, tokenizer, strings: list[str]):
        if tokenizer is None:
            raise ValueError("stop_strings need a tokenizer to decode the text; pass tokenizer=")
        self.tokenizer, self.strings = tokenizer, list(strings)
        self.window = 4 * max(len(s) for s in strings) + 4

    def __call__(self, tokens: torch.Tensor, start: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (rows, length); start: first generated column. -> (rows,) bool: a stop string appeared.

        Only rows flagged in `rows` are decoded (the others are finished already).
        """
        hits = torch.zeros(tokens.size(0), dtype=torch.bool)
        check = range(tokens.size(0)) if rows is None else rows.nonzero().flatten().tolist()
        lo = max(start, tokens.size(1) - self.window)
        tail = tokens[:, lo:].tolist()
        for r in check:
            text = self.tokenizer.decode(tail[r], skip_special_tokens=True)
            hits[r] = any(s in text for s in self.strings)
        return hits.to(tokens.device)


@dataclass
class Decoding:
    """Token buffer and per-row progress of greedy / sampled decoding."""

    tokens: torch.Tensor  # (rows, prompt + max_new): prompt, then new tokens column by column
    length: int  # columns filled so far
    unfinished: torch.Tensor  # (rows,) bool
    finished_at: torch.Tensor  # (rows,) long: length right after the row's last token (total if still open)

    def final_length(self) -> int:
        """Columns to return: up to the last row's end once all are finished (transformers' output length)."""
        if bool(self.unfinished.any()):
            return self.length
        return int(self.finished_at.max())


def sample_steps(
    runner, tokens: torch.Tensor, prompt_len: int, config: GenerationConfig, processor: LogitsProcessor,
    eos: torch.Tensor | None, pad_id: int, ignore: torch.Tensor | None = None,
    stop: StopStrings | None = None, generator: torch.Generator | None = None, sync_every: int = 1,
) -> Iterator[tuple[Decoding, torch.Tensor]]:
    """Greedy or sampled decoding; yields (state, new tokens (rows,)) after each step.

    tokens: (rows, prompt + max_new) with the prompt in the first `prompt_len` columns.
    eos: (n,) ids that finish a row (None = none). ignore: (rows, total) True at left-padding positions.
    sync_every: how often to ask the device whether all rows are done (each ask waits for the GPU; rows
    that finished keep getting pad, so checking late only costs a few extra steps, trimmed at the end).
    """
    rows, total = tokens.shape
    state = Decoding(tokens, prompt_len, torch.ones(rows, dtype=torch.bool, device=tokens.device),
                     torch.full((rows,), total, dtype=torch.long, device=tokens.device))
    logits = runner.prefill()
    step = 0
    while True:
        cur = state.length
        history = tokens[:, :cur] if processor.needs_tokens else tokens
        scores = processor(logits, history, ignore[:, :cur] if ignore is not None else None)
        if config.sampling:
            probs = scores.softmax(dim=-1)
            new = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
        else:
            new = scores.argmax(dim=-1)
        if eos is not None or stop is not None:
            new = torch.where(state.unfinished, new, pad_id)  # finished rows only pad
        tokens[:, cur] = new
        state.length = cur + 1
        done = torch.zeros_like(state.unfinished)
        if eos is not None:
            done |= torch.isin(new, eos)
        if stop is not None:
            done |= stop(tokens[:, : cur + 1], prompt_len, state.unfinished)
        just = done & state.unfinished
        state.finished_at = torch.where(just, cur + 1, state.finished_at)
        state.unfinished = state.unfinished & ~done
        yield state, new
        step += 1
        if state.length >= total:
            return
        can_end = eos is not None or stop is not None
        if can_end and step % sync_every == 0 and not bool(state.unfinished.any()):
            return
        logits = runner.step(new)


def beam_search(
    runner, tokens: torch.Tensor, batch: int, prompt_len: int, config: GenerationConfig,
    processor: LogitsProcessor, eos: torch.Tensor | None, ignore: torch.Tensor | None = None,
    stop: StopStrings | None = None, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search with transformers' semantics; returns (sequences, scores) of the best
    num_return_sequences hypotheses per prompt, sequences (batch * n, prompt + generated).

    tokens: (batch * K, prompt + max_new), each prompt repeated K = num_beams times, filled past the
    prompt with the fill value. Per prompt it keeps:
      running: the K best unfinished hypotheses by accumulated log-probability;
      finished: the K best finished ones by score / generated_len ** length_penalty.
    Each step scores all K * vocab continuations and keeps the top 2K (more with several eos ids), so
    K of them stay unfinished even if many end now. Only candidates among the top K may be added to
    the finished set. Search stops when no running beam can beat the worst finished one (the
    early_stopping heuristic), when all K are finished and early_stopping is True, or at max length.
    """
    K, total = config.num_beams, tokens.size(1)
    lp, early = config.length_penalty, config.early_stopping
    device = tokens.device
    keep = max(2, 1 + (eos.numel() if eos is not None else 0)) * K
    in_top_k = torch.arange(keep, device=device) < K
    NEG = -1.0e9  # "impossible", kept finite so sums and comparisons stay well-defined

    running = tokens.view(batch, K, total)
    running_scores = torch.zeros(batch, K, device=device)
    running_scores[:, 1:] = NEG  # all beams start identical: let only the first one expand
    finished = running.clone()
    finished_scores = torch.full((batch, K), NEG, device=device)
    finished_done = torch.zeros(batch, K, dtype=torch.bool, device=device)
    finished_len = torch.zeros(batch, K, dtype=torch.long, device=device)  # generated tokens
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    batch_offset = torch.arange(batch, device=device)[:, None] * K
    ignore_rows = ignore

    def pick(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # gather along the beam dimension
        return t.take_along_dim(index.view(*index.shape, *([1] * (t.dim() - 2))), dim=1)

    logits = runner.prefill()
    cur = prompt_len
    while True:
        log_probs = logits.log_softmax(dim=-1)
        flat = running.view(batch * K, total)
        log_probs = processor(log_probs, flat[:, :cur],
                              ignore_rows[:, :cur] if ignore_rows is not None else None)
        vocab = log_probs.size(-1)
        acc = (log_probs.view(batch, K, vocab) + running_scores[:, :, None]).view(batch, K * vocab)
        if config.sampling:
            top_idx = torch.multinomial(acc.softmax(dim=-1), keep, generator=generator)
            top_lp = acc.gather(1, top_idx)
        else:
            top_lp, top_idx = acc.topk(keep, dim=-1)
        origin, new = top_idx // vocab, top_idx % vocab  # (batch, keep): source beam and token
        cand = pick(running, origin)
        cand[:, :, cur] = new
        cand_len = cur + 1 - prompt_len

        # which candidates end here: an eos token, max length, a stop string
        hits = torch.full_like(in_top_k[None].expand(batch, keep), cur + 1 >= total)
        if eos is not None:
            hits = hits | torch.isin(new, eos)
        if stop is not None:
            hits = hits | stop(cand.view(batch * keep, total)[:, : cur + 1], prompt_len).view(batch, keep)

        # running beams for the next step: the K best candidates that did not just end
        cand_running = top_lp + hits.float() * NEG
        nxt = cand_running.topk(K, dim=-1).indices
        running = pick(cand, nxt)
        running_scores = pick(cand_running, nxt)
        running_origin = (pick(origin, nxt) + batch_offset).view(-1)  # flat row each new beam continues

        # finished hypotheses: merge those that ended among the top K with the K best so far
        ended = hits & in_top_k[None]
        score = top_lp / (cand_len**lp)
        full = finished_done.all(dim=-1, keepdim=True) & (early is True)
        score = score + full.float() * NEG  # early_stopping=True: a full set takes no more
        score = score + (~improvable).float() * NEG  # nothing can beat the finished ones any more
        score = score + (~ended).float() * NEG
        merged = torch.cat((finished_scores, score), dim=1).topk(K, dim=-1).indices
        finished = pick(torch.cat((finished, cand), dim=1), merged)
        finished_scores = pick(torch.cat((finished_scores, score), dim=1), merged)
        finished_done = pick(torch.cat((finished_done, ended), dim=1), merged)
        cand_lens = torch.full((batch, keep), cand_len, dtype=torch.long, device=device)
        finished_len = pick(torch.cat((finished_len, cand_lens), dim=1), merged)

        runner.reorder(running_origin)
        if ignore_rows is not None:
            ignore_rows = ignore_rows.index_select(0, running_origin)
        cur += 1

        # Could the best running beam still beat the worst finished one? With length_penalty > 0 and
        # early_stopping="never" assume it reaches max length; otherwise judge it at its current length.
        best_len = (total - prompt_len) if (early == "never" and lp > 0.0) else (cur - prompt_len)
        best_running = running_scores[:, :1] / (best_len**lp)
        worst = torch.where(finished_done, finished_scores.min(dim=1, keepdim=True).values, NEG)
        improvable = improvable & (best_running > worst).any(dim=-1, keepdim=True)
        go_on = improvable.any() & ~(finished_done.all() & (early is True)) & ~hits.all()
        if not bool(go_on):
            break
        logits = runner.step(running[:, :, cur - 1].reshape(-1))

    n = config.num_return_sequences
    length = prompt_len + int(finished_len[:, :n].max())
    return finished[:, :n, :length].reshape(batch * n, length), finished_scores[:, :n].reshape(-1)
