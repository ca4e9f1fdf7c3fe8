"""Building blocks of Transformers, with no knowledge of tasks or model families."""

from zhixing.nn.attention import (
    Attention,
    Cache,
    KVCache,
    Packing,
    attention_reference,
    build_mask,
    scaled_dot_product,
)
from zhixing.nn.layers import Block, FeedForward, RMSNorm, make_norm
from zhixing.nn.position import RotaryEmbedding, apply_rotary, sinusoidal_table

__all__ = [
    "Attention", "Cache", "KVCache", "Packing", "attention_reference", "build_mask", "scaled_dot_product",
    "Block", "FeedForward", "RMSNorm", "make_norm",
    "RotaryEmbedding", "apply_rotary", "sinusoidal_table",
]
