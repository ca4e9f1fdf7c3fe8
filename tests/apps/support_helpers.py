"""Synthetic HWU64-style data and a tiny BERT for the support tests: four intents with slots, one more
held out as out of scope, and a two-class sentiment file — small enough to train in seconds."""

from __future__ import annotations

import csv
import random
from pathlib import Path

TEMPLATES = {
    "alarm_set": [
        "wake me up at [time : {time}]",
        "set an alarm for [time : {time}] please",
        "alarm at [time : {time}] [date : {date}]",
    ],
    "weather_query": [
        "what is the weather in [place_name : {place}]",
        "will it rain in [place_name : {place}]",
        "weather [date : {date}] in [place_name : {place}]",
    ],
    "play_music": [
        "play [artist_name : {artist}]",
        "put on some [artist_name : {artist}] music",
        "i want to hear [artist_name : {artist}]",
    ],
    "iot_hue_lightoff": [
        "turn off the lights in the [house_place : {room}]",
        "lights off [house_place : {room}]",
        "switch the [house_place : {room}] lamp off",
    ],
    "general_joke": [
        "tell me a joke about [joke_type : {topic}]",
        "say something funny on [joke_type : {topic}]",
        "make me laugh with a [joke_type : {topic}] joke",
    ],  # held out: out of scope
}
VALUES = {
    "time": ["five am", "six thirty", "seven", "noon"],
    "date": ["tomorrow", "monday", "today"],
    "place": ["paris", "london", "tokyo", "new york"],
    "artist": ["adele", "queen", "the beatles"],
    "room": ["kitchen", "bedroom", "hall"],
    "topic": ["cats", "dogs", "computers", "doctors", "music"],
}
SENTIMENT = {
    "1": ["great service thanks", "i love it", "wonderful and helpful", "very good"],
    "0": ["this is terrible", "i hate this stupid thing", "awful useless service", "very bad"],
}
OOS = "general_joke"


def utterances(seed: int, per_intent: int) -> list[tuple[str, str]]:
    """(intent, annotation) rows."""
    rng = random.Random(seed)
    rows = []
    for intent, templates in TEMPLATES.items():
        for _ in range(per_intent):
            rows.append(
                (intent, rng.choice(templates).format(**{k: rng.choice(v) for k, v in VALUES.items()}))
            )
    return rows


def _plain(annotation: str) -> str:
    from zhixing.apps.support.data import parse_annotation

    return " ".join(parse_annotation(annotation)[0])


def write_hwu(path: Path, seed: int, per_intent: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "annotation"])
        for intent, ann in utterances(seed, per_intent):
            w.writerow([_plain(ann), intent, ann])
    return path


def write_sentiment(path: Path, per_class: int = 30) -> Path:
    rng = random.Random(1)
    lines = ["sentence\tlabel"]
    for _ in range(per_class):
        for label, texts in SENTIMENT.items():
            lines.append(f"{rng.choice(texts)} \t{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_encoder(directory: Path, **config) -> Path:
    """A 2-layer dim-32 BERT with a WordPiece tokenizer trained on the synthetic words (`config`: other
    settings, e.g. position="rotary")."""
    import torch

    from zhixing.models import build_model
    from zhixing.tokenizers import Tokenizer

    words = [_plain(a) for _, a in utterances(0, 20)] + [t for v in SENTIMENT.values() for t in v]
    tok = Tokenizer.train(
        iter(words * 3), kind="wordpiece", vocab_size=300, min_frequency=1, show_progress=False
    )
    torch.manual_seed(0)
    settings = {"dim": 32, "num_heads": 2, "num_layers": 2, "max_seq_len": 64, "dropout": 0.0, **config}
    model = build_model("bert-tiny", vocab_size=tok.vocab_size, **settings)
    model.save_pretrained(directory)
    tok.save(directory)
    return directory
