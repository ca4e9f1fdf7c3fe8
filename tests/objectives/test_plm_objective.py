"""The permutation-LM objective: its loss equals transformers' XLNetLMHeadModel loss for the same
perm_mask / target_mapping / labels, each prediction is scored without its own token, and it follows the
Objective contract (targets, graph-connected zero, evaluation sums and metrics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zhixing.config import ConfigError
from zhixing.data import plm_masks
from zhixing.models import build_model
from zhixing.objectives.plm import PLM

VOCAB = 99


def plm_batch(batch: int = 3, seq: int = 24, num_predict: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """What PLMLoader yields, on random ids: text, then <sep> (4) <cls> (3) with token types 0 ... 0 2."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(9, VOCAB, size=(batch, seq))
    ids[:, -2:] = [4, 3]
    special = ids < 9
    masks = plm_masks(ids, rng, special=special, num_predict=num_predict)
    types = np.zeros_like(ids)
    types[:, -1] = 2
    out = {"input_ids": ids, "token_type_ids": types, **masks}
    return {k: torch.from_numpy(v) for k, v in out.items()}


def test_loss_equals_transformers_xlnet_lm_head_loss():
    transformers = pytest.importorskip("transformers")
    from zhixing.interop import from_hf

    config = transformers.XLNetConfig(vocab_size=VOCAB, d_model=32, n_layer=2, n_head=4, d_inner=37,
                                      attn_implementation="eager")
    hf = transformers.XLNetLMHeadModel(config).eval()
    model = from_hf(hf)
    batch = plm_batch()
    batch["labels"][1, -1] = -100  # an ignored prediction
    with torch.no_grad():
        theirs = hf(**batch).loss
        (ours,) = PLM().losses(model, batch)  # summed over the targets; transformers gives the mean
    assert PLM().targets(batch) == (3 * 4 - 1,)
    torch.testing.assert_close(ours / (3 * 4 - 1), theirs, atol=1e-5, rtol=1e-5)


def test_each_prediction_is_scored_without_its_own_token():
    """Through the objective: the loss of prediction m does not move when its own input token changes
    (the query stream cannot see it) and does when a target it sees changes; mask_emb is trained."""
    model = build_model("xlnet-tiny", vocab_size=VOCAB, dropout=0.0).eval()
    batch = plm_batch(batch=1)
    pos = batch["target_mapping"][0].argmax(-1)  # (num_predict,)
    sees = batch["perm_mask"][0][pos][:, pos] == 0  # prediction a sees target b
    assert sees.any() and not sees.all()  # the check below is not vacuous
    for m in range(len(pos)):
        only_m = batch["labels"].clone()
        only_m[0, torch.arange(len(pos)) != m] = -100
        with torch.no_grad():
            loss = PLM().losses(model, {**batch, "labels": only_m})[0]
            for b in range(len(pos)):
                ids = batch["input_ids"].clone()
                ids[0, pos[b]] = 5
                changed = PLM().losses(model, {**batch, "labels": only_m, "input_ids": ids})[0]
                assert bool((changed - loss).abs() > 1e-7) == bool(sees[m, b]), (m, b)
    (loss,) = PLM().losses(model, batch)
    loss.backward()
    assert model.mask_emb.grad is not None and model.mask_emb.grad.abs().sum() > 0


def test_no_targets_gives_a_graph_connected_zero():
    model = build_model("xlnet-tiny", vocab_size=VOCAB, dropout=0.0)
    batch = plm_batch()
    batch["labels"][:] = -100
    (loss,) = PLM().losses(model, batch)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert PLM().targets(batch) == (0,)


def test_eval_sums_and_metrics():
    model = build_model("xlnet-tiny", vocab_size=VOCAB, dropout=0.0).eval()
    batch = plm_batch()
    obj = PLM()
    with torch.no_grad():
        sums = obj.eval_sums(model, batch)
        (loss,) = obj.losses(model, batch)
    assert sums.dtype == torch.float64 and sums[1].item() == 12
    metrics = obj.eval_metrics(sums.tolist())
    assert metrics["val_loss"] == pytest.approx(loss.item() / 12, rel=1e-5)  # the mean of the summed loss
    assert 0 <= metrics["val_acc"] <= 1 and metrics["val_ppl"] == pytest.approx(np.exp(metrics["val_loss"]))


def test_a_few_steps_learn_the_batch():
    torch.manual_seed(0)
    model = build_model("xlnet-tiny", vocab_size=VOCAB, dropout=0.0)
    batch = plm_batch(batch=2, seq=16, num_predict=3)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        (loss,) = PLM().losses(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_check_refuses_other_models():
    PLM().check(build_model("xlnet-tiny"))
    with pytest.raises(ConfigError, match="plm objective trains an XLNet.*arch='bert'"):
        PLM().check(build_model("bert-tiny"))
    with pytest.raises(ConfigError, match="head='seq_cls'"):
        PLM().check(build_model("xlnet-tiny", head="seq_cls"))
    with pytest.raises(ValueError, match="needs \\['perm_mask', 'target_mapping'\\]"):
        PLM().losses(build_model("xlnet-tiny"), {"input_ids": torch.zeros(1, 4, dtype=torch.long),
                                                 "labels": torch.zeros(1, 1, dtype=torch.long)})
