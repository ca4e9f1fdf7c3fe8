"""Statistical n-gram language models: interpolated modified Kneser–Ney (Chen & Goodman 1998).

    from zhixing.ngram import NgramModel
    lm = NgramModel.train("peoples-daily", order=5, unit="char")      # seconds
    lm.perplexity(["今天天气很好。"])["perplexity"]
    lm.save("pd5.arpa")  # or .npz; NgramModel.load(...) reads both, and any KenLM/SRILM ARPA file
    lm.sample(seed=0)

- reference.py   the textbook recursion, equations in the docstring (slow, for reading and tests)
- kneser_ney.py  the same estimate vectorised with NumPy (what `NgramModel.train` runs)
- model.py       `NgramModel`: backoff tables, scoring, perplexity, sampling, .npz save/load
- arpa.py        ARPA read/write
- units.py       text -> token ids (char, word, tokenizer), sentence markers, ARPA escaping
"""

from .arpa import write_arpa
from .kneser_ney import MAX_ORDER, discounts_from_count_of_counts, estimate
from .model import NgramModel, perplexity_of_shards, read_arpa
from .units import UNITS, Units, Vocabulary

__all__ = ["NgramModel", "read_arpa", "write_arpa", "estimate", "discounts_from_count_of_counts",
           "perplexity_of_shards", "Units", "Vocabulary", "UNITS", "MAX_ORDER"]
