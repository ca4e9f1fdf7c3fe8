"""Synthetic, learnable task data for the task tests (sentiment words, PER/LOC/ORG sentences)."""

import random

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "movie", "film", "plot", "the", "was", "is", "a",
         "very", "john", "smith", "paris", "london", "acme", "corp", "visited", "works", "at", "in", "and"]
POSITIVE, NEGATIVE = ["good", "great", "fine"], ["bad", "awful", "poor"]


def sentiment_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        word = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        rows.append((f"the {rng.choice(['movie', 'film', 'plot'])} was very {word}", label))
    return rows


def ner_sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        who = [("john", "B-PER"), ("smith", "I-PER")] if rng.random() < 0.5 else [("john", "B-PER")]
        where = rng.choice([[("paris", "B-LOC")], [("london", "B-LOC")],
                            [("acme", "B-ORG"), ("corp", "I-ORG")]])
        verb = [("visited", "O")] if where[0][1] == "B-LOC" else [("works", "O"), ("at", "O")]
        out.append(who + verb + where)
    return out
