"""Chat templates: a conversation (a list of {"role", "content"} messages) as the one string a model was
trained to continue.

Instruct models ship their format as a Jinja template, Hugging Face's `chat_template` in
`tokenizer_config.json`; zhixing reads and writes it there (`Tokenizer.chat_template`), and `render` gives
exactly what transformers' `tokenizer.apply_chat_template(messages, tokenize=False)` gives. Templates come
with downloaded models, so they run in Jinja's immutable sandbox: a template can read its variables but
cannot touch attributes of Python objects outside it or mutate them.

A base model without a template gets `DEFAULT_TEMPLATE`, a plain transcript:

    System prompt

    User: hello
    Assistant: hi
    User: and now?
    Assistant:

whose replies end where the model starts a new "\\nUser:" line (`stop_strings`).

    from zhixing.generation.chat import render
    prompt = render([{"role": "user", "content": "你好"}], tokenizer=tok)   # tok.chat_template or the default
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

Message = Mapping[str, Any]

# The format `zhixing chat` always used for base models; a system message goes first, as a paragraph.
DEFAULT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] | trim }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}Assistant: {{ m['content'] }}\n"
    "{% else %}{{ raise_exception('unknown role ' ~ m['role']) }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
DEFAULT_STOP = ["\nUser:"]  # where a reply under the default template ends


class TemplateError(ValueError):
    """A template that does not parse, or that raised while rendering (raise_exception)."""


def _raise(message: str) -> None:
    raise TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    # as transformers' filter: unlike Jinja's own tojson it does not escape HTML characters
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@functools.lru_cache(maxsize=16)
def compile_template(template: str):
    """The compiled template (cached: a chat loop renders the same one every turn)."""
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except TemplateSyntaxError as e:
        raise TemplateError(f"chat template does not parse: line {e.lineno}: {e.message}") from None


def special_tokens(tokenizer: Any) -> dict[str, str]:
    """bos_token, eos_token, ... of a tokenizer: the names templates use ({{ bos_token }})."""
    if tokenizer is None or not hasattr(tokenizer, "special_tokens"):
        return {}
    tokens = tokenizer.special_tokens
    tokens = tokens() if callable(tokens) else tokens
    return {f"{role}_token": tok for role, tok in dict(tokens).items()}


def template_of(tokenizer: Any) -> str:
    """The tokenizer's chat template, or DEFAULT_TEMPLATE when it has none (a base model)."""
    own = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    return own if own else DEFAULT_TEMPLATE


def render(messages: Sequence[Message], template: str | None = None, *, tokenizer: Any = None,
           add_generation_prompt: bool = True, **variables: Any) -> str:
    """The prompt text of a conversation.

    messages: [{"role": "system" | "user" | "assistant", "content": str}, ...].
    template: a Jinja chat template (default: the tokenizer's, else DEFAULT_TEMPLATE).
    add_generation_prompt: end with the opening of an assistant turn, so the model writes the reply.
    variables: passed to the template as well (tools=..., documents=..., bos_token=... overrides).
    """
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m:
            raise TemplateError(f"message {i} is {m!r}; each message is a dict with 'role' and 'content'")
    compiled = compile_template(template if template is not None else template_of(tokenizer))
    context = {**special_tokens(tokenizer), **variables}
    return compiled.render(messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
                           **context)


def stop_strings_for(template: str | None) -> list[str]:
    """Stop strings a reply needs under `template`: the default transcript's "\\nUser:"; none for a model's
    own template (its turns end with an end-of-turn token, which is the eos)."""
    return list(DEFAULT_STOP) if template is None or template == DEFAULT_TEMPLATE else []


def load_template(directory: str | os.PathLike) -> str | None:
    """The chat template saved in a tokenizer / model directory (tokenizer_config.json or
    chat_template.jinja), or None."""
    from zhixing.tokenizers.formats import CONFIG_FILE, read_chat_template, read_config

    d = Path(directory)
    config = read_config(d) if (d / CONFIG_FILE).is_file() else {}
    return read_chat_template(d, config)


def save_template(directory: str | os.PathLike, template: str) -> Path:
    """Set `chat_template` in the directory's tokenizer_config.json (created if absent), keeping its other
    keys; written atomically."""
    from zhixing.io import atomic_write_text

    compile_template(template)  # never save one that does not parse
    path = Path(directory) / "tokenizer_config.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data["chat_template"] = template
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    return path


__all__ = ["DEFAULT_TEMPLATE", "DEFAULT_STOP", "TemplateError", "render", "template_of", "load_template",
           "save_template", "stop_strings_for", "compile_template"]
