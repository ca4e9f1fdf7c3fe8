"""`zhixing viz MODEL "text" --out attn.png`: a model's attention as a picture (head or model view)."""

from __future__ import annotations

import click


@click.command("viz")
@click.argument("model")
@click.argument("text")
@click.option("--out", default="attention.png", show_default=True, help="PNG file to write.")
@click.option(
    "--layer",
    type=int,
    default=None,
    help="Head view of this layer (default: the model view, every layer x head).",
)
@click.option(
    "--head", type=int, default=None, help="With --layer: one head (default: all heads, one color each)."
)
@click.option(
    "--kind",
    type=click.Choice(["encoder", "decoder", "cross"]),
    default=None,
    help="Which attention of an encoder–decoder model (default: the first the model has).",
)
@click.option("--target", default=None, help="Decoder text of an encoder–decoder model.")
def viz_cmd(model, text, out, layer, head, kind, target):
    """Draw MODEL's attention over TEXT like bertviz: the head view of --layer (lines between tokens,
    weighted by attention) or the model view (a layers x heads grid of heatmaps)."""
    from zhixing.hub import load
    from zhixing.viz.attention import attention_maps, plot_attention

    m = load(model)
    if getattr(m, "tokenizer", None) is None:
        raise ValueError(f"{model}: no tokenizer found next to the model")
    if head is not None and layer is None:
        raise ValueError("--head needs --layer")
    maps = attention_maps(m, m.tokenizer, text, target)
    path = plot_attention(maps, out, layer=layer, head=head, kind=kind)
    click.echo(f"wrote {path} ({len(maps['tokens'])} tokens)")
