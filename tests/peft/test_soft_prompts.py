"""Soft prompts on zhixing's models: prompt tuning / P-tuning prepend virtual tokens (outputs keep the
caller's shapes, only the prompt trains), prefix tuning's extra keys/values equal a KV cache holding them
(GPT) and agree between the fused and the reference attention with padding (BERT)."""

from __future__ import annotations

import pytest
import torch

from zhixing.errors import ConfigError
from zhixing.models import build_model
from zhixing.peft.prompt import PromptConfig, add_prompt, remove_prompt

TINY = dict(vocab_size=64, dim=32, num_layers=2, num_heads=4, max_seq_len=32, dropout=0.0, attn_dropout=0.0)


def model_of(preset, **kw):
    torch.manual_seed(0)
    return build_model(preset, **{**TINY, **kw}).eval()


@pytest.mark.parametrize("kind,encoder", [("prompt_tuning", "mlp"), ("ptuning", "mlp"), ("ptuning", "lstm")])
def test_virtual_tokens_train_alone_and_keep_shapes(kind, encoder):
    model = model_of("bert-tiny", head="token_cls", num_labels=3)
    ids, mask = torch.randint(3, 64, (2, 6)), torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    with torch.no_grad():
        before = model(ids, mask).logits
    add_prompt(model, PromptConfig(kind=kind, tokens=4, encoder=encoder, modules_to_save=["classifier"]))
    model.train()
    labels = torch.randint(0, 3, (2, 6))
    out = model(ids, mask, labels=labels)
    assert out.logits.shape == (2, 6, 3) and out.last_hidden_state.shape == (2, 6, 32)
    out.loss.backward()
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("tok_embed.prompt.", "classifier.")) for n in trained)
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    assert model.layers[0].attn.qkv.weight.grad is None
    with torch.no_grad():
        assert (model.eval()(ids, mask).logits - before).abs().max() > 1e-4  # the prompt changes the function
    remove_prompt(model)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask).logits, before)


def test_gpt_prefix_equals_a_cache_holding_it():
    model = model_of("gpt-tiny")
    add_prompt(model, PromptConfig(kind="prefix", tokens=3))
    with torch.no_grad():
        for attn in (layer.attn for layer in model.layers):
            attn.prefix.key.normal_()
            attn.prefix.value.normal_()
    ids = torch.randint(3, 64, (2, 5))
    with torch.no_grad():
        ours = model(ids).logits
        cache = model.new_cache()
        for layer, slot in zip(model.layers, cache.layers):
            slot.update(layer.attn.prefix.key[None].expand(2, -1, -1, -1),
                        layer.attn.prefix.value[None].expand(2, -1, -1, -1), 0)
        cache.advance(3)
        prefixes = [layer.attn.prefix for layer in model.layers]
        for layer in model.layers:
            layer.attn.prefix = None
        cached = model(ids, position_ids=torch.arange(3, 8)[None].expand(2, 5), cache=cache).logits
        for layer, p in zip(model.layers, prefixes):
            layer.attn.prefix = p
    torch.testing.assert_close(ours, cached, atol=1e-5, rtol=1e-5)


def test_bert_prefix_fused_equals_reference_with_padding():
    ids, mask = torch.randint(3, 64, (2, 6)), torch.tensor([[1] * 6, [1] * 3 + [0] * 3])
    outs = []
    for impl in ("sdpa", "eager"):
        model = model_of("bert-tiny", head="seq_cls", num_labels=2, attn_impl=impl)
        torch.manual_seed(1)
        add_prompt(model, PromptConfig(kind="prefix", tokens=4, init_std=1.0))
        with torch.no_grad():
            outs.append(model(ids, mask).logits)
            alone = model(ids[1:, :3]).logits  # the padded row equals the row alone
        torch.testing.assert_close(outs[-1][1:], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {f"layers.{i}.attn.prefix.{kv}" for i in range(2) for kv in ("key", "value")}


def test_projected_prefix_trains_its_mlp_and_folds_into_plain_prefixes():
    """Li & Liang's reparameterisation: only the shared MLP (and the head) train; its output, copied into
    free prefixes, gives the same logits, which is what an export folds."""
    ids, mask = torch.randint(3, 64, (2, 6)), torch.tensor([[1] * 6, [1] * 3 + [0] * 3])
    model = model_of("bert-tiny", head="seq_cls", num_labels=2)
    with torch.no_grad():
        before = model(ids, mask).logits
    torch.manual_seed(1)
    add_prompt(model, PromptConfig(kind="prefix", tokens=4, projection=24, init_std=1.0,
                                   modules_to_save=["classifier"]))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trained if not n.startswith("classifier.")} == {
        "prefix_encoder.embedding", "prefix_encoder.mlp.0.weight", "prefix_encoder.mlp.0.bias",
        "prefix_encoder.mlp.2.weight", "prefix_encoder.mlp.2.bias"}
    assert model.prefix_encoder.mlp[2].out_features == 2 * 2 * 32  # layers · (key, value) · width
    out = model.train()(ids, mask, labels=torch.tensor([0, 1]))
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        projected = model.eval()(ids, mask).logits
        folded = [attn.prefix() for attn in (layer.attn for layer in model.layers)]
    plain = model_of("bert-tiny", head="seq_cls", num_labels=2)
    plain.classifier.load_state_dict(model.classifier.state_dict())
    add_prompt(plain, PromptConfig(kind="prefix", tokens=4))
    with torch.no_grad():
        for layer, (k, v) in zip(plain.layers, folded):
            layer.attn.prefix.key.copy_(k)
            layer.attn.prefix.value.copy_(v)
        torch.testing.assert_close(plain(ids, mask).logits, projected, atol=1e-5, rtol=1e-5)
    assert (projected - before).abs().max() > 1e-4
    remove_prompt(model)
    assert getattr(model, "prefix_encoder", None) is None
    with torch.no_grad():  # no optimizer step was taken: the classifier is the one `before` used
        torch.testing.assert_close(model(ids, mask).logits, before)


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_prefix_positions_past_the_table_are_a_clear_error(position):
    """The input's positions start after the prefix: a 32-position model with a 4-token prefix takes 28
    tokens; 29 is an error saying how far to truncate (it was an IndexError in the position table), and
    positions_taken tells a caller (zhixing finetune) the room left."""
    from zhixing.peft.prompt import positions_taken

    model = model_of("bert-tiny", head="seq_cls", num_labels=2, position=position)
    assert positions_taken(model) == 0
    add_prompt(model, PromptConfig(kind="prefix", tokens=4))
    assert positions_taken(model) == 4
    with torch.no_grad():
        assert model(torch.randint(3, 64, (1, 28))).logits.shape == (1, 2)
        with pytest.raises(ValueError, match="truncate the input to 28 tokens"):
            model(torch.randint(3, 64, (1, 29)))


def test_bad_prompt_settings():
    with pytest.raises(ConfigError, match="tokens=0"):
        PromptConfig(tokens=0)
    with pytest.raises(ConfigError, match="soft-prompt methods are"):
        PromptConfig(kind="prefx")
    with pytest.raises(ConfigError, match="projection reparameterises prefixes only"):
        PromptConfig(kind="prompt_tuning", projection=64)
    with pytest.raises(ConfigError, match=r"prefix.projection=-1"):
        PromptConfig(kind="prefix", projection=-1)
    with pytest.raises(ConfigError, match="modules_to_save 'head'"):
        add_prompt(model_of("bert-tiny"), PromptConfig(modules_to_save=["head"]))


@pytest.mark.parametrize("preset", ["bert-tiny", "gpt-tiny", "electra-tiny"])
@pytest.mark.parametrize("method", ["lora", "prefix", "prompt_tuning", "ptuning"])
def test_every_method_on_every_classifier_family(preset, method):
    """What `zhixing finetune method=...` does to a classifier: the adapters and the head train, nothing
    else; a loss flows (ELECTRA's embeddings are narrower than its layers: the prompt has their width)."""
    from zhixing.peft.runs import apply_method

    kw = {"embed_dim": 16} if preset == "electra-tiny" else {}
    model = model_of(preset, head="seq_cls", num_labels=3, **kw)
    settings = {"r": 2} if method == "lora" else {"tokens": 3}
    apply_method(model, method, settings)
    model.train()
    out = model(torch.randint(3, 64, (2, 6)), torch.ones(2, 6, dtype=torch.long), labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3)
    out.loss.backward()
    heads = ("score.",) if preset == "gpt-tiny" else ("classifier.", "pooler.")
    for name, p in model.named_parameters():
        adapter = ".lora_" in name or ".prefix." in name or name.startswith("tok_embed.prompt.")
        assert p.requires_grad == (adapter or name.startswith(heads)), name
        assert (p.grad is not None) == p.requires_grad, name
    assert set(model.saved_keys) == {n for n, p in model.named_parameters() if p.requires_grad}
