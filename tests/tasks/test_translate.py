"""Translation: parallel files (checked line by line), batches by length, the seq2seq recipe end to end on
a small synthetic language pair (German number words -> English), checkpoint averaging, BLEU, the CLI."""

from __future__ import annotations

import json
import random

import pytest
import torch
from click.testing import CliRunner

from zhixing.errors import DataError
from zhixing.tasks.translate import ParallelLoader, read_parallel

DE = "null eins zwei drei vier fünf sechs sieben acht neun".split()
EN = "zero one two three four five six seven eight nine".split()


def write_pairs(directory, split, n, seed):
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        digits = [rng.randrange(10) for _ in range(rng.randint(2, 7))]
        src.append(" ".join(DE[d] for d in digits))
        tgt.append(" ".join(EN[d] for d in digits))
    (directory / f"{split}.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (directory / f"{split}.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")


def test_unaligned_and_empty_lines_are_named(tmp_path):
    (tmp_path / "a.de").write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a.de has 3 lines but .*a.en has 2: .*lines 3–3 unmatched"):
        read_parallel(tmp_path / "a.de", tmp_path / "a.en")
    (tmp_path / "a.en").write_text("one\n\nthree\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a.en:2: empty line \(its pair, .*a.de:2, is 'zwei'\)"):
        read_parallel(tmp_path / "a.de", tmp_path / "a.en")


def test_batches_hold_similar_lengths_and_resume_exactly():
    lengths = [random.Random(i).randint(1, 40) for i in range(400)]
    feats = [{"input_ids": [5] * n, "labels": [6] * n + [2]} for n in lengths]
    loader = ParallelLoader(feats, batch_size=8, pad_id=0, start_id=1, seed=3, pool=10)
    it = iter(loader)
    batches = [next(it) for _ in range(20)]
    spread = [int(b["attention_mask"].sum(1).max() - b["attention_mask"].sum(1).min()) for b in batches]
    assert sum(spread) / len(spread) < 5  # random batches of 1..40 would spread ~30
    b = batches[0]
    assert (b["decoder_input_ids"][:, 0] == 1).all()  # teacher forcing: the target shifted right
    row = b["labels"][0][b["labels"][0] != -100].tolist()
    assert b["decoder_input_ids"][0, 1:len(row)].tolist() == row[:-1]
    state = loader.state_dict()
    again = ParallelLoader(feats, batch_size=8, pad_id=0, start_id=1, seed=3, pool=10)
    again.load_state_dict(state)
    assert torch.equal(next(iter(again))["input_ids"], next(it)["input_ids"])


def test_recipe_trains_averages_and_scores_bleu(tmp_path):
    from zhixing.cli import main
    from zhixing.recipes.pretrain import run_recipe
    from zhixing.train.config import Recipe

    for split, n, seed in (("train", 2000, 0), ("val", 100, 1), ("test", 100, 2)):
        write_pairs(tmp_path, split, n, seed)
    recipe = Recipe.from_dict({
        "name": "numbers",
        "model": {"preset": "transformer-tiny", "max_seq_len": 32, "dropout": 0.0},
        "data": {"objective": "seq2seq", "corpus": str(tmp_path), "vocab_size": 120, "test_split": "test",
                 "block_size": 32, "average_last": 2, "num_beams": 3, "cache_dir": str(tmp_path / "cache"),
                 "val_bleu": True},
        "train": {"max_steps": 400, "batch_size": 32, "lr": 3e-3, "warmup_steps": 30,
                  "schedule": "inverse_sqrt", "eval_interval": 50, "save_interval": 50, "eval_batches": 4,
                  "out_dir": str(tmp_path / "runs"),
                  "device": "cpu", "progress": False, "plots": False, "tensorboard": False},
    })
    summary = run_recipe(recipe)
    run = tmp_path / "runs" / "numbers"
    assert summary["averaged"]["checkpoints"] == ["step-350", "step-400"]
    test = json.loads((run / "summary.json").read_text())["test"]
    assert test["bleu"] > 60 and test["signature"].startswith("nrefs:1|case:mixed")
    assert len((run / "test.en.hyp").read_text().splitlines()) == 100
    curve = [json.loads(line) for line in (run / "val_bleu.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == list(range(50, 401, 50)) and curve[-1]["bleu"] > curve[0]["bleu"]
    result = CliRunner().invoke(main, ["translate", str(run), "sechs null fünf", "zwei acht eins",
                                       "--num-beams", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.split("\n")[:2] == ["six zero five", "two eight one"]
    import zhixing

    pipe = zhixing.pipeline("translation", run, num_beams=1)
    assert pipe("eins zwei") == "one two" and pipe(["neun vier"]) == ["nine four"]
    bad = CliRunner().invoke(main, ["translate", str(run)])
    assert bad.exit_code != 0 and "TEXTS or --file" in bad.output
