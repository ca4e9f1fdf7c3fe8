"""Shared data for the n-gram tests: the first 1,000 non-empty lines of tinyshakespeare (read from the
shared data folder, $ZHIXING_DATA or ../shared/data) and the ARPA files KenLM's lmplz made from them
(committed reference outputs of a tool CI does not build; see data/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def shakespeare() -> list[str]:
    """1,000 non-empty lines of tinyshakespeare, one sentence each (data/README.md)."""
    from zhixing.data.corpora import data_dir

    path = data_dir() / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared data folder (set ZHIXING_DATA) holds tinyshakespeare")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:1000]


@pytest.fixture(scope="session")
def word3(shakespeare):
    from zhixing.ngram import NgramModel

    return NgramModel.train(shakespeare, order=3, unit="word")
