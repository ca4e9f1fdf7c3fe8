"""Continuous batching: a row decoded among others (joining and leaving at different steps, through cache
compaction) gives the tokens it gets alone; per-row settings; cancelled rows free their slot."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import zhixing
from zhixing.generation import generate
from zhixing.serve.batcher import Batcher, SamplingParams, Sequence


@pytest.fixture(scope="module")
def gpt(tiny_gpt):
    return zhixing.load(tiny_gpt).eval()


def run(batcher: Batcher, prompts, params, stagger: int = 0):
    """Submit the prompts (optionally a few decode steps apart) and collect the tokens of each."""
    out = {i: [] for i in range(len(prompts))}
    reasons = {}
    done = threading.Event()

    def emit_for(i):
        def emit(ev):
            out[i].extend(t.id for t in ev.tokens)
            if ev.finish_reason:
                reasons[i] = ev.finish_reason
                if len(reasons) == len(prompts):
                    done.set()

        return emit

    batcher.start_thread()
    try:
        for i, (p, sp) in enumerate(zip(prompts, params)):
            batcher.submit(Sequence(p, sp, emit_for(i), batcher.tokenizer, index=i))
            if stagger:
                target = batcher.steps + stagger
                deadline = time.monotonic() + 5
                while batcher.steps < target and time.monotonic() < deadline and not done.is_set():
                    time.sleep(0.001)
        assert done.wait(30), "generation did not finish"
    finally:
        batcher.stop()
    return out, reasons


@pytest.mark.parametrize("stagger", [3, 0], ids=["joining-between-steps", "prefilled-together"])
def test_batched_rows_decode_as_alone(gpt, stagger):
    g = torch.Generator().manual_seed(0)
    prompts = [
        torch.randint(5, gpt.config.vocab_size, (n,), generator=g).tolist() for n in (3, 17, 8, 30, 1, 12)
    ]
    news = [40, 25, 60, 33, 50, 20]  # long enough that the shared column wraps (max_seq_len 96): compaction
    params = [SamplingParams(max_tokens=m, temperature=0, ignore_eos=True) for m in news]
    # 2 slots: >= 114 steps for the 228 tokens, so the shared column must wrap the 96 columns
    b = Batcher(gpt, gpt.tokenizer, max_batch=2)
    out, reasons = run(b, prompts, params, stagger=stagger)
    for i, (p, m) in enumerate(zip(prompts, news)):
        alone = generate(gpt, [p], max_new_tokens=m, eos_token_ids=[]).tokens[0].tolist()
        assert out[i] == alone, f"row {i} differs from decoding alone"
        assert reasons[i] == "length"
    assert b.compactions > 0
    assert b.num_active == 0 and int(b.mask.sum()) == 0  # every slot freed, no mask column left set


def test_per_row_settings_and_seed(gpt):
    prompt = [5, 6, 7]
    sampled = SamplingParams(max_tokens=12, temperature=1.0, seed=7, ignore_eos=True)
    greedy = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    out1, _ = run(Batcher(gpt, gpt.tokenizer, max_batch=4), [prompt, prompt], [sampled, greedy])
    out2, _ = run(Batcher(gpt, gpt.tokenizer, max_batch=4), [prompt], [sampled])
    assert out1[0] == out2[0]  # a seed gives the same tokens whoever shares the batch
    assert out1[1] == generate(gpt, [prompt], max_new_tokens=12, eos_token_ids=[]).tokens[0].tolist()


def test_cancel_frees_the_slot(gpt):
    b = Batcher(gpt, gpt.tokenizer, max_batch=2).start_thread()
    try:
        got = []
        seq = Sequence(
            [5, 6],
            SamplingParams(max_tokens=80, temperature=0, ignore_eos=True),
            lambda ev: got.append(ev),
            gpt.tokenizer,
        )
        b.submit(seq)
        deadline = time.monotonic() + 5
        while b.num_active == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        seq.cancel()
        deadline = time.monotonic() + 5
        while b.num_active and time.monotonic() < deadline:
            time.sleep(0.001)
        assert b.num_active == 0
    finally:
        b.stop()
