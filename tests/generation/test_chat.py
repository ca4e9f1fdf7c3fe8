"""Chat templates: rendered as transformers' apply_chat_template renders them, saved and loaded in
tokenizer_config.json, run in Jinja's sandbox; the default transcript for base models."""

from __future__ import annotations

import pytest

from zhixing.generation.chat import (
    DEFAULT_TEMPLATE,
    TemplateError,
    load_template,
    render,
    save_template,
    stop_strings_for,
)
from zhixing.tokenizers import Tokenizer

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
          "{% endif %}")
# Llama-2's: bos/eos from the tokenizer, a system message folded into the first user turn, raise_exception
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
          "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
          "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
          "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
          "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
          "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
          "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
          "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}"
          "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
# whitespace control and a loop filter, as real templates write them (trim_blocks / lstrip_blocks matter)
BLOCKS = """{% for m in messages %}
    {% if m.role == 'system' %}
[SYS] {{ m.content }}
    {% else %}
<{{ m.role }}> {{ m.content | tojson }}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}<assistant>{% endif %}"""

MESSAGES = [{"role": "system", "content": "你是一个乐于助人的助手。"},
            {"role": "user", "content": "你好！"},
            {"role": "assistant", "content": "你好，有什么可以帮你？"},
            {"role": "user", "content": "What is 知行合一?"}]


@pytest.mark.parametrize("template", [CHATML, LLAMA2, BLOCKS], ids=["chatml", "llama2", "blocks"])
@pytest.mark.parametrize("gen_prompt", [True, False])
def test_render_equals_transformers_apply_chat_template(template, gen_prompt, byte_tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    byte_tokenizer.chat_template = template
    try:
        byte_tokenizer.save(tmp_path)
    finally:
        byte_tokenizer.chat_template = None
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = Tokenizer.load(tmp_path)
    assert ours.chat_template == template == hf.chat_template
    expected = hf.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=gen_prompt)
    assert render(MESSAGES, tokenizer=ours, add_generation_prompt=gen_prompt) == expected


def test_template_errors_and_sandbox():
    with pytest.raises(TemplateError, match="alternate"):
        render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], LLAMA2,
               bos_token="<s>", eos_token="</s>")
    with pytest.raises(TemplateError, match="does not parse"):
        render(MESSAGES, "{% for m in messages %}")
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):  # the immutable sandbox: no mutating the caller's objects
        render(MESSAGES, "{{ messages.append(1) }}")
    with pytest.raises(SecurityError):  # nor reaching Python internals
        render(MESSAGES, "{{ messages.__class__.__mro__[1].__subclasses__() }}")


def test_default_template_for_base_models(byte_tokenizer):
    assert byte_tokenizer.chat_template is None
    text = render(MESSAGES, tokenizer=byte_tokenizer)
    assert text == ("你是一个乐于助人的助手。\n\nUser: 你好！\nAssistant: 你好，有什么可以帮你？\n"
                    "User: What is 知行合一?\nAssistant:")
    assert stop_strings_for(DEFAULT_TEMPLATE) == ["\nUser:"] and stop_strings_for(CHATML) == []


def test_save_and_load_template_keeps_other_keys(byte_tokenizer, tmp_path):
    byte_tokenizer.save(tmp_path)
    assert load_template(tmp_path) is None
    save_template(tmp_path, CHATML)
    assert load_template(tmp_path) == CHATML
    loaded = Tokenizer.load(tmp_path)
    assert loaded.chat_template == CHATML and loaded.special_tokens == byte_tokenizer.special_tokens
    (tmp_path / "chat_template.jinja").write_text(LLAMA2, encoding="utf-8")  # config's wins over the file
    assert load_template(tmp_path) == CHATML
