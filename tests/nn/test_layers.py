import math

import torch
import torch.nn.functional as F

from zhixing.config import ModelConfig
from zhixing.nn import Block, FeedForward, RMSNorm, RotaryEmbedding, apply_rotary, sinusoidal_table


def test_sinusoidal_table_matches_the_paper_formula():
    table = sinusoidal_table(50, 16)
    for pos in (0, 1, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert math.isclose(table[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(table[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)


def test_rotary_preserves_norm_and_depends_on_relative_position():
    rope = RotaryEmbedding(head_dim=8, max_seq_len=64)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def rotated(x, pos):
        cos, sin = rope(torch.tensor([[pos]]), torch.float32)
        return apply_rotary(x, cos, sin)

    torch.testing.assert_close(rotated(q, 5).norm(), q.norm())
    # <R_m q, R_n k> depends only on m - n
    a = (rotated(q, 10) * rotated(k, 7)).sum()
    b = (rotated(q, 33) * rotated(k, 30)).sum()
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rmsnorm_formula():
    norm = RMSNorm(6, eps=1e-6)
    norm.weight.data = torch.arange(1.0, 7.0)
    x = torch.randn(3, 6)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)


def test_swiglu_is_gated():
    ffn = FeedForward(8, 16, "swiglu", bias=False)
    x = torch.randn(2, 8)
    gate, up = ffn.up.weight.chunk(2, dim=0)
    expected = (F.silu(x @ gate.T) * (x @ up.T)) @ ffn.down.weight.T
    torch.testing.assert_close(ffn(x), expected)


def test_pre_and_post_norm_blocks_differ_only_in_norm_placement():
    torch.manual_seed(0)
    cfg = ModelConfig(dim=16, num_heads=2, pre_norm=False)
    post = Block(cfg).eval()
    x = torch.randn(2, 4, 16)
    y, _, _ = post(x)
    a, _ = post.attn(x)
    h = post.attn_norm(x + a)
    torch.testing.assert_close(y, post.ffn_norm(h + post.ffn(h)))
    pre = Block(ModelConfig(dim=16, num_heads=2, pre_norm=True)).eval()
    pre.load_state_dict(post.state_dict())
    y2, _, _ = pre(x)
    a2, _ = pre.attn(pre.attn_norm(x))
    h2 = x + a2
    torch.testing.assert_close(y2, h2 + pre.ffn(pre.ffn_norm(h2)))


def test_cross_attention_block_reads_memory():
    cfg = ModelConfig(dim=16, num_heads=2, pre_norm=False)
    block = Block(cfg, cross_attention=True).eval()
    x, memory = torch.randn(1, 3, 16), torch.randn(1, 5, 16)
    y1, _, w = block(x, memory=memory, need_weights=True)
    y2, _, _ = block(x, memory=memory + 1)
    assert w.shape == (1, 2, 3, 5)
    assert not torch.allclose(y1, y2)
