"""Fixtures for the task tests: a tiny BERT (dim 32, 2 layers) with a WordPiece tokenizer trained on the
synthetic sentences, saved as a zhixing model directory with an MLM head (so fine-tuning must add a head)."""

import random
from pathlib import Path

import pytest
import torch
from task_synth import WORDS


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    from zhixing.models import build_model
    from zhixing.tokenizers import Tokenizer

    corpus = [" ".join(random.Random(i).choices(WORDS, k=12)) for i in range(300)] + WORDS * 3
    tok = Tokenizer.train(iter(corpus), kind="wordpiece", vocab_size=200, min_frequency=1,
                          show_progress=False)
    torch.manual_seed(0)
    model = build_model("bert-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2,
                        max_seq_len=64, dropout=0.0)
    d = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(d)
    tok.save(d)
    return d
