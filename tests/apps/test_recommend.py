"""The recommendation application (zhixing/apps/recommend): reading reviews, mining aspects, a clause
sentiment model trained by the library on a small synthetic review set, the profile store, ranking with
explanations, faithfulness (1.0 by construction, and a tampered citation caught), the annotated-sample
evaluation, the CLI and the HTTP routes. The browser test of the page is in test_recommend_browser.py."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from zhixing.errors import ConfigError, DataError

ANNOTATIONS = Path(__file__).parent / "data" / "recommend_aspects.jsonl"

# item -> aspect -> share of positive reviews: A has a fine screen and a poor battery, B the opposite, C is a
# restaurant (no screen at all, so a screen preference knows nothing about it).
TRUTH = {
    "甲": {"屏幕": 0.9, "电池": 0.15},
    "乙": {"屏幕": 0.1, "电池": 0.85},
    "丙": {"味道": 0.8, "送餐": 0.3},
}
GOOD = ["很好", "非常清晰", "很棒", "特别好", "挺好"]
BAD = ["很差", "太暗", "特别差", "很糟糕", "不好"]
FILLER = ["昨天收到", "朋友推荐的", "第二次买了", ""]


def synthetic_reviews(path: Path, per_aspect: int = 40, seed: int = 0) -> Path:
    """A review CSV (item,label,review) drawn from TRUTH: one judged aspect a review, maybe a filler."""
    rng = random.Random(seed)
    rows = []
    for item, aspects in TRUTH.items():
        for aspect, share in aspects.items():
            for i in range(per_aspect):
                positive = i < round(share * per_aspect)
                text = aspect + rng.choice(GOOD if positive else BAD)
                filler = rng.choice(FILLER)
                rows.append((item, int(positive), f"{filler}，{text}" if filler else text))
    rng.shuffle(rows)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item", "label", "review"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(reviews CSV, sentiment run, store path, training summary): trained and built once for the module."""
    from zhixing.apps.recommend import SentimentRecipe, build_store, train_sentiment

    d = tmp_path_factory.mktemp("recommend")
    data = synthetic_reviews(d / "reviews.csv")
    recipe = SentimentRecipe(
        data=[str(data)],
        max_chars=48,
        max_dev=60,
        held_out=0.2,
        max_seq_len=32,
        epochs=3,  # dev accuracy 0.98 after 2 epochs, 1.0 after 3 (measured)
        lr=2e-3,
        batch_size=16,
    )
    summary = train_sentiment(recipe, d / "sentiment")
    store = d / "store.sqlite"
    build_store([str(data)], str(d / "sentiment"), store, per_item=4, min_count=3)
    return data, d / "sentiment", store, summary


def test_reviews_ids_items_and_clauses(tmp_path):
    from zhixing.apps.recommend import clauses, read_reviews

    p = tmp_path / "r.csv"
    p.write_text('label,review\n1,屏幕很清晰，续航长但是发热严重！\n0,\n0,"多行\n评论"\n', encoding="utf-8")
    reviews = read_reviews(f"手机={p}")
    assert [(r.id, r.item, r.label) for r in reviews] == [
        ("r:2", "手机", "positive"),
        ("r:4", "手机", "negative"),
    ]
    assert [c for _, c in clauses(reviews[0].text)] == ["屏幕很清晰", "续航长", "但是发热严重"]
    with pytest.raises(DataError, match=r"r\.csv:1: no item column .*ITEM="):
        read_reviews(p)
    bad = tmp_path / "bad.csv"
    bad.write_text("cat,label,review\n手机,1,好\n手机,maybe,差\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv:3: label 'maybe'"):
        read_reviews(bad)
    (tmp_path / "nocol.csv").write_text("cat,text\n手机,好\n", encoding="utf-8")
    with pytest.raises(DataError, match="review"):
        read_reviews(tmp_path / "nocol.csv")


def test_mining_keeps_judged_nouns_and_drops_generic(tmp_path):
    from zhixing.apps.recommend import find_mentions, mine_aspects, read_reviews

    reviews = read_reviews(synthetic_reviews(tmp_path / "r.csv"))
    lexicon = mine_aspects(reviews, per_item=5, min_count=3)
    assert set(lexicon.terms) >= {"屏幕", "电池", "味道"}
    assert not set(lexicon.terms) & {"朋友", "东西"}
    stats = {s.term: s for s in lexicon.per_item["甲"]}
    assert stats["屏幕"].opinionated <= stats["屏幕"].mentions
    r = replace(reviews[0], text="屏幕很清晰，电池不耐用，说了屏幕的事，屏幕和电池都很好")
    found = find_mentions(r, lexicon.terms)
    assert [(m.aspect, m.clause, m.phrase) for m in found] == [
        ("屏幕", "屏幕很清晰", "屏幕很清晰"),
        ("电池", "电池不耐用", "电池不耐用"),
        ("屏幕", "说了屏幕的事", ""),  # named, not judged: counted, never quoted
        ("屏幕", "屏幕和电池都很好", ""),  # the judgement is too far from 屏幕 to quote it
        ("电池", "屏幕和电池都很好", "电池都很好"),
    ]
    judged_only = find_mentions(r, lexicon.terms, opinion_only=True)
    assert [m.clause for m in judged_only] == ["屏幕很清晰", "电池不耐用", "屏幕和电池都很好"]


def test_sentiment_model_learns_the_labels(built):
    from zhixing.apps.recommend import ClauseSentiment

    _, run, _, summary = built
    assert summary["dev"]["accuracy"] >= 0.9, summary["dev"]
    p = ClauseSentiment(run)(["屏幕很好", "电池很差"])
    assert p[0] > 0.5 > p[1]


def test_profile_counts_are_the_mentions(built):
    from zhixing.apps.recommend import Store

    _, _, path, _ = built
    store = Store(path)
    profile = store.profile("甲")
    screen = profile["aspects"]["屏幕"]
    assert screen["positive"] + screen["negative"] == 40 and screen["positive"] > 30
    assert all(s["review_id"].startswith("reviews:") for s in screen["snippets"]["positive"])
    assert profile["reviews"] == 80
    with pytest.raises(ConfigError, match="item '甲乙' is not in .*items: "):
        store.profile("甲乙")


def test_rank_follows_preferences_and_explains_with_citations(built):
    from zhixing.apps.recommend import Store

    store = Store(built[2])
    ranked = store.rank(["屏幕"])
    assert [r.item for r in ranked] == ["甲", "乙", "丙"]  # 丙's reviews never mention a screen: last
    assert ranked[0].explanation.startswith("推荐：屏幕") and "注意：电池" in ranked[0].explanation
    assert ranked[1].explanation.startswith("注意：屏幕") and ranked[1].unknown == []
    assert ranked[2].unknown == ["屏幕"] and "屏幕" not in ranked[2].explanation
    assert [r.item for r in store.rank({"电池": 2.0, "屏幕": 1.0})][0] == "乙"
    for c in ranked[0].citations:
        assert c.evidence and all(c.aspect in e["clause"] for e in c.evidence)
    # avoiding battery complaints lowers 甲 (its battery is mostly criticised) and cites them under 注意
    careful = {r.item: r for r in store.rank(["屏幕"], avoid=["电池"])}
    assert careful["甲"].score < ranked[0].score and careful["甲"].contributions["电池"] < 0
    assert careful["乙"].contributions["电池"] > careful["甲"].contributions["电池"]
    with pytest.raises(ConfigError, match="prefer '屏'.*did you mean '屏幕'"):
        store.rank(["屏"])
    with pytest.raises(ConfigError, match="avoid '电池': weight -1.0"):
        store.rank(["屏幕"], avoid={"电池": -1.0})


def test_faithfulness_is_one_and_catches_a_tampered_citation(built):
    from zhixing.apps.recommend import Store, faithfulness

    store = Store(built[2])
    ranked = [r for q in ([], ["屏幕"], ["电池"], ["味道", "屏幕"]) for r in store.rank(q, avoid=["电池"])]
    report = faithfulness(store, ranked)
    assert report["citations"] >= 6 and report["faithfulness"] == 1.0 and not report["failures"]
    c = ranked[1].citations[0]
    flipped = replace(c, polarity="negative" if c.polarity == "positive" else "positive")
    moved = replace(c, evidence=[{**e, "review_id": "reviews:99999"} for e in c.evidence])
    for bad in (flipped, moved):
        tampered = replace(ranked[1], citations=[bad])
        assert faithfulness(store, [tampered])["faithfulness"] == 0.0


def test_user_profile_from_own_reviews(built):
    from zhixing.apps.recommend import ClauseSentiment, Store, user_profile

    store = Store(built[2])
    user = user_profile(["电池很差，一天一充", "电池很好才行，屏幕无所谓"], store, ClauseSentiment(built[1]))
    assert list(user["prefer"]) == ["电池", "屏幕"] and user["prefer"]["电池"] == pytest.approx(
        2 / 3, abs=1e-3
    )
    assert user["judged"]["电池"]["negative"] >= 1
    with pytest.raises(ConfigError, match=r"reviews\[1\]"):
        user_profile(["屏幕", " "], store)


def test_annotated_sample_is_valid_and_scored(built, tmp_path):
    from zhixing.apps.recommend import ClauseSentiment, Store
    from zhixing.apps.recommend.evaluate import coverage, evaluate_aspects, read_annotations

    rows = read_annotations(ANNOTATIONS)
    assert len(rows) == 99 and sum(len(r["mentions"]) for r in rows) >= 100
    store = Store(built[2])
    report = evaluate_aspects(rows, store.lexicon.terms, ClauseSentiment(built[1]))
    assert report["gold_mentions"] == sum(len(r["mentions"]) for r in rows)
    assert report["matched"] <= min(report["gold_mentions"], report["predicted_mentions"])
    assert sum(sum(v.values()) for v in report["confusion_gold_aspects"].values()) == report["gold_mentions"]
    labels = [r["label"] == m["polarity"] for r in rows for m in r["mentions"]]
    assert report["baseline_review_label"] == pytest.approx(sum(labels) / len(labels))
    cov = coverage(store, top=2)
    assert 0 < cov["review_coverage"] <= 1 and cov["top_items_citing_the_aspect"] > 0
    broken = tmp_path / "a.jsonl"
    broken.write_text(
        '{"review_id": "x", "text": "屏幕好", "mentions": [{"aspect": "电池", "polarity": "positive"}]}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"a\.jsonl:1: aspect '电池' does not occur"):
        read_annotations(broken)


def test_cli_build_rank_profile_eval(built, tmp_path):
    from click.testing import CliRunner

    from zhixing.cli import main

    data, run, _, _ = built
    store = tmp_path / "s.sqlite"
    runner = CliRunner()
    out = runner.invoke(
        main,
        [
            "app",
            "recommend",
            "build",
            "--data",
            str(data),
            "--sentiment",
            str(run),
            "--per-item",
            "4",
            "--mine-sample",
            "200",
            str(store),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "3 items, 240 reviews" in out.output
    out = runner.invoke(main, ["app", "recommend", "rank", str(store), "--prefer", "屏幕", "--top", "2"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("1. 甲") and "推荐：屏幕" in out.output and "[reviews:" in out.output
    out = runner.invoke(main, ["app", "recommend", "rank", str(store), "--prefer", "屏", "--json"])
    assert out.exit_code == 1 and "did you mean '屏幕'" in out.output
    out = runner.invoke(main, ["app", "recommend", "profile", str(store), "乙", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["aspects"]["电池"]["positive"] > 20
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data: [{data}]\nmax_char: 40\n", encoding="utf-8")
    out = runner.invoke(
        main, ["app", "recommend", "train-sentiment", "--config", str(recipe), str(tmp_path / "r")]
    )
    assert out.exit_code == 1 and "unknown key 'max_char' (did you mean 'max_chars'?)" in out.output
    report = tmp_path / "eval.json"
    out = runner.invoke(
        main,
        ["app", "recommend", "eval", str(store), "--annotations", str(ANNOTATIONS), "--out", str(report)],
    )
    assert out.exit_code == 0, out.output
    saved = json.loads(report.read_text(encoding="utf-8"))
    assert saved["faithfulness"]["faithfulness"] == 1.0 and saved["aspects"]["gold_mentions"] >= 100


def test_http_routes(built):
    """Mounted the way `zhixing serve --app recommend=STORE` mounts it, errors in the server's shape."""
    from fastapi.testclient import TestClient

    from zhixing.cli.serve import mount_apps
    from zhixing.serve.app import create_app

    app = create_app({})
    assert mount_apps(app, (f"recommend={built[2]}",)) == ["recommend"]
    client = TestClient(app)
    assert client.get("/apps").json()["apps"] == [{"name": "recommend", "url": "/apps/recommend/"}]
    assert "推荐解释" in client.get("/apps/recommend/").text
    assert client.get("/apps/recommend/app.js").status_code == 200
    aspects = client.get("/apps/recommend/aspects").json()
    assert {a["aspect"] for a in aspects["aspects"]} >= {"屏幕", "电池"} and aspects["summary"]["items"] == 3
    r = client.post("/apps/recommend/rank", json={"prefer": {"电池": 1}, "avoid": ["屏幕"], "top": 2}).json()
    assert r["ranked"][0]["item"] == "乙" and r["ranked"][0]["explanation"].startswith("推荐：电池")
    r = client.post("/apps/recommend/rank", json={"reviews": ["屏幕一定要好"]}).json()
    assert r["user"]["prefer"] == {"屏幕": 1.0} and r["ranked"][0]["item"] == "甲"
    assert client.get("/apps/recommend/items/丙").json()["aspects"]["味道"]["positive"] > 0
    bad = client.post("/apps/recommend/rank", json={"prefer": ["屏"]})
    assert bad.status_code == 400 and "did you mean '屏幕'" in bad.json()["error"]["message"]
    assert client.post("/apps/recommend/rank", json={"top": 0}).json()["error"]["param"] == "top"
    assert client.post("/apps/recommend/rank", json={"prefers": []}).status_code == 400
    assert client.post("/apps/recommend/rank", json={"reviews": "屏幕"}).json()["error"]["param"] == "reviews"
    assert client.get("/apps/recommend/items/丁").status_code == 404
    cited = r["ranked"][0]["citations"][0]["evidence"][0]
    full = client.get(f"/apps/recommend/reviews/{cited['review_id']}").json()
    assert full["item"] == "甲" and cited["clause"] in full["text"]
    assert client.get("/apps/recommend/reviews/reviews:99999").json()["error"]["param"] == "review_id"


def test_real_reviews_have_ids_and_items(shared_data):
    from zhixing.apps.recommend import read_reviews

    shop = read_reviews(shared_data / "zh-reviews" / "online_shopping_10_cats.csv", max_per_item=5)
    assert len({r.item for r in shop}) == 10 and len(shop) == 50
    assert all(r.id.startswith("online_shopping_10_cats:") and r.label for r in shop)
    food = read_reviews(f"外卖={shared_data / 'zh-reviews' / 'waimai_10k.csv'}", max_per_item=3)
    assert [r.id for r in food] == ["waimai_10k:2", "waimai_10k:3", "waimai_10k:4"]
    annotated = {
        json.loads(line)["review_id"]: json.loads(line)["text"]
        for line in ANNOTATIONS.read_text(encoding="utf-8").splitlines()
    }
    every = {r.id: r.text for r in read_reviews(shared_data / "zh-reviews" / "online_shopping_10_cats.csv")}
    every |= {r.id: r.text for r in read_reviews(f"外卖={shared_data / 'zh-reviews' / 'waimai_10k.csv'}")}
    assert all(every[i] == t for i, t in annotated.items())  # the sample quotes the files exactly


def _serve_helpers():
    """tests/serve's LiveServer and not_blank (a module there, not a package: loaded by path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "serve_helpers", Path(__file__).parents[1] / "serve" / "serve_helpers.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.browser
def test_page_in_chromium(built, tmp_path):
    """The page in a real headless Chromium: prefer 电池, avoid 屏幕 -> 乙 first with its explanation and a
    cited review id; the item's profile opens; no JavaScript errors; the screenshot is not blank."""
    serve = _serve_helpers()
    serve.chromium_or_skip()
    from PIL import Image

    from zhixing.cli.serve import mount_apps
    from zhixing.serve.app import create_app

    app = create_app({})
    mount_apps(app, (f"recommend={built[2]}",))
    with serve.LiveServer(app) as live, serve.BrowserPage(live.url + "/apps/recommend/") as page:
        page.wait_for_selector(".aspect[data-aspect=电池]")
        assert "3 items" in page.locator("#status").inner_text()
        page.click(".aspect[data-aspect=电池]")  # prefer
        page.click(".aspect[data-aspect=屏幕]")
        page.click(".aspect[data-aspect=屏幕]")  # avoid
        assert page.get_attribute(".aspect[data-aspect=屏幕]", "data-state") == "avoid"
        page.click("#rank")
        page.wait_for_selector("#ranked > li")
        first = page.locator("#ranked > li").first
        assert first.get_attribute("data-item") == "乙"
        assert first.locator(".why").inner_text().startswith("推荐：电池")
        assert first.locator(".cite.positive .rid").first.inner_text().startswith("reviews:")
        first.locator(".cite.positive .rid").first.click()  # the whole review, from the source file
        page.wait_for_function("document.querySelector('#ranked .review').textContent.includes('乙')")
        assert "电池" in first.locator(".review").first.inner_text()
        first.locator("a[data-item]").click()
        page.wait_for_selector("#profile table tr")
        assert page.locator("#profile h3").inner_text().startswith("乙: 80 reviews")
        shot = tmp_path / "recommend.png"
        page.screenshot(path=str(shot))
    colors = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colors) >= 3
