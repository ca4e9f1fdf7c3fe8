"""Fixtures of the serving tests: a tiny random GPT (byte-level BPE), a tiny BERT NER run (model dir with a
token-classification head + task settings), and a live server on 127.0.0.1 at a free port."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

TEXT = [
    "知行合一，知是行的主意，行是知的功夫。",
    "Knowing and doing are one.",
    "你好，世界！Hello.",
    "The quick brown fox jumps over the lazy dog.",
    "User: hi\nAssistant: hello there",
] * 20
WORDS = ["alice", "bob", "paris", "london", "went", "to", "saw", "the", "city", "and", "met", "in"]


@pytest.fixture(scope="session")
def tiny_gpt(tmp_path_factory) -> Path:
    from zhixing.models import build_model
    from zhixing.tokenizers import Tokenizer

    tok = Tokenizer.train(
        iter(TEXT),
        kind="byte_bpe",
        vocab_size=320,
        min_frequency=2,
        show_progress=False,
        special_tokens={"bos": "<s>", "eos": "</s>", "pad": "<pad>"},
    )
    torch.manual_seed(0)
    model = build_model(
        "gpt-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=4, num_layers=2, max_seq_len=96, dropout=0.0
    )
    d = tmp_path_factory.mktemp("tiny-gpt")
    model.save_pretrained(d)
    tok.save(d)
    return d


@pytest.fixture(scope="session")
def tiny_ner(tmp_path_factory) -> Path:
    """A BERT with a token-classification head and task.json-style settings: random weights, so the labels
    are arbitrary, but the output has the pipeline's shape."""
    from zhixing.models import build_model
    from zhixing.tokenizers import Tokenizer

    corpus = [" ".join(random.Random(i).choices(WORDS, k=8)) for i in range(100)] + WORDS * 3
    tok = Tokenizer.train(iter(corpus), kind="wordpiece", vocab_size=64, min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    model = build_model(
        "bert-tiny",
        vocab_size=tok.vocab_size,
        dim=32,
        num_heads=2,
        num_layers=2,
        max_seq_len=64,
        dropout=0.0,
        head="token_cls",
        num_labels=len(labels),
        label_names=labels,
    )
    with torch.no_grad():  # every word a person: the UI test needs an entity to highlight
        model.classifier.proj.bias.copy_(torch.tensor([0.0, 50.0, 0.0, 0.0, 0.0]))
    d = tmp_path_factory.mktemp("tiny-ner")
    model.save_pretrained(d)
    tok.save(d)
    return d


class LiveServer:
    """A uvicorn server in a thread on 127.0.0.1 at a free port."""

    def __init__(self, app):
        import socket
        import threading

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=5
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(15)


API_KEY = "sk-zhixing-test"


@pytest.fixture(scope="session")
def server(tiny_gpt, tiny_ner):
    from zhixing.serve.app import ServeSettings, create_app

    app = create_app(
        {"gpt": str(tiny_gpt), "ner": str(tiny_ner)},
        ServeSettings(
            api_key=API_KEY, max_body_bytes=64 * 1024, max_tokens_limit=64, max_batch=8, max_queue=64
        ),
    )
    with LiveServer(app) as live:
        yield live
