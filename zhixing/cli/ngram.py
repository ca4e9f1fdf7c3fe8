"""`zhixing ngram train|eval|sample`: Kneser–Ney n-gram language models (zhixing.ngram).

Imports only click at module level; numpy and rich load when a command runs.
"""

from __future__ import annotations

import contextlib

import click


@click.group("ngram")
def ngram_group() -> None:
    """Statistical n-gram language models: interpolated modified Kneser–Ney."""


@contextlib.contextmanager
def _progress(quiet: bool, what: str):
    """A spinner with a status line on stderr; yields the callback the library calls."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=quiet, transient=True) as bar:  # fmt: skip
        task = bar.add_task(what, total=None)
        yield lambda msg: bar.update(task, description=f"{what}: {msg}")


def _corpus_options(f):
    f = click.option("--field", default=None, help="JSONL: the field holding the text (default: text).")(f)
    f = click.option("--column", default=None,
                     help="CSV/TSV: the column holding the text (default: text).")(f)
    f = click.option("--blank-lines", is_flag=True,
                     help=".txt: documents are blank-line separated (default: one per line).")(f)
    return click.option("--shards", "shards", is_flag=True,
                        help="SOURCE is a token shard directory (train: its train split; eval: val).")(f)


@ngram_group.command("train")
@click.argument("source", metavar="SOURCE")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Model file: .npz (fast, exact) or .arpa (KenLM/SRILM format).")
@click.option("--order", "-n", type=int, default=3, show_default=True, help="N, from 1 to 10.")
@click.option("--unit", type=click.Choice(["char", "word", "tokenizer"]), default="char", show_default=True,
              help="What a token is: a character, a whitespace-separated word, or a tokenizer's id.")
@click.option("--tokenizer", "-t", type=click.Path(file_okay=False), default=None,
              help="Tokenizer directory (with --unit tokenizer, or --shards whose meta.json records none).")
@_corpus_options
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def train_cmd(source, out, order, unit, tokenizer, field, column, blank_lines, shards, quiet) -> None:
    """Train an interpolated modified Kneser–Ney model on SOURCE and save it to --out.

    SOURCE is a built-in corpus (peoples-daily, reviews-zh, python-docs, tinyshakespeare, wikitext-2),
    a .txt/.jsonl/.csv/.tsv file, directory or glob (every document is one sentence), or with --shards
    a shard directory from `zhixing prepare`.

    Example: zhixing ngram train peoples-daily --order 5 --unit char --out pd5.npz
    """
    from rich.console import Console

    from zhixing.ngram import NgramModel
    from zhixing.ngram.kneser_ney import check_order

    check_order(order)  # before reading anything
    with _progress(quiet, f"training a {order}-gram model") as say:
        if shards:
            model = NgramModel.train_shards(source, order, tokenizer=tokenizer, progress=say)
        else:
            model = NgramModel.train(source, order, unit, tokenizer, field=field, column=column,
                                     blank_lines=blank_lines, progress=say)  # fmt: skip
        say(f"writing {out}")
        model.save(out)
    m = model.meta
    counts = ", ".join(f"{n}-grams {c:,}" for n, c in enumerate(m["ngrams"], start=1))
    disc = "; ".join(f"{n}: " + "/".join(f"{d:.3f}" for d in ds) for n, ds in enumerate(m["discounts"], 1))
    console = Console(stderr=True)
    console.print(f"[green]saved[/] {out}: {model.units.kind}-level {order}-gram, vocabulary {model.V:,}, "
                  f"{m['sentences']:,} sentences, {m['tokens']:,} tokens, {m['train_seconds']:.1f} s",
                  highlight=False)  # fmt: skip
    console.print(f"  {counts}\n  discounts D1/D2/D3+ by order {disc}", highlight=False, markup=False)


@ngram_group.command("eval")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("source", metavar="SOURCE", required=False)
@click.option("--text", default=None, help="Score this text (one sentence) instead of SOURCE.")
@_corpus_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def eval_cmd(model_path, source, text, field, column, blank_lines, shards, as_json, quiet) -> None:
    """Perplexity of held-out SOURCE (or --text) under MODEL (.npz or any .arpa file).

    Every document is a sentence: its tokens and its end </s> are predicted. Also printed: the
    figures without the </s> predictions (per character for a char model) and the OOV count.
    """
    import json

    from zhixing.ngram import NgramModel, perplexity_of_shards

    if (source is None) == (text is None):
        raise click.UsageError("give SOURCE or --text (one of them)")
    with _progress(quiet, f"scoring with {model_path}") as say:
        say("loading the model")
        model = NgramModel.load(model_path)
        say("scoring")
        if shards:
            res = perplexity_of_shards(model, source, "val")
        else:
            res = model.perplexity([text] if text is not None else source, field=field, column=column,
                                   blank_lines=blank_lines)  # fmt: skip
    res = {"model": str(model_path), "order": model.order, "unit": model.units.kind, **res}
    if as_json:
        click.echo(json.dumps(res, ensure_ascii=False))
        return
    click.echo(f"{model_path}: {model.units.kind}-level {model.order}-gram")
    click.echo(f"  {res['sentences']:,} sentences, {res['tokens']:,} predictions "
               f"({res['oov']:,} OOV as <unk>)")
    click.echo(f"  perplexity {res['perplexity']:.3f}  ({res['nats_per_token']:.4f} nats/token, "
               f"log10 prob {res['log10_prob']:.2f})")
    click.echo(f"  without </s>: perplexity {res['perplexity_no_eos']:.3f}  "
               f"({res['nats_per_token_no_eos']:.4f} nats/token over {res['tokens_no_eos']:,} tokens)")


@ngram_group.command("sample")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives the same text.")
@click.option("--num", "-n", type=click.IntRange(min=1), default=1, show_default=True, help="Samples.")
@click.option("--prefix", default="", help="Text the samples continue.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=200, show_default=True,
              help="Stop after this many tokens if </s> has not come.")
def sample_cmd(model_path, seed, num, prefix, max_tokens) -> None:
    """Sample sentences from MODEL (each ends at </s> or --max-tokens)."""
    import numpy as np

    from zhixing.ngram import NgramModel

    model = NgramModel.load(model_path)
    rng = np.random.default_rng(seed)
    for _ in range(num):
        click.echo(model.sample(prefix=prefix, max_tokens=max_tokens, rng=rng))
