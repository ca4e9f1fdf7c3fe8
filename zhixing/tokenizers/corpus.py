"""Reading a training corpus: files (UTF-8, checked line by line) or any iterator of strings."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import TokenizerError

ERROR_MODES = ("strict", "replace", "ignore")


def normalize_sources(files_or_iterator) -> tuple[list[Path] | None, Iterable[str] | None]:
    """Split the user's input into (files, None) or (None, iterator of texts); check files exist.

    A path, or a list/tuple of paths, names files; any other iterable (a generator, ``iter(list)``,
    a dataset) yields the texts themselves.
    """
    given_list = not isinstance(files_or_iterator, (str, os.PathLike))
    if not given_list:
        files_or_iterator = [files_or_iterator]
    if isinstance(files_or_iterator, (list, tuple)) and all(
        isinstance(f, (str, os.PathLike)) for f in files_or_iterator
    ):
        paths = [Path(f) for f in files_or_iterator]
        if not paths:
            raise TokenizerError("no input files given; fix: pass at least one text file (or an iterator)")
        for p in paths:
            if not p.exists():
                hint = ""
                if given_list or len(str(p)) > 255 or "\n" in str(p):
                    hint = " (a list of strings is read as file paths; to train on texts, pass iter(texts))"
                raise TokenizerError(f"input file not found: {str(p)[:200]!r}{hint}; fix: check the path")
            if p.is_dir():
                raise TokenizerError(f"input {p} is a directory; fix: pass the text files inside it")
        return paths, None
    if isinstance(files_or_iterator, Iterable):
        return None, files_or_iterator
    raise TokenizerError(
        f"cannot train from {type(files_or_iterator).__name__}; fix: pass file paths or an iterator of str"
    )


def read_lines(path: Path, errors: str = "strict") -> Iterator[tuple[str, int]]:
    """Yield (line, bytes consumed) from a UTF-8 file, line endings kept.

    With ``errors="strict"`` an invalid byte raises a TokenizerError naming the file, line and byte
    offset, so a GBK or Latin-1 file is caught instead of silently trained on as mojibake.
    """
    if errors not in ERROR_MODES:
        raise TokenizerError(f"errors={errors!r} is not valid; fix: use one of {', '.join(ERROR_MODES)}")
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8", errors=errors)
            except UnicodeDecodeError as e:
                raise TokenizerError(
                    f"{path}: line {lineno}, byte offset {offset + e.start}: invalid UTF-8 ({e.reason}, "
                    f"byte 0x{raw[e.start]:02x}); fix: convert the file to UTF-8 "
                    f"(e.g. `iconv -f GB18030 -t UTF-8`) or pass errors='replace' (CLI: --errors replace)"
                ) from None
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a UTF-8 byte-order mark is not text
            offset += len(raw)
            yield text, len(raw)


def iter_texts(
    files: list[Path] | None, texts: Iterable[str] | None, errors: str, on_progress=None
) -> Iterator[str]:
    """All training texts, calling ``on_progress(n)`` with bytes (files) or items (iterators) done."""
    if files is not None:
        for path in files:
            for text, nbytes in read_lines(path, errors):
                if on_progress is not None:
                    on_progress(nbytes)
                yield text
    else:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TokenizerError(
                    f"training item {i} is {type(text).__name__}, not str; fix: yield decoded text"
                )
            if on_progress is not None:
                on_progress(1)
            yield text
