"""Pruning: a pruned model equals the unpruned one with the same heads / neurons gated to zero, is smaller
by exactly the removed rows and columns, saves and loads, runs in the task pipelines; head importance,
global selection, bad input; magnitude pruning on Zhu & Gupta's schedule through the Trainer."""

import copy

import pytest
import torch
from torch.testing import assert_close

from zhixing.compress.prune import (
    MagnitudePruning,
    blocks,
    cubic_sparsity,
    head_importance,
    masked,
    neuron_importance,
    prunable_weights,
    prune_heads,
    prune_neurons,
    select,
    sparse_nbytes,
    sparsity,
)
from zhixing.config import ModelConfig
from zhixing.errors import ConfigError
from zhixing.models import build_model
from zhixing.objectives import Classification

DIM, HEADS, LAYERS, FFN = 32, 4, 3, 64


def bert(**kw):
    torch.manual_seed(0)
    kw = {"vocab_size": 100, "dim": DIM, "num_heads": HEADS, "num_layers": LAYERS, "ffn_dim": FFN,
          "max_seq_len": 32, "dropout": 0.0, "head": "seq_cls", "initializer_range": 0.2, **kw}
    return build_model("bert-tiny", **kw).eval()


def gpt(**kw):
    torch.manual_seed(0)
    return build_model("gpt-tiny", vocab_size=100, dim=DIM, num_heads=HEADS, num_layers=LAYERS, ffn_dim=FFN,
                       max_seq_len=32, dropout=0.0, initializer_range=0.2, **kw).eval()


def batch(n=6, t=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 100, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.long)
    for i in range(n):  # ragged lengths: the padding-free (packed) path runs too
        mask[i, t - i:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": ids[:, 0] % 2}


def logits(model, b):
    with torch.no_grad():
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits


HEADS_TO_GO = {0: [1, 3], 2: [0]}
NEURONS_TO_GO = {0: list(range(0, 64, 3)), 1: [5], 2: list(range(40))}


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_head_pruned_bert_equals_the_masked_one_and_loses_exactly_those_parameters(impl):
    model, b = bert(attn_impl=impl), batch()
    with masked(model, heads=HEADS_TO_GO):
        want = logits(model, b)
    full = logits(model, b)
    pruned = prune_heads(copy.deepcopy(model), HEADS_TO_GO)
    assert_close(logits(pruned, b), want, rtol=1e-5, atol=1e-5)
    assert (full - want).abs().max() > 1e-2  # the masked heads did matter
    assert pruned.config.heads_per_layer == [2, 4, 3]
    d = DIM // HEADS  # per head: 3 rows (q, k, v) of width dim with biases, one column of W^O
    assert model.num_parameters() - pruned.num_parameters() == 3 * (4 * d * DIM + 3 * d)


def test_neuron_pruned_bert_equals_the_masked_one():
    model, b = bert(), batch()
    with masked(model, neurons=NEURONS_TO_GO):
        want = logits(model, b)
    pruned = prune_neurons(copy.deepcopy(model), NEURONS_TO_GO)
    assert_close(logits(pruned, b), want, rtol=1e-5, atol=1e-5)
    assert pruned.config.ffn_dims == [FFN - 22, FFN - 1, FFN - 40]
    removed = 22 + 1 + 40  # a row of W1 (+ its bias) and a column of W2 each
    assert model.num_parameters() - pruned.num_parameters() == removed * (2 * DIM + 1)


@pytest.mark.parametrize("activation", ["gelu_tanh", "swiglu"])
def test_pruned_gpt_equals_the_masked_one_and_decodes_with_its_cache(activation):
    from zhixing.generation import generate

    model = gpt(activation=activation)
    ids = torch.randint(2, 100, (2, 7))
    with masked(model, heads=HEADS_TO_GO, neurons=NEURONS_TO_GO), torch.no_grad():
        want = model(ids).logits
    pruned = prune_neurons(prune_heads(copy.deepcopy(model), HEADS_TO_GO), NEURONS_TO_GO)
    with torch.no_grad():
        assert_close(pruned(ids).logits, want, rtol=1e-5, atol=1e-5)
    out = generate(pruned, ids[:1], max_new_tokens=5, eos_token_ids=[]).sequences  # the per-layer KV cache
    full = ids[:1]
    for _ in range(5):  # greedy without a cache
        with torch.no_grad():
            full = torch.cat([full, pruned(full).logits[:, -1:].argmax(-1)], dim=1)
    assert out.tolist() == full.tolist()


def test_a_pruned_model_saves_loads_and_predicts(tmp_path):
    import zhixing
    from zhixing.tasks.classify import ClassifyConfig, predict
    from zhixing.tokenizers import Tokenizer

    words = ["good", "bad", "film", "plot", "great", "dull", "acting", "fine"]
    tok = Tokenizer.train(iter(words * 20), kind="wordpiece", vocab_size=40, min_frequency=1,
                          show_progress=False)
    model = prune_neurons(prune_heads(bert(vocab_size=tok.vocab_size), HEADS_TO_GO), NEURONS_TO_GO)
    model.save_pretrained(tmp_path)
    tok.save(tmp_path)
    loaded = zhixing.load(tmp_path)
    assert loaded.config.heads_per_layer == [2, 4, 3] and loaded.config.ffn_dims == [42, 63, 24]
    b = batch()
    b["input_ids"] = b["input_ids"] % tok.vocab_size
    assert_close(logits(loaded, b), logits(model, b), rtol=0, atol=0)
    out = predict(loaded, tok, [zhixing.tasks.classify.TextExample("good film", None, None)],
                  ClassifyConfig())
    assert set(out[0]["scores"]) == {"0", "1"} and abs(sum(out[0]["scores"].values()) - 1) < 1e-5


def test_head_importance_is_zero_for_a_dead_head_and_normalised_per_layer():
    model, b = bert(), batch()
    d = DIM // HEADS
    with torch.no_grad():
        blocks(model)[1].attn.o.weight[:, 2 * d:3 * d] = 0  # head 2 of layer 1 writes nothing
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = head_importance(model, [b, batch(seed=1)], Classification())
    assert [len(s) for s in scores] == [HEADS] * LAYERS
    assert float(scores[1][2]) == 0.0 and all(float(s.min()) >= 0 for s in scores)
    assert_close(torch.stack([s.norm() for s in scores]), torch.ones(LAYERS))
    raw = head_importance(model, [b, batch(seed=1)], Classification(), normalize=False)
    # Σ |∂L/∂ξ|: the gradient of the gated loss, checked against a central finite difference for one head
    eps, layer, head = 1e-3, 0, 1
    objective = Classification()

    def loss_at(value):
        gate = torch.ones(HEADS)
        gate[head] = value
        blocks(model)[layer].attn.head_mask = gate
        try:
            from zhixing.compress.prune import batch_loss
            with torch.no_grad():
                return float(batch_loss(model, objective, b))
        finally:
            blocks(model)[layer].attn.head_mask = None

    model.double()
    fd = abs(loss_at(1 + eps) - loss_at(1 - eps)) / (2 * eps)
    model.float()
    one = head_importance(model, [b], objective, normalize=False)
    assert abs(float(one[layer][head]) - fd) < 1e-3 * max(1.0, fd)
    assert float(raw[layer][head]) >= float(one[layer][head]) - 1e-6
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # weights untouched
    assert blocks(model)[0].attn.head_mask is None  # gates removed


def test_global_selection_keeps_a_head_per_layer_and_takes_the_least_important():
    scores = [torch.tensor([0.1, 0.9, 0.2, 0.3]), torch.tensor([0.05, 0.04, 0.03, 0.02]),
              torch.tensor([0.5, 0.6, 0.7, 0.8])]
    assert select(scores, count=3) == {1: [1, 2, 3]}  # layer 1's best head (0.05) stays
    assert select(scores, fraction=0.5) == {0: [0, 2, 3], 1: [1, 2, 3]}
    assert select(scores, fraction=0.0) == {}
    assert sum(map(len, select(scores, count=9).values())) == 9
    with pytest.raises(ConfigError, match="at most 9 can go"):
        select(scores, count=10)


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5, "half"])
def test_a_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(ConfigError, match=r"0 <= fraction < 1"):
        select([torch.ones(4)], fraction=fraction)


@pytest.mark.parametrize("heads, message", [
    ({0: [4]}, "layer 0 has heads 0..3; 4 does not exist"),
    ({5: [0]}, "layer 5 does not exist"),
    ({1: [0, 1, 2, 3]}, "would remove all 4 heads of layer 1; keep at least one"),
])
def test_bad_head_indices_are_one_line_errors(heads, message):
    model = bert()
    with pytest.raises(ConfigError, match=message) as e:
        prune_heads(model, heads)
    assert "\n" not in str(e.value)
    assert model.config.heads_per_layer == [] and blocks(model)[0].attn.num_heads == HEADS  # nothing changed


def test_pruned_configs_are_checked_and_not_exported_to_hugging_face(tmp_path):
    from zhixing.interop import to_hf

    with pytest.raises(ConfigError, match="heads_per_layer has 2 entries for num_layers=3"):
        ModelConfig.from_preset("bert-tiny", num_layers=3, heads_per_layer=[1, 2])
    with pytest.raises(ConfigError, match="between 1 and"):
        ModelConfig.from_preset("bert-tiny", num_layers=2, heads_per_layer=[0, 2])
    with pytest.raises(ConfigError, match="not xlnet"):
        ModelConfig(arch="xlnet", num_layers=1, ffn_dims=[8])
    with pytest.raises(ConfigError, match="the model is pruned"):
        to_hf(prune_heads(bert(), {0: [0]}), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_magnitude_neuron_importance_needs_no_data():
    model = bert()
    with torch.no_grad():
        blocks(model)[0].ffn.down.weight[:, 7] = 0
    scores = neuron_importance(model, method="magnitude")
    assert [len(s) for s in scores] == [FFN] * LAYERS and float(scores[0][7]) == 0.0
    with pytest.raises(ConfigError, match="needs batches"):
        neuron_importance(model)


def test_cubic_schedule():
    assert cubic_sparsity(0, 0.8, start=10, end=110) == 0.0
    assert cubic_sparsity(10, 0.8, start=10, end=110) == 0.0
    assert cubic_sparsity(60, 0.8, start=10, end=110) == pytest.approx(0.8 - 0.8 * 0.5 ** 3)
    assert cubic_sparsity(110, 0.8, start=10, end=110) == cubic_sparsity(500, 0.8, 10, 110) == 0.8
    with pytest.raises(ConfigError, match="final_sparsity"):
        MagnitudePruning(1.0)


def test_magnitude_pruning_reaches_its_sparsity_during_training(tmp_path):
    from zhixing.tasks.data import TaskLoader
    from zhixing.train import TrainConfig, Trainer

    model = bert().train()
    g = torch.Generator().manual_seed(0)
    feats = [{"input_ids": torch.randint(2, 100, (8,), generator=g).tolist(), "labels": i % 2}
             for i in range(64)]
    cfg = TrainConfig(device="cpu", progress=False, tensorboard=False, plots=False, max_steps=12,
                      batch_size=8, lr=1e-3, num_threads=1, log_interval=4, save_best=False)
    pruning = MagnitudePruning(0.75, start_step=2, end_step=10, every=2)
    Trainer(model, Classification(), cfg, TaskLoader(feats, 8, 0), run=tmp_path / "r",
            callbacks=[pruning]).fit()
    assert sparsity(model) == pytest.approx(0.75, abs=1e-3)
    for w in prunable_weights(model).values():  # every matrix to the same sparsity, not only overall
        assert float((w == 0).float().mean()) == pytest.approx(0.75, abs=1e-2)
    dense = sum(p.numel() * 4 for p in model.parameters())
    assert sparse_nbytes(model) < dense
    assert float(model.tok_embed.weight.eq(0).float().mean()) == 0.0  # embeddings stay dense


def test_prune_command_writes_a_smaller_model_that_predicts(tmp_path):
    import json

    from click.testing import CliRunner

    import zhixing
    from zhixing.cli import main
    from zhixing.tokenizers import Tokenizer

    words = ["good", "bad", "film", "plot", "great", "dull", "acting", "fine"]
    tok = Tokenizer.train(iter(words * 20), kind="wordpiece", vocab_size=40, min_frequency=1,
                          show_progress=False)
    src = tmp_path / "clf"
    bert(vocab_size=tok.vocab_size, label_names=["neg", "pos"]).save_pretrained(src)
    tok.save(src)
    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{a} {b}\t{'pos' if a in ('good', 'great') else 'neg'}\n"
                                                   for a in words for b in words), encoding="utf-8")
    out = tmp_path / "pruned"
    args = ["prune", str(src), "--data", str(data), "--out", str(out), "--heads", "0.5", "--ffn", "0.25",
            "--dev", str(data), "--batch-size", "16"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "prune.json").read_text())
    assert sum(report["heads_per_layer"]) == HEADS * LAYERS // 2 and min(report["heads_per_layer"]) >= 1
    assert sum(report["ffn_dims"]) == FFN * LAYERS - round(0.25 * FFN * LAYERS)
    assert report["params_after"] < report["params_before"] and "accuracy" in report["dev_after"]
    model = zhixing.load(out)
    assert model.config.heads_per_layer == report["heads_per_layer"]
    result = CliRunner().invoke(main, ["predict", str(out), "--text", "good film"])
    assert result.exit_code == 0 and json.loads(result.output)["output"]["label"] in ("neg", "pos")
    for bad, message in ((["--heads", "1.0"], "--heads=1.0: expected a number with 0 <= --heads < 1"),
                         (["--ffn", "-0.5"], "--ffn=-0.5: expected"), ([], "say what to prune")):
        args = ["prune", str(src), "--data", str(data), "--out", str(tmp_path / "x"), *bad]
        result = CliRunner().invoke(main, args)
        assert result.exit_code != 0 and message in result.output
        assert not (tmp_path / "x").exists()
