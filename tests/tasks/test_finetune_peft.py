"""Fine-tuning with parameter-efficient methods end to end on the tiny BERT: `method=lora` (and the soft
prompts) through build_job and the one Trainer; the run stores only the adapter and head next to a
reference to its base model; zhixing.load / pipeline / predict open base + adapter; `zhixing merge` writes a
plain model with the same predictions."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from task_synth import sentiment_rows

import zhixing
from zhixing.cli import main
from zhixing.tasks.data import TextExample
from zhixing.tasks.finetune import finetune, finetune_config

FAST = ["overwrite=true", "progress=false", "plots=false", "batch_size=16", "num_threads=1"]


def rows(n, seed):
    return [TextExample(t, None, lab, f"s{seed}:{i}") for i, (t, lab) in enumerate(sentiment_rows(n, seed))]


def scores(model, texts):
    clf = zhixing.pipeline("classify", model)
    return torch.tensor([[r["scores"][k] for k in sorted(r["scores"])] for r in clf(texts)])


def test_lora_run_saves_the_adapter_only_and_loads_merges(tiny_bert, tmp_path):
    cfg = finetune_config("classify", model=str(tiny_bert), epochs=8, max_seq_len=32, method="lora",
                          lora_r=4, lora_targets="query,value,up,down", lora_dropout=0.0)
    with pytest.warns(UserWarning, match="freshly initialised"):
        summary = finetune(cfg, name="lora", train_examples=rows(160, 0), dev_examples=rows(40, 1),
                           train_overrides=[f"out_dir={tmp_path}", "lr=1e-2", *FAST])
    assert summary["dev"]["accuracy"] >= 0.9
    assert summary["method"] == "lora" and summary["trainable_parameters"] < summary["total_parameters"] / 2
    run = tmp_path / "lora"
    record = json.loads((run / "adapter.json").read_text())
    assert record["method"] == "lora" and record["base"] == str(tiny_bert.resolve())
    saved = load_file(run / "best" / "model.safetensors")
    assert saved and all(".lora_" in k or k.startswith(("pooler.", "classifier.")) for k in saved)
    assert not any(k.startswith("checkpoints") for k in saved)
    assert "layers.0.attn.qkv.lora_A.q" in saved and "layers.0.attn.qkv.weight" not in saved
    texts = ["the film was very great", "the plot was very awful", "the movie was fine"]
    adapted = scores(run, texts)
    model = zhixing.load(run)
    assert model.lora_config.r == 4
    out = tmp_path / "merged"
    result = CliRunner().invoke(main, ["merge", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    merged = zhixing.load(out)
    assert getattr(merged, "lora_config", None) is None
    torch.testing.assert_close(scores(out, texts), adapted, atol=1e-5, rtol=1e-5)
    result = CliRunner().invoke(main, ["predict", str(run), "--text", "the film was very great"])
    assert result.exit_code == 0 and "pos" in result.output


@pytest.mark.parametrize("method,projection", [("prefix", 0), ("prefix", 16), ("prompt_tuning", 0)])
def test_soft_prompt_runs_train_and_reload(method, projection, tiny_bert, tmp_path):
    cfg = finetune_config("classify", model=str(tiny_bert), epochs=3, max_seq_len=32, method=method,
                          prompt_tokens=4, prefix_projection=projection)
    with pytest.warns(UserWarning, match="freshly initialised"):
        summary = finetune(cfg, name=method, train_examples=rows(160, 0), dev_examples=rows(40, 1),
                           train_overrides=[f"out_dir={tmp_path}", "lr=1e-2", *FAST])
    run = tmp_path / method
    saved = load_file(run / "best" / "model.safetensors")
    assert all(k.startswith(("pooler.", "classifier.", "tok_embed.prompt.", "prefix_encoder."))
               or ".prefix." in k for k in saved)
    assert any(k.startswith("prefix_encoder.") for k in saved) == bool(projection)
    texts = ["the film was very great", "the plot was very awful"]
    best = zhixing.load(run)
    assert best.prompt_config.kind == method and best.prompt_config.projection == projection
    assert summary["dev"]["accuracy"] > 0.5
    torch.testing.assert_close(scores(run, texts), scores(run, texts))
    result = CliRunner().invoke(main, ["merge", str(run), "--out", str(tmp_path / "m")])
    assert result.exit_code != 0 and "folds LoRA updates" in result.output


def test_cli_keys_and_bad_method(tiny_bert, tmp_path):
    from zhixing.cli.finetune import split_overrides
    from zhixing.errors import ConfigError

    settings, train, _, _ = split_overrides("classify", ("method=lora", "lora.r=16", "prefix.tokens=8",
                                                         "lora.targets=all-linear", "train.lr=1e-3"))
    assert settings == {"method": "lora", "lora_r": "16", "lora_targets": "all-linear", "prompt_tokens": "8"}
    with pytest.raises(ConfigError, match="method='lorra'"):
        finetune_config("classify", model=str(tiny_bert), method="lorra")
    cfg = finetune_config("classify", model=str(tiny_bert), method="lora", lora_r=0)
    with pytest.raises(ConfigError, match="lora.r=0"):
        finetune(cfg, train_examples=rows(8, 0), dev_examples=rows(4, 1),
                 train_overrides=[f"out_dir={tmp_path}", *FAST])


def test_lora_run_resumes_from_its_checkpoint(tiny_bert, tmp_path):
    cfg = finetune_config("classify", model=str(tiny_bert), max_seq_len=32, method="lora", lora_r=2)
    base = [f"out_dir={tmp_path}", "lr=1e-2", "batch_size=16", "num_threads=1", "progress=false",
            "plots=false"]
    with pytest.warns(UserWarning):
        finetune(cfg, name="r", train_examples=rows(64, 0), dev_examples=rows(16, 1),
                 train_overrides=[*base, "max_steps=4"])
    with pytest.warns(UserWarning):
        summary = finetune(cfg, name="r", train_examples=rows(64, 0), dev_examples=rows(16, 1),
                           train_overrides=[*base, "max_steps=8", "resume=true"])
    assert summary["step"] == 8
    assert all(".lora_" in k or k.startswith(("pooler.", "classifier."))
               for k in load_file(tmp_path / "r" / "checkpoints" / "step-8" / "model.safetensors"))


def test_a_lora_run_exports_to_peft_and_a_missing_base_is_named(tiny_bert, tmp_path):
    import shutil

    from zhixing.peft import save_peft

    cfg = finetune_config("classify", model=str(tiny_bert), max_seq_len=32, method="lora", lora_r=2)
    with pytest.warns(UserWarning):
        finetune(cfg, name="x", train_examples=rows(32, 0), dev_examples=rows(8, 1),
                 train_overrides=[f"out_dir={tmp_path}", "max_steps=2", *FAST])
    model = zhixing.load(tmp_path / "x")
    save_peft(model, tmp_path / "peft")  # PEFT's files, naming the base model
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_bert.resolve()) and config["r"] == 2
    assert config["target_modules"] == ["query", "value"] and config["task_type"] == "SEQ_CLS"
    assert (tmp_path / "peft" / "adapter_model.safetensors").is_file()
    moved = tmp_path / "moved"
    shutil.copytree(tiny_bert, moved)
    record = json.loads((tmp_path / "x" / "adapter.json").read_text())
    record["base"] = str(moved / "gone")
    (tmp_path / "x" / "adapter.json").write_text(json.dumps(record))
    with pytest.raises(FileNotFoundError, match="the base model .*gone is gone"):
        zhixing.load(tmp_path / "x")


def test_converting_an_adapter_run_writes_peft_files(tiny_bert, tmp_path):
    from zhixing.config import ConfigError
    from zhixing.interop import to_hf

    cfg = finetune_config("classify", model=str(tiny_bert), max_seq_len=32, method="lora", lora_r=2)
    with pytest.warns(UserWarning):
        finetune(cfg, name="e", train_examples=rows(32, 0), dev_examples=rows(8, 1),
                 train_overrides=[f"out_dir={tmp_path}", "max_steps=2", *FAST])
    result = CliRunner().invoke(main, ["convert", "--to-hf", str(tmp_path / "e"),
                                       "--out", str(tmp_path / "hf")])
    assert result.exit_code == 0 and "PEFT LORA adapter" in result.output, result.output
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["adapter_config.json",
                                                                    "adapter_model.safetensors"]
    with pytest.raises(ConfigError, match="zhixing merge RUN --out DIR"):  # a plain HF model it cannot be
        to_hf(zhixing.load(tmp_path / "e"), tmp_path / "plain")


@pytest.mark.parametrize("method", ["prefix", "prompt_tuning"])
def test_virtual_tokens_must_leave_room_for_max_seq_len(tiny_bert, tmp_path, method):
    """The input's positions start after the virtual tokens: max_seq_len + tokens above the model's positions
    is a one-line error naming the length that fits (it was an IndexError in the rotary table)."""
    from zhixing.errors import ConfigError

    limit = zhixing.load(tiny_bert).config.max_seq_len
    cfg = finetune_config("classify", model=str(tiny_bert), max_seq_len=limit, method=method, prompt_tokens=4,
                          epochs=1)
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match=f"set max_seq_len={limit - 4} or fewer"):
        finetune(cfg, name="x", train_examples=rows(16, 0), dev_examples=rows(8, 1),
                 train_overrides=[f"out_dir={tmp_path}", *FAST])


def test_learned_positions_do_not_extend(tiny_bert, tmp_path):
    """A learned position table is a real limit: max_seq_len above it is a one-line error naming the
    model's length and position kind (the message Model.require_positions gives every caller)."""
    from zhixing.errors import ConfigError

    cfg = finetune_config("classify", model=str(tiny_bert), max_seq_len=65, epochs=1)
    with pytest.raises(ConfigError, match=r"max_seq_len=65 exceeds the model's 64 \(position='learned'; only "
                       r"rotary positions extend past it\)"):
        finetune(cfg, name="x", train_examples=rows(16, 0), dev_examples=rows(8, 1),
                 train_overrides=[f"out_dir={tmp_path}", *FAST])


@pytest.mark.parametrize("method", ["full", "prefix"])
def test_rotary_model_fine_tunes_past_its_pretraining_length(tiny_bert, tmp_path, method):
    """A rotary encoder has no position table to outgrow: max_seq_len (+ a prefix's positions) above the
    model's extends its rotary angles, the run says so among its defaults, and the saved model reads the
    longer inputs."""
    from zhixing.models import build_model
    from zhixing.tokenizers import Tokenizer

    tok = Tokenizer.load(tiny_bert)
    torch.manual_seed(0)
    short = build_model("bert-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2,
                        max_seq_len=16, position="rotary", dropout=0.0)
    short.save_pretrained(tmp_path / "rotary")
    tok.save(tmp_path / "rotary")
    long_rows = [TextExample(" ".join([t] * 4), None, lab, f"long:{i}") for i, (t, lab) in
                 enumerate(sentiment_rows(48, 0))]
    cfg = finetune_config("classify", model=str(tmp_path / "rotary"), max_seq_len=40, epochs=1, method=method,
                          prompt_tokens=4)
    with pytest.warns(UserWarning):
        summary = finetune(cfg, name="long", train_examples=long_rows, dev_examples=long_rows[:8],
                           train_overrides=[f"out_dir={tmp_path}", *FAST])
    positions = 40 + (4 if method == "prefix" else 0)
    assert summary["defaults"]["positions"] == positions
    assert json.loads((tmp_path / "long/best/config.json").read_text())["max_seq_len"] == positions
    assert zhixing.load(tmp_path / "long/best").config.max_seq_len == positions
    assert len(tok.encode(long_rows[0].text).ids) > 16  # the inputs did need the longer range
    assert scores(str(tmp_path / "long/best"), [long_rows[0].text]).shape == (1, 2)
