"""In-context learning with a causal LM (Brown et al. 2020): k labelled demonstrations, then the query; the
label is the verbaliser word the LM finds most likely to come next.

    prompt(x) = d_1 ⊕ sep ⊕ ... ⊕ d_k ⊕ sep ⊕ T(x)[: {mask}]        d_j = T(x_j) with {mask} = v(y_j)
    s(y | x) = Σ_{i=1..|v(y)|} log p(v(y)_i | prompt(x), v(y)_{<i})      (normalize: ÷ |v(y)|, per token)

Demonstrations: "random" (a seeded sample of the training set, the same for every query) or "nearest"
(the k training examples whose sentence embeddings are closest to the query's by cosine, the closest
last, next to the query: KATE, Liu et al. 2022). Demonstrations that do not fit the model's window are
dropped, the first (farthest) ones first; demo_tokens=N cuts each demonstration's text to its first N
tokens so that more of them fit (long reviews in a small model's window).

Contextual calibration (Zhao et al. 2021): the LM's bias towards some labels is measured on a
content-free input ("N/A") under the same demonstrations, p_cf(y) = softmax_y s(y | "N/A"), and divided
out: p̂(y | x) ∝ softmax_y s(y | x) / p_cf(y), i.e. ŝ(y | x) = log softmax_y s(y | x) - log p_cf(y).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from zhixing.errors import ConfigError
from zhixing.prompts.template import Template, Verbalizer
from zhixing.tasks.data import TextExample
from zhixing.tasks.metrics import classification_metrics

SELECTIONS = ("random", "nearest")


@torch.no_grad()
def continuation_logprobs(model: nn.Module, contexts: Sequence[Sequence[int]],
                          continuations: Sequence[Sequence[int]], pad_id: int = 0, batch_size: int = 16
                          ) -> torch.Tensor:
    """(n,) Σ_i log p(c_i | context, c_<i) for each (context, continuation) pair of token ids, with the
    model's next-token logits (one forward per pair, right-padded in batches)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.zeros(len(contexts), dtype=torch.float64)
    pairs = list(zip(contexts, continuations))
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        seqs = [list(c) + list(x) for c, x in chunk]
        t = max(len(q) for q in seqs)
        ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), t), dtype=torch.long)
        for i, q in enumerate(seqs):
            ids[i, :len(q)] = torch.tensor(q)
            mask[i, :len(q)] = 1
        logp = model(ids.to(device), attention_mask=mask.to(device)).logits.float().log_softmax(-1).cpu()
        for i, (c, x) in enumerate(chunk):
            pos = torch.arange(len(c) - 1, len(c) + len(x) - 1)  # the logits at t predict token t + 1
            out[s + i] = logp[i, pos, torch.tensor(list(x))].double().sum()
    model.train(was_training)
    return out


class InContextClassifier:
    """k-shot prompting of a causal LM (GPT) for classification; see the module docstring.

    template: e.g. "Review: {text}\\nSentiment:{mask}" (the query's prompt ends at {mask}; text after it
    is used in demonstrations only); verbalizer: label -> word (the first word of each label is used).
    embed: texts -> (n, dim) sentence embeddings, for selection="nearest" (zhixing.tasks.pretrained's
    EmbeddingPipeline, e.g. all-MiniLM-L6-v2).
    """

    def __init__(self, model: nn.Module, tokenizer: Any, template: str | Template,
                 verbalizer: Verbalizer | dict, shots: int = 4, selection: str = "random",
                 normalize: bool = False, calibrate: bool = False, separator: str = "\n\n", seed: int = 0,
                 embed: Callable[[list[str]], torch.Tensor] | None = None, content_free: str = "N/A",
                 batch_size: int = 16, demo_tokens: int | None = None):
        if shots < 0:
            raise ConfigError(f"shots={shots}: expected the number of demonstrations, 0 or more")
        if demo_tokens is not None and demo_tokens < 1:
            raise ConfigError(f"demo_tokens={demo_tokens}: expected the tokens each demonstration's "
                              "text keeps (1 or more), or None to keep it whole")
        if selection not in SELECTIONS:
            raise ConfigError(f"selection {selection!r}: expected one of {', '.join(SELECTIONS)}")
        if selection == "nearest" and embed is None and shots:
            raise ConfigError("selection='nearest' needs embed= (texts -> sentence embeddings)")
        self.model, self.tokenizer = model, tokenizer
        self.template = template if isinstance(template, Template) else Template(template)
        self.verbalizer = verbalizer if isinstance(verbalizer, Verbalizer) else Verbalizer(verbalizer)
        self.labels = self.verbalizer.labels
        self.shots, self.selection, self.normalize, self.calibrate = shots, selection, normalize, calibrate
        self.separator, self.seed, self.embed, self.content_free = separator, seed, embed, content_free
        self.batch_size, self.demo_tokens = batch_size, demo_tokens
        self.max_len = model.config.max_seq_len
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        # the query's prompt ends at {mask}; a space before the slot goes with the word (byte-level BPE
        # spells " positive" as one token)
        self.prefix = Template.__new__(Template)
        self.prefix.text, self.prefix.parts = self.template.text, self.template.before_mask().parts[:-1]
        words = [ws[0] for ws in self.verbalizer.words.values()]
        self.space = bool(self.prefix.parts) and self.prefix.parts[-1][0] == "lit" \
            and self.prefix.parts[-1][1].endswith(" ")
        if self.space:
            self.prefix.parts[-1] = ("lit", self.prefix.parts[-1][1][:-1])
        self.words = [(" " if self.space else "") + w for w in words]
        self.word_ids = [self._ids(w) for w in self.words]  # alone; in a prompt see label_ids
        for w, ids in zip(words, self.word_ids):
            if not ids or (tokenizer.unk_id is not None and tokenizer.unk_id in ids):
                toks = tokenizer.encode(w, add_special_tokens=False).tokens
                raise ConfigError(f"verbalizer word {w!r} is not spelt by the tokens of the vocabulary: it "
                                  f"tokenises as {toks}; choose another word")

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids) if text else []

    def clip(self, text: str | None) -> str | None:
        """A demonstration's text cut after its first demo_tokens tokens (at a token's end in the original
        string), so that long inputs leave room for more demonstrations in the window."""
        if not text or self.demo_tokens is None:
            return text
        spans = self.tokenizer.encode(text, add_special_tokens=False).offsets
        return text if len(spans) <= self.demo_tokens else text[:spans[self.demo_tokens - 1][1]]

    def demonstration(self, e: TextExample) -> str:
        word = self.verbalizer.words[e.label][0]
        return self.template.render(self.clip(e.text), self.clip(e.pair), word)

    def query_text(self, text: str, pair: str | None) -> str:
        return self.prefix.render(text, pair)

    def select(self, queries: Sequence[TextExample], train: Sequence[TextExample]) -> list[list[TextExample]]:
        """The demonstrations of each query (in prompt order)."""
        if not self.shots:
            return [[] for _ in queries]
        k = min(self.shots, len(train))
        if self.selection == "random":
            rng = random.Random(self.seed)
            demos = rng.sample(list(train), k)
            return [demos for _ in queries]
        emb_train = torch.nn.functional.normalize(self.embed([e.text for e in train]).float(), dim=-1)
        emb_q = torch.nn.functional.normalize(self.embed([e.text for e in queries]).float(), dim=-1)
        top = (emb_q @ emb_train.T).topk(k, dim=-1).indices  # most similar first
        return [[train[j] for j in reversed(row.tolist())] for row in top]  # ... the closest last

    def label_ids(self, demos: Sequence[TextExample], text: str, pair: str | None
                  ) -> tuple[list[int], list[list[int]]]:
        """(the prompt's ids, each label's continuation ids). The prompt text followed by each label word is
        tokenised whole and the tokens all labels share are the prompt: a tokeniser may merge the word
        with the text before it (BPE on "总之很好" gives 总之 很好), so the label's part starts where the
        labels' tokenisations part. As many demonstrations as fit the window come first (the farthest
        dropped first)."""
        parts = [self.demonstration(d) + self.separator for d in demos]
        query = self.query_text(text, pair)
        tok = self.tokenizer  # the text starts with bos (else eos, cls), so every label has a context
        start = next((i for i in (tok.bos_id, tok.eos_id, tok.cls_id) if i is not None), None)
        while True:
            prompt = "".join(parts) + query
            fulls = [([start] if start is not None else []) + self._ids(prompt + w) for w in self.words]
            if max(map(len, fulls)) <= self.max_len or not parts:
                break
            parts.pop(0)
        n = 0
        while all(len(f) > n + 1 for f in fulls) and len({f[n] for f in fulls}) == 1:
            n += 1  # the shared prefix, leaving every label at least one token
        if n == 0:
            raise ConfigError("in-context learning needs a prompt before the label word: the tokenizer has "
                              "no bos/eos/cls token and the template has no text before {mask}")
        cut = max(0, min(max(map(len, fulls)) - self.max_len, n - 1))  # the query alone too long: its start
        return fulls[0][cut:n], [f[n:] for f in fulls]

    def context_ids(self, demos: Sequence[TextExample], text: str, pair: str | None) -> list[int]:
        """The prompt's ids (see label_ids)."""
        return self.label_ids(demos, text, pair)[0]

    def _scores(self, prompts: list[tuple[list[int], list[list[int]]]]) -> torch.Tensor:
        k = len(self.labels)
        ctx = [c for c, _ in prompts for _ in range(k)]
        cont = [w for _, tails in prompts for w in tails]
        s = continuation_logprobs(self.model, ctx, cont, self.pad_id, self.batch_size).view(len(prompts), k)
        if self.normalize:
            s = s / torch.tensor([[len(w) for w in tails] for _, tails in prompts], dtype=s.dtype)
        return s.float()

    def scores(self, examples: Sequence[TextExample], train: Sequence[TextExample] = ()) -> torch.Tensor:
        """(n, num_labels) label scores (log-probabilities; calibrated ones when calibrate=True)."""
        demos = self.select(examples, train)
        s = self._scores([self.label_ids(d, e.text, e.pair) for d, e in zip(demos, examples)])
        if not self.calibrate:
            return s
        cf_pair = self.content_free if self.template.uses_pair else None
        if self.selection == "random" or not self.shots:  # one demonstration set: one content-free pass
            cf = self._scores([self.label_ids(demos[0] if demos else [], self.content_free, cf_pair)])
            cf = cf.expand(len(examples), -1)
        else:
            cf = self._scores([self.label_ids(d, self.content_free, cf_pair) for d in demos])
        return s.log_softmax(-1) - cf.log_softmax(-1)

    def predict(self, examples: Sequence[TextExample], train: Sequence[TextExample] = ()) -> list[str]:
        return [self.labels[i] for i in self.scores(examples, train).argmax(-1).tolist()]

    def evaluate(self, examples: Sequence[TextExample], train: Sequence[TextExample] = ()
                 ) -> dict[str, float]:
        return classification_metrics([e.label for e in examples], self.predict(examples, train))


__all__ = ["InContextClassifier", "continuation_logprobs", "SELECTIONS"]
