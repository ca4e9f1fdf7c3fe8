"""ARPA back-off files: write any `NgramModel`, read any ARPA file (KenLM's, SRILM's, ours) to score with.

The format (Doug Paul's, as KenLM and SRILM write it)::

    \\data\\
    ngram 1=<count>
    ngram 2=<count>

    \\1-grams:
    <log10 P(w)>  <w>  [<log10 b(w)>]
    ...
    \\2-grams:
    <log10 P(w2 | w1)>  <w1> <w2>  [<log10 b(w1 w2)>]
    ...
    \\end\\

Lines before ``\\data\\`` are free text; ours is one ``# zhixing-ngram {json}`` line (unit, tokenizer,
discounts, corpus) that KenLM skips as a comment. Tokens are written escaped (`units.escape`).
``<s>`` has probability ``-99`` (it is context only), as in KenLM and SRILM.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import numpy as np

from zhixing.errors import DataError

from .units import BOS, EOS, MARKERS, UNK, Vocabulary, unescape

HEADER = "# zhixing-ngram "
_COUNT = re.compile(r"^ngram\s+(\d+)\s*=\s*(\d+)$")
_SECTION = re.compile(r"^\\(\d+)-grams:$")


def write_arpa(model, path: str | os.PathLike) -> Path:
    """Write `model` as an ARPA file (atomically)."""
    from zhixing.io import atomic_write

    words = np.array(model.vocab.escaped(), dtype=object)
    V = model.V

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(HEADER + json.dumps(model.describe(), ensure_ascii=True) + "\n\n\\data\\\n")
            for n, k in enumerate(model.keys, start=1):
                f.write(f"ngram {n}={len(k)}\n")
            text = words[:, None]  # (rows, n) word strings of order n
            for n in range(1, model.order + 1):
                keys = model.keys[n - 1]
                if n > 1:
                    text = np.concatenate([text[keys // V], words[keys % V][:, None]], axis=1)
                logp = model.logp[n - 1].copy()
                if n == 1:
                    logp[BOS] = -99.0
                names = [" ".join(row) for row in text] if n > 1 else list(words)
                f.write(f"\n\\{n}-grams:\n")
                if n < model.order:
                    logb = model.logb[n - 1]
                    f.writelines(f"{p:.8g}\t{w}\t{b:.8g}\n" if b != 0 else f"{p:.8g}\t{w}\n"
                                 for p, w, b in zip(logp.tolist(), names, logb.tolist()))
                else:
                    f.writelines(f"{p:.8g}\t{w}\n" for p, w in zip(logp.tolist(), names))
            f.write("\n\\end\\\n")

    return atomic_write(Path(path), write)


def parse_arpa(path: str | os.PathLike) -> tuple:
    """Parse an ARPA file (or ``.arpa.gz``): (order, vocabulary, keys, log10 probabilities, log10
    backoffs, our header's meta, other meta) — what `zhixing.ngram.read_arpa` builds an `NgramModel`
    from. A truncated or malformed file raises DataError naming the file and line. Words are unescaped;
    a file without ``<unk>`` gets one with log10 P = -100 (KenLM's choice), without ``<s>`` / ``</s>``
    one with -99."""
    path = Path(path)
    meta: dict = {}
    try:
        f = gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such ARPA file") from None
    with f:
        lineno = 0

        def fail(msg: str):
            raise DataError(f"{path}: line {lineno}: {msg}")

        def next_line() -> str | None:
            nonlocal lineno
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                lineno += 1
                fail(f"not UTF-8 text ({e.reason}); expected an ARPA file")
            if not line:
                return None
            lineno += 1
            return line.rstrip("\r\n")

        # preamble
        while True:
            line = next_line()
            if line is None:
                fail("the file ends before \\data\\; expected an ARPA file "
                     "(\\data\\, ngram counts, sections)")
            if line.strip() == "\\data\\":
                break
            if line.startswith(HEADER):
                try:
                    meta = json.loads(line[len(HEADER):])
                except json.JSONDecodeError:
                    meta = {}
        # counts
        counts: list[int] = []
        while True:
            line = next_line()
            if line is None:
                fail("the file ends inside the \\data\\ counts: truncated")
            s = line.strip()
            if not s:
                if counts:
                    break
                continue
            m = _COUNT.match(s)
            if not m:
                if _SECTION.match(s) and counts:  # no blank line before the first section
                    break
                fail(f"expected 'ngram N=COUNT', got {s[:60]!r}")
            if int(m.group(1)) != len(counts) + 1:
                fail(f"expected the count of {len(counts) + 1}-grams, got {s!r}")
            counts.append(int(m.group(2)))
        order = len(counts)
        if not 1 <= order <= 10:
            fail(f"{order} orders; zhixing reads ARPA files of order 1 to 10")
        # sections
        tables = []
        pending = s if _SECTION.match(s) else None
        for n in range(1, order + 1):
            header = pending
            pending = None
            while header is None or not header:
                header = next_line()
                if header is None:
                    fail(f"the file ends before the \\{n}-grams: section: truncated")
                header = header.strip()
            if header != f"\\{n}-grams:":
                fail(f"expected '\\{n}-grams:', got {header[:60]!r}")
            first_line = lineno + 1
            words: list[list[str]] = []
            logp = np.empty(counts[n - 1])
            logb = np.zeros(counts[n - 1])
            for i in range(counts[n - 1]):
                line = next_line()
                if line is None:
                    fail(f"the file ends after {i:,} of the {counts[n - 1]:,} {n}-grams: truncated")
                parts = line.split()
                if len(parts) not in (n + 1, n + 2):
                    what = "a blank line" if not parts else f"{len(parts)} fields"
                    fail(f"expected a {n}-gram line 'log10prob {' '.join(['word'] * n)} [log10backoff]' "
                         f"({counts[n - 1]:,} of them, says \\data\\), got {what}")
                try:
                    logp[i] = float(parts[0])
                    if len(parts) == n + 2:
                        logb[i] = float(parts[-1])
                except ValueError:
                    fail(f"not a number in {line[:60]!r}")
                words.append(parts[1: n + 1])
            tables.append((first_line, words, logp, logb))
        while True:
            line = next_line()
            if line is None:
                fail("the file ends without \\end\\: truncated")
            if line.strip() == "\\end\\":
                break
            if line.strip():
                fail(f"expected \\end\\ after the {order}-grams, got {line.strip()[:60]!r}")

    # vocabulary: the unigrams, markers first
    first_line, uni, up, ub = tables[0]
    lineno = first_line
    names = [w[0] for w in uni]
    vocab_words = list(MARKERS)
    index = {w: i for i, w in enumerate(MARKERS)}
    logp1 = [-100.0, -99.0, -99.0]
    logb1 = [0.0, 0.0, 0.0]
    for i, w in enumerate(names):
        if w in index and index[w] > EOS:
            lineno = first_line + i
            raise DataError(f"{path}: line {lineno}: the 1-gram {w!r} appears twice")
        if w in index:
            logp1[index[w]], logb1[index[w]] = up[i], ub[i]
        else:
            index[w] = len(vocab_words)
            vocab_words.append(w)
            logp1.append(up[i])
            logb1.append(ub[i])
    V = len(vocab_words)
    keys = [np.arange(V, dtype=np.int64)]
    lp = [np.array(logp1)]
    lp[0][BOS] = -np.inf
    lb = [np.array(logb1)]
    for n in range(2, order + 1):
        first_line, rows, p, b = tables[n - 1]
        try:
            mat = np.array([[index[w] for w in r] for r in rows], dtype=np.int64).reshape(len(rows), n)
        except KeyError as e:
            bad = next(i for i, r in enumerate(rows) if any(w not in index for w in r))
            raise DataError(f"{path}: line {first_line + bad}: word {e.args[0]!r} of a {n}-gram is not a "
                            "1-gram; a valid ARPA file lists every word among the 1-grams") from None
        rank = mat[:, 0].copy()
        for j in range(2, n):
            rank = _find(keys[j - 1], rank, mat[:, j - 1], V)
        missing = np.flatnonzero(rank < 0)
        if len(missing):
            i = int(missing[0])
            raise DataError(f"{path}: line {first_line + i}: the {n}-gram {' '.join(rows[i])!r} has no "
                            f"{n - 1}-gram {' '.join(rows[i][:-1])!r}; ARPA files list every prefix")
        key = rank * V + mat[:, -1]
        order_idx = np.argsort(key, kind="stable")
        key = key[order_idx]
        dup = np.flatnonzero(key[1:] == key[:-1])
        if len(dup):
            i = int(order_idx[dup[0] + 1])
            gram = " ".join(rows[i])
            raise DataError(f"{path}: line {first_line + i}: the {n}-gram {gram!r} appears twice")
        keys.append(key)
        lp.append(p[order_idx])
        lb.append(b[order_idx])
    vocab = Vocabulary([unescape(w) for w in vocab_words])
    keep = {k: v for k, v in meta.items() if k not in ("format", "version", "order", "vocab_size", "unit",
                                                        "tokenizer")}  # fmt: skip
    keep["arpa"] = str(path)
    return order, vocab, keys, lp, lb[: order - 1], meta, keep


def _find(keys: np.ndarray, rank: np.ndarray, word: np.ndarray, V: int) -> np.ndarray:
    out = np.full(len(rank), -1, dtype=np.int64)
    ok = rank >= 0
    if not len(keys) or not ok.any():
        return out
    key = rank[ok] * V + word[ok]
    pos = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
    out[np.flatnonzero(ok)] = np.where(keys[pos] == key, pos, -1)
    return out


__all__ = ["parse_arpa", "write_arpa", "UNK"]
