"""Fuzzing every reader of user files (issue #22): random bytes, truncations, wrong encodings, huge lines
and wrong JSON types. Nothing may escape but a ZhixingError (or the documented FileNotFoundError), and
every message is one line that names the file. Seeded and bounded: a few seconds in all."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from zhixing.errors import ZhixingError

# More cases or another seed by hand: FUZZ_CASES=300 FUZZ_SEED=1 pytest tests/test_fuzz_readers.py
CASES_PER_READER = int(os.environ.get("FUZZ_CASES", 24))
SEED = os.environ.get("FUZZ_SEED", "0")


def _valid_files() -> dict[str, bytes]:
    table = "sentence\tlabel\nthe film was good\tpos\na dull plot\tneg\n"
    squad = {"data": [{"title": "t", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}
    recipe = {"name": "fuzz", "model": {"preset": "gpt-tiny", "dim": 32, "num_heads": 2},
              "data": {"corpus": "c.txt", "block_size": 16}, "train": {"max_steps": 5, "lr": 1e-3}}
    return {
        "corpus.txt": "知行合一\nthe second line\n".encode(),
        "corpus.jsonl": b'{"text": "one"}\n{"text": "two"}\n',
        "corpus.csv": b'text,label\n"a, quoted cell",1\nplain,0\n',
        "classify.tsv": table.encode(),
        "classify.csv": table.replace("\t", ",").encode(),
        "classify.jsonl": b'{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n',
        "predict.jsonl": b'{"text": "good"}\n{"text": "bad"}\n',
        "conll.txt": b"-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n",
        "squad.json": json.dumps(squad).encode(),
        "recipe.yaml": yaml.safe_dump(recipe).encode(),
        "config.json": json.dumps({"arch": "gpt", "vocab_size": 64, "dim": 32, "num_layers": 1,
                                   "num_heads": 2, "max_seq_len": 16}).encode(),
    }


def _wrong_types(value, rng: random.Random):
    """The same JSON document with one value swapped for a value of another type."""
    others = [None, 7, -1, 3.5, True, "text", [], {}, [1, "a"], {"x": None}, "é" * 3]
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        value = dict(value)
        value[key] = _wrong_types(value[key], rng) if rng.random() < 0.6 else rng.choice(others)
        return value
    if isinstance(value, list) and value:
        value = list(value)
        i = rng.randrange(len(value))
        value[i] = _wrong_types(value[i], rng) if rng.random() < 0.6 else rng.choice(others)
        return value
    return rng.choice(others)


def mutations(name: str, good: bytes, rng: random.Random, n: int):
    """n damaged versions of `good`: (label, bytes)."""
    text = good.decode("utf-8")
    for i in range(n):
        kind = i % 8
        if kind == 0:
            yield "random bytes", rng.randbytes(rng.randrange(1, 400))
        elif kind == 1:
            yield "truncated", good[:rng.randrange(0, len(good))]
        elif kind == 2:
            enc = rng.choice(["latin-1", "utf-16", "gb18030", "cp1252"])
            yield f"encoded {enc}", (text + "é 中文 café\n").encode(enc, errors="replace")
        elif kind == 3:
            cut = rng.randrange(len(good))
            yield "huge line", good[:cut] + b"x" * 200_000 + good[cut:]
        elif kind == 4:
            pos = rng.randrange(len(good))
            yield "bad byte", good[:pos] + bytes([rng.choice([0x80, 0xC3, 0xE9, 0xFF, 0x00])]) + good[pos:]
        elif kind == 5 and (name.endswith(".json") or name.endswith(".yaml")):
            doc = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
            bad = _wrong_types(doc, rng)
            yield "wrong types", (json.dumps(bad) if name.endswith(".json") else yaml.safe_dump(bad)).encode()
        elif kind == 5 and name.endswith(".jsonl"):
            lines = [json.loads(x) for x in text.splitlines()]
            lines[rng.randrange(len(lines))] = _wrong_types(lines[0], rng)
            yield "wrong types", ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
        elif kind == 6:
            data = bytearray(good)
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield "flipped bytes", bytes(data)
        else:
            chars = list(text)
            for _ in range(rng.randrange(1, 4)):
                mark = rng.choice(['"', "\t", ",", "{", "\n", ":", "\\", "\r"])
                chars.insert(rng.randrange(len(chars) + 1), mark)
            yield "punctuation", "".join(chars).encode()


def _corpus(path: Path):
    from zhixing.data import read_documents

    return list(read_documents(path))


def _classify(path: Path):
    from zhixing.tasks.data import read_table

    return read_table(path)


def _conll(path: Path):
    from zhixing.tasks.data import read_tagged

    return read_tagged(path)


def _squad(path: Path):
    from zhixing.tasks.data import read_squad

    return read_squad(path)


def _recipe(path: Path):
    from zhixing.train.config import Recipe

    return Recipe.load(path)


def _model_config(path: Path):
    from zhixing.config import ModelConfig

    return ModelConfig.load(path)


def _predict_inputs(path: Path):
    from zhixing.cli.finetune import read_inputs

    return read_inputs(path, "classify")


READERS: dict[str, Callable[[Path], object]] = {
    "predict.jsonl": _predict_inputs,
    "corpus.txt": _corpus, "corpus.jsonl": _corpus, "corpus.csv": _corpus,
    "classify.tsv": _classify, "classify.csv": _classify, "classify.jsonl": _classify,
    "conll.txt": _conll, "squad.json": _squad, "recipe.yaml": _recipe, "config.json": _model_config,
}


def check_error(e: BaseException, path: Path, label: str) -> None:
    if not isinstance(e, (ZhixingError, FileNotFoundError)):
        raise AssertionError(f"{path.name} ({label}): {type(e).__name__} escaped: {e}") from e
    message = str(e)
    assert "\n" not in message.strip(), f"{path.name} ({label}): a multi-line message: {message!r}"
    assert str(path) in message or path.name in message, f"{path.name} ({label}): no file name in {message!r}"
    assert "Traceback" not in message


@pytest.mark.parametrize("name", sorted(READERS))
def test_readers_fail_with_one_line_naming_the_file(tmp_path, name):
    good = _valid_files()[name]
    rng = random.Random(f"fuzz:{name}:{SEED}")
    path = tmp_path / name
    path.write_bytes(good)
    READERS[name](path)  # the valid file reads
    t0 = time.perf_counter()
    for label, data in mutations(name, good, rng, CASES_PER_READER):
        path.write_bytes(data)
        try:
            READERS[name](path)
        except BaseException as e:  # noqa: BLE001 - the point: whatever escapes is judged here
            check_error(e, path, label)
    assert time.perf_counter() - t0 < 20


def _tokenizer_dir(tmp_path: Path) -> Path:
    from zhixing.tokenizers import Tokenizer

    d = tmp_path / "tok"
    Tokenizer.train(iter(["hello world", "the quick brown fox", "知行合一"] * 20), kind="wordpiece",
                    vocab_size=60, show_progress=False).save(d)
    return d


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tokenizer_files_fail_with_one_line_naming_the_file(tmp_path):
    from zhixing.tokenizers import Tokenizer

    d = _tokenizer_dir(tmp_path)
    files = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    rng = random.Random("fuzz:tokenizer")
    for name, good in sorted(files.items()):
        path = d / name
        for label, data in mutations(name, good, rng, 12):
            path.write_bytes(data)
            try:
                Tokenizer.load(d).encode("hello 知行 zebra")
            except BaseException as e:  # noqa: BLE001
                if not isinstance(e, (ZhixingError, FileNotFoundError)):
                    raise AssertionError(f"{name} ({label}): {type(e).__name__} escaped: {e}") from e
                assert "\n" not in str(e).strip() and str(d) in str(e), (name, label, str(e))
        path.write_bytes(good)


def test_overrides_fail_with_one_line(tmp_path):
    from zhixing.train.config import Recipe

    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(_valid_files()["recipe.yaml"])
    rng = random.Random("fuzz:overrides")
    keys = ["train.lr", "train.max_steps", "model.dim", "model.num_heads", "data.block_size", "name",
            "train.warmup_steps", "data.val_fraction", "train.dtype", "model.bias", "trian.lr", "model",
            "x.y.z"]
    values = ["", "0", "-1", "1e999", "nan", "true", "null", "[1, 2]", "{a: 1}", "abc", "3.5", "'quoted",
              "x" * 10_000, "é", "1e-3", "[", "}"]
    for _ in range(60):
        items = [f"{rng.choice(keys)}={rng.choice(values)}" for _ in range(rng.randrange(1, 3))]
        if rng.random() < 0.1:
            items.append(rng.choice(["novalue", "=", "==", "train.lr"]))
        try:
            Recipe.load(recipe, items)
        except ZhixingError as e:
            assert "\n" not in str(e).strip(), (items, str(e))
        except BaseException as e:  # noqa: BLE001
            raise AssertionError(f"{items}: {type(e).__name__} escaped: {e}") from e
