"""`zhixing prepare`: tokenize a corpus once into memory-mapped token shards.

Imports only click at module level; numpy, tokenizers and rich load when the command runs.
"""

from __future__ import annotations

import click


@click.command("prepare")
@click.option(
    "--corpus",
    "-c",
    required=True,
    metavar="NAME|PATH",
    help="A built-in corpus (peoples-daily, reviews-zh, python-docs, tinyshakespeare, wikitext-2) or "
    "a .txt/.jsonl/.csv/.tsv file, directory or glob.",
)
@click.option(
    "--tokenizer", "-t", required=True, type=click.Path(file_okay=False), help="Tokenizer directory."
)
@click.option(
    "--out", "-o", required=True, type=click.Path(file_okay=False), help="Shard directory to write."
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.01,
    show_default=True,
    help="Share of documents held out for validation.",
)
@click.option(
    "--split",
    type=click.Choice(["auto", "hash", "tail"]),
    default="auto",
    show_default=True,
    help="hash: by document; tail: the last tokens (nanoGPT); auto: hash unless val would be empty.",
)
@click.option(
    "--workers",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Encoding processes (default: CPU count, at most 8).",
)
@click.option("--field", default=None, help="JSONL: the field holding the text (default: text).")
@click.option("--column", default=None,
              help="CSV/TSV/Parquet/Arrow: the column holding the text (default: text).")
@click.option(
    "--blank-lines", is_flag=True, help=".txt: documents are blank-line separated (default: lines)."
)
@click.option("--no-separator", is_flag=True, help="Do not append eos/sep after each document.")
@click.option("--force", is_flag=True, help="Rebuild even if matching shards exist.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def prepare_cmd(corpus, tokenizer, out, val_fraction, split, workers, field, column, blank_lines,
                no_separator, force, quiet) -> None:  # fmt: skip
    """Tokenize a corpus into train/val token shards (np.memmap) plus meta.json.

    Re-running with the same corpus, tokenizer and options reuses the shards.

    Example: zhixing prepare --corpus peoples-daily --tokenizer tok/ --out shards/pd
    """
    import time

    from rich.console import Console

    from zhixing.data.shards import describe, prepare_shards

    t0 = time.perf_counter()
    path = prepare_shards(corpus, tokenizer, out, val_fraction=val_fraction, split=split, workers=workers,
                          field=field, column=column, blank_lines=blank_lines, separator=not no_separator,
                          progress=not quiet, force=force)  # fmt: skip
    Console(stderr=True).print(f"{describe(path)} [dim]({time.perf_counter() - t0:.1f} s)[/dim]")
