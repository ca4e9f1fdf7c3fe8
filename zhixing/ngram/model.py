"""`NgramModel`: a trained n-gram language model in backoff form, as an ARPA file holds it.

For every seen n-gram ``w_1..w_n`` the model keeps ``log10 P(w_n | w_1..w_{n-1})`` and, when the n-gram
is a context, ``log10 b(w_1..w_n)``. Any probability is then (Katz's backoff recursion, which for an
interpolated model gives exactly the interpolated value)::

    P(w | h) = P*(h w)                  if h w was seen
             = b(h) · P(w | h')          otherwise (b = 1 when h is not a context; h' drops h's first word)

Tables: order n holds sorted int64 keys ``rank(w_1..w_{n-1}) * V + w_n`` (rank = position in order n-1's
table, and a word's rank at order 1 is its id), so finding an n-gram is one `np.searchsorted`, and the
n-grams that continue a context are one contiguous slice.

Saved as ``.npz`` (NumPy arrays + a JSON string; loaded with ``allow_pickle=False``) or as ``.arpa``.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from zhixing.errors import ConfigError, CorpusError, DataError

from .arpa import parse_arpa, write_arpa
from .kneser_ney import check_order, estimate
from .units import BOS, EOS, UNK, Encoded, Units, Vocabulary, encode_documents, encode_token_arrays, unescape

FORMAT = "zhixing-ngram"
FORMAT_VERSION = 1


class NgramModel:
    """An n-gram LM over a vocabulary. Build one with `NgramModel.train(...)`, `load(path)` or
    `zhixing.ngram.read_arpa(path)`.

    order: N; vocab: `Vocabulary` (id 0 <unk>, 1 <s>, 2 </s>); units: how text becomes tokens;
    keys/logp/logb: per order (list index n-1), see the module docstring; meta: training facts.
    """

    def __init__(self, order: int, vocab: Vocabulary, keys: list[np.ndarray], logp: list[np.ndarray],
                 logb: list[np.ndarray], units: Units | None = None, meta: dict | None = None):  # fmt: skip
        self.order = check_order(order)
        self.vocab = vocab
        self.V = len(vocab)
        self.keys, self.logp, self.logb = keys, logp, logb
        if len(keys) != order or len(logp) != order or len(logb) != order - 1:
            raise ValueError(f"an order-{order} model needs {order} key/logp tables and {order - 1} logb")
        self.units = units or Units("word")
        self.meta = dict(meta or {})

    # ------------------------------------------------------------------------------------------
    # training

    @classmethod
    def train(
        cls,
        source: str | os.PathLike | Iterable[str],
        order: int = 3,
        unit: str = "char",
        tokenizer: str | os.PathLike | Any = None,
        *,
        field: str | None = None,
        column: str | None = None,
        blank_lines: bool = False,
        discounts: list[tuple[float, float, float]] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> NgramModel:
        """Train interpolated modified Kneser–Ney on a corpus, streaming its documents.

        source: a built-in corpus name or path (`zhixing.data.read_documents`), or an iterable of
            documents (strings). Each document is one sentence ``<s> ... </s>``.
        unit: "char", "word" or "tokenizer" (then `tokenizer` is a directory or a Tokenizer).
        progress: called with short status lines (documents read, the order being counted).
        """
        order = check_order(order)
        units = make_units(unit, tokenizer)
        name = str(source) if isinstance(source, (str, os.PathLike)) else "<documents>"
        docs = _documents(source, field, column, blank_lines)
        say = progress or (lambda _m: None)
        t0 = time.perf_counter()
        enc = encode_documents(docs, units, progress=lambda d, t: say(f"read {d:,} documents, {t:,} tokens"))
        return cls._fit(enc, order, units, name, discounts, say, t0)

    @classmethod
    def train_shards(cls, directory: str | os.PathLike, order: int = 3, *, split: str = "train",
                     tokenizer: str | os.PathLike | Any = None,
                     progress: Callable[[str], None] | None = None) -> NgramModel:  # fmt: skip
        """Train on prepared token shards (`zhixing prepare`): each document is one sentence. Tokens are
        named by `tokenizer` (a directory or Tokenizer; default: the one recorded in meta.json), which
        must be the tokenizer the shards were made with."""
        order = check_order(order)
        shards, units = _open_shards(directory, split, tokenizer)
        starts, ends = shards.doc_spans()
        say = progress or (lambda _m: None)
        say(f"reading {len(shards):,} tokens from {directory}")
        t0 = time.perf_counter()
        enc = encode_token_arrays((shards.tokens[a:b] for a, b in zip(starts, ends)), units)
        return cls._fit(enc, order, units, f"shards:{directory}:{split}", None, say, t0)

    @classmethod
    def _fit(cls, enc: Encoded, order, units, name, discounts, say, t0) -> NgramModel:
        if enc.tokens == 0:
            raise CorpusError(f"corpus {name!r} is empty: {enc.sentences} documents, no tokens; fix: check "
                              "the path, --field/--column, or that the files contain text")
        est = estimate(enc.ids, order, len(enc.vocab), discounts=discounts, progress=say)
        meta = {
            "corpus": name, "sentences": enc.sentences, "tokens": enc.tokens,
            "discounts": [list(d) for d in est.discounts], "discount_fallback": est.fallback,
            "ngrams": [len(k) for k in est.keys], "train_seconds": round(time.perf_counter() - t0, 3),
        }  # fmt: skip
        model = cls(order, enc.vocab, est.keys, est.logp, est.logb, units, meta)
        model.estimate = est  # counts, adjusted counts (for inspection and tests)
        return model

    # ------------------------------------------------------------------------------------------
    # lookup

    def _find(self, n: int, rank: np.ndarray, word: np.ndarray) -> np.ndarray:
        """Rank of the n-grams (w_1..w_{n-1} of rank `rank`) + `word` in order n's table, -1 if absent."""
        out = np.full(len(rank), -1, dtype=np.int64)
        ok = rank >= 0
        if n == 1:
            return word.astype(np.int64)
        keys = self.keys[n - 1]
        if not len(keys) or not ok.any():
            return out
        key = rank[ok] * self.V + word[ok]
        pos = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        out[np.flatnonzero(ok)] = np.where(keys[pos] == key, pos, -1)
        return out

    def ranks(self, ids: np.ndarray) -> list[np.ndarray]:
        """`ranks[n-1][s]`: rank of the n-gram starting at position s (-1: absent or past the end)."""
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        out = [ids.copy()]
        for n in range(2, self.order + 1):
            cur = np.full(T, -1, dtype=np.int64)
            if T >= n:
                cur[: T - n + 1] = self._find(n, out[-1][: T - n + 1], ids[n - 1:])
            out.append(cur)
        return out

    def token_log10probs(self, ids: np.ndarray, predict: np.ndarray | None = None) -> np.ndarray:
        """log10 P(ids[t] | the up to N-1 ids before t) for every t where `predict` is True
        (default: every position that is not <s>). Sentence markers in `ids` bound the contexts."""
        ids = np.asarray(ids, dtype=np.int64)
        N = self.order
        if predict is None:
            predict = ids != BOS
        t = np.flatnonzero(predict)
        if not len(t):
            return np.zeros(0)
        r = self.ranks(ids)
        # the longest n-gram ending at t that the model has
        best = np.zeros(len(t), dtype=np.int64)
        logp = np.zeros(len(t))
        for n in range(N, 0, -1):
            start = t - n + 1
            ok = (best == 0) & (start >= 0)
            rank = np.full(len(t), -1, dtype=np.int64)
            rank[ok] = r[n - 1][start[ok]]
            hit = rank >= 0
            logp[hit] = self.logp[n - 1][rank[hit]]
            best[hit] = n
        # plus the backoff weights of the contexts longer than what was found
        for j in range(1, N):
            start = t - j
            ok = (j >= best) & (start >= 0)
            rank = np.full(len(t), -1, dtype=np.int64)
            rank[ok] = r[j - 1][start[ok]]
            hit = rank >= 0
            logp[hit] += self.logb[j - 1][rank[hit]]
        return logp

    def encode(self, texts: Iterable[str], *, markers: bool = True) -> Encoded:
        """Texts (one sentence each) -> ids in this model's vocabulary (unknown tokens -> <unk>)."""
        return encode_documents(texts, self.units, self.vocab, markers=markers)

    def log10prob(self, word: str, context: Iterable[str] = ()) -> float:
        """log10 P(word | context), tokens given as strings ("<s>" may open the context)."""
        toks = [*context, word]
        ids = np.array([self.vocab.index.get(w, UNK) for w in toks], dtype=np.int64)
        predict = np.zeros(len(ids), dtype=bool)
        predict[-1] = True
        return float(self.token_log10probs(ids, predict)[0])

    def score(self, text: str, *, bos: bool = True, eos: bool = True) -> float:
        """log10 probability of one sentence (as kenlm.Model.score: <s> as context, </s> predicted)."""
        enc = encode_documents([text], self.units, self.vocab, markers=True)
        ids = enc.ids.astype(np.int64)
        predict = ids != BOS
        if not eos:
            predict[-1] = False
        if not bos:
            ids = ids[1:]
            predict = predict[1:]
        return float(self.token_log10probs(ids, predict).sum())

    def perplexity(
        self,
        source: str | os.PathLike | Iterable[str] | Encoded,
        *,
        field: str | None = None,
        column: str | None = None,
        blank_lines: bool = False,
    ) -> dict[str, Any]:
        """Perplexity of held-out text: every document a sentence, every token and each </s> predicted.

        Returns tokens (predictions, </s> included), sentences, oov (tokens scored as <unk>, included),
        log10_prob (total), nats_per_token, perplexity (= exp(nats_per_token)), and the same per token
        without the </s> predictions (`*_no_eos`: per character for unit="char").
        """
        enc = source if isinstance(source, Encoded) else self.encode(_documents(source, field, column,
                                                                                blank_lines))
        if enc.tokens == 0 and enc.sentences == 0:
            raise CorpusError("the evaluation text is empty: nothing to score")
        ids = enc.ids.astype(np.int64)
        lp = self.token_log10probs(ids)
        return perplexity_stats(lp, ids[ids != BOS] == EOS, enc.sentences, enc.oov)

    # ------------------------------------------------------------------------------------------
    # sampling

    def distribution(self, context: list[int]) -> np.ndarray:
        """P(v | context) for every id v (float64, sums to 1 up to rounding; <s> gets 0)."""
        p = np.power(10.0, self.logp[0])
        ctx = np.asarray(context[-(self.order - 1):] if self.order > 1 else [], dtype=np.int64)
        for j in range(1, len(ctx) + 1):
            c = ctx[len(ctx) - j:]
            rank = np.array([c[0]], dtype=np.int64)
            for n in range(2, j + 1):
                rank = self._find(n, rank, c[n - 1: n])
            if rank[0] < 0:
                break
            p = p * 10.0 ** self.logb[j - 1][rank[0]]
            keys = self.keys[j]
            lo, hi = np.searchsorted(keys, [rank[0] * self.V, (rank[0] + 1) * self.V])
            p[keys[lo:hi] % self.V] = np.power(10.0, self.logp[j][lo:hi])
        p[BOS] = 0.0
        return p

    def sample(self, *, seed: int = 0, prefix: str = "", max_tokens: int = 200, allow_unk: bool = False,
               rng: np.random.Generator | None = None) -> str:  # fmt: skip
        """Sample one sentence (until </s> or `max_tokens`) after `prefix`; the same seed gives the same
        text. Returns the prefix followed by the sampled continuation."""
        if max_tokens < 0:
            raise ConfigError(f"max_tokens={max_tokens}: must be >= 0")
        rng = rng or np.random.default_rng(seed)
        pre = self.encode([prefix], markers=False).ids.astype(np.int64).tolist() if prefix else []
        context = [BOS, *pre]
        out: list[int] = []
        for _ in range(max_tokens):
            p = self.distribution(context)
            if not allow_unk:
                p[UNK] = 0.0
            w = int(rng.choice(self.V, p=p / p.sum()))
            if w == EOS:
                break
            out.append(w)
            context.append(w)
        return prefix + self.units.detokenize([self.vocab.tokens[i] for i in out]) if out else prefix

    # ------------------------------------------------------------------------------------------
    # files

    def describe(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": FORMAT_VERSION, "order": self.order, "vocab_size": self.V,
                **self.units.describe(), **self.meta}  # fmt: skip

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.npz`` (fast, exact) or ``.arpa`` (the interchange format), by the suffix; atomic."""
        from zhixing.io import atomic_write

        path = Path(path)
        if path.suffix == ".arpa":
            return write_arpa(self, path)
        if path.suffix != ".npz":
            raise ConfigError(f"{path}: unknown model format {path.suffix!r}; "
                              "fix: end the name with .npz or .arpa")
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(json.dumps(self.describe(), ensure_ascii=True)),
            "vocab": np.array(self.vocab.escaped()),
        }
        for n in range(1, self.order + 1):
            arrays[f"keys_{n}"] = self.keys[n - 1]
            arrays[f"logp_{n}"] = self.logp[n - 1]
            if n < self.order:
                arrays[f"logb_{n}"] = self.logb[n - 1]

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> NgramModel:
        """Load a ``.npz`` saved by `save` (never unpickles) or any ``.arpa`` file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"PK\x03\x04":  # not a zip: ARPA text (or .arpa.gz)
            return read_arpa(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                order = int(meta["order"])
                keys = [z[f"keys_{n}"] for n in range(1, order + 1)]
                logp = [z[f"logp_{n}"] for n in range(1, order + 1)]
                logb = [z[f"logb_{n}"] for n in range(1, order)]
                vocab = Vocabulary([unescape(str(t)) for t in z["vocab"]])
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{path}: not a zhixing n-gram model ({type(e).__name__}: {e}); fix: re-save it "
                            "with `zhixing ngram train --out X.npz`") from None
        if meta.get("format") != FORMAT:
            raise DataError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
        units = units_from_meta(meta)
        keep = {k: v for k, v in meta.items() if k not in ("format", "version", "order", "vocab_size", "unit",
                                                            "tokenizer")}  # fmt: skip
        return cls(order, vocab, keys, logp, logb, units, keep)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n + 1}-grams {len(k):,}" for n, k in enumerate(self.keys))
        return f"NgramModel(order={self.order}, unit={self.units.kind!r}, vocab={self.V:,}; {counts})"


# ---------------------------------------------------------------------------------------------
# helpers


def perplexity_stats(log10p: np.ndarray, is_eos: np.ndarray, sentences: int, oov: int) -> dict[str, Any]:
    ln = log10p * math.log(10)
    n = len(ln)
    res: dict[str, Any] = {"tokens": int(n), "sentences": int(sentences), "oov": int(oov),
                           "log10_prob": float(log10p.sum())}  # fmt: skip
    res["nats_per_token"] = float(-ln.sum() / n) if n else float("nan")
    res["perplexity"] = float(math.exp(res["nats_per_token"])) if n else float("nan")
    body = ln[~is_eos]
    res["tokens_no_eos"] = int(len(body))
    res["nats_per_token_no_eos"] = float(-body.sum() / len(body)) if len(body) else float("nan")
    res["perplexity_no_eos"] = float(math.exp(res["nats_per_token_no_eos"])) if len(body) else float("nan")
    return res


def make_units(unit: str, tokenizer=None) -> Units:
    if unit == "tokenizer":
        if tokenizer is None:
            raise ConfigError("unit='tokenizer' needs a tokenizer; "
                              "fix: pass tokenizer=DIR (CLI: --tokenizer DIR)")
        if isinstance(tokenizer, (str, os.PathLike)):
            return Units("tokenizer", tokenizer_path=str(tokenizer))
        return Units("tokenizer", tokenizer=tokenizer)
    if tokenizer is not None:
        raise ConfigError(f"a tokenizer was given but unit={unit!r}; fix: use unit='tokenizer'")
    return Units(unit)


def read_arpa(path: str | os.PathLike) -> NgramModel:
    """An `NgramModel` from any ARPA file (KenLM's, SRILM's, ours; see arpa.parse_arpa)."""
    order, vocab, keys, lp, lb, meta, keep = parse_arpa(path)
    return NgramModel(order, vocab, keys, lp, lb, units_from_meta(meta), keep)


def units_from_meta(meta: dict) -> Units:
    unit = meta.get("unit", "word")
    if unit == "tokenizer" and meta.get("tokenizer"):
        try:
            return Units("tokenizer", tokenizer_path=meta["tokenizer"])
        except (OSError, ValueError):  # the tokenizer moved: its tokens can still be scored as words
            warnings.warn(f"the model's tokenizer {meta['tokenizer']} cannot be loaded; text will be split "
                          "into whitespace-separated words instead of tokenized", stacklevel=3)
    return Units(unit if unit in ("char", "word") else "word")


def _documents(source, field, column, blank_lines) -> Iterable[str]:
    if isinstance(source, (str, os.PathLike)):
        from zhixing.data.corpora import read_documents

        return read_documents(source, field=field, column=column, blank_lines=blank_lines)
    if isinstance(source, bytes):
        raise ConfigError("source must be a corpus name, a path or an iterable of strings, not bytes")
    return source


def _open_shards(directory, split, tokenizer=None, units: Units | None = None):
    from zhixing.data.shards import TokenShards

    shards = TokenShards(directory, split)
    if units is None:
        if tokenizer is None:
            tok_path = (shards.meta.get("tokenizer") or {}).get("path")
            if not (tok_path and Path(tok_path).is_dir()):
                raise DataError(f"{Path(directory) / 'meta.json'}: the tokenizer the shards were made "
                                f"with is not recorded or not found ({tok_path or 'no path'}); fix: pass "
                                "tokenizer=DIR (CLI: --tokenizer DIR)")
            tokenizer = tok_path
        units = make_units("tokenizer", tokenizer)
    shards.check_tokenizer(units.tokenizer)
    return shards, units


def perplexity_of_shards(model: NgramModel, directory: str | os.PathLike, split: str = "val") -> dict:
    """Perplexity of a shard split under `model` (trained with `train_shards` on the same tokenizer)."""
    if model.units.kind != "tokenizer" or model.units.tokenizer is None:
        raise ConfigError(f"this model counts {model.units.kind}s, not a tokenizer's ids; fix: score shards "
                          "with a model trained on shards (`zhixing ngram train DIR --shards`)")
    shards, _ = _open_shards(directory, split, units=model.units)
    starts, ends = shards.doc_spans()
    enc = encode_token_arrays((shards.tokens[a:b] for a, b in zip(starts, ends)), model.units, model.vocab)
    return model.perplexity(enc)
