"""Tiny models and files for the writing assistant's tests (a module with its own name: tests/apps has no
conftest of its own, so that the four applications' tests do not collide)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from zhixing.config import ModelConfig
from zhixing.models import build_model
from zhixing.tokenizers import Tokenizer

REVIEWS = [
    "这款手机屏幕很清晰，电池也耐用，非常满意。",
    "质量太差了，用了两天就坏，再也不买了。",
    "物流很快，包装完好，味道不错。",
    "客服态度恶劣，退货麻烦，很失望。",
]
POEMS = [
    {
        "title": "静夜思",
        "author": "李白",
        "paragraphs": ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"],
    },
    {
        "title": "春晓",
        "author": "孟浩然",
        "paragraphs": ["春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。"],
    },
    {
        "title": "登鹳雀楼",
        "author": "王之涣",
        "paragraphs": ["白日依山尽，黄河入海流。", "欲穷千里目，更上一层楼。"],
    },
    {
        "title": "江雪",
        "author": "柳宗元",
        "paragraphs": ["千山鸟飞绝，万径人踪灭。", "孤舟蓑笠翁，独钓寒江雪。"],
    },
]
EXTRA = "秋夏冬春风花雪月山水天地人，。\n"
SPECIALS = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"}


def texts() -> list[str]:
    return REVIEWS + ["".join(p["paragraphs"]) for p in POEMS] + [EXTRA]


def tiny_gpt(directory: Path) -> Path:
    """A random 2-layer GPT (dim 32) with a character tokenizer over the reviews and poems above."""
    tok = Tokenizer.train(
        iter(texts() * 2), kind="char", vocab_size=300, show_progress=False, special_tokens=SPECIALS
    )
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("gpt-tiny").replace(
        vocab_size=len(tok),
        dim=32,
        num_layers=2,
        max_seq_len=96,
        eos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id,
    )
    build_model(cfg).save_pretrained(directory)
    tok.save(directory)
    return directory


def tiny_classifier(directory: Path) -> Path:
    """A random 2-layer BERT (dim 32) with a negative / positive classification head and a character
    WordPiece vocabulary: untrained, but a real classifier whose scores depend on the text."""
    tok = Tokenizer.train(iter(texts() * 2), kind="wordpiece", vocab_size=300, show_progress=False)
    torch.manual_seed(1)
    cfg = ModelConfig.from_preset("bert-tiny").replace(
        vocab_size=len(tok),
        dim=32,
        num_layers=2,
        num_heads=2,
        max_seq_len=64,
        head="seq_cls",
        num_labels=2,
        label_names=["negative", "positive"],
    )
    model = build_model(cfg)
    fit_sentiment(model, tok)
    model.save_pretrained(directory)
    tok.save(directory)
    return directory


def fit_sentiment(model, tok, steps: int = 40) -> None:
    """A few Adam steps on the four labelled reviews (and their halves), so the classifier's p(positive)
    really depends on the text: what the guidance tests need to see an effect."""
    texts = REVIEWS + [t[: len(t) // 2] for t in REVIEWS]
    labels = torch.tensor([1, 0, 1, 0] * 2)
    encs = [tok.encode(t).ids for t in texts]
    width = max(len(e) for e in encs)
    ids = torch.zeros(len(encs), width, dtype=torch.long)
    mask = torch.zeros(len(encs), width, dtype=torch.long)
    for i, e in enumerate(encs):
        ids[i, : len(e)], mask[i, : len(e)] = torch.tensor(e), 1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def poems_file(path: Path) -> Path:
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in POEMS), encoding="utf-8")
    return path


def reviews_csv(path: Path) -> Path:
    rows = ["cat,label,review"] + [f"手机,{1 - i % 2},{t}" for i, t in enumerate(REVIEWS)]
    path.write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    return path
