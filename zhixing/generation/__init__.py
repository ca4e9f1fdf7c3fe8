"""Text generation: greedy, sampling (temperature / top-k / top-p / min-p), beam search, repetition
penalties, stop strings, a preallocated KV cache (CUDA graphs on GPU), and streaming text.

    from zhixing.generation import GenerationConfig, generate, stream
    out = generate(model, ["Hello", "你好"], tokenizer=tok, max_new_tokens=20, do_sample=True, top_p=0.9)
    out.texts, out.tokens, out.sequences
    for piece in stream(model, "Once upon a time", tokenizer=tok):
        print(piece, end="", flush=True)
"""

from zhixing.generation.api import GenerationOutput, generate
from zhixing.generation.config import GenerationConfig
from zhixing.generation.processors import LogitsProcessor
from zhixing.generation.streaming import TextStreamer, stream

__all__ = ["GenerationConfig", "GenerationOutput", "LogitsProcessor", "TextStreamer", "generate", "stream"]
