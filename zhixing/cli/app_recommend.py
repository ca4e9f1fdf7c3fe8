"""`zhixing app recommend ...`: review-based recommendation with explanations (zhixing/apps/recommend).

    zhixing app recommend train-sentiment --config configs/recommend/sentiment.yaml runs/recommend-sentiment
    zhixing app recommend build --data online_shopping_10_cats.csv --data 外卖=waimai_10k.csv \\
        --sentiment runs/recommend-sentiment runs/recommend.sqlite
    zhixing app recommend rank runs/recommend.sqlite --prefer 屏幕,电池 --avoid 发热
    zhixing app recommend profile runs/recommend.sqlite 手机
    zhixing app recommend eval runs/recommend.sqlite --annotations tests/apps/data/recommend_aspects.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def _echo_json(data) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@click.group("recommend")
def recommend_group():
    """Review-based recommendation: item profiles of aspects and their sentiment, ranked items with an
    extractive explanation ("推荐：屏幕很清晰；注意：电池不耐用") citing the reviews."""


@recommend_group.command("train-sentiment")
@click.option(
    "--config",
    "config",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The recipe (configs/recommend/sentiment.yaml).",
)
@click.argument("out", type=click.Path(file_okay=False))
@click.argument("overrides", nargs=-1)
def train_sentiment_cmd(config: str, out: str, overrides: tuple[str, ...]):
    """Train the clause sentiment model into the run directory OUT (key=value overrides the recipe)."""
    from zhixing.apps.recommend.sentiment import SentimentRecipe, train_sentiment

    summary = train_sentiment(SentimentRecipe.from_yaml(config, list(overrides)), out, progress=True)
    click.echo(
        f"held-out accuracy {summary['dev']['accuracy']:.4f} on {summary['data']['dev']} reviews "
        f"(trained on {summary['data']['train']}, {summary['step']} steps); run: {summary['run_dir']}"
    )


@recommend_group.command("build")
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    metavar="[ITEM=]CSV",
    help="A review CSV (columns review, label and item or cat); ITEM=CSV when the file is about one "
    "item. Repeatable.",
)
@click.option(
    "--sentiment",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="The clause sentiment run (train-sentiment).",
)
@click.option("--per-item", default=12, show_default=True, help="Aspect terms mined per item.")
@click.option("--mine-sample", default=1500, show_default=True, help="Reviews per item the mining reads.")
@click.option("--max-per-item", type=int, default=None, help="Profile at most this many reviews per item.")
@click.option("--seed", default=0, show_default=True)
@click.argument("out", type=click.Path(dir_okay=False))
def build_cmd(data, sentiment, per_item, mine_sample, max_per_item, seed, out):
    """Mine aspects, score every mention's clause, and write the profile store OUT (SQLite)."""
    from zhixing.apps.recommend.profiles import build_store

    if per_item < 1 or mine_sample < 1 or (max_per_item is not None and max_per_item < 1):
        raise click.BadParameter("--per-item, --mine-sample and --max-per-item must be positive")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    s = build_store(
        list(data),
        sentiment,
        out,
        per_item=per_item,
        mine_sample=mine_sample,
        max_per_item=max_per_item,
        seed=seed,
    )
    click.echo(
        f"{s['items']} items, {s['reviews']} reviews, {s['aspects']} aspects, {s['mentions']} mentions "
        f"({s['review_coverage']:.1%} of reviews mention an aspect) in {s['wall_s']} s -> {out}"
    )


@recommend_group.command("rank")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--prefer", default="", metavar="A[:W],...", help="Aspects you care about (weights optional).")
@click.option(
    "--avoid", default="", metavar="A[:W],...", help="Aspects whose complaints count against an item."
)
@click.option(
    "--reviews",
    type=click.Path(exists=True, dir_okay=False),
    help="Your own reviews, one a line: the aspects you write about become your preferences.",
)
@click.option("--top", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the ranking with its citations as JSON.")
def rank_cmd(store, prefer, avoid, reviews, top, as_json):
    """Rank the items of STORE for your preferences, each with its explanation."""
    from zhixing.apps.recommend.profiles import Store, user_profile, weights

    st = Store(store)
    prefs = weights(prefer, "--prefer")
    if reviews:
        texts = [t.strip() for t in Path(reviews).read_text(encoding="utf-8").splitlines() if t.strip()]
        derived = user_profile(texts, st)["prefer"]
        if not derived:
            raise click.ClickException(
                f"{reviews}: your reviews mention none of the store's aspects ({', '.join(st.aspects)})"
            )
        prefs = {**derived, **prefs}
        if not as_json:
            click.echo(
                "preferences from your reviews: " + "、".join(f"{a} {w:.2f}" for a, w in derived.items())
            )
    ranked = st.rank(prefs, weights(avoid, "--avoid"), top=top)
    if as_json:
        _echo_json([r.to_dict() for r in ranked])
        return
    for i, r in enumerate(ranked, 1):
        click.echo(f"{i}. {r.item}  score {r.score:+.3f}  {r.explanation}")
        for c in r.citations:
            ev = c.evidence[0]
            click.echo(
                f"     {'+' if c.polarity == 'positive' else '-'} {c.aspect} ({c.positive} 好评 / "
                f"{c.negative} 差评): “{ev['clause']}” [{ev['review_id']}]"
            )
        if r.unknown:
            click.echo(f"     (no review mentions {', '.join(r.unknown)})")


@recommend_group.command("profile")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.argument("item")
@click.option("--top", default=10, show_default=True, help="Aspects shown, most mentioned first.")
@click.option("--json", "as_json", is_flag=True)
def profile_cmd(store, item, top, as_json):
    """An item's profile: aspects with positive / negative counts, phrases and snippets."""
    from zhixing.apps.recommend.profiles import Store

    p = Store(store).profile(item, top=top)
    if as_json:
        _echo_json(p)
        return
    click.echo(f"{p['item']}: {p['reviews']} reviews, {p['reviews_with_aspects']} mention an aspect")
    for a, v in p["aspects"].items():
        good = "、".join(f"{t}×{n}" for t, n in v["phrases"]["positive"])
        bad = "、".join(f"{t}×{n}" for t, n in v["phrases"]["negative"])
        click.echo(f"  {a}: +{v['positive']} / -{v['negative']}   {good}   {bad}")


@recommend_group.command("eval")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--annotations",
    type=click.Path(exists=True, dir_okay=False),
    help="Hand-annotated aspect mentions (JSONL): aspect-sentiment accuracy.",
)
@click.option(
    "--queries",
    default=0,
    show_default=True,
    help="Faithfulness over this many preference queries (each aspect alone, then pairs); 0: all "
    "single-aspect queries.",
)
@click.option("--top", default=3, show_default=True, help="Items per query whose explanations are checked.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the report as JSON here.")
def eval_cmd(store, annotations, queries, top, out):
    """Aspect-sentiment accuracy (--annotations), explanation faithfulness and coverage of STORE."""
    import time

    from zhixing.apps.recommend.evaluate import coverage, evaluate_aspects, read_annotations
    from zhixing.apps.recommend.profiles import Store, faithfulness
    from zhixing.apps.recommend.sentiment import ClauseSentiment
    from zhixing.io import atomic_write_json

    st = Store(store)
    sentiment = ClauseSentiment(st.summary["sentiment_run"])
    report: dict = {"store": store, "built": st.summary}
    start = time.perf_counter()
    if annotations:
        report["aspects"] = evaluate_aspects(read_annotations(annotations), st.lexicon.terms, sentiment)
    asks = [[a] for a in st.aspects]
    asks += [[a, b] for i, a in enumerate(st.aspects) for b in st.aspects[i + 1 :]]
    asks = asks[: queries or len(st.aspects)]
    ranked = [r for q in [[], *asks] for r in st.rank(q, top=top)]
    report["faithfulness"] = {**faithfulness(st, ranked, sentiment), "queries": len(asks) + 1, "top": top}
    report["coverage"] = coverage(st, top=top)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    if out:
        atomic_write_json(out, report)
    _echo_json({k: v for k, v in report.items() if k != "built"})
