"""Interpolated modified Kneser–Ney, the fast way: every count, discount and probability in NumPy.

The equations are those of `zhixing.ngram.reference` (read that first); this module computes the same
numbers for all n-grams of an order at once:

- **n-grams as int64 keys, exactly.** The n-gram starting at position i has the key
  ``key_n[i] = index_{n-1}[i] * V + ids[i + n - 1]``, where ``index_{n-1}[i]`` is the rank of the
  (n-1)-gram starting at i among the sorted distinct (n-1)-grams (and ``index_1 = ids``). One
  ``np.unique(key_n, return_index, return_inverse)`` gives the distinct n-grams (sorted), their raw
  counts (``bincount`` of the inverse) and ``index_n`` for the next order. Ranks are < the number of
  tokens, so keys never collide and fit in int64 for any corpus below 2^63 / V tokens.
- **Sentence boundaries** cost nothing: an n-gram is kept when it ends at or before its sentence's
  ``</s>`` (``n <= end(i) - i + 1``).
- **Continuation counts** ``N1+(• w_2..w_n)``: every distinct (n+1)-gram adds 1 to its suffix, whose
  rank is ``index_n`` at the position after one of its occurrences: one ``bincount``.
- **Per-context sums** (``Σ_w a(h w)``, ``N_k(h •)``) are ``bincount``s over the n-grams' prefix ranks
  (``key // V``); interpolation is ``p_n = u_n + γ_{n-1}[prefix] · p_{n-1}[suffix]``, one order at a time.

The result is the backoff form an ARPA file stores (`NgramModel`): for every seen n-gram its
interpolated log10 probability and, for contexts, log10 γ as the backoff weight.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from zhixing.errors import ConfigError, CorpusError

from .units import BOS, EOS

MAX_ORDER = 10
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback defaults


def check_order(order) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= MAX_ORDER:
        raise ConfigError(f"order={order!r}: must be an integer from 1 to {MAX_ORDER}; fix: e.g. order=3 "
                          "(CLI: --order 3)")
    return int(order)


def discounts_from_count_of_counts(n) -> tuple[tuple[float, float, float], bool]:
    """Chen & Goodman (1998) eq. 26: ``Y = n1 / (n1 + 2 n2)``, ``D_k = k - (k+1) Y n_{k+1} / n_k`` for
    k = 1, 2, 3 (D3 is used for every count >= 3). `n[k]` = how many n-grams have (adjusted) count k.

    Returns (D1, D2, D3+) and False, or KenLM's fallback (0.5, 1.0, 1.5) and True when the data cannot
    give them (some n_k = 0 for k <= 3, or a D_k outside [0, k]: tiny or artificial corpora).
    """
    n = [int(x) for x in n]
    if min(n[1], n[2], n[3]) == 0:
        return FALLBACK_DISCOUNTS, True
    y = n[1] / (n[1] + 2 * n[2])
    d = tuple(k - (k + 1) * y * n[k + 1] / n[k] for k in (1, 2, 3))
    if any(not 0 <= dk <= k for k, dk in zip((1, 2, 3), d)):
        return FALLBACK_DISCOUNTS, True
    return d, False  # type: ignore[return-value]


def count_of_counts(adjusted: np.ndarray) -> np.ndarray:
    """n[k] for k = 0..4: how many entries of `adjusted` equal k."""
    return np.bincount(np.minimum(adjusted, 5), minlength=6)[:5]


class Estimate:
    """Everything training computes, order by order (index n-1 holds order n).

    keys: sorted int64 keys (order 1: the ids 0..V-1); counts: raw counts; adjusted: KN counts a();
    discounts: (D1, D2, D3+) per order; logp: log10 interpolated probability; logb: log10 backoff
    (order < N; 0 where the n-gram is not a context).
    """

    def __init__(self, order: int, vocab_size: int):
        self.order, self.vocab_size = order, vocab_size
        self.keys: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.adjusted: list[np.ndarray] = []
        self.discounts: list[tuple[float, float, float]] = []
        self.fallback: list[bool] = []
        self.logp: list[np.ndarray] = []
        self.logb: list[np.ndarray] = []


def estimate(
    ids: np.ndarray,
    order: int,
    vocab_size: int,
    *,
    discounts: list[tuple[float, float, float]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Estimate:
    """Train interpolated modified Kneser–Ney on `ids`: sentences back to back, each ``<s> ... </s>``.

    Conventions are KenLM's (`lmplz`), so the ARPA files agree: n-grams that start with ``<s>`` keep
    their raw counts at every order (nothing can precede ``<s>``, so they have no continuation count);
    ``<s>`` itself is context only (probability 0, "-99" in ARPA); the unigram distribution is
    interpolated with the uniform one over the vocabulary without ``<s>``; ``<unk>`` has count 0 and
    so gets only that uniform share. `discounts` overrides the estimated (D1, D2, D3+) per order.
    """
    order = check_order(order)
    say = progress or (lambda _msg: None)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    T, V = len(ids), int(vocab_size)
    if T == 0 or not (ids != BOS).any():
        raise CorpusError("the corpus is empty: no sentences to count; fix: check the path or the text")
    if (ids >= V).any() or (ids < 0).any():
        raise ValueError(f"ids must lie in [0, {V})")
    if T * V >= 2**62:
        raise ConfigError(f"{T:,} tokens x vocabulary {V:,} overflow the int64 n-gram keys; "
                          "fix: train on less text")
    if ids[0] != BOS or ids[-1] != EOS:
        raise ValueError("ids must be whole sentences: start with <s> (1) and end with </s> (2)")
    # Longest n-gram that may start at i without passing its sentence's </s>.
    eos_pos = np.flatnonzero(ids == EOS)
    room = eos_pos[np.searchsorted(eos_pos, np.arange(T))] - np.arange(T) + 1

    est = Estimate(order, V)
    # ---- counting: distinct n-grams, raw counts, and the rank of every position's n-gram
    say("counting 1-grams")
    est.keys.append(np.arange(V, dtype=np.int64))
    est.counts.append(np.bincount(ids, minlength=V).astype(np.int64))
    index = ids.copy()  # index_1: the rank of each position's unigram is its id
    prefix: list[np.ndarray] = [np.zeros(0, np.int64)]  # rank of each n-gram's first n-1 words
    suffix: list[np.ndarray] = [np.zeros(0, np.int64)]  # rank of its last n-1 words
    first: list[np.ndarray] = [np.arange(V, dtype=np.int64)]  # its first word (for the <s> rule)
    for n in range(2, order + 1):
        say(f"counting {n}-grams")
        pos = np.flatnonzero(room[: T - n + 1] >= n)  # n-grams inside one sentence
        key = index[pos] * V + ids[pos + n - 1]
        uniq, at, inv = np.unique(key, return_index=True, return_inverse=True)
        est.keys.append(uniq)
        est.counts.append(np.bincount(inv, minlength=len(uniq)).astype(np.int64))
        prefix.append(uniq // V)
        suffix.append(index[pos[at] + 1])  # the (n-1)-gram one position later: w_2..w_n
        first.append(first[-1][prefix[-1]])
        index = np.full(T, -1, dtype=np.int64)
        index[pos] = inv

    # ---- adjusted counts a(): raw at the highest order and for n-grams starting with <s>,
    # continuation counts N1+(• w_1..w_n) below.
    for n in range(1, order + 1):
        if n == order:
            a = est.counts[n - 1].copy()
        else:
            cont = np.bincount(suffix[n], minlength=len(est.keys[n - 1])).astype(np.int64)
            a = np.where(first[n - 1] == BOS, est.counts[n - 1], cont)
        if n == 1:
            a[BOS] = 0  # <s> is never predicted (its raw count is the number of sentences)
        est.adjusted.append(a)

    # ---- discounts per order from count-of-counts of the adjusted counts
    for n in range(1, order + 1):
        if discounts is not None:
            d, fell = tuple(float(x) for x in discounts[n - 1]), False
        else:
            coc = count_of_counts(est.adjusted[n - 1])
            d, fell = discounts_from_count_of_counts(coc)
            if fell:
                warnings.warn(f"{n}-gram discounts cannot be estimated from this corpus (too small or "
                              f"artificial: count-of-counts n1..n4 = {coc[1:].tolist()}); "
                              f"using KenLM's fallback D1, D2, D3+ = {FALLBACK_DISCOUNTS}", stacklevel=2)
        est.discounts.append(d)  # type: ignore[arg-type]
        est.fallback.append(fell)

    # ---- probabilities, lowest order first: p_n = u_n + γ(prefix) · p_{n-1}(suffix)
    say("interpolating")
    p_lower = None
    for n in range(1, order + 1):
        a = est.adjusted[n - 1]
        dk = np.array([0.0, *est.discounts[n - 1]])[np.minimum(a, 3)]  # D(a): 0 for a=0
        if n == 1:
            total = a.sum()
            gamma0 = _gamma(a, dk, np.zeros(V, np.int64), 1)[0] / total
            p = (a - dk) / total + gamma0 / (V - 1)  # uniform over the vocabulary without <s>
            p[BOS] = 0.0
        else:
            ctx = prefix[n - 1]
            m = len(est.keys[n - 2])
            total = np.bincount(ctx, weights=a, minlength=m)
            gamma = _gamma(a, dk, ctx, m) / np.where(total > 0, total, 1)
            p = (a - dk) / total[ctx] + gamma[ctx] * p_lower[suffix[n - 1]]
            # the backoff weight of an (n-1)-gram is its γ as a context, 1 where it is none
            est.logb.append(np.where(total > 0, np.log10(np.where(total > 0, gamma, 1)), 0.0))
        with np.errstate(divide="ignore"):
            est.logp.append(np.log10(p))
        p_lower = p
    return est


def _gamma(a: np.ndarray, dk: np.ndarray, ctx: np.ndarray, m: int) -> np.ndarray:
    """Σ_k D_k N_k(h •) per context h: the discounted mass, before dividing by Σ_w a(h w)."""
    return np.bincount(ctx, weights=dk * (a > 0), minlength=m)
