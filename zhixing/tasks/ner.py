"""Named-entity recognition as token classification.

    p(y_i | x) = softmax(W h_L[i] + b)   for the first sub-token i of each word;  L = mean -log p(y*_i | x)

Words are tokenized into sub-tokens; only a word's first sub-token carries its label (the others get
-100 and take no part in the loss or the prediction), as in BERT's CoNLL-2003 setup. Sentences longer
than the model's window are split at word boundaries into several windows. Tags are converted to the
configured scheme (IOB1 / IOB2 / BIOES) for training, and scored at the entity level (metrics.py).

Document context (`context=k`, FLERT: Schweter & Akbik 2020): a sentence that fits its window is read
together with up to k sub-tokens of the sentences before it and k after it in the same document (CoNLL's
`-DOCSTART-` lines), which carry no labels — the model sees "Germany" named in the previous sentence
when it tags "Klinsmann". Sentences with no known document (Parquet rows, raw text) get no context.

Casing (`casing=true`): an uncased tokenizer lowercases "Germany" to "germany" before the model sees it,
and capitalisation is CoNLL's strongest single cue. Each sub-token's own characters (the tokenizer's
offsets into the original text) give it a casing class — lower, Title, UPPER, mIxed — read as a token
type: ids 2–5 of a segment-type table grown from the checkpoint's rows, every new row a copy of row 0, so
the model starts out exactly as pretrained (the casing embeddings of Reimers & Gurevych 2017, added at the
input so that every layer can use them). Pieces without cased letters (digits, punctuation, CJK) and the
special tokens keep type 0. The grown model is still a plain BERT (`type_vocab_size` 6; it exports to
transformers as such). The default (`casing=none`) turns it on when the tokenizer lowercases and the model
has a token-type table (`adapt`, when fine-tuning loads the model); the run records the settled value.
"""

from __future__ import annotations

import bisect
import re
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zhixing.errors import ConfigError
from zhixing.tasks.base import Task, WeightedConfig
from zhixing.tasks.data import DataError, TaggedSentence, first_real, forward_all, read_tagged
from zhixing.tasks.metrics import convert_tags, entity_scores, get_entities


@dataclass
class NerConfig(WeightedConfig):
    """Settings of `zhixing finetune --task ner`."""

    scheme: typing.Literal["iob1", "iob2", "bioes"] = "iob2"  # tag scheme the model is trained in
    token_column: int = 0  # column of the token in CoNLL files
    tag_column: int = -1  # column of the tag (last by default)
    context: int = 0  # sub-tokens of the same document's neighbouring sentences on each side (0 = none)
    # each sub-token's casing (lower / Title / UPPER / mIxed) as its token type; none (the default) = on
    # when the tokenizer lowercases and the model has a token-type table (BERT, RoBERTa, ELECTRA)
    casing: bool | None = None


# Words of raw text for prediction: a CJK character each, runs of letters/digits, single other symbols.
_WORDS = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+|\S", re.UNICODE)

# Token types of the casing classes (module docstring); 0 and 1 stay the checkpoint's segment types.
CASE_TYPES = {"lower": 2, "title": 3, "upper": 4, "mixed": 5}
CASE_TYPE_VOCAB = 6  # the segment-type table's rows with casing


def case_type(piece: str) -> int:
    """The casing class of a piece of original text as its token type (CASE_TYPES), 0 without cased
    letters: "germany" lower, "Germany" / "A" title, "EU" upper, "McDonald" / "iPhone" mixed."""
    cased = [c for c in piece if c.lower() != c.upper()]
    if not cased:
        return 0
    if all(c.islower() for c in cased):
        return CASE_TYPES["lower"]
    if cased[0].isupper() and all(c.islower() for c in cased[1:]):
        return CASE_TYPES["title"]
    return CASE_TYPES["upper"] if all(c.isupper() for c in cased) else CASE_TYPES["mixed"]


def adapt(cfg: Any, model: Any) -> Any:
    """cfg with casing settled for `model` (auto: on for a lowercasing tokenizer and a model with a
    token-type table); with casing the model's table grows to CASE_TYPE_VOCAB rows."""
    casing = cfg.casing
    if casing is None:
        uncased = bool(getattr(model.tokenizer, "lowercase", False))
        casing = uncased and getattr(model, "type_embed", None) is not None
    if casing:
        grow_type_table(model, CASE_TYPE_VOCAB, cfg.model or "the model")
    return cfg.replace(casing=casing)


def read(path: str, cfg: Any, labeled: bool = True) -> list[TaggedSentence]:
    """Sentences of a CoNLL / MSRA file with tags rewritten in cfg.scheme."""
    return prepare(read_tagged(path, token_column=cfg.token_column, tag_column=cfg.tag_column), cfg)


def prepare(sents: list[TaggedSentence], cfg: Any) -> list[TaggedSentence]:
    """Rewrite the tags in cfg.scheme (in place; any of IOB1/IOB2/BIOES is read, see metrics.py)."""
    for s in sents:
        s.tags = convert_tags(s.tags, cfg.scheme)
    return sents


def label_names(sents: Sequence[TaggedSentence]) -> list[str]:
    """"O" first, then the tags sorted by entity type and position letter."""
    tags = {t for s in sents for t in s.tags} - {"O"}
    return ["O", *sorted(tags, key=lambda t: (t[2:], t[0]))]


def check_labels(sents: Sequence[TaggedSentence], names: Sequence[str], source: str) -> None:
    unseen = sorted({t for s in sents for t in s.tags} - set(names))
    if unseen:
        first = {u: next(s.where for s in sents if u in s.tags) for u in unseen}
        listed = ", ".join(f"{u!r} (sentence at {first[u]})" for u in unseen[:20])
        raise DataError(f"{source}: tags never seen in training: {listed}; training tags: "
                        f"{', '.join(names)}. "
                        "Fix the tags or train on data that has them")


def words_of(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split raw text into words with (start, end) character spans (for prediction on plain strings)."""
    spans = [m.span() for m in _WORDS.finditer(text)]
    return [text[s:e] for s, e in spans], spans


def grow_type_table(model: Any, rows: int, source: str = "the model") -> Any:
    """`model` with its segment-type table grown to `rows` rows, each new row a copy of row 0 (so inputs
    of type 0 read exactly as before; NER's casing types start from there). A table that already has
    `rows` rows is kept; a model without one is an error."""
    table = getattr(model, "type_embed", None)
    if table is None:
        raise ConfigError(f"{source}: a {model.config.arch} has no token-type embeddings to hold casing "
                          "types (casing=true needs a BERT / RoBERTa / ELECTRA encoder)")
    have = table.num_embeddings
    if have == rows:
        return model
    if have > rows:
        raise ConfigError(f"{source}: its token-type table has {have} rows, more than the {rows} asked for")
    grown = torch.nn.Embedding(rows, table.embedding_dim).to(table.weight.device, table.weight.dtype)
    with torch.no_grad():
        grown.weight[:have] = table.weight
        grown.weight[have:] = table.weight[0]
    model.type_embed = grown
    model.config = model.config.replace(type_vocab_size=rows)
    return model


def _windows(tokenizer: Any, sentences: Sequence[Sequence[str]], max_seq_len: int,
             docs: Sequence[int | None] | None = None, context: int = 0, casing: bool = False
             ) -> list[tuple[int, list[int], list[int], list[int | None]]]:
    """(sentence index, input ids, token types, word index of each token where it is a word's first
    sub-token).

    The words are joined by spaces and tokenized once; each token is mapped back to the word whose
    characters it starts in (with SentencePiece a word's first piece may be its "▁" alone: it carries
    the label, as transformers' word_ids give it). Windows hold at most max_seq_len minus the special
    tokens and break between words; the special tokens go where the tokenizer's layout puts them
    (BERT: [CLS] words [SEP]; XLNet: words <sep> <cls>). With `context` and `docs` (each sentence's
    document), a sentence that fits one window gets its document neighbours' sub-tokens around it
    (`_neighbours`), unlabelled. With `casing`, each sub-token's type is its casing class (`case_type` of
    its characters; 0 keeps the layout's type)."""
    if tokenizer.cls_id is None or tokenizer.sep_id is None:
        raise DataError("token classification needs a tokenizer with classification and separator tokens "
                        "([CLS]/[SEP] or XLNet's <cls>/<sep>)")
    layout = tokenizer.layout
    texts, starts = [], []
    for words in sentences:
        pos, st = 0, []
        for w in words:
            st.append(pos)
            pos += len(w) + 1
        texts.append(" ".join(words))
        starts.append(st)
    encs = tokenizer.encode_batch(texts, add_special_tokens=False)
    token_ids = [list(enc.ids) for enc in encs]
    cases = [[case_type(text[a:b]) for a, b in enc.offsets] for text, enc in zip(texts, encs)] \
        if casing else [[0] * len(ids) for ids in token_ids]
    out = []
    room = max_seq_len - layout.single_extra

    def window(n: int, ids: list[int], first: list[int | None], case: list[int]
               ) -> tuple[int, list[int], list[int], list]:
        built = layout.build(ids)
        types = [c or t for t, c in zip(built.types, layout.spread(case, fill=0))]
        return n, built.ids, types, layout.spread(first)
    for n, (enc, st) in enumerate(zip(encs, starts)):
        word_of = [bisect.bisect_right(st, a) - 1 for a, _ in enc.offsets]
        if context > 0 and docs is not None and docs[n] is not None and len(enc.ids) < room:
            left, right = _neighbours(token_ids, docs, n, context, room - len(enc.ids))
            cl, cr = _neighbours(cases, docs, n, context, room - len(enc.ids))
            firsts = [w if i == 0 or w != word_of[i - 1] else None for i, w in enumerate(word_of)]
            labelled = [None] * len(left) + firsts + [None] * len(right)
            out.append(window(n, left + token_ids[n] + right, labelled, cl + cases[n] + cr))
            continue
        ids, first, case = [], [], []
        prev = -1
        for tid, w, c in zip(token_ids[n], word_of, cases[n]):
            is_first = w != prev
            prev = w
            # a new window when this word's sub-tokens would not fit (a word longer than a window is cut)
            if is_first and ids and len(ids) + _word_len(word_of, w) > room:
                out.append(window(n, ids, first, case))
                ids, first, case = [], [], []
            if len(ids) < room:
                ids.append(tid)
                first.append(w if is_first else None)
                case.append(c)
        out.append(window(n, ids, first, case))
    return out


def _neighbours(seqs: Sequence[Sequence[int]], docs: Sequence[int | None], n: int, k: int, room: int
                ) -> tuple[list[int], list[int]]:
    """The last <= k per-sub-token values (ids, casing types) of the sentences before sentence n and the
    first <= k after it, from the sentences next to it in the list that share its document; together at
    most `room` (split evenly when both sides are long)."""
    left: list[int] = []
    m = n - 1
    while len(left) < k and m >= 0 and docs[m] == docs[n]:
        left[:0] = seqs[m]
        m -= 1
    right: list[int] = []
    m = n + 1
    while len(right) < k and m < len(seqs) and docs[m] == docs[n]:
        right += seqs[m]
        m += 1
    nl, nr = min(k, len(left)), min(k, len(right))
    if nl + nr > room:
        half = room // 2  # a short side keeps all it has, the other takes the rest
        if nl <= half:
            nr = room - nl
        elif nr <= room - half:
            nl = room - nr
        else:
            nl, nr = half, room - half
    return left[len(left) - nl:], right[:nr]


def _word_len(word_of: list[int], w: int) -> int:
    """Sub-tokens of word w (word_of is sorted, so a bisect finds its run)."""
    return bisect.bisect_right(word_of, w) - bisect.bisect_left(word_of, w)


def encode_train(sents: Sequence[TaggedSentence], tokenizer: Any, cfg: Any, names: Sequence[str]
                 ) -> list[dict[str, Any]]:
    """Training features (`encode`), warning about words that end up without a labelled sub-token."""
    feats = encode(sents, tokenizer, cfg.max_seq_len, names, context=cfg.context, casing=cfg.casing)
    warn_dropped(sents, feats)
    return feats


def encode(sents: Sequence[TaggedSentence], tokenizer: Any, max_seq_len: int,
           names: Sequence[str] | None = None, context: int = 0, casing: bool = False
           ) -> list[dict[str, Any]]:
    """Features: input_ids, token_type_ids, labels (first sub-tokens only, else -100), and the (sentence,
    word) map; `context` sub-tokens of document neighbours on each side, `casing` types (module
    docstring)."""
    index = {n: i for i, n in enumerate(names or [])}
    feats = []
    for n, ids, types, first in _windows(tokenizer, [s.tokens for s in sents], max_seq_len,
                                         [s.doc for s in sents], context, casing):
        f: dict[str, Any] = {"input_ids": ids, "token_type_ids": types, "sentence": n, "word_index": first}
        if names is not None:
            tags = sents[n].tags
            f["labels"] = [-100 if w is None else index[tags[w]] for w in first]
        feats.append(f)
    return feats


def tag_sentences(model: torch.nn.Module, tokenizer: Any, words: Sequence[Sequence[str]], max_seq_len: int,
                  batch_size: int = 64, gold: Sequence[Sequence[str]] | None = None,
                  docs: Sequence[int | None] | None = None, context: int = 0, casing: bool = False
                  ) -> tuple[list[list[str]], list[list[float]], float | None]:
    """Predicted tags and their probabilities per word; words with no sub-token (dropped by the
    tokenizer's normaliser) get "O". With `gold` the mean loss is returned too; with `docs` (each
    sentence's document) and `context`, sentences are read with their document neighbours; `casing`: as
    the model was trained (its task settings)."""
    names = model.config.label_names or [str(i) for i in range(model.config.num_labels)]
    sents = [TaggedSentence(list(w), list(g) if gold is not None else ["O"] * len(w),
                            doc=docs[i] if docs is not None else None)
             for i, (w, g) in enumerate(zip(words, gold if gold is not None else words))]
    feats = encode(sents, tokenizer, max_seq_len, names if gold is not None else None, context, casing)
    tags = [["O"] * len(w) for w in words]
    probs = [[1.0] * len(w) for w in words]
    loss_sum, n_tok = 0.0, 0
    for idx, batch, out in forward_all(model, feats, batch_size, tokenizer.layout):
        p, best = out.logits.softmax(-1).max(-1)  # (batch, seq)
        for r, i in enumerate(idx):
            sent, first = feats[i]["sentence"], feats[i]["word_index"]
            at = first_real(batch, r)  # after any left padding (XLNet)
            for i, w in enumerate(first):
                if w is not None:
                    tags[sent][w] = names[int(best[r, at + i])]
                    probs[sent][w] = float(p[r, at + i])
        if out.loss is not None:
            k = int((batch["labels"] != -100).sum())
            loss_sum += float(out.loss) * k
            n_tok += k
    return tags, probs, (loss_sum / n_tok if n_tok else None)


def evaluate(model: torch.nn.Module, tokenizer: Any, sents: Sequence[TaggedSentence], cfg: Any,
             ) -> dict[str, float]:
    """Entity precision / recall / F1 (micro, seqeval's way), per-type F1 and val_loss."""
    pred, _, loss = tag_sentences(model, tokenizer, [s.tokens for s in sents], cfg.max_seq_len,
                                  cfg.eval_batch_size, gold=[s.tags for s in sents],
                                  docs=[s.doc for s in sents], context=cfg.context, casing=cfg.casing)
    return {**entity_scores([s.tags for s in sents], pred), "val_loss": loss}


def entities(words: Sequence[str], spans: Sequence[tuple[int, int]], tags: Sequence[str],
             probs: Sequence[float], text: str) -> list[dict[str, Any]]:
    """[{"type", "text", "start", "end", "score"}] with character offsets into `text`."""
    out = []
    for type_, s, e in get_entities(list(tags)):
        a, b = spans[s][0], spans[e][1]
        out.append({"type": type_, "text": text[a:b], "start": a, "end": b,
                    "score": sum(probs[s:e + 1]) / (e - s + 1)})
    return out


def predict(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], cfg: Any) -> list[list[dict]]:
    """Entities of raw strings, with character spans (each string read alone: no document context)."""
    split = [words_of(t) for t in texts]
    tags, probs, _ = tag_sentences(model, tokenizer, [w for w, _ in split], cfg.max_seq_len,
                                   cfg.eval_batch_size, casing=cfg.casing)
    return [entities(w, sp, tg, pr, t) for (w, sp), tg, pr, t in zip(split, tags, probs, texts)]


def class_weights(sents: Sequence[TaggedSentence], names: Sequence[str]) -> list[float]:
    """"balanced" tag weights n / (k · n_c) over word tags."""
    counts = {n: 0 for n in names}
    for s in sents:
        for t in s.tags:
            counts[t] += 1
    total = sum(counts.values())
    return [total / (len(names) * max(counts[n], 1)) for n in names]


def warn_dropped(sents: Sequence[TaggedSentence], feats: Sequence[dict[str, Any]]) -> None:
    labelled = sum(sum(w is not None for w in f["word_index"]) for f in feats)
    words = sum(len(s.tokens) for s in sents)
    if labelled < words:
        warnings.warn(f"{words - labelled} of {words} words produced no sub-token (or were cut from a "
                      "window) "
                      "and take no part in training", stacklevel=2)


def inputs(items: Sequence[Any]) -> list[str]:
    return [str(x) for x in items]


TASK = Task(name="ner", head="token_cls", metric="f1", config=NerConfig, read=read, prepare=prepare,
            encode_train=encode_train, evaluate=evaluate, predict=predict, inputs=inputs,
            label_names=label_names, check_labels=check_labels, class_weights=class_weights,
            adapt=adapt)
