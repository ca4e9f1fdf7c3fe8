"""Controllable generation: constraints on form and content, applied to the logits at every step.

A constraint never re-ranks; it removes what the text may not contain next (the score becomes -inf) and
leaves the model's distribution over the rest as it was, so it composes with greedy decoding, sampling
(temperature, top-k, top-p) and beam search alike. Everything is recomputed from the tokens so far, so beam
search, which reorders rows every step, needs no extra bookkeeping.

- **form** (`五言绝句`, `七言绝句`, `五言律诗`, `七言律诗`): L lines of n characters, each line closed by a
  punctuation mark — "，" after odd lines, "。" after even ones — then the end of the text. At generated
  position g (0-based), with slots of n + 1 per line: line i = g // (n + 1), column c = g mod (n + 1); a
  column c < n admits only single-character Chinese tokens, c = n only the line's mark.
- **acrostic** (藏头诗): line i starts with the i-th character of the given string (needs a form).
- **bad_words**: a word w may never be written: a token is removed when the text so far (the prompt's
  tail included) ends with w[:k] and the token's text starts with w[k:], or when it contains w.
- **force_words**: each word appears in the poem. Words the model has not written by the start of a line
  are placed at the start of the last lines (after the acrostic character), one per line, as late as
  possible — so the model writes them freely when it likes, and they are guaranteed when it does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import torch

NEG_INF = float("-inf")
_HAN = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]$")


@dataclass(frozen=True)
class PoemForm:
    """A regulated verse form: `lines` lines of `chars` characters each."""

    name: str
    chars: int
    lines: int

    def mark(self, line: int) -> str:
        """The mark closing `line` (0-based): "，" ends a couplet's first line, "。" its second."""
        return "，" if line % 2 == 0 else "。"

    @property
    def length(self) -> int:
        """Characters in the whole poem, punctuation included."""
        return self.lines * (self.chars + 1)

    def check(self, text: str, acrostic: str | None = None) -> list[str]:
        """What `text` gets wrong about this form (and the acrostic); empty when it is right."""
        problems = []
        lines = re.findall(r"[^，。！？；、\s]*[，。！？；、]?", text.strip())
        lines = [line for line in lines if line]
        if len(lines) != self.lines:
            problems.append(f"{len(lines)} lines, not {self.lines}")
        for i, line in enumerate(lines[: self.lines]):
            body, mark = line[:-1], line[-1:]
            if len(body) != self.chars or not all(_HAN.match(ch) for ch in body):
                problems.append(f"line {i + 1} {line!r} is not {self.chars} Chinese characters")
            if mark != self.mark(i):
                problems.append(f"line {i + 1} ends with {mark!r}, not {self.mark(i)!r}")
            if acrostic and i < len(acrostic) and not body.startswith(acrostic[i]):
                problems.append(f"line {i + 1} does not start with {acrostic[i]!r}")
        return problems


FORMS: dict[str, PoemForm] = {}
for _name, _chars, _lines in (("五言绝句", 5, 4), ("七言绝句", 7, 4), ("五言律诗", 5, 8), ("七言律诗", 7, 8)):
    FORMS[_name] = PoemForm(_name, _chars, _lines)
    FORMS[_name.replace("绝", "絕").replace("诗", "詩")] = FORMS[_name]  # the traditional spelling too


def poem_form(name: str) -> PoemForm:
    """The form called `name`; a one-line error listing the forms otherwise."""
    if name not in FORMS:
        known = ", ".join(n for n in FORMS if n == FORMS[n].name)
        raise ValueError(f"form={name!r} does not exist: known forms are {known}")
    return FORMS[name]


def validate(form: str | None, acrostic: str | None, bad_words: list[str], force_words: list[str]) -> None:
    """Raise ValueError (one line, naming the parameter) for settings that cannot be honoured."""
    shape = poem_form(form) if form is not None else None
    if acrostic is not None:
        if shape is None:
            raise ValueError("acrostic needs a form (e.g. form='七言绝句'): the form says where lines start")
        if not acrostic or len(acrostic) > shape.lines:
            raise ValueError(f"acrostic={acrostic!r} is invalid: {form} has {shape.lines} lines, so it takes "
                             f"1 to {shape.lines} characters")
        if not all(_HAN.match(ch) for ch in acrostic):
            raise ValueError(f"acrostic={acrostic!r} is invalid: a line of {form} starts with a Chinese "
                             "character, so the acrostic holds only those")
    if any(not w for w in bad_words):
        raise ValueError("bad_words must be non-empty strings")
    if force_words:
        if shape is None:
            raise ValueError("force_words needs a form (e.g. form='五言绝句'): it says where a word fits")
        if len(force_words) > shape.lines:
            raise ValueError(f"force_words has {len(force_words)} words but {form} has {shape.lines} lines "
                             "(one word per line at most)")
        room = shape.chars - (1 if acrostic else 0)
        for word in force_words:
            if not word or len(word) > room or not all(_HAN.match(ch) for ch in word):
                raise ValueError(f"force_words: {word!r} must be 1 to {room} Chinese characters to fit a "
                                 f"line of {form}{' after the acrostic character' if acrostic else ''}")
            if any(b in word for b in bad_words):
                raise ValueError(f"force_words: {word!r} contains a word of bad_words")


class Constraints:
    """The constraints of one `generate` call as a logits processor: `scores = constraints(scores, tokens)`.

    tokenizer: decodes single ids (to know what each token writes); prompt_len: columns of prompt at the
    front of `tokens`; eos: ids that end the text (after the last line of a form).
    """

    def __init__(self, tokenizer, prompt_len: int, *, form: str | None = None, acrostic: str | None = None,
                 bad_words: list[str] | tuple[str, ...] = (), force_words: list[str] | tuple[str, ...] = (),
                 eos: list[int] | None = None):
        validate(form, acrostic, list(bad_words), list(force_words))
        if tokenizer is None:
            raise ValueError("form, acrostic, bad_words and force_words need a tokenizer (to read the text)")
        self.tokenizer, self.prompt_len = tokenizer, prompt_len
        self.form = poem_form(form) if form is not None else None
        self.acrostic, self.bad_words, self.force_words = acrostic, list(bad_words), list(force_words)
        self.eos = list(eos or [])
        self._vocab: int | None = None
        if self.form is not None:
            for ch in (acrostic or "") + "".join(self.force_words) + "，。":
                if ch not in self.char_ids:
                    raise ValueError(f"{ch!r} is not a token of this model's vocabulary, so no text can "
                                     "hold it")

    @cached_property
    def texts(self) -> list[str]:
        size = self.tokenizer.vocab_size if hasattr(self.tokenizer, "vocab_size") else len(self.tokenizer)
        return [self.tokenizer.decode([i]) for i in range(size)]

    @cached_property
    def char_ids(self) -> dict[str, int]:
        """Each single character that is a token of its own -> its (first) id."""
        out: dict[str, int] = {}
        for i, text in enumerate(self.texts):
            if len(text) == 1 and i not in self.eos:
                out.setdefault(text, i)
        return out

    def _mask(self, ids, vocab: int) -> torch.Tensor:
        mask = torch.zeros(vocab, dtype=torch.bool)
        ids = [i for i in ids if i < vocab]
        if ids:
            mask[torch.tensor(ids)] = True
        return mask

    @cached_property
    def _han(self) -> torch.Tensor:
        return self._mask([i for ch, i in self.char_ids.items() if _HAN.match(ch)], self._vocab)

    @cached_property
    def _banned_always(self) -> torch.Tensor:
        return self._mask([i for i, t in enumerate(self.texts) if any(w in t for w in self.bad_words)],
                          self._vocab)

    @cached_property
    def _completes(self) -> dict[tuple[str, int], torch.Tensor]:
        """(word, k) -> tokens whose text starts with word[k:]: banned after a text ending in word[:k]."""
        return {(w, k): self._mask([i for i, t in enumerate(self.texts) if t and t.startswith(w[k:])],
                                   self._vocab)
                for w in self.bad_words for k in range(1, len(w))}

    def __call__(self, scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """scores (rows, vocab); tokens (rows, length): the prompt then what was generated so far."""
        rows, vocab = scores.shape
        if self._vocab is None:
            self._vocab = vocab
        ids = tokens.tolist()
        write = lambda row: "".join(self.texts[t] if t < len(self.texts) else "" for t in row)
        allowed = torch.ones(rows, vocab, dtype=torch.bool)
        if self.form is not None:
            generated = [write(row[self.prompt_len:]) for row in ids]
            self._form(allowed, tokens.size(1) - self.prompt_len, generated)
        if self.bad_words:
            allowed &= ~self._banned_always
            longest = max(len(w) for w in self.bad_words)
            for r, row in enumerate(ids):
                # the tail of the prompt counts: a word may not be completed across the boundary either
                text = write(row[-longest:])
                for (word, k), mask in self._completes.items():
                    if text.endswith(word[:k]):
                        allowed[r] &= ~mask
        return scores.masked_fill(~allowed.to(scores.device), NEG_INF)

    def _form(self, allowed: torch.Tensor, g: int, texts: list[str]) -> None:
        form, n = self.form, self.form.chars
        if g >= form.length:  # the poem is complete: only the end
            allowed &= self._mask(self.eos, allowed.size(1)) if self.eos else False
            return
        line, col = divmod(g, n + 1)
        if col == n:
            allowed &= self._mask([self.char_ids[form.mark(line)]], allowed.size(1))
            return
        allowed &= self._han
        offset = 0
        if self.acrostic and line < len(self.acrostic):
            offset = 1
            if col == 0:
                allowed &= self._mask([self.char_ids[self.acrostic[line]]], allowed.size(1))
                return
        if not self.force_words:
            return
        for r, text in enumerate(texts):
            before = text[: line * (n + 1)]
            missing = [w for w in self.force_words if w not in before]
            if missing and len(missing) >= form.lines - line and offset <= col < offset + len(missing[0]):
                allowed[r] = False
                allowed[r, self.char_ids[missing[0][col - offset]]] = True
