"""Shared data for the n-gram tests: a committed slice of tinyshakespeare (public domain) and the ARPA
files KenLM's lmplz made from it (see data/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def shakespeare() -> list[str]:
    """1,000 non-empty lines of tinyshakespeare: one sentence each."""
    return (DATA / "shakespeare-1000.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def word3(shakespeare):
    from zhixing.ngram import NgramModel

    return NgramModel.train(shakespeare, order=3, unit="word")
