import itertools
from collections import Counter

import numpy as np
import pytest
import torch

from zhixing.data import CLMLoader, ShardError, TokenShards


def take(loader, n):
    return list(itertools.islice(iter(loader), n))


def assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.parametrize("sampling", ["random", "sequential"])
def test_windows_come_from_the_stream(char_shards, sampling):
    shards = TokenShards(char_shards)
    loader = CLMLoader(shards, block_size=16, batch_size=4, sampling=sampling)
    stream = np.asarray(shards.tokens, dtype=np.int64)
    for batch in take(loader, 3):
        assert batch["input_ids"].shape == (4, 16) and batch["input_ids"].dtype == torch.int64
        assert torch.equal(batch["labels"], batch["input_ids"])  # the model shifts inside
        for row in batch["input_ids"].numpy():
            starts = np.flatnonzero(stream[: len(stream) - 15] == row[0])
            assert any((stream[s : s + 16] == row).all() for s in starts)
            if sampling == "sequential":
                assert any(s % 16 == 0 and (stream[s : s + 16] == row).all() for s in starts)
    assert loader.tokens_per_batch == 4 * 15


def test_sequential_epoch_sees_every_block_once_and_reshuffles(char_shards):
    shards = TokenShards(char_shards)
    loader = CLMLoader(shards, block_size=32, batch_size=3, sampling="sequential", seed=5)
    n = len(loader)
    assert n == (len(shards) // 32) // 3
    rows = lambda bs: [tuple(r.tolist()) for b in bs for r in b["input_ids"]]  # noqa: E731
    epoch0, epoch1 = take(loader, n), take(loader, n)
    assert loader.epoch == 1
    stream = np.asarray(shards.tokens)
    blocks = Counter(tuple(stream[i : i + 32].tolist()) for i in range(0, len(stream) - 31, 32))
    for epoch in (epoch0, epoch1):  # each block at most once per epoch (the corpus repeats some text)
        seen = Counter(rows(epoch))
        assert sum(seen.values()) == 3 * n and not seen - blocks
    assert rows(epoch0) != rows(epoch1)  # a fresh order each epoch


@pytest.mark.parametrize("sampling", ["random", "sequential"])
def test_resume_gives_exactly_the_same_batches(char_shards, sampling):
    shards = TokenShards(char_shards)
    make = lambda: CLMLoader(shards, block_size=16, batch_size=8, seed=3, sampling=sampling)  # noqa: E731
    steps = len(make()) + 5  # cross an epoch boundary
    uninterrupted = take(make(), steps)
    first = make()
    head = take(first, 7)
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert_same(head + take(resumed, steps - 7), uninterrupted)
    other = make()
    other.seed = 4
    with pytest.raises(ValueError, match=r"seed"):
        other.load_state_dict(state)


@pytest.mark.parametrize("sampling", ["random", "sequential"])
def test_two_ranks_make_the_single_rank_batch(char_shards, sampling):
    shards = TokenShards(char_shards)
    single = take(CLMLoader(shards, block_size=8, batch_size=6, sampling=sampling), 4)
    ranks = [
        take(CLMLoader(shards, block_size=8, batch_size=3, rank=r, world_size=2, sampling=sampling), 4)
        for r in (0, 1)
    ]
    for s, r0, r1 in zip(single, *ranks):
        assert torch.equal(s["input_ids"], torch.cat([r0["input_ids"], r1["input_ids"]]))
        assert not torch.equal(r0["input_ids"], r1["input_ids"])


def test_eval_batches_are_deterministic(char_shards):
    val = TokenShards(char_shards, "val")
    loader = CLMLoader(val, block_size=8, batch_size=2)
    a, b = list(loader.eval_batches(3)), list(loader.eval_batches(3))
    assert len(a) == 3
    assert_same(a, b)
    full = list(loader.eval_batches())
    assert len(full) == (len(val) // 8) // 2
    np.testing.assert_array_equal(
        torch.cat([x["input_ids"] for x in full]).flatten().numpy(), np.asarray(val.tokens[: len(full) * 16])
    )
    assert loader.epoch == 0 and loader.step == 0


def test_bad_arguments(char_shards):
    shards = TokenShards(char_shards, "val")
    with pytest.raises(ShardError, match=r"fewer than block_size"):
        CLMLoader(shards, block_size=len(shards) + 1, batch_size=1)
    with pytest.raises(ShardError, match=r"separated by id"):
        CLMLoader(shards, block_size=8, batch_size=1, eos_id=shards.separator_id + 1)
    with pytest.raises(ValueError, match=r"rank=2"):
        CLMLoader(shards, block_size=8, batch_size=1, rank=2, world_size=2)


def test_batches_train_a_gpt(char_tok, char_shards):
    from zhixing.models import build_model

    model = build_model("gpt-tiny", vocab_size=char_tok[0].vocab_size, max_seq_len=16)
    loader = CLMLoader(TokenShards(char_shards), block_size=16, batch_size=4)
    out = model(**next(iter(loader)))
    assert torch.isfinite(out.loss) and out.logits.shape == (4, 16, char_tok[0].vocab_size)
