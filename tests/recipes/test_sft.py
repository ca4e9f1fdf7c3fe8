"""Instruction tuning: conversations read and checked, the loss on the replies only, packing, and a GPT that
learns to answer in its chat format — which is saved with it, so `generate` with the rendered prompt works."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from click.testing import CliRunner

from zhixing.cli import main
from zhixing.errors import ConfigError, DataError
from zhixing.generation.chat import DEFAULT_TEMPLATE, render
from zhixing.recipes.sft import IGNORE, check_template, encode_conversation, pack, read_conversations
from zhixing.tokenizers import Tokenizer

PAIRS = {"red": "rot", "blue": "blau", "green": "grün", "black": "schwarz", "white": "weiß",
         "yellow": "gelb", "brown": "braun", "grey": "grau"}


@pytest.fixture(scope="module")
def tok():
    text = [f"User: {k}\nAssistant: {v}\n" for k, v in PAIRS.items()] * 5 + ["translate to German: "] * 5
    return Tokenizer.train(iter(text), kind="char", vocab_size=200, show_progress=False,
                           special_tokens={"pad": "<pad>", "eos": "</s>", "unk": "<unk>"})


def write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    return path


def test_bad_conversations_name_the_line(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "a", "response": "b"},
                                              {"messages": [{"role": "user", "content": "only a question"}]}])
    with pytest.raises(DataError, match=r"c.jsonl:2: no assistant message"):
        read_conversations(path)
    path.write_text('{"messages": [{"role": "robot", "content": "x"}]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"c.jsonl:1: message 0 must be"):
        read_conversations(path)
    path.write_text('{"question": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"c.jsonl:1: expected 'messages', or 'prompt' \+ 'response'"):
        read_conversations(path)


def test_only_the_replies_are_learned_and_packing_keeps_them_apart(tok):
    convo = [{"role": "system", "content": "be short"}, {"role": "user", "content": "red"},
             {"role": "assistant", "content": "rot"}, {"role": "user", "content": "blue"},
             {"role": "assistant", "content": "blau"}]
    f = encode_conversation(convo, tok, DEFAULT_TEMPLATE)
    learned = [i for i, label in zip(f["input_ids"], f["labels"]) if label != IGNORE]
    assert tok.decode(learned[:-1]) == " rot\n blau\n" and learned[-1] == tok.eos_id
    assert tok.decode(f["input_ids"][:-1]) == render(convo, DEFAULT_TEMPLATE, add_generation_prompt=False)
    rows = pack([f, f, f], block_size=2 * len(f["input_ids"]) + 1)
    assert len(rows) == 2 and rows[0]["doc"] == [0] * len(f["input_ids"]) + [1] * len(f["input_ids"])
    assert rows[0]["position_ids"][len(f["input_ids"])] == 0


def test_a_template_without_a_slot_is_refused(tok):
    with pytest.raises(ConfigError, match="no slot for the message"):
        check_template("{% for m in messages %}{{ m['role'] }}: hello\n{% endfor %}", tok)


def test_sft_recipe_teaches_a_gpt_to_answer_in_its_chat_format(tmp_path, tok):
    from zhixing.generation import generate
    from zhixing.hub import load
    from zhixing.models import build_model

    torch.manual_seed(0)
    init = tmp_path / "base"
    build_model("gpt-tiny", vocab_size=len(tok), dim=64, max_seq_len=64, eos_token_id=tok.eos_id,
                pad_token_id=tok.pad_id).save_pretrained(init)
    tok.save(init)
    records = [{"instruction": "translate to German:", "input": k, "output": v} for k, v in PAIRS.items()]
    data = write_jsonl(tmp_path / "colours.jsonl", records * 8)
    recipe = {"name": "sft", "model": {"init": str(init), "dropout": 0.0},
              "data": {"objective": "sft", "corpus": str(data), "block_size": 64, "val_fraction": 0.1},
              "train": {"out_dir": str(tmp_path / "runs"), "device": "cpu", "max_steps": 300, "batch_size": 8,
                        "lr": 3e-3, "warmup_steps": 20, "eval_interval": 100, "eval_batches": 2,
                        "progress": False, "tensorboard": False, "plots": False}}
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(main, ["pretrain", "--config", str(path)])
    assert result.exit_code == 0, result.output
    model = load(tmp_path / "runs" / "sft")
    assert model.tokenizer.chat_template == DEFAULT_TEMPLATE  # saved with the run: chat renders alike
    right = 0
    for english, german in PAIRS.items():
        prompt = render([{"role": "user", "content": f"translate to German:\n\n{english}"}],
                        tokenizer=model.tokenizer)
        out = generate(model, prompt, tokenizer=model.tokenizer, max_new_tokens=12)
        right += out.texts[0].strip() == german
    assert right >= 6, right
