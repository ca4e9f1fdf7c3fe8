"""The translation peer (benchmarks/translation_baseline.py) scores its val BLEU by greedy decoding that runs
only the newest position through nn.Transformer's decoder layers (it has no key/value cache): the logits
must equal a full decoder pass, or its BLEU curve would not be the plain loop's."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from translation_baseline import Baseline, greedy  # noqa: E402


def test_incremental_decoding_equals_a_full_pass():
    torch.manual_seed(0)
    model = Baseline(50, 32, 2, 4, 64, 0.1, 0, 64).eval()
    src = torch.randint(1, 50, (3, 7))
    src[0, 5:] = 0
    pad = src == 0
    memory = model.encode(src, pad)
    tgt = torch.randint(1, 50, (3, 6))
    inputs = [None] * 2
    for t in range(1, 7):
        full = model.decode(tgt[:, :t], memory, pad)[:, -1]
        torch.testing.assert_close(model.decode_last(tgt[:, :t], memory, pad, inputs), full,
                                   atol=1e-5, rtol=1e-5)


def test_greedy_picks_the_full_pass_argmax_and_stops_at_eos():
    torch.manual_seed(1)
    model = Baseline(30, 32, 2, 4, 64, 0.0, 0, 64).eval()
    src = torch.randint(1, 30, (2, 5))
    pad = src == 0
    out = greedy(model, src, pad, bos=1, eos=2, max_new=8)
    memory = model.encode(src, pad)
    prefix = torch.full((2, 1), 1)
    for step in range(out.size(1)):
        expected = model.decode(prefix, memory, pad)[:, -1].argmax(-1)
        finished = (prefix[:, 1:] == 2).any(dim=1)
        expected = expected.masked_fill(finished, 2)
        assert torch.equal(out[:, step], expected)
        prefix = torch.cat([prefix, out[:, step: step + 1]], dim=1)
    assert out.size(1) <= 8
