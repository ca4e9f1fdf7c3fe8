"""Fixtures of the serving tests: a tiny random GPT (byte-level BPE), a tiny BERT NER run (model dir with a
token-classification head + task settings), and a live server on 127.0.0.1 at a free port."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from serve_helpers import API_KEY, TEXT, WORDS, LiveServer


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
