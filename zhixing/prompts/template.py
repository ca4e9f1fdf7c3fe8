"""Templates and verbalizers: the two halves of a cloze prompt (PET, Schick & Schütze 2021).

A template is text with fields: `{text}` (also `{text_a}`), `{text_b}` (the pair of a pair task), `{mask}`
(the slot the label is read from; exactly once) and `[T]` (a trigger token, found by AutoPrompt):

    "{text} 总之很{mask}。"        "{text_a} ? {mask} , {text_b}"        "{text} [T][T][T] {mask}"

Each literal piece and each field is tokenised on its own and the pieces are concatenated between the
tokenizer's [CLS] and [SEP] (when it has them), so the slot's position is known exactly. When the result
is longer than `max_len`, the longest text field loses tokens from its end.

A verbalizer maps each label to one or more words: {"positive": ["great"], "negative": ["terrible"]}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zhixing.errors import ConfigError

FIELDS = ("text", "text_a", "text_b", "mask")
TRIGGER = "[T]"
_PART = re.compile(r"\{([^{}]*)\}|\[T\]")


@dataclass
class Encoded:
    """One filled template: ids, and where its slot (the mask, or a filled word) and triggers sit."""

    ids: list[int]
    slot: list[int]  # positions of the slot's tokens
    triggers: list[int]  # positions of the [T] tokens, in order


class Template:
    """A parsed cloze template; `encode` fills it for one example."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("template: expected text with a {mask} slot, e.g. '{text} 总之很{mask}。'")
        self.text = text
        self.parts: list[tuple[str, str]] = []  # ("lit", text) | ("field", name) | ("trigger", "")
        at = 0
        for m in _PART.finditer(text):
            if m.start() > at:
                self.parts.append(("lit", text[at:m.start()]))
            if m.group(0) == TRIGGER:
                self.parts.append(("trigger", ""))
            else:
                name = m.group(1)
                if name not in FIELDS:
                    raise ConfigError(f"template {text!r}: unknown field {{{name}}}; fields are "
                                      + ", ".join("{" + f + "}" for f in FIELDS))
                self.parts.append(("field", "text" if name == "text_a" else name))
            at = m.end()
        if at < len(text):
            self.parts.append(("lit", text[at:]))
        n_mask = sum(p == ("field", "mask") for p in self.parts)
        if n_mask != 1:
            raise ConfigError(f"template {text!r}: needs exactly one {{mask}} (the slot the label is read "
                              f"from), found {n_mask}")
        if not any(p == ("field", "text") for p in self.parts):
            raise ConfigError(f"template {text!r}: has no {{text}} field for the input")

    @property
    def num_triggers(self) -> int:
        return sum(k == "trigger" for k, _ in self.parts)

    @property
    def uses_pair(self) -> bool:
        return ("field", "text_b") in self.parts

    def before_mask(self) -> Template:
        """The template up to its slot (the prompt a causal LM continues with the label word)."""
        i = self.parts.index(("field", "mask"))
        t = Template.__new__(Template)
        t.text, t.parts = self.text, self.parts[:i + 1]
        return t

    def render(self, text: str, pair: str | None = None, slot: str = "") -> str:
        """The filled template as a string (`slot` in place of {mask}; triggers left as [T])."""
        values = {"text": text, "text_b": pair or "", "mask": slot}
        return "".join(v if k == "lit" else TRIGGER if k == "trigger" else values[v] for k, v in self.parts)

    def encode(self, tokenizer: Any, text: str, pair: str | None = None, slot: Sequence[int] = (),
               triggers: Sequence[int] = (), max_len: int = 512, special: bool = True) -> Encoded:
        """Token ids of the filled template: `slot` ids in place of {mask} (e.g. L mask ids, or a label
        word's pieces), `triggers` ids for the [T]s in order. special: [CLS] ... [SEP] around it."""
        if self.uses_pair and pair is None:
            raise ConfigError(f"template {self.text!r} uses {{text_b}} but the example has no second text "
                              "(pair column)")
        if len(triggers) != self.num_triggers:
            raise ConfigError(f"template {self.text!r}: {self.num_triggers} [T] slots, {len(triggers)} "
                              "trigger ids given")
        pieces: list[tuple[str, list[int]]] = []
        fields = {"text": text, "text_b": pair or ""}
        t_iter = iter(triggers)
        for kind, value in self.parts:
            if kind == "lit":
                pieces.append(("lit", _ids(tokenizer, value)))
            elif kind == "trigger":
                pieces.append(("trigger", [next(t_iter)]))
            elif value == "mask":
                pieces.append(("mask", list(slot)))
            else:
                pieces.append((value, _ids(tokenizer, fields[value])))
        head = [tokenizer.cls_id] if special and tokenizer.cls_id is not None else []
        tail = [tokenizer.sep_id] if special and tokenizer.sep_id is not None else []
        excess = len(head) + len(tail) + sum(len(p) for _, p in pieces) - max_len
        while excess > 0:  # cut the longest text field from its end
            i = max((i for i, (k, _) in enumerate(pieces) if k in fields), key=lambda i: len(pieces[i][1]))
            cut = min(excess, len(pieces[i][1]))
            if cut == 0:
                raise ConfigError(f"template {self.text!r}: longer than max_len={max_len} without any text")
            pieces[i] = (pieces[i][0], pieces[i][1][:len(pieces[i][1]) - cut])
            excess -= cut
        ids, slot_pos, trig_pos = list(head), [], []
        for kind, p in pieces:
            if kind == "mask":
                slot_pos = list(range(len(ids), len(ids) + len(p)))
            elif kind == "trigger":
                trig_pos.append(len(ids))
            ids.extend(p)
        return Encoded(ids + tail, slot_pos, trig_pos)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids) if text else []


class Verbalizer:
    """label -> words. `pieces(tokenizer)` tokenises every word; a word the vocabulary cannot spell
    ([UNK]), or one of several pieces when `single_token` is asked, is a ConfigError saying how it
    tokenises."""

    def __init__(self, words: Mapping[str, str | Sequence[str]]):
        if not words:
            raise ConfigError("verbalizer: expected at least one label -> word(s), e.g. {'pos': ['great']}")
        self.words: dict[str, list[str]] = {}
        for label, w in words.items():
            ws = [w] if isinstance(w, str) else list(w)
            if not ws or any(not isinstance(x, str) or not x.strip() for x in ws):
                raise ConfigError(f"verbalizer: label {label!r} needs one or more non-empty words, got {w!r}")
            self.words[str(label)] = ws

    @classmethod
    def parse(cls, spec: str) -> Verbalizer:
        """'positive=great,good;negative=terrible' (or a JSON object) -> Verbalizer."""
        import json

        spec = spec.strip()
        if spec.startswith("{"):
            try:
                return cls(json.loads(spec))
            except json.JSONDecodeError as e:
                raise ConfigError(f"verbalizer: not valid JSON ({e.msg})") from None
        out: dict[str, list[str]] = {}
        for item in filter(None, (s.strip() for s in spec.split(";"))):
            label, eq, words = item.partition("=")
            if not eq or not label.strip():
                raise ConfigError(f"verbalizer {spec!r}: expected 'label=word[,word...];label=...', "
                                  f"got {item!r}")
            out[label.strip()] = [w.strip() for w in words.split(",") if w.strip()]
        return cls(out)

    @property
    def labels(self) -> list[str]:
        return list(self.words)

    def pieces(self, tokenizer: Any, single_token: bool = False) -> list[tuple[int, str, list[int]]]:
        """[(label index, word, piece ids)] for every word."""
        out = []
        unk = tokenizer.unk_id
        for y, (label, ws) in enumerate(self.words.items()):
            for w in ws:
                enc = tokenizer.encode(w, add_special_tokens=False)
                ids, toks = list(enc.ids), list(enc.tokens)
                if not ids or (unk is not None and unk in ids) or (single_token and len(ids) > 1):
                    raise ConfigError(f"verbalizer word {w!r} (label {label!r}) is not "
                                      f"{'one token' if single_token else 'spelt by the tokens'} of the "
                                      f"vocabulary: it tokenises as {toks}; choose another word")
                out.append((y, w, ids))
        return out

    def __repr__(self) -> str:
        return f"Verbalizer({self.words!r})"


__all__ = ["Template", "Verbalizer", "Encoded", "FIELDS", "TRIGGER"]
