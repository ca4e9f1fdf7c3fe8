"""`zhixing app write ...`: the writing assistant (zhixing.apps.write) — continuation (streamed, poetry
forms and acrostics), sentiment-guided continuation and rewriting, writing-material search, and the
recipes that train its classifiers and measure it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def _settings(max_new_tokens, temperature, top_k, seed, form=None, acrostic=None) -> dict[str, Any]:
    out = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "seed": seed,
        "form": form,
        "acrostic": acrostic,
    }
    return {k: v for k, v in out.items() if v is not None}


def _data_path(name: str) -> Path:
    from zhixing.data.corpora import data_dir

    p = Path(name)
    return p if p.is_absolute() or p.exists() else data_dir() / p


def sampling_options(f):
    for option in reversed(
        [
            click.option("--max-new-tokens", type=int, default=None, help="Characters to add (default 48)."),
            click.option(
                "--temperature", type=float, default=None, help="Sampling temperature (default 0.8)."
            ),
            click.option("--top-k", type=int, default=None, help="Candidates per step (default 20)."),
            click.option("--seed", type=int, default=None, help="Fix the sample."),
        ]
    ):
        f = option(f)
    return f


@click.group("write")
def write_group():
    """Writing assistant: continue a draft (streamed; poems with --form / --acrostic), rewrite a review
    toward a sentiment (classifier-guided decoding), find writing material for a draft.

    \b
    zhixing app write continue runs/gpt-tang-poetry-cpu "春夜\\n" --form 五言绝句 --acrostic 春夏秋冬
    zhixing app write rewrite runs/gpt-reviews-zh-cpu runs/write-sentiment-guide "屏幕太暗了" \
        --target positive
    zhixing app write index runs/write-materials $ZHIXING_DATA/chinese-poetry/tang300.jsonl
    zhixing app write materials runs/write-materials "春风又绿江南岸"
    """


@write_group.command("continue")
@click.argument("run")
@click.argument("draft")
@click.option("--stream", "streaming", is_flag=True, help="Print the continuation as it is generated.")
@click.option("--form", default=None, help="A verse form: 五言绝句, 七言绝句, 五言律诗, 七言律诗.")
@click.option("--acrostic", default=None, help="藏头诗: line i starts with character i (needs --form).")
@click.option("--guide", default=None, help="A sentiment classifier run that steers decoding (FUDGE).")
@click.option("--target", default=None, help="The guide's label to steer toward (e.g. positive).")
@click.option("--strength", type=float, default=2.0, show_default=True, help="λ: the guide's weight.")
@sampling_options
def continue_cmd(
    run, draft, streaming, form, acrostic, guide, target, strength, max_new_tokens, temperature, top_k, seed
):
    """Continue DRAFT with the GPT of RUN (a "\\n" in DRAFT is a newline)."""
    from zhixing.apps.write import StyleGuide, Writer

    draft = draft.replace("\\n", "\n")
    writer = Writer(run)
    style = None
    if guide:
        if not target:
            raise click.UsageError("--guide needs --target (one of the classifier's labels)")
        style = StyleGuide(guide, target, strength, top_k=top_k or 20)
    settings = _settings(max_new_tokens, temperature, top_k, seed, form, acrostic)
    click.echo(draft, nl=False)
    if streaming:
        for piece in writer.stream(draft, style, **settings):
            click.echo(piece, nl=False)
            sys.stdout.flush()
        click.echo()
    else:
        click.echo(writer.continue_text(draft, style, **settings))


@write_group.command("rewrite")
@click.argument("run")
@click.argument("classifier")
@click.argument("text")
@click.option("--target", required=True, help="The style to rewrite toward: a label of CLASSIFIER.")
@click.option("--strength", type=float, default=2.0, show_default=True, help="λ >= 0 (0 = unguided).")
@click.option(
    "--keep", type=int, default=None, help="Characters of TEXT to keep (default: its first clause)."
)
@sampling_options
def rewrite_cmd(run, classifier, text, target, strength, keep, max_new_tokens, temperature, top_k, seed):
    """Rewrite TEXT toward --target: keep its opening, write the rest with the GPT of RUN steered by
    CLASSIFIER (p(x_t | x_<t, a) ∝ p_LM · p(a | x_≤t)^λ); print the result and both classifiers' view."""
    from zhixing.apps.write import StyleGuide, Writer

    writer = Writer(run)
    style = StyleGuide(classifier, target, strength, top_k=top_k or 20)
    out = writer.rewrite(text, style, keep, **_settings(max_new_tokens, temperature, top_k, seed))
    before, after = style.target_probability([text.strip(), out["text"]]).tolist()
    click.echo(out["text"])
    click.echo(f"p({target}) by the guide: {before:.3f} -> {after:.3f}", err=True)


@write_group.command("index")
@click.argument("out")
@click.argument("sources", nargs=-1, required=True)
@click.option("--kind", type=click.Choice(["tfidf", "encoder"]), default="tfidf", show_default=True)
@click.option("--encoder", default=None, help="kind=encoder: a zhixing model / run (mean-pooled states).")
@click.option("--ngram", type=int, default=2, show_default=True, help="kind=tfidf: character n-grams 1..n.")
@click.option("--limit", type=int, default=None, help="At most this many passages per source.")
def index_cmd(out, sources, kind, encoder, ngram, limit):
    """Build a material index at OUT from SOURCES: .jsonl poems (chinese-poetry), .csv reviews (one
    passage per sentence) or .txt (one per line)."""
    from zhixing.apps.write.materials import MaterialIndex, read_passages

    passages = [p for s in sources for p in read_passages(s, limit)]
    index = MaterialIndex.build(passages, kind=kind, ngram=ngram, encoder=encoder)
    index.save(out)
    click.echo(f"{len(passages)} passages indexed ({kind}) -> {out}")


@write_group.command("materials")
@click.argument("index")
@click.argument("draft")
@click.option("-k", "k", type=int, default=5, show_default=True, help="Passages to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def materials_cmd(index, draft, k, as_json):
    """The passages of INDEX nearest to DRAFT, with their cosine similarity."""
    from zhixing.apps.write.materials import MaterialIndex

    for hit in MaterialIndex.load(index).search(draft, k):
        if as_json:
            click.echo(json.dumps(hit, ensure_ascii=False))
        else:
            where = " ".join(x for x in (hit.get("title"), hit.get("author")) if x) or hit["source"]
            click.echo(f"{hit['score']:.3f}  {hit['text'][:80]}  [{where}]")


@write_group.command("sentiment")
@click.option(
    "--config",
    "config_path",
    default="configs/write/sentiment-zh.yaml",
    show_default=True,
    help="The recipe (keys of zhixing.apps.write.reviews.train_classifiers).",
)
@click.option("--out", default=None, help="Also write the report (JSON) here.")
@click.argument("overrides", nargs=-1)
def sentiment_cmd(config_path, out, overrides):
    """Train the guide and the judge sentiment classifiers from a recipe (KEY=VALUE overrides it)."""
    import inspect

    import yaml

    from zhixing.apps.write.reviews import train_classifiers

    path = Path(config_path)
    settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected KEY=VALUE")
        settings[key] = yaml.safe_load(value)
    valid = [p for p in inspect.signature(train_classifiers).parameters if p != "progress"]
    for key in settings:
        if key not in valid:
            raise ValueError(f"{path}: unknown key {key!r}; valid keys: {', '.join(valid)}")
    settings["data"] = str(_data_path(settings.get("data", "zh-reviews/online_shopping_10_cats.csv")))
    from zhixing.io import atomic_write_json

    report = train_classifiers(**settings)
    click.echo(json.dumps(report, ensure_ascii=False, indent=1))
    if out:
        atomic_write_json(out, report)


@write_group.command("evaluate")
@click.argument("run")
@click.argument("guide")
@click.argument("judge")
@click.option("--data", default="zh-reviews/online_shopping_10_cats.csv", show_default=True)
@click.option("--prompts", "n_prompts", type=int, default=100, show_default=True)
@click.option("--strengths", default="0,1,2,4", show_default=True, help="λ values, comma-separated.")
@click.option("--max-new-tokens", type=int, default=32, show_default=True)
@click.option("--top-k", type=int, default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default=None, help="Also write the rows as JSON lines here.")
@click.option(
    "--exclude-corpus",
    default=None,
    help="Never draw a prompt whose review is in this corpus (the LM's training corpus, e.g. reviews-zh).",
)
def evaluate_cmd(
    run, guide, judge, data, n_prompts, strengths, max_new_tokens, top_k, seed, out, exclude_corpus
):
    """Measure sentiment control: target rate by GUIDE and by JUDGE, perplexity under RUN's plain LM."""
    from zhixing.apps.write import StyleGuide, Writer
    from zhixing.apps.write.reviews import evaluate_control, review_prompts
    from zhixing.io import atomic_write_text

    lams = tuple(float(x) for x in strengths.split(","))
    writer = Writer(run)
    g, j = StyleGuide(guide, "positive", top_k=top_k), StyleGuide(judge, "positive", top_k=top_k)
    rows = evaluate_control(
        writer,
        g,
        j,
        review_prompts(_data_path(data), n_prompts),
        lams,
        max_new_tokens=max_new_tokens,
        top_k=top_k,
        seed=seed,
    )
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    click.echo("\n".join(lines))
    if out:
        atomic_write_text(out, "\n".join(lines) + "\n")


@write_group.command("evaluate-materials")
@click.argument("held_out")
@click.option("--distractors", default=None, help="A .jsonl of other poems indexed whole.")
@click.option("--n-distractors", type=int, default=5000, show_default=True)
@click.option("--kind", type=click.Choice(["tfidf", "encoder"]), default="tfidf", show_default=True)
@click.option("--encoder", default=None)
def evaluate_materials_cmd(held_out, distractors, n_distractors, kind, encoder):
    """Recall@1/5/10 of retrieving a HELD_OUT poem from its last line (indexed without it)."""
    from zhixing.apps.write.materials import evaluate_poem_retrieval

    click.echo(
        json.dumps(
            evaluate_poem_retrieval(held_out, distractors, n_distractors, kind, encoder), ensure_ascii=False
        )
    )
