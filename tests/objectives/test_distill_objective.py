"""Distillation objective: the loss is the textbook T²·KL + α·CE, its gradient is T·(p_s - p_t) (and tends
to the logit difference / C as T grows), a student trained through the unchanged Trainer matches its
teacher, layer-subset students copy the right weights, cached teacher logits give the live teacher's loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zhixing.errors import ConfigError
from zhixing.models import build_model
from zhixing.objectives import OBJECTIVES, CausalLMDistillation, Distillation
from zhixing.objectives.distill import (
    default_layer_map,
    every_other_layer,
    kd_loss,
    narrow_student,
    student_from_layers,
)
from zhixing.train import TrainConfig, Trainer

TINY = dict(vocab_size=99, dim=32, num_heads=2, max_seq_len=64, head="seq_cls", num_labels=3, dropout=0.0,
            classifier_dropout=0.0)


def teacher(num_layers=4, seed=0, scale=30.0, **kw):
    """A random tiny classifier; its head scaled so its class probabilities are far from uniform."""
    torch.manual_seed(seed)
    model = build_model("bert-tiny", **{**TINY, **kw}, num_layers=num_layers).eval()
    with torch.no_grad():
        model.classifier.proj.weight.mul_(scale)
    return model


def batch(n=5, t=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 99, (n, t), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    mask[1, 7:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (n,), generator=g),
            "index": torch.arange(n)}


def test_loss_is_hand_computed_kl_times_t_squared_plus_alpha_ce():
    T, alpha = 3.0, 0.7
    tea, stu = teacher(), teacher(num_layers=2, seed=5)
    b = batch()
    obj = Distillation(tea, temperature=T, alpha=alpha)
    obj.check(stu)
    kd, ce = obj.losses(stu, b)
    with torch.no_grad():
        z_s = stu(b["input_ids"], b["attention_mask"]).logits.double()
        z_t = tea(b["input_ids"], b["attention_mask"]).logits.double()
    p_t, p_s = (z_t / T).softmax(-1), (z_s / T).softmax(-1)
    hand_kl = sum(float((p_t[i] * (p_t[i].log() - p_s[i].log())).sum()) for i in range(5)) * T * T
    hand_ce = sum(-float(z_s[i].log_softmax(-1)[b["labels"][i]]) for i in range(5)) * alpha
    assert kd.item() == pytest.approx(hand_kl, rel=1e-5)
    assert ce.item() == pytest.approx(hand_ce, rel=1e-5)
    assert obj.targets(b) == (5, 5)
    assert kd.item() > 0.01


def test_gradient_is_t_times_probability_difference_and_tends_to_logit_difference():
    torch.manual_seed(0)
    z_t = torch.randn(4, 6)
    for T in (1.0, 2.0, 5.0):
        z_s = torch.randn(4, 6, requires_grad=True)
        kd_loss(z_s, z_t, T).backward()
        expected = T * ((z_s / T).softmax(-1) - (z_t / T).softmax(-1))
        torch.testing.assert_close(z_s.grad, expected.detach())
    # Hinton et al.: for T >> |z|, T²·KL's gradient -> ((z_s - mean z_s) - (z_t - mean z_t)) / C
    z_s = torch.randn(4, 6, requires_grad=True)
    kd_loss(z_s, z_t, 1000.0).backward()
    limit = ((z_s - z_s.mean(-1, keepdim=True)) - (z_t - z_t.mean(-1, keepdim=True))) / 6
    torch.testing.assert_close(z_s.grad, limit.detach(), atol=2e-3, rtol=1e-2)


def test_student_with_the_teachers_weights_has_zero_kd_and_intermediate_losses():
    tea = teacher()
    same = student_from_layers(tea, [0, 1, 2, 3]).eval()
    obj = Distillation(tea, hidden_weight=1.0, attn_weight=1.0, cos_weight=1.0)
    obj.check(same)
    assert obj.parts == ("kd", "ce", "hidden", "attn", "cos") and obj.layer_map == [0, 1, 2, 3, 4]
    kd, _, hidden, attn, cos = obj.losses(same, batch())
    for loss in (kd, hidden, attn, cos):
        assert abs(loss.item()) < 1e-4
    # a 2-layer student of layers 0, 2 matches teacher layers 1, 3 (outputs) through the map
    half = student_from_layers(tea, [0, 2]).eval()
    obj = Distillation(tea, hidden_weight=1.0, attn_weight=1.0, layer_map=[0, 1, 3])
    obj.check(half)
    _, _, hidden, attn = obj.losses(half, batch())
    assert hidden.item() > 1e-3 and attn.item() > 0  # layer 1 of the student is not the teacher's 3rd


def test_narrower_student_gets_a_trained_projection(tmp_path):
    tea = teacher()
    torch.manual_seed(3)
    stu = narrow_student(tea, dim=16, num_heads=2, num_layers=2)
    assert stu.config.dim == 16 and stu.config.ffn_dim == tea.config.ffn_dim // 2
    obj = Distillation(tea, hidden_weight=1.0, attn_weight=1.0)
    cfg = TrainConfig(device="cpu", progress=False, tensorboard=False, plots=False, max_steps=2,
                      lr=1e-2, warmup_steps=0, num_threads=1)
    trainer = Trainer(stu, obj, cfg, Rows(), run=tmp_path / "narrow")
    assert obj.proj is not None and obj.proj.weight.shape == (32, 16)
    before = obj.proj.weight.detach().clone()
    trainer.fit()
    assert not torch.equal(before, obj.proj.weight)  # the projection is in the optimizer
    assert not any(k.startswith("proj") for k in stu.state_dict())  # ... but not in the student


def test_layer_subset_init_copies_the_chosen_layers():
    tea = teacher(num_layers=6)
    assert every_other_layer(6) == [0, 2, 4]
    stu = student_from_layers(tea, [1, 3, 5])
    assert stu.config.num_layers == 3
    ts, ss = tea.state_dict(), stu.state_dict()
    for i, j in enumerate([1, 3, 5]):
        block = [k for k in ss if k.startswith(f"layers.{i}.")]
        assert block
        for k in block:
            assert torch.equal(ss[k], ts[k.replace(f"layers.{i}.", f"layers.{j}.", 1)]), k
    for k in ss:
        if not k.startswith("layers."):
            assert torch.equal(ss[k], ts[k]), k
    with pytest.raises(ConfigError, match="teacher has layers 0..5; 6 not among them"):
        student_from_layers(tea, [0, 6])
    assert default_layer_map(3, 6) == [0, 2, 4, 6]


def test_cached_teacher_logits_give_the_live_teachers_loss():
    tea, stu = teacher(), teacher(num_layers=2, seed=5)
    b = batch(n=4)
    live = Distillation(tea, temperature=2.0)
    logits = tea(b["input_ids"], b["attention_mask"]).logits.detach()
    table = torch.zeros(10, 3)
    rows = torch.tensor([7, 2, 9, 0])  # the batch's examples sit at these rows of the cache
    table[rows] = logits
    cached = Distillation(None, temperature=2.0, teacher_logits=table)
    got = cached.losses(stu, {**b, "index": rows})
    torch.testing.assert_close(got, live.losses(stu, b))


def test_bad_settings_are_config_errors():
    tea = teacher()
    with pytest.raises(ConfigError, match="temperature=0.*must be > 0"):
        Distillation(tea, temperature=0)
    with pytest.raises(ConfigError, match="temperature=-1"):
        CausalLMDistillation(tea, temperature=-1)
    other = build_model("bert-tiny", **{**TINY, "vocab_size": 50}, num_layers=2)
    with pytest.raises(ConfigError, match=r"vocabulary \(50 tokens\) differs from the teacher.s \(99\)"):
        Distillation(tea).check(other)
    with pytest.raises(ConfigError, match="layer_map"):
        Distillation(tea, hidden_weight=1.0, layer_map=[0, 9]).check(teacher(num_layers=2))
    with pytest.raises(ConfigError, match="needs the teacher model"):
        Distillation(None, hidden_weight=1.0, teacher_logits=torch.zeros(2, 3))
    assert OBJECTIVES["distill"] is Distillation


class Rows:
    """An endless stream of the same labelled batches."""

    def __iter__(self):
        i = 0
        while True:
            yield batch(n=8, seed=i % 4)
            i += 1

    def state_dict(self):
        return {}


def test_distillation_through_the_trainer_lowers_the_kd_loss(tmp_path):
    tea = teacher(num_layers=4, seed=0)  # confident: soft targets far from a random student's
    torch.manual_seed(1)
    stu = build_model("bert-tiny", **TINY, num_layers=2)
    obj = Distillation(tea, temperature=2.0, alpha=0.0)
    probe = [batch(n=8, seed=s) for s in range(4)]

    def kd_now():
        stu.eval()
        with torch.no_grad():
            return sum(obj.losses(stu, b)[0].item() for b in probe)

    before = kd_now()
    cfg = TrainConfig(device="cpu", progress=False, tensorboard=False, plots=False, max_steps=40, lr=3e-3,
                      warmup_steps=2, num_threads=1)
    Trainer(stu, obj, cfg, Rows(), run=tmp_path / "kd").fit()
    after = kd_now()
    assert after < 0.5 * before, (before, after)
    assert not tea.training and not any(p.requires_grad for p in tea.parameters())


def test_lm_distillation_matches_the_teachers_next_token_distribution(tmp_path):
    torch.manual_seed(0)
    gpt = dict(vocab_size=40, dim=32, num_heads=2, max_seq_len=32, dropout=0.0)
    tea = build_model("gpt-tiny", **gpt, num_layers=3).eval()
    stu = student_from_layers(tea, [0, 2])
    obj = CausalLMDistillation(tea, temperature=2.0, alpha=0.5)
    ids = torch.randint(0, 40, (3, 12))
    labels = ids.clone()
    labels[0, :3] = -100
    b = {"input_ids": ids, "labels": labels}
    obj.check(stu)
    n = int((labels[:, 1:] != -100).sum())
    assert obj.targets(b) == (n, n)
    kd, ce = obj.losses(stu, b)
    z_s, z_t = stu(ids).logits[:, :-1], tea(ids).logits[:, :-1]
    keep = labels[:, 1:] != -100
    hand = F.kl_div((z_s[keep] / 2).log_softmax(-1), (z_t[keep] / 2).log_softmax(-1), log_target=True,
                    reduction="sum") * 4
    torch.testing.assert_close(kd, hand)
    torch.testing.assert_close(ce, 0.5 * F.cross_entropy(z_s[keep], labels[:, 1:][keep], reduction="sum"))
    sums = obj.eval_sums(stu, b)  # the student's own LM loss, for comparison with a model from scratch
    torch.testing.assert_close(sums[0].float(), 2 * ce.detach())
    with pytest.raises(ConfigError, match="vocabulary"):
        obj.check(build_model("gpt-tiny", **{**gpt, "vocab_size": 41}, num_layers=1))
