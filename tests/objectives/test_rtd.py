"""Replaced-token detection (ELECTRA): the objective's parts against a hand computation, the labels, the
padding, no gradient through sampling, a few optimizer steps, the metrics, ELECTRA's masking and bad
settings. Tiny pair (discriminator dim 64, generator dim 16, 2 layers), fp32, CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zhixing.config import ConfigError, ModelConfig
from zhixing.data import mask_tokens
from zhixing.models import build_model
from zhixing.models.electra import EMBEDDINGS, rtd_loss
from zhixing.objectives.rtd import (
    AUC_BINS,
    ELECTRA_MASKING,
    RTDObjective,
    auc_from_histograms,
    eval_generator,
    sample_tokens,
)

VOCAB, PAD, CLS, SEP, MASK = 60, 0, 1, 2, 3


def tiny_pair(**overrides):
    return build_model("electra-tiny", vocab_size=VOCAB, max_seq_len=32, dropout=0.0, **overrides)


def mlm_batch(seed: int = 0, lengths=(12, 12, 8, 5)) -> dict[str, torch.Tensor]:
    """[CLS] text [SEP] [PAD]..., masked as ELECTRA masks (at a higher rate: more targets per batch)."""
    rng = np.random.default_rng(seed)
    seq = max(lengths)
    ids = rng.integers(5, VOCAB, size=(len(lengths), seq))
    attention = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, 0], ids[row, n - 1], ids[row, n:] = CLS, SEP, PAD
        attention[row, :n] = 1
    rate = {**ELECTRA_MASKING, "mlm_probability": 0.4}
    masked, labels = mask_tokens(ids, rng, mask_id=MASK, special_ids=np.arange(5),
                                 random_ids=np.arange(5, VOCAB), **rate)
    return {k: torch.from_numpy(v) for k, v in
            (("input_ids", masked), ("labels", labels), ("attention_mask", attention))}


def test_the_parts_equal_a_hand_computation():
    """L_MLM = cross-entropy of the generator's full MLM head at the masked positions; L_Disc = BCE of the
    discriminator on (masked -> sampled) ids against (sampled != original) over real tokens. The
    objective returns the sums; divided by its target counts they are these means."""
    model, obj, batch = tiny_pair(), RTDObjective(), mlm_batch()
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    torch.manual_seed(7)
    n_masked, n_real = obj.targets(batch)
    mlm, disc = obj.losses(model, batch)
    mlm, disc = mlm / n_masked, disc / n_real
    torch.manual_seed(7)
    c = obj.corrupt(model, batch)
    with torch.no_grad():
        masked = labels != -100
        original = torch.where(masked, labels, ids)
        gen_logits = model.generator(ids, mask).logits  # the full head, every position
        torch.testing.assert_close(mlm, F.cross_entropy(gen_logits[masked], labels[masked]))
        torch.testing.assert_close(c.gen_logits, gen_logits[masked], atol=1e-5, rtol=1e-5)

        corrupted = original.clone()
        corrupted[masked] = c.sampled
        replaced = (corrupted != original).float()
        p = torch.sigmoid(model.discriminator(corrupted, mask).logits)
        bce = -(replaced * p.log() + (1 - replaced) * (1 - p).log())
        real = mask.bool()
        torch.testing.assert_close(disc, 50 * bce[real].mean(), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(disc, 50 * bce.mean())  # the padding is not averaged in


def test_labels_are_exactly_sampled_differs_from_original_on_real_tokens():
    model, obj, batch = tiny_pair(), RTDObjective(), mlm_batch(1)
    c = obj.corrupt(model, batch)
    masked, real = batch["labels"] != -100, batch["attention_mask"].bool()
    assert torch.equal(c.masked, masked) and torch.equal(c.real, real)
    assert torch.equal(c.original, torch.where(masked, batch["labels"], batch["input_ids"]))
    assert torch.equal(c.corrupted[masked], c.sampled)  # every masked position gets the generator's sample
    assert torch.equal(c.corrupted[~masked], c.original[~masked])  # and nothing else changes
    assert torch.equal(c.replaced, c.corrupted != c.original)
    assert not c.replaced[~masked].any() and not c.replaced[~real].any()


def test_a_sample_equal_to_the_original_counts_as_original():
    model, obj, batch = tiny_pair(), RTDObjective(), mlm_batch(2)
    masked = batch["labels"] != -100
    batch["labels"] = batch["labels"].masked_fill(masked, 9)  # every masked original is token 9
    with torch.no_grad():
        model.generator.mlm.decoder.bias[9] = 1e4  # the generator is certain of token 9
    c = obj.corrupt(model, batch)
    assert (c.sampled == 9).all() and not c.replaced.any()
    with torch.no_grad():
        model.generator.mlm.decoder.bias[9] = 0.0
        model.generator.mlm.decoder.bias[10] = 1e4  # now certain of another token
    c = obj.corrupt(model, batch)
    assert torch.equal(c.replaced, masked)


def test_padding_does_not_enter_the_discriminator_loss():
    logits, replaced = torch.randn(2, 6), torch.randint(0, 2, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    base = rtd_loss(logits, replaced, mask)
    noisy = logits.clone()
    noisy[mask == 0] = 1e3
    torch.testing.assert_close(rtd_loss(noisy, 1 - replaced, mask) - rtd_loss(logits, 1 - replaced, mask),
                               torch.tensor(0.0))
    torch.testing.assert_close(base, F.binary_cross_entropy_with_logits(logits[mask == 1],
                                                                         replaced[mask == 1].float()))


def test_no_gradient_flows_through_sampling():
    """L_Disc reaches the generator only through the shared embedding tables; L_MLM never reaches D."""
    model, obj, batch = tiny_pair(), RTDObjective(), mlm_batch(3)
    own = lambda m: [(n, p) for n, p in m.named_parameters() if not n.startswith(EMBEDDINGS)]  # noqa: E731
    mlm, disc = obj.losses(model, batch)
    disc.backward()
    assert all(p.grad is None for _, p in own(model.generator)), "L_Disc reached the generator"
    assert model.discriminator.tok_embed.weight.grad.abs().sum() > 0  # the shared table learns from D
    assert all(p.grad is not None for _, p in own(model.discriminator))
    model.zero_grad(set_to_none=True)
    mlm.backward()
    assert all(p.grad is None for _, p in own(model.discriminator)), "L_MLM reached the discriminator"
    assert all(p.grad is not None for _, p in own(model.generator))
    c = obj.corrupt(model, batch)
    assert not c.sampled.requires_grad and not c.corrupted.requires_grad


def test_a_part_without_targets_is_a_connected_zero():
    model, obj, batch = tiny_pair(), RTDObjective(), mlm_batch(4)
    batch["labels"] = torch.full_like(batch["labels"], -100)
    assert obj.targets(batch) == (0, int(batch["attention_mask"].sum()))
    mlm, disc = obj.losses(model, batch)
    assert mlm.item() == 0.0 and mlm.requires_grad and torch.isfinite(disc)
    (mlm + disc).backward()


def test_a_few_optimizer_steps_reduce_the_loss():
    torch.manual_seed(0)
    model, obj = tiny_pair(), RTDObjective()
    batches = [mlm_batch(s) for s in range(2)]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for step in range(12):
        n_masked, n_real = obj.targets(batches[step % 2])
        mlm, disc = obj.losses(model, batches[step % 2])
        mlm, disc = mlm / n_masked, disc / n_real
        opt.zero_grad()
        (mlm + disc).backward()
        opt.step()
        history.append((mlm + disc).item())
    assert sum(history[-3:]) < 0.8 * sum(history[:3]), history  # seen: ~0.7


def test_gumbel_max_samples_follow_the_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(40000, 4)
    for t in (1.0, 2.0):
        counts = torch.bincount(sample_tokens(logits, t), minlength=4).float() / 40000
        torch.testing.assert_close(counts, torch.softmax(logits[0] / t, -1), atol=0.01, rtol=0)


def test_eval_metrics_from_summed_batches():
    model, obj = tiny_pair(), RTDObjective()
    batches = [mlm_batch(s) for s in range(2)]
    rng = torch.get_rng_state()
    sums = sum(obj.eval_sums(model, b) for b in batches)
    assert torch.equal(torch.get_rng_state(), rng)  # evaluation leaves the training RNG alone
    assert torch.equal(sum(obj.eval_sums(model, b) for b in batches), sums)  # and repeats itself
    parts = [obj.corrupt(model, b, eval_generator(b)) for b in batches]
    metrics = obj.eval_metrics(sums.tolist())
    n_masked = sum(int(c.masked.sum()) for c in parts)
    n_real = sum(int(c.real.sum()) for c in parts)
    right = sum(int((c.gen_logits.argmax(-1) == c.original[c.masked]).sum()) for c in parts)
    said = sum(int((((c.disc_logits > 0) == c.replaced) & c.real).sum()) for c in parts)
    replaced = sum(int(c.replaced.sum()) for c in parts)
    assert metrics["val_mlm_acc"] == pytest.approx(right / n_masked)
    assert metrics["val_disc_acc"] == pytest.approx(said / n_real)
    assert metrics["val_replaced_frac"] == pytest.approx(replaced / n_real)
    assert metrics["val_loss"] == pytest.approx(metrics["val_mlm_loss"] + 50 * metrics["val_disc_loss"])
    assert sums[7:7 + AUC_BINS].sum() == replaced and sums[7 + AUC_BINS:].sum() == n_real - replaced
    assert 0 <= metrics["val_disc_auc"] <= 1


def test_auc_from_histograms_is_the_rank_statistic():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 20, 300) + 3, rng.integers(0, 20, 500)  # integer scores: many ties
    exact = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (300 * 500)
    hist = lambda s: np.bincount(s, minlength=30)  # noqa: E731
    assert auc_from_histograms(hist(pos), hist(neg)) == pytest.approx(exact)
    assert auc_from_histograms([0, 3], [2, 0]) == 1.0 and auc_from_histograms([1, 1], [1, 1]) == 0.5
    assert math.isnan(auc_from_histograms([0, 0], [1, 0]))


def test_electra_masking_is_mask_or_keep_never_random():
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 1000, size=(128, 128))
    out, labels = mask_tokens(ids, rng, mask_id=MASK, special_ids=np.arange(5), random_ids=np.arange(5, 1000),
                              **ELECTRA_MASKING)
    chosen = labels != -100
    assert abs(chosen.mean() - 0.15) < 0.01
    assert abs((out[chosen] == MASK).mean() - 0.85) < 0.02
    assert ((out[chosen] == MASK) | (out[chosen] == ids[chosen])).all()  # no random replacement
    assert (out[~chosen] == ids[~chosen]).all()


def one_line_config_error(make, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as err:
        make()
    assert "\n" not in str(err.value)


def test_bad_settings_are_one_line_config_errors():
    for weight in (0, -1.0, float("nan")):
        one_line_config_error(lambda w=weight: RTDObjective(disc_weight=w),
                              r"^disc_weight=.*: expected a finite weight > 0")
    one_line_config_error(lambda: RTDObjective(temperature=0),
                          r"^temperature=0: expected a finite temperature > 0")
    # a generator larger than its discriminator, or of no width
    one_line_config_error(lambda: ModelConfig.from_preset("electra-tiny", generator_size=2),
                          "generator_size=2.0: expected 0 < generator_size <= 1")
    one_line_config_error(lambda: ModelConfig.from_preset("electra-tiny", generator_size=0),
                          "generator_size=0.0: expected 0 < generator_size <= 1")
    one_line_config_error(lambda: build_model("electra-tiny", generator_size=0.45),  # 64 x 0.45, 4 x 0.45
                          r"generator_size=0.45: gives a generator of width 29 .* with 2 heads")
    one_line_config_error(lambda: ModelConfig.from_preset("bert-tiny", embed_dim=32),
                          "embed_dim=32: .*only arch=electra projects")
    one_line_config_error(lambda: RTDObjective().check(build_model("bert-tiny", vocab_size=VOCAB)),
                          "rtd trains an ELECTRA generator \\+ discriminator pair.*arch='bert', head='mlm'")
    one_line_config_error(lambda: build_model("electra-tiny", position="sinusoidal"),
                          "position='sinusoidal'.*ELECTRA uses learned absolute positions")
    one_line_config_error(lambda: build_model("electra-tiny", head="lm"),
                          "head='lm': an ELECTRA encoder takes one of")
    RTDObjective().check(tiny_pair())


def test_mlm_loader_batches_train_the_pair(tmp_path):
    """The batches zhixing.data.MLMLoader yields with ELECTRA's masking are what the objective takes."""
    from zhixing.data import MLMLoader, TokenShards, prepare_shards
    from zhixing.tokenizers import Tokenizer

    text = ["Knowing and doing are one: theory and practice side by side.",
            "A discriminator learns which tokens a small generator replaced.",
            "Masked language models predict hidden tokens from both sides."] * 8
    tok = Tokenizer.train(iter(text), kind="wordpiece", vocab_size=120, min_frequency=1, show_progress=False)
    tok.save(tmp_path / "tok")
    (tmp_path / "docs.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    prepare_shards(tmp_path / "docs.txt", tmp_path / "tok", tmp_path / "shards", val_fraction=0.0, workers=1,
                   progress=False)
    loader = MLMLoader(TokenShards(tmp_path / "shards"), tok, block_size=24, batch_size=4, **ELECTRA_MASKING)
    batch = next(iter(loader))
    chosen = batch["labels"] != -100
    seen = batch["input_ids"][chosen]
    assert ((seen == tok.mask_id) | (seen == batch["labels"][chosen])).all()  # [MASK] or kept, never random
    model = build_model("electra-tiny", vocab_size=tok.vocab_size, max_seq_len=24, dropout=0.0)
    obj = RTDObjective()
    obj.check(model)
    assert obj.targets(batch) == (int(chosen.sum()), 4 * 24)
    mlm, disc = obj.losses(model, batch)
    (mlm + disc).backward()
    assert torch.isfinite(mlm) and torch.isfinite(disc)
