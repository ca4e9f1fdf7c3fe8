"""`zhixing translate RUN "text"`: translate with the encoder–decoder of a seq2seq recipe.

Train one with `zhixing pretrain --config configs/transformer-multi30k-de-en.yaml`.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("translate")
@click.argument("model_path", metavar="RUN")
@click.argument("texts", nargs=-1)
@click.option("--file", "in_file", type=click.Path(exists=True, dir_okay=False),
              help="Translate every line of this file instead of TEXTS.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the translations here.")
@click.option("--num-beams", default=5, show_default=True, help="Beam width (1 = greedy).")
@click.option("--length-penalty", default=1.0, show_default=True, help="Beam score / length**lp.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--reference", type=click.Path(exists=True, dir_okay=False),
              help="A file of reference translations (one per line): print BLEU too.")
def translate_cmd(model_path: str, texts: tuple[str, ...], in_file: str | None, out_file: str | None,
                  num_beams: int, length_penalty: float, batch_size: int, reference: str | None) -> None:
    """Translate TEXTS (or --file, one sentence per line) with RUN: a run directory (its averaged/ model
    when there is one, else best/) or a model directory."""
    from zhixing.hub import load, load_tokenizer
    from zhixing.recipes.translation import bleu_scores, translate

    if bool(texts) == bool(in_file):
        raise click.UsageError("give the sentences as TEXTS or --file, not both and not neither")
    path = Path(model_path)
    if (path / "averaged").is_dir():
        path = path / "averaged"
    model = load(path).eval()
    if model.config.arch != "transformer":
        raise click.ClickException(f"{model_path}: a {model.config.arch} model; translation needs an "
                                   "encoder–decoder (train one with a seq2seq recipe)")
    tok = load_tokenizer(path)
    lines = list(texts) if texts else Path(in_file).read_text(encoding="utf-8").splitlines()
    out = translate(model, tok, lines, num_beams=num_beams, length_penalty=length_penalty,
                    batch_size=batch_size, progress=bool(in_file))
    if out_file:
        Path(out_file).write_text("\n".join(out) + "\n", encoding="utf-8")
    else:
        for line in out:
            click.echo(line)
    if reference:
        refs = Path(reference).read_text(encoding="utf-8").splitlines()
        if len(refs) != len(out):
            raise click.ClickException(f"{reference} has {len(refs)} lines for {len(out)} translations")
        scores = bleu_scores(out, refs)
        click.echo(f"BLEU {scores['bleu']:.2f} ({scores['signature']}); lowercased "
                   f"{scores['bleu_lowercase']:.2f}", err=True)
