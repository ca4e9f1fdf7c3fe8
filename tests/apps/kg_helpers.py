"""Shared pieces of the knowledge-graph tests: a learnable synthetic relation data set and a tiny BERT whose
WordPiece vocabulary has the four entity-marker tokens ([unused0]..[unused3])."""

from __future__ import annotations

import random
from pathlib import Path

from zhixing.tasks.relation import RelationExample

NOUNS = [
    "storm",
    "flood",
    "virus",
    "fever",
    "fire",
    "smoke",
    "spark",
    "damage",
    "engine",
    "wheel",
    "box",
    "apple",
]
MARKERS = ["[unused0]", "[unused1]", "[unused2]", "[unused3]"]


def relation_examples(n: int, seed: int) -> list[RelationExample]:
    """ "the A caused the B" -> Cause-Effect(e1,e2); "the A was caused by the B" -> Cause-Effect(e2,e1);
    "the A and the B were seen" -> Other."""
    rng = random.Random(seed)
    forms = [
        ("the {} caused the {} today", "Cause-Effect(e1,e2)"),
        ("the {} was caused by the {} today", "Cause-Effect(e2,e1)"),
        ("the {} and the {} were seen today", "Other"),
    ]
    out = []
    for i in range(n):
        a, b = rng.sample(NOUNS, 2)
        form, label = forms[i % 3]
        text = form.format(a, b)
        s1 = text.index(a)
        s2 = text.index(b, s1 + len(a))
        out.append(RelationExample(text, (s1, s1 + len(a)), (s2, s2 + len(b)), label, f"synthetic:{i}"))
    return out


def write_semeval(path: Path, examples: list[RelationExample]) -> Path:
    """The examples in SemEval-2010 Task 8's own file format (CRLF line ends, as the release)."""
    lines = []
    for i, x in enumerate(examples, 1):
        (h0, h1), (t0, t1) = x.head, x.tail
        t = x.text
        tagged = f"{t[:h0]}<e1>{t[h0:h1]}</e1>{t[h1:t0]}<e2>{t[t0:t1]}</e2>{t[t1:]}"
        lines += [f'{i}\t"{tagged}"', x.label, "Comment:", ""]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


def tiny_bert_with_markers(directory: Path) -> Path:
    import torch

    from zhixing.models import build_model
    from zhixing.tokenizers import Tokenizer

    corpus = [x.text for x in relation_examples(60, 1)] + NOUNS * 3
    tok = Tokenizer.train(
        iter(corpus),
        kind="wordpiece",
        vocab_size=120,
        min_frequency=1,
        show_progress=False,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *MARKERS],
    )
    torch.manual_seed(0)
    model = build_model(
        "bert-tiny", vocab_size=tok.vocab_size, dim=32, num_heads=2, num_layers=2, max_seq_len=64, dropout=0.0
    )
    model.save_pretrained(directory)
    tok.save(directory)
    return directory


def train_tiny_run(model_dir: Path, out_dir: Path, name: str = "rel") -> dict:
    from zhixing.tasks.finetune import finetune, finetune_config

    cfg = finetune_config("relation", model=str(model_dir), epochs=6, max_seq_len=32)
    return finetune(
        cfg,
        name=name,
        train_examples=relation_examples(240, 0),
        dev_examples=relation_examples(30, 7),
        train_overrides=[f"out_dir={out_dir}", "batch_size=16", "lr=3e-3", "log_interval=1000"],
    )
