"""LoRA on zhixing's own models: the update is (α/r) B A on exactly the chosen rows, B = 0 at the start
(the model's function is unchanged), only adapters and modules_to_save train, merge / unmerge / remove
give the same function, and bad targets, ranks and adapters are one-line errors."""

from __future__ import annotations

import pytest
import torch

from zhixing.errors import ConfigError
from zhixing.models import build_model
from zhixing.peft import (
    LoRAConfig,
    LoRALinear,
    add_lora,
    lora_layers,
    merge_lora,
    remove_lora,
    trainable_parameters,
    unmerge_lora,
)

TINY = dict(vocab_size=64, dim=32, num_layers=2, num_heads=4, max_seq_len=32, dropout=0.0)


def model_of(preset: str, **kw):
    torch.manual_seed(0)
    return build_model(preset, **{**TINY, **kw}).eval()


def run(model, ids):
    with torch.no_grad():
        if model.config.arch == "transformer":
            return model(ids, labels=None, decoder_input_ids=ids).logits
        return model(ids).logits


def randomise_adapters(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in lora_layers(model).values():
            for p in [*m.lora_A.values(), *m.lora_B.values()]:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("preset,targets", [("bert-tiny", ["query", "value"]), ("gpt-tiny", ["qkv"]),
                                            ("llama-tiny", ["all-linear"]),
                                            ("transformer-tiny", ["all-linear"])])
def test_start_is_the_base_function_and_merge_is_exact(preset, targets):
    model = model_of(preset)
    ids = torch.randint(3, 64, (2, 7))
    before = run(model, ids)
    add_lora(model, LoRAConfig(r=4, alpha=8, targets=targets))
    torch.testing.assert_close(run(model, ids), before, atol=0, rtol=0)  # B = 0
    randomise_adapters(model)
    adapted = run(model, ids)
    assert (adapted - before).abs().max() > 1e-3
    weights = {k: v.clone() for k, v in model.state_dict().items() if "lora" not in k}
    merge_lora(model)
    torch.testing.assert_close(run(model, ids), adapted, atol=1e-5, rtol=1e-5)
    unmerge_lora(model)
    for k, v in model.state_dict().items():
        if "lora" not in k:
            torch.testing.assert_close(v, weights[k], atol=1e-6, rtol=0)  # float rounding only
    torch.testing.assert_close(run(model, ids), adapted, atol=1e-5, rtol=1e-5)
    remove_lora(model)
    assert not lora_layers(model) and all(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(run(model, ids), adapted, atol=1e-5, rtol=1e-5)


def test_query_value_adapt_exactly_those_rows_and_only_adapters_train():
    model = model_of("bert-tiny", head="seq_cls", num_labels=3)
    add_lora(model, LoRAConfig(r=2, alpha=4, targets="query,value", modules_to_save="classifier"))
    qkv = model.layers[0].attn.qkv
    assert isinstance(qkv, LoRALinear) and qkv.parts == {"q": (0, 32), "v": (64, 96)}
    randomise_adapters(model)
    d = qkv.delta()
    assert d[32:64].abs().max() == 0 and d[:32].abs().max() > 0 and d[64:].abs().max() > 0
    torch.testing.assert_close(d[:32], 2.0 * qkv.lora_B["q"] @ qkv.lora_A["q"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if ".lora_" in n or n.startswith("classifier.")}
    assert "classifier.proj.weight" in trainable
    train, total = trainable_parameters(model)
    assert train == 2 * 2 * (2 * 32 + 2 * 32) + 32 * 3 + 3  # 2 layers x (q, v) x (A + B), + head
    model.train()
    out = model(torch.randint(3, 64, (2, 5)), labels=torch.tensor([0, 2]))
    out.loss.backward()
    assert qkv.weight.grad is None and qkv.lora_A["q"].grad is not None


def test_bad_targets_and_ranks_are_one_line_errors():
    model = model_of("bert-tiny")
    with pytest.raises(ConfigError, match=r"'querry' matches no layer.*candidates: .*query.*value"):
        add_lora(model, LoRAConfig(targets=["querry"]))
    with pytest.raises(ConfigError, match=r"lora.r=0: the rank must be a positive integer"):
        LoRAConfig(r=0)
    with pytest.raises(ConfigError, match=r"lora.r=-2"):
        LoRAConfig(r=-2)
    with pytest.raises(ConfigError, match="both whole and by part"):
        add_lora(model, LoRAConfig(targets=["qkv", "query"]))
    with pytest.raises(ConfigError, match="modules_to_save.*'head'"):
        add_lora(model_of("bert-tiny"), LoRAConfig(modules_to_save=["head"]))
    add_lora(model, LoRAConfig(targets=["layers.1.attn.o"]))
    assert list(lora_layers(model)) == ["layers.1.attn.o"]
    with pytest.raises(ConfigError, match="already has LoRA adapters"):
        add_lora(model, LoRAConfig())


@pytest.mark.parametrize("preset,objective", [("gpt-tiny", "CausalLM"), ("bert-tiny", "MaskedLM")])
def test_pretraining_objectives_train_the_adapters_only(preset, objective):
    """LoRA under the pretraining objectives (their fused heads read `model.hidden`, which runs through the
    adapted layers): the loss moves, only A and B receive gradients."""
    import zhixing.objectives as objectives

    model = model_of(preset, head="lm" if preset == "gpt-tiny" else "mlm")
    add_lora(model, LoRAConfig(r=4, targets=["all-linear"]))
    model.train()
    obj = getattr(objectives, objective)()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 64, (4, 12), generator=g)
    masked = torch.rand(4, 12, generator=g) > 0.3
    labels = ids.clone() if preset == "gpt-tiny" else ids.masked_fill(masked, -100)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(15):
        (loss,) = obj.losses(model, batch)[:1]
        loss = loss / obj.targets(batch)[0]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for n, p in model.named_parameters() if ".lora_" not in n)
        opt.step()
    assert loss.item() < first - 0.1
