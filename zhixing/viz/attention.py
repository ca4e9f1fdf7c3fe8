"""Attention maps: every layer's and head's weights for one text, as data and as a picture.

`attention_maps` runs the model once with output_attentions=True (the explicit softmax(QK^T/sqrt(d))
path, nn.attention.attention_reference) and returns plain lists, so the web UI (serve/) and the PNG
writer draw the same numbers. Encoder–decoder models give three kinds: encoder self-attention, decoder
self-attention and decoder -> encoder cross-attention; decoder-only and encoder-only models give one.

`plot_attention` draws it like bertviz: the head view (tokens in two columns, a line from each query
token to each key token, its opacity the weight) for one layer/head, or the model view (a layers x heads
grid of small heatmaps).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


@torch.no_grad()
def attention_maps(
    model, tokenizer, text: str, target: str | None = None, max_tokens: int = 128
) -> dict[str, Any]:
    """{"tokens", "layers": [{"kind", "layer", "q_tokens", "k_tokens", "weights": [head][q][k]}, ...]}.

    target: the decoder text of an encoder–decoder model (default: empty, the start token only).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    enc = tokenizer.encode(text)
    ids, tokens = list(enc.ids)[:max_tokens], list(enc.tokens)[:max_tokens]
    if (
        getattr(tokenizer, "kind", None) == "byte_bpe"
    ):  # show "Ġw" as " w" where the bytes are whole characters
        shown = [tokenizer.decode([i], skip_special_tokens=False) for i in ids]
        tokens = [s if s and "\ufffd" not in s else t for s, t in zip(shown, tokens)]
    was_training = model.training
    model.eval()
    try:
        x = torch.tensor([ids], device=next(model.parameters()).device)
        maps: list[dict[str, Any]] = []

        def add(kind: str, weights: list[torch.Tensor], q_tokens: list[str], k_tokens: list[str]) -> None:
            for i, w in enumerate(weights):
                maps.append(
                    {
                        "kind": kind,
                        "layer": i,
                        "q_tokens": q_tokens,
                        "k_tokens": k_tokens,
                        "weights": w[0].float().clamp(min=0).tolist(),
                    }
                )

        if model.config.arch == "transformer":
            start = model.config.decoder_start_token_id or 0
            tgt = [start] + (list(tokenizer.encode(target, add_special_tokens=False).ids) if target else [])
            tgt_tokens = [tokenizer.id_to_token(t) or str(t) for t in tgt]
            y = torch.tensor([tgt[:max_tokens]], device=x.device)
            out = model(input_ids=x, decoder_input_ids=y, output_attentions=True)
            n_dec = len(out.cross_attentions)
            add("encoder", out.attentions[: len(out.attentions) - n_dec], tokens, tokens)
            add("decoder", out.attentions[len(out.attentions) - n_dec :], tgt_tokens, tgt_tokens)
            add("cross", out.cross_attentions, tgt_tokens, tokens)
        else:
            out = model(x, output_attentions=True)
            kind = "decoder" if model.config.arch == "gpt" else "encoder"
            add(kind, out.attentions, tokens, tokens)
    finally:
        model.train(was_training)
    heads = len(maps[0]["weights"]) if maps else 0
    return {"tokens": tokens, "num_heads": heads, "layers": maps}


def plot_attention(
    maps: dict[str, Any],
    out: str | os.PathLike,
    layer: int | None = None,
    head: int | None = None,
    kind: str | None = None,
) -> Path:
    """Write a PNG: the head view of (kind, layer, head) when a layer is given, else the model view
    (every layer x head of `kind`). kind defaults to the first kind present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zhixing.io import atomic_write

    kinds = [m["kind"] for m in maps["layers"]]
    kind = kind or kinds[0]
    layers = [m for m in maps["layers"] if m["kind"] == kind]
    if not layers:
        raise ValueError(f"no {kind!r} attention; this model has {sorted(set(kinds))}")
    if layer is not None:
        if not 0 <= layer < len(layers):
            raise ValueError(f"layer={layer} is out of range: the model has {len(layers)} {kind} layers")
        m = layers[layer]
        heads = range(len(m["weights"])) if head is None else [head]
        if head is not None and not 0 <= head < len(m["weights"]):
            raise ValueError(f"head={head} is out of range: layers have {len(m['weights'])} heads")
        q, k = m["q_tokens"], m["k_tokens"]
        fig, ax = plt.subplots(figsize=(5, max(3, 0.3 * max(len(q), len(k)))))
        colors = plt.get_cmap("tab10")
        for h in heads:
            w = m["weights"][h]
            for i in range(len(q)):
                for j in range(len(k)):
                    if w[i][j] > 0.01:
                        ax.plot(
                            [0.1, 0.9], [-i, -j], color=colors(h % 10), alpha=min(1.0, w[i][j]), linewidth=1.5
                        )
        for i, t in enumerate(q):
            ax.text(0.08, -i, t, ha="right", va="center", fontsize=9)
        for j, t in enumerate(k):
            ax.text(0.92, -j, t, ha="left", va="center", fontsize=9)
        ax.set_xlim(-0.4, 1.4)
        ax.axis("off")
        ax.set_title(f"{kind} layer {layer}" + (f" head {head}" if head is not None else " (all heads)"))
    else:
        n_layers, n_heads = len(layers), len(layers[0]["weights"])
        fig, axes = plt.subplots(n_layers, n_heads, figsize=(1.6 * n_heads, 1.6 * n_layers), squeeze=False)
        for li, m in enumerate(layers):
            for h in range(n_heads):
                ax = axes[li][h]
                ax.imshow(m["weights"][h], cmap="viridis", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if h == 0:
                    ax.set_ylabel(f"L{li}")
                if li == 0:
                    ax.set_title(f"H{h}", fontsize=9)
        fig.suptitle(f"{kind} attention: layers x heads")
    try:
        return atomic_write(
            Path(out), lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        )
    finally:
        plt.close(fig)
