"""Form, acrostic, banned and required words as logits constraints: satisfied by construction with greedy
decoding, sampling and beam search on an untrained model (which left alone writes no poem at all)."""

from __future__ import annotations

import pytest
import torch

from zhixing.config import ModelConfig
from zhixing.generation import generate
from zhixing.generation.constraints import FORMS, Constraints, poem_form
from zhixing.models import build_model
from zhixing.tokenizers import Tokenizer

POEMS = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。",
         "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
         "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
         "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
         "秋夏冬春风花雪月山水天地人，。"]


@pytest.fixture(scope="module")
def poet():
    tok = Tokenizer.train(iter(POEMS * 3), kind="char", vocab_size=200, show_progress=False,
                          special_tokens={"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"})
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("gpt-tiny").replace(vocab_size=len(tok), max_seq_len=96,
                                                     eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    return build_model(cfg).eval(), tok


def poem(out):
    return out.texts[0]


@pytest.mark.parametrize("form", ["五言绝句", "七言律诗"])
@pytest.mark.parametrize("mode", [dict(), dict(do_sample=True, top_k=20, seed=1), dict(num_beams=3)])
def test_every_decoding_mode_writes_the_form(poet, form, mode):
    model, tok = poet
    out = generate(model, "静夜思\n", tokenizer=tok, form=form, **mode)
    assert poem_form(form).check(poem(out)) == [], poem(out)


def test_the_form_sets_the_length_even_in_a_short_context(poet):
    """The default max_new_tokens (64) would not fit a 32-position model; the form's 24 + 1 do."""
    model, tok = poet
    small = type(model)(model.config.replace(max_seq_len=32)).eval()
    out = generate(small, "春\n", tokenizer=tok, form="五言绝句", do_sample=True, seed=0)
    assert poem_form("五言绝句").check(out.texts[0]) == []


def test_unconstrained_untrained_model_breaks_the_form(poet):
    model, tok = poet
    out = generate(model, "静夜思\n", tokenizer=tok, max_new_tokens=24, do_sample=True, seed=0)
    assert poem_form("五言绝句").check(poem(out)) != []


def test_acrostic_and_force_words(poet):
    model, tok = poet
    out = generate(model, "四季\n", tokenizer=tok, form="七言绝句", acrostic="春夏秋冬",
                   force_words=["明月", "故乡"], do_sample=True, seed=3)
    text = poem(out)
    assert FORMS["七言绝句"].check(text, acrostic="春夏秋冬") == [], text
    assert "明月" in text and "故乡" in text


def test_bad_words_never_appear(poet):
    model, tok = poet
    for seed in range(5):
        out = generate(model, "明", tokenizer=tok, max_new_tokens=40, do_sample=True, seed=seed,
                       bad_words=["明月", "山"], temperature=1.5)
        text = "明" + poem(out)
        assert "明月" not in text and "山" not in text, text


def test_traditional_names_and_clear_errors(poet):
    model, tok = poet
    assert poem_form("七言絕句") is poem_form("七言绝句")
    with pytest.raises(ValueError, match="known forms are 五言绝句, 七言绝句, 五言律诗, 七言律诗"):
        generate(model, "x", tokenizer=tok, form="六言绝句")
    with pytest.raises(ValueError, match="takes 1 to 4 characters"):
        generate(model, "x", tokenizer=tok, form="五言绝句", acrostic="春夏秋冬风")
    with pytest.raises(ValueError, match="holds only those"):
        generate(model, "x", tokenizer=tok, form="五言绝句", acrostic="春[")
    with pytest.raises(ValueError, match="acrostic needs a form"):
        generate(model, "x", tokenizer=tok, acrostic="春")
    with pytest.raises(ValueError, match="not a token of this model's vocabulary"):
        generate(model, "x", tokenizer=tok, form="五言绝句", acrostic="龍")
    with pytest.raises(ValueError, match="need a tokenizer"):
        Constraints(None, 1, form="五言绝句")


def test_check_names_what_is_wrong():
    form = poem_form("五言绝句")
    assert form.check("床前明月光，疑是地上霜。举头望明月，低头思故乡。") == []
    problems = form.check("床前明月光。疑是地上霜。举头望明月，低头思故。", acrostic="床疑举抬")
    assert any("ends with '。', not '，'" in p for p in problems)
    assert any("line 4" in p and "5 Chinese characters" in p for p in problems)
    assert any("does not start with '抬'" in p for p in problems)


def test_generate_command_writes_an_acrostic_poem(poet, tmp_path):
    from click.testing import CliRunner

    from zhixing.cli import main

    model, tok = poet
    model.save_pretrained(tmp_path)
    tok.save(tmp_path)
    args = ["generate", str(tmp_path), "四季\n", "--form", "七言绝句", "--acrostic", "春夏秋冬",
            "--seed", "2", "--top-k", "30", "--bad-word", "明月", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    text = result.output.split("\n", 1)[1].strip()
    assert poem_form("七言绝句").check(text, acrostic="春夏秋冬") == [] and "明月" not in text, text
    bad = CliRunner().invoke(main, ["generate", str(tmp_path), "x", "--form", "三言绝句"])
    assert bad.exit_code != 0 and "known forms are 五言绝句" in bad.output
