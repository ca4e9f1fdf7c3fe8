"""`zhixing tokenizer train|encode`: train a tokenizer on text files, inspect how it splits text.

Imports only click at module level; the engine and rich load when a command runs.
"""

from __future__ import annotations

import click

KINDS = ("wordpiece", "bpe", "byte_bpe", "char", "words")


@click.group("tokenizer")
def tokenizer_group() -> None:
    """Train and inspect tokenizers (WordPiece, byte-level BPE, BPE, char)."""


@tokenizer_group.command("train")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=str))
@click.option("--input", "-i", "inputs", multiple=True, metavar="FILE",
              help="UTF-8 text file to train on (repeatable; positional FILES work too).")
@click.option("--corpus", "corpora", multiple=True, metavar="NAME",
              help="A built-in corpus (peoples-daily, reviews-zh, python-docs, tinyshakespeare, wikitext-2); "
                   "repeatable, combines with --input.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Directory to save into.")
@click.option("--kind", type=click.Choice(KINDS), default="wordpiece", show_default=True)
@click.option("--vocab-size", type=click.IntRange(min=1), default=30000, show_default=True)
@click.option("--min-frequency", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--lowercase/--no-lowercase", default=None,
              help="Lowercase the text (default: yes for wordpiece, no otherwise).")
@click.option("--strip-accents/--keep-accents", default=None,
              help="WordPiece only; default follows --lowercase.")
@click.option("--limit-alphabet", type=click.IntRange(min=1), default=None,
              help="Keep only the N most frequent characters in the initial alphabet.")
@click.option("--special-tokens", default=None, metavar="ROLE=TOKEN,...",
              help="e.g. 'pad=[PAD],unk=[UNK],cls=[CLS],sep=[SEP],mask=[MASK]' "
                   "(default: the kind's usual set).")
@click.option("--chinese-words", type=click.Choice(["jieba"]), default=None,
              help="word_ids follow jieba's word segmentation (Chinese whole-word masking).")
@click.option("--errors", type=click.Choice(["strict", "replace", "ignore"]), default="strict",
              show_default=True,
              help="Bytes that are not UTF-8: stop with file/byte offset (strict), or replace/skip them.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train_cmd(files, inputs, corpora, out, kind, vocab_size, min_frequency, lowercase, strip_accents,
              limit_alphabet, special_tokens, chinese_words, errors, quiet) -> None:  # fmt: skip
    """Learn a vocabulary from text FILES and save it to --out.

    Example: zhixing tokenizer train --kind wordpiece --vocab-size 21128 --input corpus.txt --out tok/
    """
    import time

    from rich.console import Console

    from zhixing.tokenizers.tokenizer import Tokenizer

    paths = list(inputs) + list(files)
    if not paths and not corpora:
        raise click.UsageError("no input files; fix: pass --input FILE (repeatable), FILE arguments "
                               "or --corpus NAME")
    source = paths
    if corpora:  # built-in corpora stream their documents; files are read by the engine directly
        import itertools

        from zhixing.data import read_documents

        streams = [read_documents(name) for name in corpora]
        first = [next(s, None) for s in streams]  # fail now on a bad name, not inside training
        docs = itertools.chain.from_iterable(
            itertools.chain([f] if f is not None else [], s) for f, s in zip(first, streams))
        file_docs = (line for path in paths for line in open(path, encoding="utf-8", errors=errors))
        source = itertools.chain(docs, file_docs)
    specials = _parse_specials(special_tokens)
    t0 = time.perf_counter()
    tok = Tokenizer.train(
        source, kind=kind, vocab_size=vocab_size, min_frequency=min_frequency, lowercase=lowercase,
        special_tokens=specials, strip_accents=strip_accents, limit_alphabet=limit_alphabet,
        chinese_words=chinese_words, errors=errors, show_progress=not quiet,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    tok.save(out)
    roles = ", ".join(f"{r}={t}" for r, t in tok.special_tokens.items())
    Console(stderr=True).print(
        f"[green]saved[/] {tok.kind} tokenizer, vocab_size={tok.vocab_size:,} ({roles}) to {out} "
        f"in {seconds:.1f} s"
    )


def _parse_specials(spec: str | None) -> dict[str, str] | None:
    if spec is None:
        return None
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        role, sep, token = item.partition("=")
        if not sep or not token:
            raise click.BadParameter(
                f"{item!r}: expected ROLE=TOKEN, e.g. pad=[PAD]", param_hint="--special-tokens"
            )
        out[role.strip()] = token.strip()
    return out


@tokenizer_group.command("encode")
@click.argument("directory", type=click.Path(path_type=str))
@click.argument("text")
@click.option("--pair", default=None, help="Second text of a pair (e.g. the context after a question).")
@click.option("--max-length", type=click.IntRange(min=1), default=None, help="Truncate to this many tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def encode_cmd(directory: str, text: str, pair: str | None, max_length: int | None, as_json: bool) -> None:
    """Show how the tokenizer in DIRECTORY splits TEXT: tokens, ids and character offsets."""
    import json

    from rich.console import Console
    from rich.table import Table

    from zhixing.tokenizers.tokenizer import Tokenizer

    tok = Tokenizer.load(directory)
    enc = tok.encode(text, pair, max_length=max_length)
    if as_json:
        fields = ("tokens", "ids", "type_ids", "offsets", "word_ids", "special_tokens_mask")
        click.echo(json.dumps({f: getattr(enc, f) for f in fields}, ensure_ascii=False))
        return
    texts = (text, pair)
    table = Table(title=f"{tok.kind} · vocab {tok.vocab_size:,} · {len(enc)} tokens", title_justify="left")
    for col, just in (("#", "right"), ("token", "left"), ("id", "right"), ("type", "right"),
                      ("offsets", "left"), ("text", "left"), ("word", "right")):  # fmt: skip
        table.add_column(col, justify=just)
    for i, (token, id_, type_id, (a, b), seq, word) in enumerate(
        zip(enc.tokens, enc.ids, enc.type_ids, enc.offsets, enc.sequence_ids, enc.word_ids)
    ):
        span = "" if seq is None else texts[seq][a:b]
        style = "dim" if seq is None else None
        table.add_row(str(i), repr(token)[1:-1], str(id_), str(type_id), f"{a}-{b}", repr(span)[1:-1],
                      "" if word is None else str(word), style=style)  # fmt: skip
    console = Console()
    console.print(table)
    console.print(f"decoded: {tok.decode(enc.ids)!r}", markup=False, highlight=False)
