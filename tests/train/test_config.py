"""Recipes: every shipped YAML validates; typos name the nearest key; overrides; schedules."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from zhixing.cli import main
from zhixing.config import ConfigError
from zhixing.recipes.pretrain import check_model_fits_data
from zhixing.train import Recipe, TrainConfig, lr_at
from zhixing.train.config import recipes_dir

SHIPPED = sorted(recipes_dir().glob("*.yaml"))
EXPECTED = {"gpt-shakespeare-char", "gpt-shakespeare-char-cpu", "gpt-peoples-daily-tiny",
            "bert-peoples-daily-tiny", "gpt2-124m"}


def test_every_shipped_recipe_validates():
    assert EXPECTED <= {p.stem for p in SHIPPED}
    for path in SHIPPED:
        init = (yaml.safe_load(path.read_text(encoding="utf-8")).get("model") or {}).get("init")
        if init and not Path(init).exists():  # continues a run of another recipe, not made here: the
            with pytest.raises(ConfigError, match=f"model.init='{init}': {init}: no such local directory"):
                Recipe.load(path)  # error names it
            continue
        recipe = Recipe.load(path)
        assert recipe.name == path.stem
        config = recipe.model_config() if init else recipe.model_config(vocab_size=100)  # init: its vocab
        check_model_fits_data(recipe, config)  # objective matches the architecture, block fits positions
        # a resolved recipe saves and loads back to itself
        again = Recipe.from_dict(yaml.safe_load(yaml.safe_dump(recipe.to_dict())))
        assert again.to_dict() == recipe.to_dict()


def test_nanogpt_settings_are_the_issues():
    gpu, cpu = Recipe.load(recipes_dir() / "gpt-shakespeare-char.yaml"), \
        Recipe.load(recipes_dir() / "gpt-shakespeare-char-cpu.yaml")
    g, c = gpu.model_config(), cpu.model_config()
    assert (g.num_layers, g.num_heads, g.dim, gpu.data.block_size, gpu.train.batch_size, gpu.train.max_steps,
            g.dropout, gpu.train.lr) == (6, 6, 384, 256, 64, 5000, 0.2, 1e-3)
    assert (c.num_layers, c.num_heads, c.dim, cpu.data.block_size, cpu.train.batch_size, cpu.train.max_steps,
            c.dropout) == (4, 4, 128, 64, 12, 2000, 0.0)


def test_overrides_and_typos(tmp_path):
    path = recipes_dir() / "gpt-shakespeare-char-cpu.yaml"
    r = Recipe.load(path, ["train.lr=3e-4", "model.dropout=0.1", "name=other", "train.compile=true",
                           "train.decay_steps=null"])
    assert (r.train.lr, r.model["dropout"], r.name, r.train.compile, r.train.decay_steps) == \
        (3e-4, 0.1, "other", True, None)
    with pytest.raises(ConfigError, match=r"unknown key 'train.lrr' \(did you mean 'train.lr'\?\)"):
        Recipe.load(path, ["train.lrr=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'trian.lr' \(did you mean 'train.lr'\?\)"):
        Recipe.load(path, ["trian.lr=1"])
    with pytest.raises(ConfigError, match=r"'model.dropuot' \(did you mean 'model.dropout'\?\)"):
        Recipe.load(path, ["model.dropuot=0.1"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        Recipe.load(path, ["train.lr"])
    with pytest.raises(ConfigError, match=r"train: max_steps: expected an integer, got 'many'"):
        Recipe.load(path, ["train.max_steps=many"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain:\n  batch_szie: 4\n")
    with pytest.raises(ConfigError, match=r"train: unknown key 'batch_szie' \(did you mean 'batch_size'"):
        Recipe.load(bad)
    bad.write_text("name: x\ntrainer: {}\n")
    with pytest.raises(ConfigError, match=r"unknown section 'trainer' \(did you mean 'train'\?\)"):
        Recipe.load(bad)
    bad.write_text("name: x\ntrain: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line 3"):
        Recipe.load(bad)
    with pytest.raises(ConfigError, match=r"recipe not found \(did you mean 'gpt2-124m'\?\)"):
        Recipe.load(recipes_dir() / "gpt2-124.yaml")


def test_block_size_above_max_seq_len_is_rejected():
    r = Recipe.load(recipes_dir() / "gpt-shakespeare-char-cpu.yaml", ["data.block_size=128"])
    with pytest.raises(ConfigError, match=r"data.block_size=128 is above the model's max_seq_len=64; lower "
                                          r"data.block_size or raise model.max_seq_len to 128"):
        check_model_fits_data(r, r.model_config())
    r = Recipe.load(recipes_dir() / "bert-peoples-daily-tiny.yaml", ["model.head=mlm"])
    with pytest.raises(ConfigError, match="data.nsp=true but model.head=mlm; set model.head=pretraining"):
        check_model_fits_data(r, r.model_config())


def test_model_section_conflicting_with_tokenizer():
    r = Recipe.load(recipes_dir() / "gpt-shakespeare-char-cpu.yaml", ["model.vocab_size=65"])
    with pytest.raises(ConfigError, match=r"model.vocab_size=65 disagrees with the data \(vocab_size=70\)"):
        r.model_config(vocab_size=70)


def test_train_config_values_are_checked():
    with pytest.raises(ConfigError, match="train.batch_size must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="min_lr=0.1 is above train.lr=0.01"):
        TrainConfig(lr=0.01, min_lr=0.1)
    with pytest.raises(ConfigError, match=r"schedule: 'cosin' is not one of .* \(did you mean 'cosine'\?\)"):
        TrainConfig.from_dict({"schedule": "cosin"}, source="train")


def test_schedules():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(110, cfg) == pytest.approx(0.1) and lr_at(500, cfg) == pytest.approx(0.1)
    lin = cfg.replace(schedule="linear")
    assert lr_at(60, lin) == pytest.approx(0.55)
    const = cfg.replace(schedule="constant")
    assert lr_at(100, const) == 1.0 and lr_at(4, const) == pytest.approx(0.5)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 120))  # monotone after warmup


def test_cli_pretrain_reports_typos_without_traceback():
    runner = CliRunner()
    result = runner.invoke(main, ["pretrain", "--config", "gpt-shakespeare-char-cpu", "train.lrr=1"])
    assert result.exit_code == 1 and "did you mean 'train.lr'" in result.output
    assert "Traceback" not in result.output
    args = ["pretrain", "-c", "gpt-shakespeare-char-cpu", "--print-config", "train.lr=0.002"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["train"]["lr"] == 0.002
    result = runner.invoke(main, ["pretrain", "-c", str(Path("nope.yaml"))])
    assert result.exit_code == 1 and "recipe not found" in result.output


@pytest.mark.parametrize("device, says", [
    ("gpu", "train.device='gpu' is not a device; expected auto, cpu, cuda, cuda:N or mps"),
    ("meta", "train.device=meta: zhixing runs on cpu, cuda or mps"),
])
def test_bad_device_is_a_config_error(device, says):
    from zhixing.device import pick_device

    with pytest.raises(ConfigError, match=re.escape(says)):
        pick_device(device)
    assert pick_device("cpu") == torch.device("cpu")
    args = ["pretrain", "-c", "gpt-shakespeare-char-cpu", f"train.device={device}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and says in result.output and "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_on_a_cpu_machine_says_so_without_traceback():
    runner = CliRunner()
    result = runner.invoke(main, ["pretrain", "-c", "gpt-shakespeare-char-cpu", "train.device=cuda"])
    says = "train.device=cuda but CUDA is not available here; use train.device=cpu"
    assert result.exit_code == 1 and says in result.output
    result = runner.invoke(main, ["quickstart", "--device", "cuda", "--no-progress"])
    assert result.exit_code == 1 and "--device=cuda but CUDA is not available here" in result.output


def test_cli_shows_zhixing_warnings_as_one_line():
    import zhixing
    from zhixing import cli

    ours = str(Path(zhixing.__file__).parent / "interop" / "core.py")
    assert cli._format_warning(UserWarning("d: 2 tensors are freshly initialised"), UserWarning, ours, 3) \
        == "warning: d: 2 tensors are freshly initialised\n"
    theirs = cli._format_warning(UserWarning("y"), UserWarning, "/site-packages/other/mod.py", 7)
    assert "mod.py:7" in theirs  # other libraries keep Python's format


def test_recipes_are_found_after_a_wheel_install(tmp_path, monkeypatch):
    """Outside a checkout the recipes are where pyproject's data-files put them: <prefix>/share/zhixing."""
    import sysconfig
    import tomllib

    import zhixing.train.config as config_module

    pyproject = tomllib.loads((Path(config_module.__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["data-files"] == {"share/zhixing/configs": ["configs/*.yaml"]}
    site = tmp_path / "site-packages" / "zhixing" / "train"
    monkeypatch.setattr(config_module, "__file__", str(site / "config.py"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *a, **k: str(tmp_path / "prefix"))
    assert recipes_dir() == tmp_path / "prefix" / "share" / "zhixing" / "configs"
