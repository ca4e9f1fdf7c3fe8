"""`zhixing generate MODEL "prompt"` (streams the continuation) and `zhixing chat MODEL` (interactive)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from zhixing.generation.config import FILENAME, GenerationConfig


def decoding_options(f):
    """The sampling / search flags shared by `generate` and `chat` (None = keep the model's setting)."""
    options = [
        click.option("--max-new-tokens", type=int, help="Tokens to generate at most."),
        click.option("--sample/--greedy", "do_sample", default=None,
                     help="Sample, or pick the most likely token. Default: sample when any of "
                          "--temperature/--top-k/--top-p/--min-p is given."),
        click.option("--temperature", type=float, help="Divide logits by T (<1 sharper, >1 more varied)."),
        click.option("--top-k", type=int, help="Sample among the k most likely tokens (0 = off)."),
        click.option("--top-p", type=float, help="Nucleus: smallest set with probability mass >= p."),
        click.option("--min-p", type=float, help="Drop tokens less likely than min_p x the top token."),
        click.option("--repetition-penalty", type=float, help="> 1 discourages repeating tokens (e.g. 1.2)."),
        click.option("--no-repeat-ngram-size", type=int, help="Forbid repeating any n-gram of this size."),
        click.option("--num-beams", type=int, help="Beam search width (1 = off)."),
        click.option("--length-penalty", type=float, help="Beam score / length**lp (> 0 favours longer)."),
        click.option("--num-return-sequences", type=int, help="Sequences per prompt."),
        click.option("--seed", type=int, help="Seed for reproducible sampling."),
        click.option("--stop", "stop_strings", multiple=True, help="Stop at this text (repeatable)."),
        click.option("--truncate-prompt", is_flag=True, default=None,
                     help="Keep the last tokens of a prompt too long for the context instead of failing."),
        click.option("--sliding-window", is_flag=True, default=None,
                     help="Generate past the context window: each token is predicted from the last "
                          "max_seq_len tokens (the cache is rebuilt per token once the window is full)."),
        click.option("--form", default=None,
                     help="A verse form the text must take: 五言绝句, 七言绝句, 五言律诗, 七言律诗."),
        click.option("--acrostic", default=None,
                     help="藏头诗: line i starts with character i (needs --form)."),
        click.option("--bad-word", "bad_words", multiple=True, help="A word never to write (repeatable)."),
        click.option("--force-word", "force_words", multiple=True,
                     help="A word the poem must contain (repeatable; needs --form)."),
        click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
        click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
                     help="Weights' dtype (default: bfloat16 on CUDA, float32 on CPU)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def load_for_generation(path: str, device: str | None, dtype: str | None):
    """(model, tokenizer, generation config) from a run, zhixing or Hugging Face model directory."""
    import torch

    from zhixing.device import pick_device
    from zhixing.hub import load

    where = pick_device(device or "auto", field="--device")
    model = load(path)
    device = str(where)
    dtype = dtype or ("bfloat16" if where.type == "cuda" else "float32")
    model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
    config = GenerationConfig()
    for candidate in (Path(path) / FILENAME, Path(path) / "best" / FILENAME):
        if candidate.is_file():
            config = GenerationConfig.load(candidate)
            break
    return model, getattr(model, "tokenizer", None), config


def apply_flags(config: GenerationConfig, flags: dict[str, Any]) -> GenerationConfig:
    """Override the model's generation config with the flags the user gave."""
    flags = {k: v for k, v in flags.items() if v is not None and k not in ("device", "dtype")}
    for key in ("stop_strings", "bad_words", "force_words"):  # repeatable flags: () when not given
        if flags.get(key):
            flags[key] = list(flags[key])
        else:
            flags.pop(key, None)
    if "do_sample" not in flags and any(k in flags for k in ("temperature", "top_k", "top_p", "min_p")):
        flags["do_sample"] = True
    try:
        return config.replace(**flags).validate()
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command("generate")
@click.argument("model_path", metavar="MODEL")
@click.argument("prompt")
@decoding_options
def generate_cmd(model_path: str, prompt: str, **flags: Any) -> None:
    """Continue PROMPT with MODEL (a run, zhixing or Hugging Face model directory), streaming the text.

    Beam search and several return sequences print each finished sequence instead.
    """
    from zhixing.generation.api import generate
    from zhixing.generation.streaming import stream

    model, tokenizer, config = load_for_generation(model_path, flags["device"], flags["dtype"])
    if tokenizer is None:
        raise click.ClickException(f"{model_path}: no tokenizer next to the model; cannot read a text prompt")
    config = apply_flags(config, flags)
    echoed = False
    try:
        if config.num_beams > 1 or config.num_return_sequences > 1:
            out = generate(model, prompt, config, tokenizer)
            for i, text in enumerate(out.texts):
                click.echo(f"--- {i + 1} ---\n{prompt}{text}")
            return
        pieces = stream(model, prompt, config, tokenizer)
        first = next(pieces, "")  # a bad setting (a prompt too long) fails here, before any output
        click.echo(prompt + first, nl=False)
        echoed = True
        for piece in pieces:
            click.echo(piece, nl=False)
            sys.stdout.flush()
        click.echo()
    except ValueError as e:
        if echoed:
            click.echo()  # end the streamed line, so the error starts on its own
        raise click.ClickException(str(e)) from None


def chat_prompt(history: list[tuple[str, str]], user: str, system: str | None, tokenizer=None,
                template: str | None = None) -> str:
    """The conversation so far plus the new user turn, rendered with `template` (default: the tokenizer's
    chat template, else zhixing.generation.chat.DEFAULT_TEMPLATE), ending where the reply begins."""
    from zhixing.generation.chat import render

    messages = [{"role": "system", "content": system}] if system else []
    for u, a in history:
        messages += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": user})
    return render(messages, template, tokenizer=tokenizer, add_generation_prompt=True)


@click.command("chat")
@click.argument("model_path", metavar="MODEL")
@click.option("--system", default=None, help="A system message placed before the conversation.")
@click.option("--chat-template", "template_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A Jinja chat template file (default: the tokenizer's chat_template, else a plain "
                   "User:/Assistant: transcript).")
@decoding_options
def chat_cmd(model_path: str, system: str | None, template_file: str | None, **flags: Any) -> None:
    """Chat with MODEL: each reply streams; Ctrl-C stops the reply, /reset clears history, /exit (or
    Ctrl-D) quits. Turns are rendered with the model's chat template (tokenizer_config.json's
    chat_template), or a plain User:/Assistant: transcript for a base model. The oldest tokens are dropped
    when the conversation outgrows the context."""
    from zhixing.generation.chat import compile_template, stop_strings_for, template_of
    from zhixing.generation.streaming import stream

    model, tokenizer, config = load_for_generation(model_path, flags["device"], flags["dtype"])
    if tokenizer is None:
        raise click.ClickException(f"{model_path}: no tokenizer found next to the model")
    config = apply_flags(config, flags)
    template = Path(template_file).read_text(encoding="utf-8") if template_file else template_of(tokenizer)
    try:
        compile_template(template)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--chat-template") from None
    config = config.replace(stop_strings=[*config.stop_strings, *stop_strings_for(template)],
                            truncate_prompt=True)
    if config.num_beams > 1 or config.num_return_sequences > 1:
        raise click.BadParameter("chat streams one reply: use --num-beams 1 and --num-return-sequences 1")
    history: list[tuple[str, str]] = []
    click.echo("Chat: Ctrl-C stops a reply, /reset clears the history, /exit quits.")
    while True:
        try:
            user = input("you> ")
        except (EOFError, KeyboardInterrupt):
            click.echo()
            return
        command = user.strip()
        if command in ("/exit", "/quit"):
            return
        if command == "/reset":
            history.clear()
            continue
        if not command:
            continue
        reply = []
        click.echo("bot> ", nl=False)
        try:
            for piece in stream(model, chat_prompt(history, user, system, tokenizer, template), config,
                                tokenizer):
                reply.append(piece)
                click.echo(piece, nl=False)
                sys.stdout.flush()
            click.echo()
        except KeyboardInterrupt:  # stop this reply, keep the conversation
            click.echo(" [stopped]")
        history.append((user, "".join(reply).strip()))
