"""`zhixing viz` writes a PNG; `zhixing serve` runs the server, and SIGTERM lets a stream in flight finish."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from click.testing import CliRunner

from zhixing.cli import main


def test_viz_png(tiny_gpt, tmp_path):
    from PIL import Image

    for args, name in ((["--layer", "1", "--head", "0"], "head.png"), ([], "model.png")):
        out = tmp_path / name
        r = CliRunner().invoke(main, ["viz", str(tiny_gpt), "Knowing and doing", "--out", str(out), *args])
        assert r.exit_code == 0, r.output
        img = Image.open(out).convert("L")
        lo, hi = img.getextrema()
        assert img.size[0] > 100 and hi - lo > 50  # drawn, not blank
    r = CliRunner().invoke(main, ["viz", str(tiny_gpt), "x", "--layer", "9"])
    assert r.exit_code == 1 and "out of range" in r.output and "Traceback" not in r.output


@pytest.fixture(scope="module")
def slow_gpt(tiny_gpt, tmp_path_factory) -> Path:
    """A GPT big enough that a long stream is still running when SIGTERM arrives."""
    import zhixing
    from zhixing.models import build_model

    tok = zhixing.load_tokenizer(tiny_gpt)
    torch.manual_seed(0)
    model = build_model(
        "gpt-tiny",
        vocab_size=tok.vocab_size,
        dim=128,
        num_heads=4,
        num_layers=4,
        max_seq_len=512,
        dropout=0.0,
    )
    d = tmp_path_factory.mktemp("slow-gpt")
    model.save_pretrained(d)
    tok.save(d)
    return d


def test_serve_sigterm_drains(slow_gpt):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zhixing.cli",
            "serve",
            f"gpt={slow_gpt}",
            "--port",
            str(port),
            "--max-tokens",
            "500",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        body = {
            "model": "gpt",
            "prompt": "The",
            "max_tokens": 480,
            "stream": True,
            "ignore_eos": True,
            "stream_options": {"include_usage": True},
        }
        lines, signalled = [], False
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line:
                    lines.append(line)
                if not signalled and len(lines) >= 2:
                    proc.send_signal(signal.SIGTERM)
                    signalled = True
        assert signalled and lines[-1] == "data: [DONE]"
        usage = json.loads(lines[-2][6:])["usage"]
        assert usage["completion_tokens"] == 480  # the stream ran to its end after SIGTERM
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_parse_models(tiny_gpt):
    from zhixing.cli.serve import parse_models

    assert parse_models(("gpt=runs/x", str(tiny_gpt))) == {"gpt": "runs/x", tiny_gpt.name: str(tiny_gpt)}
    with pytest.raises(ValueError, match="two models"):
        parse_models(("a=x", "a=y"))


def test_cors_when_asked(tiny_gpt):
    from serve_helpers import LiveServer

    from zhixing.serve.app import ServeSettings, create_app

    app = create_app({"gpt": str(tiny_gpt)}, ServeSettings(cors_origins=("http://ui.example",)))
    with LiveServer(app) as live:
        headers = {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"}
        r = httpx.options(live.url + "/v1/completions", headers=headers)
        assert r.headers.get("access-control-allow-origin") == "http://ui.example"
        r = httpx.options(live.url + "/v1/completions", headers={**headers, "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
