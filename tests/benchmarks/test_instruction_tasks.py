"""The instruction-tuning benchmark's tasks (benchmarks/instruction_tasks.py): how a template is filled, what
reply a label asks for, and how replies are scored — the figures in RESULTS.md are only as right as these."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from instruction_tasks import (  # noqa: E402
    HELD_OUT,
    POOL,
    TEMPLATES,
    answer,
    instruction,
    load_tasks,
    max_new_tokens,
    parse,
    poem_form,
    score,
)

JUEJU = "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。"
LVSHI = "國破山河在，城春草木深。感時花濺淚，恨別鳥驚心。烽火連三月，家書抵萬金。白頭搔更短，渾欲不勝簪。"


def test_every_task_has_a_training_pool_and_held_out_templates_with_a_text_slot():
    for task, templates in TEMPLATES.items():
        assert len(templates) == POOL + len(HELD_OUT), task
        assert all("{text}" in t for t in templates), task
        assert len(set(templates)) == len(templates), task


def test_a_review_is_cut_to_the_budget_but_a_sentence_to_translate_never_is():
    review = "房间很干净" * 40
    message = instruction("hotel", 0, review, 110)
    assert len(message) == 110 and message.startswith("判断这条酒店评论")
    sentence = "A man in an orange hat starring at something, " * 4
    assert sentence in instruction("translate", 0, sentence, 110)


def test_a_poem_instruction_asks_for_the_form_of_its_poem():
    assert poem_form(JUEJU) == "五言绝句"
    assert poem_form(LVSHI) == "五言律诗"
    assert poem_form("白日依山盡，黃河入海流。") is None
    assert instruction("poem", 0, "登鸛雀樓", 110, JUEJU) == "以《登鸛雀樓》为题，写一首五言绝句。"
    assert answer("poem", JUEJU) == JUEJU and answer("hotel", "1") == "正面"


def test_an_option_is_the_longest_one_the_reply_starts_with_else_the_first_it_contains():
    assert parse("qa_factoid\n...", ["qa", "qa_factoid"]) == "qa_factoid"
    assert parse("我觉得是负面的，不是正面", ["正面", "负面"]) == "负面"
    assert parse("不知道", ["正面", "负面"]) is None


def test_scores():
    intents = ["alarm_set", "alarm_query", "play_music", "qa_factoid"]
    s = score("intent", ["alarm_set", "alarm_query please", "nonsense", "qa"], intents)
    assert s == {"accuracy": 50.0, "invalid": 50.0}  # "qa" is no intent; the options are the gold labels
    s = score("ner", ["张三、北京", "无", "上海"], ["张三、北京", "无", "无"])
    assert s["accuracy"] == pytest.approx(80.0) and s["exact"] == pytest.approx(66.67)
    golds = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
    assert score("translate", golds, golds)["accuracy"] == 100.0
    assert score("translate", ["Hallo.", "Welt."], golds)["accuracy"] < 10
    replies = [JUEJU, "白日依山盡，黃河入海流。欲窮千里目。", LVSHI + "\n以後"]  # right, 3 lines, right
    s = score("poem", replies, [JUEJU, JUEJU, LVSHI])
    assert s["accuracy"] == pytest.approx(66.67) and s["lines_right"] == pytest.approx(66.67)


def test_reply_lengths():
    assert max_new_tokens("hotel", ["正面", "负面"], 100) == 6
    assert max_new_tokens("intent", ["recommendation_locations"], 100) == 26
    assert max_new_tokens("poem", [JUEJU, LVSHI], 200) == 49
    assert max_new_tokens("translate", ["x"], 90) == 90


def test_an_unknown_task_is_named():
    with pytest.raises(SystemExit, match="unknown task.*sentiment.*known: hotel"):
        load_tasks(["sentiment"], 10, 0)
