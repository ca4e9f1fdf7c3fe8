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


def test_chat_ctrl_c_stops_the_reply_not_the_program(model_dir):
    """A long reply is interrupted with SIGINT; the loop survives, answers again, and exits on /exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhixing.cli", "chat", str(model_dir), "--max-new-tokens", "2000",
         "--device", "cpu"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env, text=True, bufsize=1)
    try:
        proc.stdin.write("你好\n")
        proc.stdin.flush()
        seen = ""
        while "bot> " not in seen or len(seen.split("bot> ", 1)[1]) < 3:  # the reply is streaming
            seen += proc.stdout.read(1)
        proc.send_signal(signal.SIGINT)
        proc.stdin.write("/exit\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "[stopped]" in out
    assert proc.returncode == 0
