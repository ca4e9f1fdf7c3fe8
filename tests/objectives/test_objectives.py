"""Objectives: their fast paths equal the plain ones, their target masses make accumulated steps exact,
and a new objective trains through the unchanged Trainer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zhixing.models import build_model
from zhixing.models.heads import IGNORE, linear_cross_entropy
from zhixing.objectives import CausalLM, Classification, MaskedLM, Objective, build_objective
from zhixing.objectives.clm import fusable
from zhixing.train import TrainConfig, Trainer

TINY = dict(vocab_size=99, dim=32, num_heads=2, max_seq_len=64)


def test_mlm_head_on_labelled_positions_only_matches_the_full_head():
    """MaskedLM runs the MLM head at the masked positions only: same loss, accuracy and gradients as
    the full (batch, seq, vocab) logits."""
    torch.manual_seed(0)
    model = build_model("bert-tiny", **TINY, head="pretraining").eval()
    ids = torch.randint(0, 99, (3, 11))
    labels = torch.full_like(ids, IGNORE)
    labels[0, 2], labels[1, 5], labels[1, 9], labels[2, 0] = 7, 8, 9, 10
    nsl = torch.tensor([0, 1, 1])
    batch = {"input_ids": ids, "labels": labels, "next_sentence_label": nsl}
    full = model(ids, labels=labels)
    obj = MaskedLM(nsp=True)
    assert obj.targets(batch) == (4, 3)
    mlm, nsp = obj.losses(model, batch)
    torch.testing.assert_close(mlm / 4, full.loss)
    torch.testing.assert_close(nsp / 3, F.cross_entropy(full.nsp_logits, nsl))
    sums = obj.eval_sums(model, batch).tolist()
    keep = labels != IGNORE
    assert sums[2] == (full.logits.argmax(-1)[keep] == labels[keep]).sum().item()
    (mlm + nsp).backward()
    assert model.tok_embed.weight.grad is not None


def test_gpt_fused_loss_equals_the_full_path_with_tied_weights():
    """CausalLM fuses the output layer and the loss in fp32; the loss and every gradient equal the plain
    path's (the model's forward with labels)."""
    ids = torch.randint(0, 99, (3, 10))
    labels = ids.clone()
    labels[0, :4] = IGNORE
    batch = {"input_ids": ids, "labels": labels}
    obj = CausalLM()
    (n,) = obj.targets(batch)
    assert n == int((labels[:, 1:] != IGNORE).sum())
    results = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = build_model("gpt-tiny", **TINY)
        loss = obj.losses(model, batch)[0] / n if fused else model(ids, labels=labels).loss
        loss.backward()
        results.append((loss.detach(), {k: p.grad for k, p in model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0])
    for name, g in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], g, rtol=1e-5, atol=1e-6, msg=name)
    h = model.hidden(ids)
    assert fusable(h, model.head.proj)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # not fusable: the plain head + cross-entropy
        assert not fusable(model.hidden(ids), model.head.proj)
        plain = obj.losses(model, batch)[0] / n
    torch.testing.assert_close(plain.float(), results[0][0], atol=0.05, rtol=0)


def test_linear_cross_entropy_sum_reduction():
    torch.manual_seed(0)
    h = torch.randn(9, 8, requires_grad=True)
    w = torch.randn(17, 8, requires_grad=True)
    y = torch.randint(0, 17, (9,))
    y[[1, 4]] = IGNORE
    plain = F.cross_entropy(h @ w.t(), y, ignore_index=IGNORE, reduction="sum")
    plain.backward()
    expected = (plain.detach(), h.grad.clone(), w.grad.clone())
    h.grad = w.grad = None
    fused = linear_cross_entropy(h, w, y, reduction="sum")
    fused.backward()
    for got, want in zip((fused.detach(), h.grad, w.grad), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    none = linear_cross_entropy(h, w, torch.full_like(y, IGNORE), reduction="sum")  # no target: 0
    assert none.item() == 0.0 and none.requires_grad


def test_class_weighted_step_is_the_weighted_mean_of_the_whole_step():
    """With class weights the target mass is Σ w_y, so two micro-batches give the weighted mean of the
    large batch (what F.cross_entropy(weight=w) computes on it)."""
    torch.manual_seed(0)
    model = build_model("bert-tiny", **TINY, head="seq_cls", num_labels=3).eval()
    w = [0.5, 2.0, 1.0]
    obj = Classification(w)
    ids = torch.randint(0, 99, (6, 7))
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    halves = [{"input_ids": ids[:2], "labels": y[:2]}, {"input_ids": ids[2:], "labels": y[2:]}]
    total = sum(obj.targets(b)[0] for b in halves)
    assert total == pytest.approx(2 * 0.5 + 2.0 + 3 * 1.0)
    step = sum(obj.losses(model, b)[0] for b in halves) / total
    whole = F.cross_entropy(model(ids).logits, y, weight=torch.tensor(w))
    torch.testing.assert_close(step, whole)


class NextTwoTokens(Objective):
    """A toy objective the Trainer has never heard of: predict the tokens one AND two steps ahead from the
    same position, with the model's own LM head (L = ℓ(x_{t+1}) + ℓ(x_{t+2}), two parts)."""

    name = "next_two"
    parts = ("next", "after_next")

    def targets(self, batch):
        labels = batch["labels"]
        return int((labels[:, 1:] != IGNORE).sum()), int((labels[:, 2:] != IGNORE).sum())

    def losses(self, model, batch):
        logits = model.head(model.hidden(batch["input_ids"]))
        labels = batch["labels"]
        next_ = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                ignore_index=IGNORE, reduction="sum")
        after = F.cross_entropy(logits[:, :-2].reshape(-1, logits.size(-1)), labels[:, 2:].reshape(-1),
                                ignore_index=IGNORE, reduction="sum")
        return next_, after

    def eval_sums(self, model, batch):
        a, b = self.losses(model, batch)
        n1, n2 = self.targets(batch)
        return torch.tensor([a.item() + b.item(), n1 + n2], dtype=torch.float64)


def test_a_new_objective_needs_no_change_to_the_trainer(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from toyloader import ToyLoader

    torch.manual_seed(0)
    model = build_model("gpt-tiny", vocab_size=48, dim=32, num_heads=2, max_seq_len=32)
    cfg = TrainConfig(device="cpu", progress=False, tensorboard=False, plots=False, log_interval=1,
                      eval_batches=2, max_steps=30, eval_interval=10, lr=3e-3, warmup_steps=2, num_threads=1)
    trainer = Trainer(model, NextTwoTokens(), cfg, ToyLoader(), ToyLoader(), run=tmp_path / "two")
    summary = trainer.fit()
    train = [r["loss"] for r in trainer.history if r["kind"] == "train"]
    assert summary["status"] == "completed" and summary["objective"] == "next_two"
    assert train[-1] < train[0] - 0.5  # it learns both offsets of the toy stream
    assert math.isfinite(summary["best_val_loss"]) and (tmp_path / "two/best/model.safetensors").is_file()


def test_build_objective_by_name():
    assert isinstance(build_objective("clm", nsp=False), CausalLM)
    assert build_objective("mlm", nsp=True).parts == ("mlm", "nsp")
    with pytest.raises(Exception, match="unknown objective 'clmm'.*did you mean 'clm'"):
        build_objective("clmm")
    with pytest.raises(Exception, match="needs a decoder with an LM head"):
        CausalLM().check(build_model("bert-tiny", **TINY))


def test_an_objective_without_any_evaluation_trains_and_saves(tmp_path):
    """Classification without a dev evaluator and without validation batches: no evaluation, no best/,
    the last checkpoint is the model."""

    class Rows:  # an endless classification stream with the loader contract
        def __init__(self):
            self.pos = 0

        def __iter__(self):
            while True:
                g = torch.Generator().manual_seed(self.pos)
                self.pos += 1
                ids = torch.randint(2, 99, (4, 8), generator=g)
                yield {"input_ids": ids, "labels": (ids[:, 0] % 2)}

        def state_dict(self):
            return {"pos": self.pos}

        def load_state_dict(self, state):
            self.pos = state["pos"]

    model = build_model("bert-tiny", **TINY, head="seq_cls")
    cfg = TrainConfig(device="cpu", progress=False, tensorboard=False, plots=False, max_steps=3,
                      eval_interval=1, num_threads=1)
    summary = Trainer(model, Classification(), cfg, Rows(), run=tmp_path / "c").fit()
    assert summary["status"] == "completed" and "best_metric" not in summary
    assert summary["model_dir"].endswith("checkpoints/step-3")
