"""Encoder–decoder generation against a no-cache reference decode.

Our Transformer (post-LN, interleaved sinusoids, tied embeddings, no logits bias) has no exact
transformers twin, so the reference recomputes the whole model — encoder included — for every step,
written plainly. Greedy is compared with a loop written out here; beam search runs the same search
code over a runner that recomputes everything, so the comparison isolates the cache, the single
encoder pass, the cached cross-attention and the beam reordering of the cache.
"""

from __future__ import annotations

import pytest
import torch

from zhixing.generation import generate
from zhixing.generation.api import left_pad
from zhixing.generation.config import GenerationConfig
from zhixing.generation.processors import LogitsProcessor
from zhixing.generation.search import beam_search
from zhixing.models import build_model

PAD, START = 0, 1


@pytest.fixture(scope="module")
def model():
    # At random init, a post-LN model with tied sqrt(d)-scaled embeddings just copies its input token,
    # and its cross-attention barely moves the output: untie the head and strengthen cross-attention so
    # that outputs vary with the source and the step.
    torch.manual_seed(0)
    m = build_model("transformer-tiny", vocab_size=60, dim=32, num_heads=4, ffn_dim=64, dropout=0.0,
                    max_seq_len=48, pad_token_id=PAD, bos_token_id=START, decoder_start_token_id=START,
                    tie_embeddings=False)
    with torch.no_grad():
        for layer in m.decoder:
            layer.cross_attn.o.weight.mul_(8)
    return m.eval()


def sources(lengths=(5, 9, 3)) -> list[list[int]]:
    g = torch.Generator().manual_seed(9)
    return [torch.randint(3, 60, (n,), generator=g).tolist() for n in lengths]


@torch.inference_mode()
def reference_greedy(model, src: list[int], max_new: int, eos: int) -> list[int]:
    """Greedy decoding of one source, recomputing encoder and decoder over the whole prefix each step."""
    x = torch.tensor([src])
    y = [START]
    for _ in range(max_new):
        logits = model(x, decoder_input_ids=torch.tensor([y])).logits[0, -1]
        y.append(int(logits.argmax()))
        if y[-1] == eos:
            break
    return y[1:]


class RecomputingRunner:
    """A runner without any cache: every step runs the full model on source + all decoder tokens."""

    def __init__(self, model, src: torch.Tensor, src_mask: torch.Tensor | None, expand: int):
        self.model = model
        self.src = src.repeat_interleave(expand, 0)
        self.mask = src_mask.repeat_interleave(expand, 0) if src_mask is not None else None
        self.ys = torch.full((self.src.size(0), 1), START)

    def logits(self) -> torch.Tensor:
        return self.model(self.src, attention_mask=self.mask, decoder_input_ids=self.ys).logits[:, -1].float()

    def prefill(self) -> torch.Tensor:
        return self.logits()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ys = torch.cat([self.ys, tokens[:, None]], dim=1)
        return self.logits()

    def reorder(self, index: torch.Tensor) -> None:
        self.ys = self.ys.index_select(0, index)


def pick_eos(model, srcs) -> int:
    """A token greedy decoding emits early for source 0, so rows end at different steps."""
    return reference_greedy(model, srcs[0], 3, eos=-1)[2]


def test_greedy_equals_no_cache_reference(model):
    srcs = sources()
    eos = pick_eos(model, srcs)
    out = generate(model, srcs, max_new_tokens=12, eos_token_ids=[eos], pad_token_id=PAD)
    assert torch.equal(out.sequences[:, 0], torch.full((3,), START))
    lengths = []
    for i, src in enumerate(srcs):
        ref = reference_greedy(model, src, 12, eos)
        lengths.append(len(ref))
        assert out.tokens[i, : len(ref)].tolist() == ref
        assert (out.tokens[i, len(ref):] == PAD).all()
    assert min(lengths) < 12 == max(lengths)  # one source ended on eos, another ran to max_new_tokens


@pytest.mark.parametrize("settings", [
    dict(num_beams=3),
    dict(num_beams=4, length_penalty=0.6, num_return_sequences=2, early_stopping=True),
    dict(num_beams=2, repetition_penalty=1.4, no_repeat_ngram_size=2),
], ids=["b3", "b4-lp-early-n2", "b2-penalties"])
@torch.inference_mode()
def test_beam_search_equals_no_cache_reference(model, settings):
    srcs = sources()
    eos = pick_eos(model, srcs)
    out = generate(model, srcs, max_new_tokens=10, eos_token_ids=[eos], pad_token_id=PAD, **settings)

    cfg = GenerationConfig(max_new_tokens=10, eos_token_ids=[eos], pad_token_id=PAD, **settings)
    src, mask = left_pad(srcs, PAD, "cpu", right=True)  # sources are padded on the right
    runner = RecomputingRunner(model, src, mask, cfg.num_beams)
    # transformers fills beam buffers with `pad or eos`: pad id 0 is falsy, so eos
    tokens = torch.full((len(srcs) * cfg.num_beams, 11), eos)
    tokens[:, 0] = START
    eos_t = torch.tensor([eos])
    ref, ref_scores = beam_search(runner, tokens, len(srcs), 1, cfg, LogitsProcessor(cfg, 2), eos_t)
    assert torch.equal(out.sequences, ref)
    torch.testing.assert_close(out.scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_sampling_is_reproducible(model):
    kw = dict(max_new_tokens=10, do_sample=True, top_k=20, temperature=1.2, seed=4, eos_token_ids=[],
              pad_token_id=PAD)
    a = generate(model, sources(), **kw)
    b = generate(model, sources(), **kw)
    assert torch.equal(a.sequences, b.sequences)


def test_too_long_source_is_an_error_or_truncated(model):
    long = list(range(3, 53))  # 50 tokens > max_seq_len 48
    with pytest.raises(ValueError, match="truncate_prompt"):
        generate(model, [long], max_new_tokens=4, eos_token_ids=[])
    out = generate(model, [long], max_new_tokens=4, eos_token_ids=[], truncate_prompt=True)
    kept = generate(model, [long[-48:]], max_new_tokens=4, eos_token_ids=[])
    assert torch.equal(out.sequences, kept.sequences)


def test_a_batch_translates_each_source_as_alone(model):
    """Sources of different lengths are padded on the right, as in training: with absolute positions, left
    padding would shift every real source token (made to matter here by scaling the sinusoids up)."""
    with torch.no_grad():
        model.sinusoid.mul_(6.0)
    try:
        srcs = sources((4, 11, 7))
        batch = generate(model, srcs, max_new_tokens=8, eos_token_ids=[], pad_token_id=PAD)
        for i, src in enumerate(srcs):
            alone = generate(model, [src], max_new_tokens=8, eos_token_ids=[], pad_token_id=PAD)
            assert batch.tokens[i].tolist() == alone.tokens[0].tolist() == reference_greedy(model, src, 8, -1)
        src, mask = left_pad(srcs, PAD, "cpu")  # the old way: the 4-token source moves to positions 7-10
        wrong = RecomputingRunner(model, src, mask, 1).prefill()
        right = RecomputingRunner(model, *left_pad(srcs, PAD, "cpu", right=True), 1).prefill()
        assert right.argmax(-1).tolist() == batch.tokens[:, 0].tolist()
        assert (wrong[0] - right[0]).abs().max() > 1e-2  # left padding changes what the short source says
    finally:
        with torch.no_grad():
            model.sinusoid.div_(6.0)
