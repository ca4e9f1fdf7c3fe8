"""Where a tokenizer puts its special tokens around one text or a pair, and how it pads a batch.

Encoders that assemble inputs from pieces (NER windows, QA question + context window) cannot call the
tokenizer's template on ids they cut themselves, so they ask the tokenizer for its `Layout`:

    BERT     [CLS] A [SEP]     [CLS] A [SEP] B [SEP]     types 0 … 0 | 1 … 1       pads right, type 0
    XLNet    A <sep> <cls>     A <sep> B <sep> <cls>     types 0 … 0 | 1 … 1 | 2   pads LEFT, type 3
    RoBERTa  <s> A </s>        <s> A </s></s> B </s>

The layout is read from the tokenizer's own post-processor (one probe encoding of a single text and one
of a pair), so it is the same template `encode` applies — no family is named here. Padding side and the
padding's token type come from the tokenizer (`padding_side`, `pad_type_id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import TokenizerError

_PROBES = ("a", "x", "1", "的", ".")  # texts to probe with: the first that yields a token is used


@dataclass(frozen=True)
class Built:
    """One assembled input: ids, token types, where A (and B) start, and the classification token's
    position (None when the layout has none)."""

    ids: list[int]
    types: list[int]
    starts: tuple[int, ...]
    cls: int | None


@dataclass(frozen=True)
class Layout:
    """Special tokens around the text(s) and the padding rule (module docstring)."""

    single: tuple[tuple[int, ...], tuple[int, ...]]  # special ids before A, after A
    single_types: tuple[tuple[int, ...], tuple[int, ...]]
    pair: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # before A, between A and B, after B
    pair_types: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    text_types: tuple[int, int]  # token type of A's and of B's tokens
    cls_id: int | None  # the classification token (its position is Built.cls)
    pad_id: int
    pad_left: bool = False  # XLNet pads on the left, so its last token (<cls>) stays last
    pad_type_id: int = 0

    @property
    def single_extra(self) -> int:
        """Special tokens added around one text."""
        return sum(map(len, self.single))

    @property
    def pair_extra(self) -> int:
        """Special tokens added around a pair."""
        return sum(map(len, self.pair))

    def build(self, a: Sequence[int], b: Sequence[int] | None = None) -> Built:
        """The input of text ids `a` (and `b`) with the special tokens where the tokenizer puts them."""
        texts = [list(a)] if b is None else [list(a), list(b)]
        specials = self.single if b is None else self.pair
        kinds = self.single_types if b is None else self.pair_types
        ids, types, starts = [], [], []
        cls = None
        for i, (sp, sp_types) in enumerate(zip(specials, kinds)):
            for t, k in zip(sp, sp_types):
                if t == self.cls_id and cls is None:
                    cls = len(ids)
                ids.append(t)
                types.append(k)
            if i < len(texts):
                starts.append(len(ids))
                ids += texts[i]
                types += [self.text_types[i]] * len(texts[i])
        return Built(ids, types, tuple(starts), cls)

    def spread(self, a: Sequence[Any], b: Sequence[Any] | None = None, fill: Any = None) -> list[Any]:
        """Per-token values of A (and B) laid out as `build` lays out their ids, `fill` at special tokens
        (NER: word indices of the first sub-tokens, None on [CLS] / <sep> / <cls>)."""
        specials = self.single if b is None else self.pair
        texts = [list(a)] if b is None else [list(a), list(b)]
        out: list[Any] = []
        for i, sp in enumerate(specials):
            out += [fill] * len(sp)
            if i < len(texts):
                out += texts[i]
        return out


def layout_of(tokenizer: Any) -> Layout:
    """The Layout of a zhixing Tokenizer, read from its template by probe encodings."""
    probe = next((p for p in _PROBES if tokenizer.encode(p, add_special_tokens=False).ids), None)
    if probe is None:
        raise TokenizerError("cannot read the tokenizer's special-token layout: it encodes none of "
                             f"{_PROBES} to a token")
    n = len(tokenizer.encode(probe, add_special_tokens=False).ids)
    single = tokenizer.encode(probe)
    pair = tokenizer.encode(probe, probe)

    def cut(enc, parts: int) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...], list[int]]:
        ids, types, seq = enc.ids, enc.type_ids, enc.sequence_ids
        groups: list[list[int]] = [[] for _ in range(parts)]
        kinds: list[list[int]] = [[] for _ in range(parts)]
        text_types, k = [], 0
        i = 0
        while i < len(ids):
            if seq[i] is None:
                groups[k].append(ids[i])
                kinds[k].append(types[i])
                i += 1
            else:
                text_types.append(types[i])
                i += n
                k += 1
        if k != parts - 1:
            raise TokenizerError(f"cannot read the tokenizer's special-token layout from {enc.tokens}")
        return tuple(map(tuple, groups)), tuple(map(tuple, kinds)), text_types

    s_ids, s_types, _ = cut(single, 2)
    p_ids, p_types, text_types = cut(pair, 3)
    pad = tokenizer.pad_id
    return Layout(single=s_ids, single_types=s_types, pair=p_ids, pair_types=p_types,
                  text_types=(text_types[0], text_types[1]), cls_id=tokenizer.cls_id,
                  pad_id=pad if pad is not None else 0, pad_left=tokenizer.padding_side == "left",
                  pad_type_id=tokenizer.pad_type_id)


def use_xlnet_layout(tokenizer: Any) -> None:
    """Give a tokenizer (any kind with cls and sep roles: WordPiece too) XLNet's template, A <sep> <cls> /
    A <sep> B <sep> <cls> with <cls> type 2, and XLNet's left padding with type 3 — in place."""
    from .spiece import XLNET_PAD_TYPE_ID, xlnet_template

    roles = tokenizer.special_tokens
    missing = [r for r in ("cls", "sep", "pad") if r not in roles]
    if missing:
        raise TokenizerError(f"XLNet's layout needs the special-token roles cls, sep and pad; this tokenizer "
                             f"lacks {', '.join(missing)}")
    xlnet_template(tokenizer.backend, roles)
    tokenizer.padding_side, tokenizer.pad_type_id = "left", XLNET_PAD_TYPE_ID


LAYOUTS = {"xlnet": use_xlnet_layout}  # Model.tokenizer_layout -> what gives a tokenizer that layout


def apply_layout(tokenizer: Any, name: str | None) -> None:
    """Give `tokenizer` the layout a model family declares (Model.tokenizer_layout; None: keep its own)."""
    if name is None:
        return
    if name not in LAYOUTS:
        raise TokenizerError(f"unknown tokenizer layout {name!r}; known: {', '.join(LAYOUTS)}")
    LAYOUTS[name](tokenizer)


__all__ = ["Built", "LAYOUTS", "Layout", "apply_layout", "layout_of", "use_xlnet_layout"]
