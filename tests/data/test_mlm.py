import itertools

import numpy as np
import pytest
import torch

from zhixing.data import MLMLoader, ShardError, TokenShards, mask_tokens
from zhixing.models import build_model

IGNORE = -100


def occurrences(stream: np.ndarray, seq: np.ndarray) -> list[int]:
    """Every position where `seq` occurs in `stream`."""
    stream = np.asarray(stream)
    n = len(seq)
    return [
        s for s in np.flatnonzero(stream[: len(stream) - n + 1] == seq[0]) if (stream[s : s + n] == seq).all()
    ]


def reference_mask(
    ids, u_choose, u_action, u_token, *, mask_id, special_ids, random_ids, p, word_starts=None
):
    """BERT masking written token by token, as in the paper (the loop the vectorised version replaces)."""
    out, labels = ids.copy(), np.full_like(ids, IGNORE)
    for b in range(ids.shape[0]):
        word_draw = None
        for t in range(ids.shape[1]):
            special = ids[b, t] in special_ids
            if word_starts is None or special or t == 0 or word_starts[b, t] or ids[b, t - 1] in special_ids:
                word_draw = u_choose[b, t]  # a new word begins: its first token's draw decides
            draw = u_choose[b, t] if word_starts is None else word_draw
            if special or draw >= p:
                continue
            labels[b, t] = ids[b, t]
            if u_action[b, t] < 0.8:
                out[b, t] = mask_id
            elif u_action[b, t] < 0.9:
                out[b, t] = random_ids[u_token[b, t]]
    return out, labels


@pytest.mark.parametrize("whole_word", [False, True])
def test_vectorised_masking_equals_the_reference(whole_word):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(8, 40))
    ids[:, 0], ids[:, -1] = 1, 2  # [CLS] ... [SEP]
    special, random_ids = np.array([0, 1, 2, 3]), np.arange(4, 50)
    starts = (rng.random(ids.shape) < 0.5).astype(np.uint8) if whole_word else None
    kw = dict(mask_id=3, special_ids=special, random_ids=random_ids, mlm_probability=0.3, word_starts=starts)
    out, labels = mask_tokens(ids, np.random.default_rng(7), **kw)
    draws = np.random.default_rng(7)
    u_choose, u_action = draws.random(ids.shape), draws.random(ids.shape)
    u_token = draws.integers(0, len(random_ids), size=ids.shape)
    ref_out, ref_labels = reference_mask(ids, u_choose, u_action, u_token, mask_id=3, special_ids=special,
                                         random_ids=random_ids, p=0.3, word_starts=starts)  # fmt: skip
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(labels, ref_labels)


def test_masking_rates_and_specials():
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 1000, size=(256, 128))
    ids[:, ::16] = 1  # specials sprinkled in
    out, labels = mask_tokens(ids, rng, mask_id=4, special_ids=np.arange(5), random_ids=np.arange(5, 1000))
    chosen = labels != IGNORE
    assert abs(chosen[ids != 1].mean() - 0.15) < 0.01
    assert not chosen[ids == 1].any() and (out[ids == 1] == 1).all()
    np.testing.assert_array_equal(labels[chosen], ids[chosen])
    masked, kept = (out[chosen] == 4).mean(), (out[chosen] == ids[chosen]).mean()
    assert (
        abs(masked - 0.8) < 0.02 and abs(kept - 0.1 - 1 / 995 * 0.1) < 0.02
    )  # random may redraw the same id
    assert (out[chosen & (out != 4)] >= 5).all()  # random replacements are never special tokens


def test_whole_word_masks_all_or_nothing(wp_tok, pd_shards):
    tok, _ = wp_tok
    shards = TokenShards(pd_shards)
    loader = MLMLoader(shards, tok, block_size=64, batch_size=8, whole_word=True, mlm_probability=0.3)
    for batch in itertools.islice(iter(loader), 3):
        labels, ids = batch["labels"].numpy(), batch["input_ids"].numpy()
        original = np.where(labels != IGNORE, labels, ids)
        for row_o, row_l in zip(original, labels):
            # re-find the row in the stream to read its word starts
            s = occurrences(shards.tokens, row_o[1:63])[0]
            words = np.cumsum(np.asarray(shards.word_starts[s : s + 62]).astype(bool) | (np.arange(62) == 0))
            for w in np.unique(words):
                m = row_l[1:63][words == w] != IGNORE
                assert m.all() or not m.any()
    # jieba words span several characters, so some word is masked as a multi-token unit
    assert any(np.diff(np.flatnonzero(b["labels"].numpy().ravel() != IGNORE)).min() == 1
               for b in itertools.islice(iter(loader), 3))  # fmt: skip


def test_packed_rows_and_dynamic_masks(wp_tok, pd_shards):
    tok, _ = wp_tok
    shards = TokenShards(pd_shards)
    loader = MLMLoader(shards, tok, block_size=32, batch_size=4, seed=1)
    stream = np.asarray(shards.tokens, dtype=np.int64)
    masks: dict[int, list] = {}
    blocks = {tuple(stream[i : i + 30]): i for i in range(0, len(stream) - 29, 30)}
    n = len(loader)
    for batch in itertools.islice(iter(loader), 2 * n):
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        ids, labels = batch["input_ids"].numpy(), batch["labels"].numpy()
        assert (ids[:, 0] == tok.cls_id).all() and (ids[:, -1] == tok.sep_id).all()
        assert (batch["attention_mask"] == 1).all()
        original = np.where(labels != IGNORE, labels, ids)
        for row, lab in zip(original, labels):
            start = blocks.get(tuple(row[1:31]))
            # every row is a block of the stream, cut at multiples of block_size - 2
            assert start is not None
            masks.setdefault(start, []).append(tuple(np.flatnonzero(lab != IGNORE)))
    assert loader.epoch == 1
    twice = [m for m in masks.values() if len(m) == 2]
    assert twice and sum(a != b for a, b in twice) > 0.8 * len(twice)  # a fresh mask every epoch


def test_nsp_pairs(wp_tok, pd_shards):
    tok, _ = wp_tok
    shards = TokenShards(pd_shards)
    starts, ends = shards.doc_spans()
    doc_of = lambda pos: np.searchsorted(starts, pos, side="right") - 1  # noqa: E731
    loader = MLMLoader(shards, tok, block_size=48, batch_size=16, nsp=True, mlm_probability=1e-9)
    labels_seen = []
    for batch in itertools.islice(iter(loader), 6):
        ids, tt, am = (batch[k].numpy() for k in ("input_ids", "token_type_ids", "attention_mask"))
        for row, types, att, label in zip(ids, tt, am, batch["next_sentence_label"].numpy()):
            length = att.sum()
            assert (att[:length] == 1).all() and (row[length:] == tok.pad_id).all()
            seps = np.flatnonzero(row == tok.sep_id)
            assert row[0] == tok.cls_id and len(seps) == 2 and seps[1] == length - 1
            assert (types[: seps[0] + 1] == 0).all() and (types[seps[0] + 1 : length] == 1).all()
            assert (types[length:] == 0).all()
            a, b = row[1 : seps[0]], row[seps[0] + 1 : seps[1]]
            assert len(a) >= 1 and len(b) >= 1 and length <= 48
            stream = np.asarray(shards.tokens)
            ab = np.concatenate([a, b])
            true_next = [s for s in occurrences(stream, ab) if doc_of(s) == doc_of(s + len(ab) - 1)]
            if label == 0:
                assert true_next  # B continues A inside one document
            labels_seen.append(label)
    assert 0.3 < np.mean(labels_seen) < 0.7


@pytest.mark.parametrize("nsp", [False, True])
def test_resume_and_world_size(wp_tok, pd_shards, nsp):
    tok, _ = wp_tok
    shards = TokenShards(pd_shards)
    make = lambda **kw: MLMLoader(shards, tok, block_size=32, seed=2, nsp=nsp, whole_word=True,  # noqa: E731
                                  **{"batch_size": 8, **kw})  # fmt: skip
    steps = len(make()) + 3
    full = list(itertools.islice(iter(make()), steps))
    first = make()
    head = list(itertools.islice(iter(first), 5))
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    for a, b in zip(full, head + list(itertools.islice(iter(resumed), steps - 5))):
        assert all(torch.equal(a[k], b[k]) for k in a)
    halves = [list(itertools.islice(iter(make(batch_size=4, rank=r, world_size=2)), 4)) for r in (0, 1)]
    for one, h0, h1 in zip(full, *halves):
        assert all(torch.equal(one[k], torch.cat([h0[k], h1[k]])) for k in one)
    ev = make()
    assert all(torch.equal(x[k], y[k]) for x, y in zip(ev.eval_batches(2), ev.eval_batches(2)) for k in x)


def test_bad_input(char_tok, wp_tok, pd_shards, char_shards):
    with pytest.raises(ShardError, match=r"vocabulary of \d+ ids but the tokenizer has"):
        MLMLoader(TokenShards(pd_shards), char_tok[0], block_size=32, batch_size=2)
    with pytest.raises(ShardError, match=r"roles \['cls', 'sep'\]"):
        MLMLoader(TokenShards(char_shards), char_tok[0], block_size=32, batch_size=2)


def test_batches_train_a_bert(wp_tok, pd_shards):
    tok, _ = wp_tok
    model = build_model("bert-tiny", vocab_size=tok.vocab_size, head="pretraining", max_seq_len=64)
    loader = MLMLoader(TokenShards(pd_shards), tok, block_size=64, batch_size=4, nsp=True, whole_word=True)
    out = model(**next(iter(loader)))
    assert out.loss is not None and torch.isfinite(out.loss) and out.nsp_logits.shape == (4, 2)
