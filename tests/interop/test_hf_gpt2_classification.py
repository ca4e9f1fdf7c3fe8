"""A decoder as a sequence classifier: GPT2ForSequenceClassification parity (import, export, reload),
scores at the last real token with right or left padding, as transformers computes them."""

from __future__ import annotations

import json

import pytest
import torch
from hf_tiny import batch, gpt2_config, transformers

from zhixing.interop import from_hf, to_hf

PAD = 1


def classifier():
    torch.manual_seed(0)
    cfg = gpt2_config(num_labels=3, pad_token_id=PAD, id2label={0: "neg", 1: "neu", 2: "pos"},
                      label2id={"neg": 0, "neu": 1, "pos": 2})
    return transformers.GPT2ForSequenceClassification(cfg).eval()


def left_padded(inputs):
    ids, mask = inputs["input_ids"].clone(), inputs["attention_mask"].clone()
    for r in range(ids.size(0)):
        n = int(mask[r].sum())
        ids[r] = torch.cat([ids[r, n:], ids[r, :n]])
        mask[r] = torch.cat([mask[r, n:], mask[r, :n]])
    return ids, mask


@torch.no_grad()
def test_gpt2_sequence_classification_matches_transformers(tmp_path):
    hf = classifier()
    inputs = batch(pad_id=PAD)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    labels = torch.tensor([0, 2, 1])
    theirs = hf(input_ids=ids, attention_mask=mask, labels=labels)

    ours = from_hf(hf)
    assert ours.config.head == "seq_cls" and ours.config.label_names == ["neg", "neu", "pos"]
    out = ours(ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits, theirs.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.loss, theirs.loss, atol=1e-4, rtol=1e-4)
    # without a mask, the last token that is not pad_token_id (transformers' rule)
    torch.testing.assert_close(ours(ids).logits, hf(input_ids=ids).logits, atol=1e-4, rtol=1e-4)
    # left padding: the same rule finds the last real token (positions from the mask, as transformers)
    lids, lmask = left_padded(inputs)
    pos = (lmask.cumsum(-1) - 1).clamp(min=0)
    torch.testing.assert_close(ours(lids, attention_mask=lmask, position_ids=pos).logits,
                               hf(input_ids=lids, attention_mask=lmask, position_ids=pos).logits,
                               atol=1e-4, rtol=1e-4)

    to_hf(ours, tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["architectures"] == ["GPT2ForSequenceClassification"]
    assert written["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    reloaded = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).logits, theirs.logits,
                               atol=1e-4, rtol=1e-4)


def test_lm_checkpoint_gets_a_fresh_score_head(tmp_path):
    lm = transformers.GPT2LMHeadModel(gpt2_config(pad_token_id=PAD)).eval()
    lm.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="score.weight"):
        model = from_hf(tmp_path, head="seq_cls", num_labels=2)
    assert model.score.weight.shape == (2, 32)
    torch.testing.assert_close(model.tok_embed.weight, lm.transformer.wte.weight)


@torch.no_grad()
def test_mean_pooling_option_reads_every_real_token_and_does_not_export(tmp_path):
    from zhixing.errors import ConfigError

    hf = classifier()
    inputs = batch(pad_id=PAD)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    ours = from_hf(hf, seq_pooling="mean")
    states = hf.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask[..., None].float()
    expected = hf.score((states * m).sum(1) / m.sum(1))
    torch.testing.assert_close(ours(ids, attention_mask=mask).logits, expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="seq_pooling='mean'"):
        to_hf(ours, tmp_path)
