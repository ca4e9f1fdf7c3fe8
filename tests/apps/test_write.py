"""The writing assistant (zhixing.apps.write) on tiny random models: continuation (plain, streamed, verse
forms), FUDGE guidance checked against its formula, rewriting, perplexity, the material index, the review
data reader, the HTTP routes and the command line."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from write_helpers import POEMS, poems_file, reviews_csv, tiny_classifier, tiny_gpt

from zhixing.apps.write import MaterialIndex, StyleGuide, Writer
from zhixing.apps.write.materials import evaluate_poem_retrieval, read_passages
from zhixing.apps.write.reviews import read_reviews, review_prompts, split_reviews, with_prefixes
from zhixing.errors import ConfigError, DataError
from zhixing.generation.constraints import poem_form


def check(text: str, form: str, acrostic: str | None = None) -> list[str]:
    return poem_form(form).check(text, acrostic=acrostic)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("write")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny corpus gives fewer tokens than vocab_size
        return tiny_gpt(d / "gpt"), tiny_classifier(d / "clf")


@pytest.fixture(scope="module")
def writer(models):
    return Writer(str(models[0]))


@pytest.fixture(scope="module")
def guide(models):
    return StyleGuide(str(models[1]), "positive", 2.0, top_k=5)


def test_stream_pieces_add_up_to_the_continuation(writer):
    whole = writer.continue_text("这款", seed=3, max_new_tokens=10)
    assert len(whole) > 0
    assert "".join(writer.stream("这款", seed=3, max_new_tokens=10)) == whole


def test_poetry_mode_writes_the_form_and_the_acrostic(writer):
    poem = writer.continue_text("静夜思\n", form="五言绝句", acrostic="春夏秋冬", seed=0)
    assert check(poem, "五言绝句", acrostic="春夏秋冬") == []
    with pytest.raises(ConfigError, match="not a verse form"):
        writer.continue_text("x", form="十言绝句")
    with pytest.raises(ConfigError, match="needs a form"):
        writer.continue_text("x", acrostic="春夏")


def test_fudge_scores_follow_the_formula(writer, guide):
    """s'_v = log p_LM(v) + λ log p(a | prefix + v) on the LM's top-k, -inf elsewhere, each candidate
    prefix scored by the classifier exactly as when scored alone."""
    tok = writer.tokenizer
    ids = torch.tensor([tok.encode("这款手机").ids])
    guide.lm_tokenizer = tok
    with torch.no_grad():
        logits = writer.model(ids).logits[:, -1].float()
    out = guide(logits, ids)
    logp = logits.log_softmax(-1)
    top = logp.topk(5).indices[0]
    assert out.isfinite().sum() == 5 and out[0, top].isfinite().all()
    for v in top.tolist():
        p_a = float(guide.target_probability(["这款手机" + tok.decode([v])])[0])
        assert math.isclose(
            float(out[0, v]), float(logp[0, v]) + 2.0 * math.log(p_a), rel_tol=1e-4, abs_tol=1e-4
        )
    plain = guide.with_strength(0.0)(logits, ids)  # λ = 0: plain top-k
    assert torch.equal(plain[0, top], logp[0, top])


def test_guidance_raises_the_target_probability(writer, guide):
    """Greedy decoding under a strong guide ends with a higher p(target) than without (same LM)."""
    drafts = ["这款", "质量", "物流", "客服"]
    plain = writer.continue_batch(
        drafts, guide.with_strength(0.0), seed=0, max_new_tokens=8, temperature=0.05
    )
    steered = writer.continue_batch(
        drafts, guide.with_strength(8.0), seed=0, max_new_tokens=8, temperature=0.05
    )
    p_plain = guide.target_probability([d + c for d, c in zip(drafts, plain)]).mean()
    p_steered = guide.target_probability([d + c for d, c in zip(drafts, steered)]).mean()
    assert p_steered > p_plain
    neg = guide.retarget("negative").with_strength(8.0)
    towards_neg = writer.continue_batch(drafts, neg, seed=0, max_new_tokens=8, temperature=0.05)
    assert guide.target_probability([d + c for d, c in zip(drafts, towards_neg)]).mean() < p_steered


def test_rewrite_keeps_the_opening(writer, guide):
    out = writer.rewrite("质量太差了，用了两天就坏", guide, seed=0, max_new_tokens=6)
    assert out["kept"] == "质量太差了" and out["text"] == out["kept"] + out["continuation"]
    assert writer.rewrite("质量太差了", guide, keep=2, seed=0, max_new_tokens=4)["kept"] == "质量"
    with pytest.raises(ConfigError, match="empty"):
        writer.rewrite("  ", guide)
    with pytest.raises(ConfigError, match="not a label"):
        StyleGuide(guide.model, "angry")
    with pytest.raises(ConfigError, match="strength"):
        guide.with_strength(-1)


def test_perplexity_is_the_lm_loss_on_the_continuation(writer):
    tok = writer.tokenizer
    x, y = tok.encode("这款").ids, tok.encode("手机屏幕").ids
    ids = torch.tensor([x + y])
    labels = torch.tensor([[-100] * len(x) + y])
    with torch.no_grad():
        logits = writer.model(ids).logits.float()
    nll = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    assert math.isclose(writer.perplexity(["这款"], ["手机屏幕"])[0], float(nll.exp()), rel_tol=1e-4)
    assert math.isnan(writer.perplexity(["这款"], [""])[0])


def test_writer_rejects_a_classifier(models):
    with pytest.raises(ConfigError, match="GPT"):
        Writer(str(models[1]))


@pytest.mark.parametrize("kind", ["tfidf", "encoder"])
def test_material_index_finds_the_poem_and_survives_a_round_trip(models, tmp_path, kind):
    passages = read_passages(poems_file(tmp_path / "poems.jsonl"))
    assert [p["title"] for p in passages] == [p["title"] for p in POEMS]
    index = MaterialIndex.build(passages, kind=kind, encoder=str(models[1]) if kind == "encoder" else None)
    hits = index.search("床前明月光", k=2)
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    if kind == "tfidf":  # shared characters: the poem itself comes first
        assert hits[0]["title"] == "静夜思" and 0 < hits[0]["score"] <= 1
    index.save(tmp_path / "index")
    again = MaterialIndex.load(tmp_path / "index")
    assert again.search("床前明月光", k=2) == hits
    with pytest.raises(ConfigError, match="empty"):
        index.search(" ")


def test_material_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "x", "paragraphs": ["a"]}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:2"):
        read_passages(bad)
    with pytest.raises(DataError, match="not a material index"):
        MaterialIndex.load(tmp_path)
    with pytest.raises(ConfigError, match="kind"):
        MaterialIndex.build([{"text": "x"}], kind="bm25")


def test_poem_retrieval_recall_is_measured(tmp_path):
    path = tmp_path / "poems.jsonl"
    poems = [
        {"title": f"p{i}", "paragraphs": [f"{a}{a}{a}山水，", f"{a}月{a}花。", f"风{a}雪{a}。"]}
        for i, a in enumerate("春夏秋冬")
    ]
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in poems), encoding="utf-8")
    out = evaluate_poem_retrieval(path)
    assert out["queries"] == 4 and out["recall@1"] == 1.0 and out["mrr"] == 1.0


def test_review_reader_split_and_prompts(tmp_path):
    path = reviews_csv(tmp_path / "reviews.csv")
    examples = read_reviews(path)
    assert [e.label for e in examples] == ["positive", "negative", "positive", "negative"]
    parts = split_reviews(examples * 1, seed=0)
    assert sorted(e.text for p in parts.values() for e in p) == sorted(e.text for e in examples)
    prefixed = with_prefixes(examples, seed=0)
    assert len(prefixed) == 8 and all(any(e.text.startswith(p.text) for e in examples) for p in prefixed)
    bad = tmp_path / "bad.csv"
    bad.write_text("cat,label,review\n手机,2,很好\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.csv:2"):
        read_reviews(bad)
    many = tmp_path / "many.csv"
    rows = [f"x,{i % 2},{'好' if i % 2 else '差'}评第{i}条，内容足够长的一条评论" for i in range(400)]
    many.write_text("cat,label,review\n" + "\n".join(rows) + "\n", encoding="utf-8")
    prompts = review_prompts(many, n=10, chars=6, seed=0)
    assert len(prompts) == 10 and all(len(p["prompt"]) == 6 for p in prompts)
    assert sum(p["label"] == "positive" for p in prompts) == 5


@pytest.fixture(scope="module")
def client(models, tmp_path_factory):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from zhixing.apps.write.http import mount

    d = tmp_path_factory.mktemp("write-app")
    passages = read_passages(poems_file(d / "poems.jsonl"))
    MaterialIndex.build(passages).save(d / "index")
    (d / "write.yaml").write_text(
        f"models:\n  tiny: {models[0]}\nguide: {models[1]}\nindex: index\n", encoding="utf-8"
    )
    app = FastAPI()
    mount(app, d / "write.yaml")
    return TestClient(app)


def test_http_routes(client):
    assert "写作助手" in client.get("/apps/write/").text
    info = client.get("/apps/write/info").json()
    assert info["models"] == ["tiny"] and info["labels"] == ["negative", "positive"]
    assert info["index"] == {"kind": "tfidf", "passages": 4}
    body = {"text": "这款", "max_new_tokens": 6, "seed": 1}
    whole = client.post("/apps/write/continue", json=body).json()["text"]
    events = client.post("/apps/write/continue", json={**body, "stream": True}).text.split("\n\n")
    data = [e[len("data: ") :] for e in events if e.startswith("data: ")]
    assert data[-1] == "[DONE]" and "".join(json.loads(x)["text"] for x in data[:-1]) == whole
    poem = client.post("/apps/write/continue", json={"text": "春\n", "form": "五言绝句", "seed": 0}).json()
    assert check(poem["text"], "五言绝句") == []
    out = client.post(
        "/apps/write/rewrite",
        json={
            "text": "质量太差了，坏了",
            "target": "positive",
            "strength": 4,
            "seed": 0,
            "max_new_tokens": 6,
        },
    ).json()
    assert out["kept"] == "质量太差了" and 0 <= out["p_target_after"] <= 1
    hits = client.post("/apps/write/materials", json={"text": "举头望明月", "k": 2}).json()["hits"]
    assert hits[0]["title"] == "静夜思"


def test_http_errors_are_clear(client):
    r = client.post("/apps/write/continue", json={"text": "x", "form": "十言绝句"})
    assert r.status_code == 400 and "verse form" in r.json()["error"]["message"]
    r = client.post("/apps/write/continue", json={"text": "x", "model": "nope"})
    assert r.status_code == 400 and "tiny" in r.json()["error"]["message"]
    assert client.post("/apps/write/continue", json={"text": ""}).status_code == 422
    r = client.post("/apps/write/rewrite", json={"text": "x", "target": "angry"})
    assert r.status_code == 400 and "positive" in r.json()["error"]["message"]


def test_cli_continue_index_and_materials(models, tmp_path):
    from click.testing import CliRunner

    from zhixing.cli import main as cli

    runner = CliRunner()
    out = runner.invoke(
        cli, ["app", "write", "continue", str(models[0]), "静夜思\\n", "--form", "五言绝句", "--seed", "0"]
    )
    assert out.exit_code == 0, out.output
    assert check(out.output.split("\n", 1)[1].strip(), "五言绝句") == []
    out = runner.invoke(
        cli,
        [
            "app",
            "write",
            "continue",
            str(models[0]),
            "这款",
            "--stream",
            "--guide",
            str(models[1]),
            "--target",
            "positive",
            "--max-new-tokens",
            "5",
            "--seed",
            "1",
        ],
    )
    assert out.exit_code == 0 and out.output.startswith("这款"), out.output
    poems = poems_file(tmp_path / "poems.jsonl")
    out = runner.invoke(cli, ["app", "write", "index", str(tmp_path / "idx"), str(poems)])
    assert out.exit_code == 0 and "4 passages" in out.output, out.output
    out = runner.invoke(
        cli, ["app", "write", "materials", str(tmp_path / "idx"), "白日依山尽", "-k", "1", "--json"]
    )
    assert out.exit_code == 0 and json.loads(out.output)["title"] == "登鹳雀楼", out.output
    out = runner.invoke(cli, ["app", "write", "materials", str(tmp_path), "x"])
    assert out.exit_code != 0 and "not a material index" in out.output


def test_review_sentences_as_passages(tmp_path):
    path = reviews_csv(tmp_path / "reviews.csv")
    with path.open("a", encoding="utf-8") as f:
        f.write("手机,1,\n")  # an empty review is skipped, as the shared files have a few
    passages = read_passages(path)
    assert [p["text"] for p in passages][:2] == [
        "这款手机屏幕很清晰，电池也耐用，非常满意。",
        "质量太差了，用了两天就坏，再也不买了。",
    ]
    assert passages[0]["source"] == "reviews.csv:2"
    hit = MaterialIndex.build(passages).search("电池耐用", k=1)[0]
    assert hit["text"].startswith("这款手机")
