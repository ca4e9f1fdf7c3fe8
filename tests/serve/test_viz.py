"""Attention maps: encoder–decoder models give encoder, decoder and cross-attention (rows sum to 1)."""

from __future__ import annotations

import torch

from zhixing.models import build_model
from zhixing.viz.attention import attention_maps, plot_attention


def test_encoder_decoder_kinds(tiny_gpt, tmp_path):
    import zhixing

    tok = zhixing.load_tokenizer(tiny_gpt)
    torch.manual_seed(0)
    m = build_model(
        "transformer-tiny",
        vocab_size=tok.vocab_size,
        dim=32,
        num_heads=4,
        ffn_dim=64,
        dropout=0.0,
        decoder_start_token_id=tok.bos_id,
    )
    maps = attention_maps(m, tok, "Knowing and doing", target="are one")
    kinds = [x["kind"] for x in maps["layers"]]
    assert kinds.count("encoder") == kinds.count("decoder") == kinds.count("cross") == 2
    cross = next(x for x in maps["layers"] if x["kind"] == "cross")
    src, tgt = len(maps["tokens"]), len(cross["q_tokens"])
    w = torch.tensor(cross["weights"])  # (heads, target, source)
    assert w.shape == (4, tgt, src) and torch.allclose(w.sum(-1), torch.ones(4, tgt), atol=1e-5)
    dec = torch.tensor(next(x for x in maps["layers"] if x["kind"] == "decoder")["weights"])
    assert torch.all(dec.triu(1) == 0)  # causal
    for kind in ("cross", None):
        path = plot_attention(maps, tmp_path / f"{kind}.png", layer=0 if kind else None, kind=kind)
        assert path.stat().st_size > 1000


def test_encoder_decoder_embeddings(tiny_gpt, tmp_path):
    import zhixing
    from zhixing.serve.models import load_model

    tok = zhixing.load_tokenizer(tiny_gpt)
    m = build_model(
        "transformer-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=4, ffn_dim=64, dropout=0.0
    )
    m.save_pretrained(tmp_path / "s2s")
    tok.save(tmp_path / "s2s")
    served = load_model("s2s", tmp_path / "s2s")
    assert not served.generates and len(served.embed([[5, 6, 7]])[0]) == 32
