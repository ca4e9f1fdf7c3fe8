r"""Interpolated modified Kneser–Ney, the textbook way: dictionaries of counts and one recursion.

Chen & Goodman (1998), "An Empirical Study of Smoothing Techniques for Language Modeling", §3.5 and
eq. 26; the conventions of KenLM's `lmplz` (Heafield et al. 2013) for sentence boundaries. Slow and
plain on purpose; `zhixing.ngram.kneser_ney` computes the same numbers with NumPy, and
tests/ngram/test_reference.py proves them equal.

Notation: an n-gram is w_1..w_n, its *context* h = w_1..w_{n-1}, h' = w_2..w_{n-1} (h without its
first word), N = the model's order, c(·) raw counts in the training sentences ``<s> w_1 .. w_m </s>``.

1. **Adjusted counts** (the Kneser–Ney idea: a lower order is only used when the longer context was
   not seen, so it should model how many *different* contexts a word continues, not how often it
   occurs)::

        a(w_1..w_n) = c(w_1..w_n)                          if n = N, or w_1 = <s>
                    = N1+(• w_1..w_n) = |{v : c(v w_1..w_n) > 0}|   otherwise

   (n-grams that start with <s> cannot be continued to the left, so they keep their raw count.)

2. **Discounts** per order n, from the count-of-counts t_k = |{n-grams with a = k}| (eq. 26)::

        Y = t_1 / (t_1 + 2 t_2)        D_k = k − (k+1) · Y · t_{k+1} / t_k     (k = 1, 2, 3+)

   D(a) = D_1, D_2 or D_3+ for a = 1, 2, >= 3.

3. **Interpolation** (eq. 17 with modified discounts)::

        P(w | h) = max(a(h w) − D(a(h w)), 0) / Σ_v a(h v)  +  γ(h) · P(w | h')

        γ(h) = (D_1 N_1(h •) + D_2 N_2(h •) + D_3+ N_3+(h •)) / Σ_v a(h v)

   where N_k(h •) = |{v : a(h v) = k}| (N_3+: >= 3). When h was never seen as a context, P(w | h) =
   P(w | h'). The recursion ends in the uniform distribution over the vocabulary V (all seen tokens,
   ``</s>`` and ``<unk>``, not ``<s>``): P(w | ∅) = (a(w) − D(a(w))) / Σ_v a(v) + γ(∅) / |V|.
   ``<unk>`` has a = 0, so P(<unk>) = γ(∅) / |V|.

``variant="nltk"`` computes NLTK 3.x's `nltk.lm.KneserNeyInterpolated` instead (for the parity test):
one fixed `discount` for every order and count; sentences padded with N−1 ``<s>`` and N−1 ``</s>``
that are ordinary tokens (no raw-count rule for ``<s>``); the unigram level is N1+(• w) / N1+(• •)
with no discount and no uniform term (an unseen word gets probability 0); and γ(h)'s numerator counts
the words v with a *raw* count c(h v) > 0.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def discounts(count_of_counts: dict[int, int]) -> tuple[float, float, float]:
    """(D_1, D_2, D_3+) from t_k = count_of_counts[k] (Chen & Goodman eq. 26); KenLM's fallback
    (0.5, 1, 1.5) when a t_k (k <= 3) is 0 or a D_k falls outside [0, k] (tiny or artificial data)."""
    t = count_of_counts
    if min(t.get(1, 0), t.get(2, 0), t.get(3, 0)) == 0:
        return (0.5, 1.0, 1.5)
    y = t[1] / (t[1] + 2 * t[2])
    d = tuple(k - (k + 1) * y * t.get(k + 1, 0) / t[k] for k in (1, 2, 3))
    return d if all(0 <= dk <= k for k, dk in zip((1, 2, 3), d)) else (0.5, 1.0, 1.5)  # type: ignore


class ReferenceKneserNey:
    """The textbook model. sentences: lists of tokens (no markers); order: N."""

    def __init__(self, sentences: Iterable[Sequence[str]], order: int, *, variant: str = "kenlm",
                 discount: float | None = None):  # fmt: skip
        if variant not in ("kenlm", "nltk"):
            raise ValueError(f"variant={variant!r}: use 'kenlm' or 'nltk'")
        self.N, self.variant = order, variant
        # raw counts c() of every n-gram, n = 1..N, inside each padded sentence
        self.c: list[Counter] = [Counter() for _ in range(order + 1)]  # c[n][ngram tuple]
        pad = order - 1 if variant == "nltk" else 1
        for sent in sentences:
            toks = [BOS] * pad + list(sent) + [EOS] * (pad if variant == "nltk" else 1)
            for n in range(1, order + 1):
                for i in range(len(toks) - n + 1):
                    self.c[n][tuple(toks[i: i + n])] += 1
        if variant == "kenlm":
            del self.c[1][(BOS,)]  # <s> is context only

        # 1. adjusted counts a()
        left: list[Counter] = [Counter() for _ in range(order + 1)]  # N1+(• g) for g of order n
        for n in range(2, order + 1):
            for g in self.c[n]:
                left[n - 1][g[1:]] += 1
        self.a: list[dict] = [{} for _ in range(order + 1)]
        for n in range(1, order + 1):
            for g, count in self.c[n].items():
                raw = n == order or (variant == "kenlm" and g[0] == BOS)
                self.a[n][g] = count if raw else left[n][g]
        self.vocab = {g[0] for g in self.c[1]} | {UNK} - {BOS}
        if variant == "kenlm":
            self.a[1].setdefault((UNK,), 0)
            self.vocab.discard(BOS)

        # 2. discounts per order
        self.D: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]
        for n in range(1, order + 1):
            if discount is not None:
                self.D.append((discount, discount, discount))
            else:
                t = Counter(v for v in self.a[n].values())
                self.D.append(discounts(t))

        # per-context sums: Σ_v a(h v) and N_k(h •) (and, for NLTK, |{v : c(h v) > 0}|)
        self.total: list[dict] = [defaultdict(float) for _ in range(order + 1)]
        self.nk: list[dict] = [defaultdict(lambda: [0, 0, 0, 0]) for _ in range(order + 1)]
        self.types: list[dict] = [defaultdict(int) for _ in range(order + 1)]
        for n in range(1, order + 1):
            for g, a in self.a[n].items():
                h = g[:-1]
                self.total[n][h] += a
                self.nk[n][h][min(a, 3)] += 1
            for g in self.c[n]:
                self.types[n][g[:-1]] += 1

    def d(self, n: int, a: int) -> float:
        """D(a) at order n (0 for a = 0)."""
        return 0.0 if a == 0 else self.D[n][min(a, 3) - 1]

    def gamma(self, h: tuple) -> float:
        """γ(h): the probability mass that context h leaves to the lower order."""
        n = len(h) + 1
        Dn = self.D[n]
        if self.variant == "nltk":
            return Dn[0] * self.types[n][h] / self.total[n][h]
        _, n1, n2, n3 = self.nk[n][h]
        return (Dn[0] * n1 + Dn[1] * n2 + Dn[2] * n3) / self.total[n][h]

    def prob(self, word: str, context: Sequence[str] = ()) -> float:
        """P(word | context): the interpolation recursion, longest context first."""
        h = tuple(context)[-(self.N - 1):] if self.N > 1 else ()
        if word not in self.vocab and (word,) not in self.a[1]:
            word = UNK
        n = len(h) + 1
        if n == 1:
            if self.variant == "nltk":
                return self.a[1].get((word,), 0) / self.total[1][()]
            a = self.a[1].get((word,), 0)
            return max(a - self.d(1, a), 0) / self.total[1][()] + self.gamma(()) / len(self.vocab)
        lower = self.prob(word, h[1:])
        if self.total[n].get(h, 0) == 0:  # h never seen as a context
            return lower
        a = self.a[n].get((*h, word), 0)
        return max(a - self.d(n, a), 0) / self.total[n][h] + self.gamma(h) * lower

    def sentence_log10(self, sentence: Sequence[str]) -> float:
        """log10 P(sentence): every token and </s>, given <s> (as kenlm.Model.score)."""
        toks = [BOS, *sentence, EOS]
        return sum(math.log10(self.prob(toks[i], toks[max(0, i - self.N + 1): i]))
                   for i in range(1, len(toks)))
