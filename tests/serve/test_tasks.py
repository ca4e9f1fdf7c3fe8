"""/v1/classify and /v1/qa on BERTs with a sequence-classification and a span-QA head: the pipeline's
outputs as JSON, batched inputs, and the errors of a wrong task."""

from __future__ import annotations

import httpx
import pytest
import torch
from serve_helpers import WORDS, LiveServer


def bert_with_head(tiny_ner, tmp_path, head: str, **extra):
    import zhixing
    from zhixing.models import build_model

    tok = zhixing.load_tokenizer(tiny_ner)
    torch.manual_seed(0)
    m = build_model(
        "bert-tiny",
        vocab_size=tok.vocab_size,
        dim=32,
        num_heads=2,
        num_layers=2,
        max_seq_len=64,
        dropout=0.0,
        head=head,
        **extra,
    )
    d = tmp_path / head
    m.save_pretrained(d)
    tok.save(d)
    return d


@pytest.fixture(scope="module")
def live(tiny_ner, tmp_path_factory):
    from zhixing.serve.app import ServeSettings, create_app

    tmp = tmp_path_factory.mktemp("tasks")
    models = {
        "clf": str(bert_with_head(tiny_ner, tmp, "seq_cls", num_labels=2, label_names=["neg", "pos"])),
        "qa": str(bert_with_head(tiny_ner, tmp, "qa")),
    }
    with LiveServer(create_app(models, ServeSettings(max_inputs=4))) as server:
        yield server


def test_classify(live):
    r = httpx.post(live.url + "/v1/classify", json={"model": "clf", "input": ["alice went to paris", "bob"]})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    for d in data:
        assert d["result"]["label"] in ("neg", "pos") and set(d["result"]["scores"]) == {"neg", "pos"}
    one = httpx.post(live.url + "/v1/classify", json={"model": "clf", "input": "bob"}).json()["data"]
    assert one[0]["result"] == data[1]["result"]


def test_qa(live):
    context = " ".join(WORDS)
    r = httpx.post(live.url + "/v1/qa", json={"model": "qa", "question": "who went", "context": context})
    assert r.status_code == 200, r.text
    a = r.json()["data"][0]["result"]
    assert context[a["start"] : a["end"]] == a["answer"]
    batch = httpx.post(
        live.url + "/v1/qa",
        json={
            "model": "qa",
            "input": [
                {"question": "who", "context": context},
                {"question": "where", "context": "alice in london"},
            ],
        },
    )
    assert len(batch.json()["data"]) == 2


def test_task_errors(live):
    assert httpx.post(live.url + "/v1/qa", json={"model": "qa", "question": "x"}).status_code == 400
    r = httpx.post(live.url + "/v1/classify", json={"model": "qa", "input": "x"})
    assert r.status_code == 400 and "not fine-tuned for classify" in r.json()["error"]["message"]
    r = httpx.post(live.url + "/v1/classify", json={"model": "clf", "input": ["x"] * 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    assert httpx.post(live.url + "/v1/completions", json={"model": "clf", "prompt": "x"}).status_code == 400
