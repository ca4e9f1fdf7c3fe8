"""Permutation-LM batches: the masks mean a factorisation order (a target never sees itself or later
targets through the query stream; the content stream sees itself), spans of whole words cover about 1/K
of the text, XLNet's <sep> <cls> layout, and the stream is a pure function of (seed, epoch, step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zhixing.data import PLMLoader, ShardError, TokenShards, plm_masks
from zhixing.data.plm import sample_targets
from zhixing.models import build_model

IGNORE = -100


def check_permutation_semantics(ids, special, perm_mask, target_mapping, labels) -> None:
    """For every row: the masks are those of some order in which all non-targets come first."""
    for r in range(ids.shape[0]):
        pm = perm_mask[r].astype(bool)  # True: i does not see j
        pos = target_mapping[r].argmax(-1)[target_mapping[r].sum(-1) > 0]
        is_t = np.zeros(ids.shape[1], dtype=bool)
        is_t[pos] = True
        assert not (is_t & special[r]).any()  # special tokens are never predicted
        assert (labels[r, : len(pos)] == ids[r, pos]).all() and (labels[r, len(pos):] == IGNORE).all()
        assert (target_mapping[r].sum(-1) <= 1).all()
        assert not pm[:, ~is_t].any()  # everyone sees every non-target (the context)
        assert pm[np.ix_(~is_t, is_t)].all()  # the context sees no target
        assert pm[pos, pos].all()  # the query stream never sees its own token
        # among targets, "i sees j" is a strict total order: the factorisation order
        sees = ~pm[np.ix_(pos, pos)]
        assert not (sees & sees.T).any()  # never both ways (nor i with itself)
        assert (sees | sees.T | np.eye(len(pos), dtype=bool)).all()  # always one way
        order = np.argsort(sees.sum(1))  # targets by how many targets they see: 0, 1, 2, ...
        assert (np.sort(sees.sum(1)) == np.arange(len(pos))).all()
        assert all(sees[order[a], order[b]] for a in range(len(pos)) for b in range(a))


def test_masks_follow_a_factorisation_order():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 100, size=(4, 40))
    special = np.zeros_like(ids, dtype=bool)
    special[:, -2:] = True  # <sep> <cls>
    special[1, 10] = True  # a document separator inside a row
    out = plm_masks(ids, np.random.default_rng(1), special=special, num_predict=7)
    assert out["perm_mask"].shape == (4, 40, 40) and out["target_mapping"].shape == (4, 7, 40)
    assert ((out["labels"] != IGNORE).sum(1) == 7).all()  # exactly num_predict targets
    check_permutation_semantics(ids, special, out["perm_mask"], out["target_mapping"], out["labels"])


def test_rows_with_fewer_eligible_tokens_pad_the_predictions():
    ids = np.arange(10, 20)[None]
    special = np.ones_like(ids, dtype=bool)
    special[0, 3:6] = False  # only 3 tokens can be predicted
    out = plm_masks(ids, np.random.default_rng(0), special=special, num_predict=5)
    assert out["labels"][0].tolist() == [13, 14, 15, IGNORE, IGNORE]
    assert out["target_mapping"][0, 3:].sum() == 0


def test_spans_are_whole_words_and_about_one_in_k():
    """Targets are runs of whole words (a run starts at a word start and stops at one), and over a long
    text the spans alone reach about 1/k of it: the top-up of single tokens is small."""
    T, k = 3000, 6
    starts = np.zeros(T, dtype=bool)
    starts[::3] = True  # words of 3 tokens
    eligible = np.ones(T, dtype=bool)
    assert sample_targets(eligible, starts, goal=T, rng=np.random.default_rng(0)).all()  # the goal is met
    for seed in range(3):
        chosen = sample_targets(eligible, starts, goal=T // k, rng=np.random.default_rng(seed), k=k)
        assert chosen.sum() == T // k
        edges = np.flatnonzero(np.diff(np.r_[0, chosen.astype(int), 0]))
        runs = list(zip(edges[::2], edges[1::2]))
        whole = [(a, b) for a, b in runs if starts[a] and (b == T or starts[b])]
        assert sum(b - a for a, b in whole) >= 0.85 * chosen.sum()
        assert max(b - a for a, b in runs) <= 2 * 5 * 3  # two spans may touch, none is longer than 5 words


def test_loader_layout_and_shapes(pd_shards, wp_tok):
    tok = wp_tok[0]
    loader = PLMLoader(TokenShards(pd_shards, "train"), tok, block_size=32, batch_size=3, seed=1)
    assert loader.num_predict == 5  # round(30 / 6)
    batch = next(iter(loader))
    assert set(batch) == {"input_ids", "token_type_ids", "perm_mask", "target_mapping", "labels"}
    ids = batch["input_ids"]
    assert ids.shape == (3, 32) and (ids[:, -2] == tok.sep_id).all() and (ids[:, -1] == tok.cls_id).all()
    assert (batch["token_type_ids"][:, -1] == 2).all() and (batch["token_type_ids"][:, :-1] == 0).all()
    assert batch["perm_mask"].dtype == torch.float32 and batch["labels"].dtype == torch.int64
    special = np.isin(ids.numpy(), tok.all_special_ids)
    check_permutation_semantics(ids.numpy(), special, batch["perm_mask"].numpy(),
                                batch["target_mapping"].numpy(), batch["labels"].numpy())


def test_the_model_reads_the_masks_as_an_order(pd_shards, wp_tok):
    """Through XLNet: a prediction does not change when its own token or a later target's token changes,
    and does when an earlier one's does; the content stream at a target reads its own token."""
    tok = wp_tok[0]
    batch = PLMLoader(TokenShards(pd_shards, "train"), tok, block_size=24, batch_size=1, seed=3).batch(0, 0)
    model = build_model("xlnet-tiny", vocab_size=tok.vocab_size, dropout=0.0).eval()
    keys = ("token_type_ids", "perm_mask", "target_mapping")
    pos = batch["target_mapping"][0].argmax(-1)  # (num_predict,)
    sees = batch["perm_mask"][0][pos][:, pos] == 0  # target a sees target b
    assert sees.any() and not sees.all()  # the check below is not vacuous

    def predictions(ids):
        with torch.no_grad():
            return model.hidden(ids, **{k: batch[k] for k in keys})[0]

    base = predictions(batch["input_ids"])
    for b, p in enumerate(pos.tolist()):
        ids = batch["input_ids"].clone()
        ids[0, p] = (ids[0, p] + 1) % tok.vocab_size
        moved = (predictions(ids) - base).abs().amax(-1) > 1e-6
        assert moved.tolist() == sees[:, b].tolist()  # exactly the targets that see p moved
        assert not moved[b]
    content = {k: batch[k] for k in ("token_type_ids", "perm_mask")}  # no target_mapping: content stream
    with torch.no_grad():
        h = model.hidden(batch["input_ids"], **content)
        ids = batch["input_ids"].clone()
        ids[0, pos[0]] = (ids[0, pos[0]] + 1) % tok.vocab_size
        h2 = model.hidden(ids, **content)
    assert (h2[0, pos[0]] - h[0, pos[0]]).abs().max() > 1e-4


def test_loader_is_a_pure_function_of_seed_epoch_step(pd_shards, wp_tok):
    shards, tok = TokenShards(pd_shards, "train"), wp_tok[0]

    def make(**kw):
        return PLMLoader(shards, tok, block_size=24, **{"batch_size": 2, "seed": 7, **kw})

    a, b = iter(make()), iter(make())
    first = [next(a) for _ in range(3)]
    for got, want in zip([next(b) for _ in range(3)], first):
        assert all(torch.equal(got[k], want[k]) for k in want)
    assert not torch.equal(first[0]["perm_mask"], first[1]["perm_mask"])
    assert not torch.equal(make(seed=8).batch(0, 0)["input_ids"], first[0]["input_ids"])
    # exact resume
    loader = make()
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    got = next(iter(resumed))
    assert all(torch.equal(got[k], first[1][k]) for k in first[1])
    with pytest.raises(ValueError, match="k=5 but this loader has 6"):
        make().load_state_dict({**state, "k": 5})
    # two ranks of 2 rows together are the one-rank batch of 4 rows, masks included
    whole = make(batch_size=4).batch(0, 1)
    halves = [make(rank=r, world_size=2).batch(0, 1) for r in (0, 1)]
    for k in whole:
        assert torch.equal(torch.cat([h[k] for h in halves]), whole[k])
    # evaluation: the same batches every pass
    e1, e2 = list(make().eval_batches(2)), list(make().eval_batches(2))
    assert all(torch.equal(x[k], y[k]) for x, y in zip(e1, e2) for k in x)


def test_loader_without_sep_and_cls_uses_plain_rows(char_shards, char_tok):
    loader = PLMLoader(TokenShards(char_shards, "train"), char_tok[0], block_size=18, batch_size=2, k=3)
    batch = loader.batch(0, 0)
    assert batch["input_ids"].shape == (2, 18) and loader.num_predict == 6
    assert (batch["token_type_ids"] == 0).all()


def test_loader_errors(pd_shards, wp_tok):
    shards, tok = TokenShards(pd_shards, "train"), wp_tok[0]
    with pytest.raises(ValueError, match="block_size=3 leaves no room"):
        PLMLoader(shards, tok, block_size=3, batch_size=2)
    with pytest.raises(ValueError, match="k=1 must be >= 2"):
        PLMLoader(shards, tok, block_size=24, batch_size=2, k=1)
    with pytest.raises(ShardError, match="fewer rows than one global batch"):
        PLMLoader(shards, tok, block_size=24, batch_size=10**6)
