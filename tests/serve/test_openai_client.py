"""The server through the official `openai` client: completions, chat, streaming, embeddings, errors."""

from __future__ import annotations

import base64
import struct

import pytest
from serve_helpers import API_KEY

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, timeout=30, max_retries=0)


def test_models(client):
    ids = {m.id for m in client.models.list().data}
    assert ids == {"gpt", "ner"}


def test_completion(client):
    r = client.completions.create(model="gpt", prompt="Knowing and", max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.model == "gpt" and r.id.startswith("cmpl-")
    assert len(r.choices) == 1 and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    again = client.completions.create(model="gpt", prompt="Knowing and", max_tokens=8, temperature=0)
    assert again.choices[0].text == r.choices[0].text  # greedy is deterministic


def test_completion_n_seed_logprobs(client):
    kw = dict(
        model="gpt",
        prompt=["你好", "The quick"],
        max_tokens=6,
        temperature=1.0,
        seed=3,
        n=2,
        logprobs=2,
        extra_body={"ignore_eos": True},
    )
    r = client.completions.create(**kw)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    for c in r.choices:
        assert c.finish_reason == "length"
        assert len(c.logprobs.tokens) == 6 and all(lp <= 0 for lp in c.logprobs.token_logprobs)
        assert all(1 <= len(t) <= 2 for t in c.logprobs.top_logprobs)  # two ids may share a string
    assert [c.text for c in client.completions.create(**kw).choices] == [c.text for c in r.choices]


def test_stream_matches_non_stream(client):
    full = client.completions.create(
        model="gpt", prompt="知行", max_tokens=20, temperature=0, extra_body={"ignore_eos": True}
    )
    pieces, usage = [], None
    for chunk in client.completions.create(
        model="gpt",
        prompt="知行",
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    ):
        if chunk.choices:
            pieces.append(chunk.choices[0].text)
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == full.choices[0].text
    # characters never split: a piece cut inside a character would show U+FFFD where the full text has none
    assert sum(p.count("\ufffd") for p in pieces) == full.choices[0].text.count("\ufffd")
    assert usage is not None and usage.completion_tokens == 20


def test_chat_and_stream(client):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    r = client.chat.completions.create(
        model="gpt", messages=msgs, max_tokens=10, temperature=0, logprobs=True, top_logprobs=3
    )
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].logprobs.content and len(r.choices[0].logprobs.content[0].top_logprobs) == 3
    stream = client.chat.completions.create(
        model="gpt",
        messages=msgs,
        max_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_stop_string(client):
    full = (
        client.completions.create(
            model="gpt", prompt="The", max_tokens=30, temperature=0, extra_body={"ignore_eos": True}
        )
        .choices[0]
        .text
    )
    if len(full) < 4:
        pytest.skip("the random model wrote too little text to cut")
    stop = full[2:4]
    r = client.completions.create(
        model="gpt", prompt="The", max_tokens=30, temperature=0, stop=[stop], extra_body={"ignore_eos": True}
    )
    assert r.choices[0].text == full[: full.index(stop)] and r.choices[0].finish_reason == "stop"


def test_embeddings(client):
    r = client.embeddings.create(model="gpt", input=["hello", "你好世界"])
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) == 32
    b64 = client.embeddings.with_raw_response.create(
        model="ner", input="alice went to paris", encoding_format="base64"
    ).http_response.json()
    vec = struct.unpack("<32f", base64.b64decode(b64["data"][0]["embedding"]))
    assert len(vec) == 32


def test_errors(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="nope", prompt="x", max_tokens=2)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="gpt", prompt="x", max_tokens=10_000)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="ner", prompt="x", max_tokens=2)  # a tagger does not generate
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model="gpt", prompt="x", max_tokens=2, temperature="hot")
