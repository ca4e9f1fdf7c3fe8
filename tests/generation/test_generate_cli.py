"""`zhixing generate` and `zhixing chat` on a small saved model with its tokenizer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from zhixing.cli import main
from zhixing.generation import GenerationConfig
from zhixing.models import build_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, byte_tokenizer):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model")
    model = build_model("gpt-tiny", vocab_size=byte_tokenizer.vocab_size, dim=32, max_seq_len=2048,
                        bos_token_id=byte_tokenizer.bos_id, eos_token_id=None)
    model.save_pretrained(d)
    byte_tokenizer.save(d)
    GenerationConfig(max_new_tokens=7, eos_token_ids=[]).save(d)
    return d


def test_generate_streams_the_continuation(model_dir):
    result = CliRunner().invoke(main, ["generate", str(model_dir), "知行", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("知行") and len(result.output.strip()) > len("知行")


def test_generate_beam_search_and_flags(model_dir):
    args = ["generate", str(model_dir), "你好", "--num-beams", "3", "--num-return-sequences", "2",
            "--max-new-tokens", "5", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "--- 1 ---" in result.output and "--- 2 ---" in result.output


def test_generate_rejects_bad_values(model_dir):
    result = CliRunner().invoke(main, ["generate", str(model_dir), "x", "--temperature", "-1"])
    assert result.exit_code != 0 and "temperature" in result.output and ">= 0" in result.output


def test_generate_errors_are_one_clean_line(model_dir, tmp_path, byte_tokenizer):
    encoder = tmp_path / "bert"  # a model with a tokenizer that cannot continue text
    build_model("bert-tiny", vocab_size=byte_tokenizer.vocab_size).save_pretrained(encoder)
    byte_tokenizer.save(encoder)
    result = CliRunner().invoke(main, ["generate", str(encoder), "hi", "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "\nError: " in result.output or result.output.startswith("Error: "), result.output
    result = CliRunner().invoke(main, ["generate", str(model_dir), "hi", "--device", "gpu"])
    assert result.exit_code == 1 and "--device='gpu' is not a device" in result.output


def _sigint_as_default():
    """In the child: SIGINT delivered and handled by Python, whatever the test process inherited or set
    (an ignored or blocked SIGINT is inherited by a child, which then never sees the Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_chat_ctrl_c_stops_the_reply_not_the_program(model_dir):
    """A long reply is interrupted with SIGINT; the loop survives, answers again, and exits on /exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # a reply that cannot end by itself (past the context with a sliding window), so that on a busy
    # machine it is still streaming when the signal comes
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhixing.cli", "chat", str(model_dir), "--max-new-tokens", "1000000",
         "--sliding-window", "--device", "cpu"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=env, text=True, bufsize=1, preexec_fn=_sigint_as_default)
    try:
        proc.stdin.write("你好\n")
        proc.stdin.flush()
        seen = ""
        while "bot> " not in seen or len(seen.split("bot> ", 1)[1]) < 3:  # the reply is streaming
            seen += proc.stdout.read(1)
        proc.send_signal(signal.SIGINT)
        proc.stdin.write("/exit\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert "[stopped]" in out
    assert proc.returncode == 0


def test_chat_renders_the_models_template_and_slides_past_the_window(tmp_path, byte_tokenizer, monkeypatch):
    """`zhixing chat` renders turns with tokenizer_config.json's chat_template (here one that echoes the
    conversation into a marker we can check) and --sliding-window generates past a 16-token context."""
    from zhixing.generation import chat as chat_module
    from zhixing.generation.chat import save_template

    torch.manual_seed(0)
    model = build_model("gpt-tiny", vocab_size=byte_tokenizer.vocab_size, dim=32, max_seq_len=16,
                        eos_token_id=None)
    model.save_pretrained(tmp_path)
    byte_tokenizer.save(tmp_path)
    template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                "{% if add_generation_prompt %}<assistant>{% endif %}")
    save_template(tmp_path, template)
    seen = []
    real = chat_module.render
    monkeypatch.setattr(chat_module, "render", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    args = ["chat", str(tmp_path), "--device", "cpu", "--greedy", "--max-new-tokens", "30",
            "--sliding-window", "--system", "S"]
    result = CliRunner().invoke(main, args, input="你好\n/exit\n")
    assert result.exit_code == 0, result.output
    assert seen == ["<system>S<user>你好<assistant>"]
    assert len(result.output.split("bot> ", 1)[1]) > 10  # 30 tokens from a 16-token window
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}", encoding="utf-8")
    result = CliRunner().invoke(main, ["chat", str(tmp_path), "--device", "cpu", "--chat-template", str(bad)])
    assert result.exit_code != 0 and "does not parse" in result.output


def test_a_prompt_too_long_fails_before_anything_is_printed(model_dir):
    result = CliRunner().invoke(main, ["generate", str(model_dir), "知行" * 2000, "--max-new-tokens", "60",
                                       "--device", "cpu"])
    assert result.exit_code != 0 and not result.output.startswith("知行"), result.output[:200]
    assert "max_new_tokens" in result.output or "context" in result.output
