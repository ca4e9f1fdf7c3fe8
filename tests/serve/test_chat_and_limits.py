"""Chat templates (the model's own, or the documented plain one), the queue limit (429), and the soak: 64
concurrent streaming clients for a minute with zero errors, no leaked slots and flat memory (slow)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from serve_helpers import LiveServer

from zhixing.serve.models import load_model, render_chat

TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_plain_template():
    text, stop = render_chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], None
    )
    assert text == "Be brief.\n\nUser: hi\nAssistant:" and stop == ["\nUser:"]  # as `zhixing chat` renders


def test_stored_template(tiny_gpt, tmp_path):
    import shutil

    d = tmp_path / "chat-gpt"
    shutil.copytree(tiny_gpt, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": TEMPLATE}))
    served = load_model("chat", d, max_batch=2)
    assert served.chat_template == TEMPLATE
    text, stop = render_chat(
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        served.tokenizer,
        served.chat_template,
    )
    assert text == "<|user|>hi</s><|assistant|>" and stop == []
    with pytest.raises(Exception, match="attribute|unsafe|access"):  # the sandbox refuses Python internals
        render_chat([{"role": "user", "content": "x"}], served.tokenizer, "{{ messages.__class__.__mro__ }}")


def test_queue_full_is_429(tiny_gpt):
    from zhixing.serve.app import ServeSettings, create_app

    served = load_model("gpt", tiny_gpt, max_batch=1, max_queue=1)
    served.batcher.start_thread = lambda: served.batcher  # never run: requests stay queued
    app = create_app({"gpt": served}, ServeSettings(max_batch=1, max_queue=1))
    body = {"model": "gpt", "prompt": "x", "max_tokens": 4, "stream": True}
    with LiveServer(app) as live:

        def first():
            try:
                with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=3) as r:
                    for _ in r.iter_lines():
                        pass
            except httpx.TimeoutException:
                pass

        t = threading.Thread(target=first)
        t.start()
        deadline = time.monotonic() + 5
        while served.batcher.num_waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = httpx.post(live.url + "/v1/completions", json=body, timeout=5)
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
        t.join(10)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.slow
def test_soak_64_streams_for_a_minute(tiny_gpt):
    from zhixing.serve.app import ServeSettings, create_app

    app = create_app({"gpt": str(tiny_gpt)}, ServeSettings(max_batch=64, max_queue=256))
    batcher = app.state.served["gpt"].batcher
    errors, done, stop = [], [0], threading.Event()
    memory = []

    def client(i: int) -> None:
        with httpx.Client(base_url=live.url, timeout=60) as c:
            n = 0
            while not stop.is_set() and n < 10_000:
                n += 1
                body = {
                    "model": "gpt",
                    "prompt": f"{i} {n}",
                    "max_tokens": 8 + (i + n) % 24,
                    "stream": True,
                    "temperature": 0.8,
                    "seed": i * 1000 + n,
                    "stream_options": {"include_usage": True},
                }
                try:
                    with c.stream("POST", "/v1/completions", json=body) as r:
                        lines = [x for x in r.iter_lines() if x]
                    if r.status_code != 200 or lines[-1] != "data: [DONE]":
                        errors.append((r.status_code, lines[-1:]))
                    else:
                        done[0] += 1
                except Exception as e:  # any transport error fails the soak
                    errors.append(repr(e))

    with LiveServer(app) as live:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        start = time.monotonic()
        while time.monotonic() - start < 65:
            time.sleep(5)
            memory.append(rss_mb())
        stop.set()
        for t in threads:
            t.join(60)
        deadline = time.monotonic() + 10
        while (batcher.num_active or batcher.num_waiting) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not errors, errors[:5]
        assert done[0] > 64
        assert batcher.num_active == 0 and batcher.num_waiting == 0 and int(batcher.mask.sum()) == 0
        # memory flat: after warm-up (the first 15 s), RSS grows by less than 50 MB
        assert max(memory[3:]) - memory[2] < 50, memory
