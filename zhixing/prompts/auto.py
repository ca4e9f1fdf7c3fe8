"""Automatic prompts: label words found from the data (LM-BFF, Gao et al. 2021 §5.2; PETAL, Schick et
al. 2020) and trigger tokens found by gradients (AutoPrompt, Shin et al. 2020).

Label-word search. With the template's masked-LM distribution at [MASK], each vocabulary word v gets, per
class c, the likelihood ratio

    r_c(v) = 1/|D_c| Σ_{x ∈ D_c} log p(v | T(x))  -  1/|D| Σ_{x ∈ D} log p(v | T(x))

(how much more the examples of c predict v than the examples at large); the top-k words of each class are
the candidates. With few classes every assignment (one candidate per class, all distinct) is scored by its
zero-shot accuracy on the dev set and the best is kept (LM-BFF ranks assignments the same way, by dev
accuracy after fine-tuning, which costs a run each); with many classes each class takes its best word.
Both passes are one forward per example: the log-probabilities at the mask are kept and every assignment is
scored from them.

AutoPrompt. `{text} [T][T][T] {mask}`: the [T] tokens start as [MASK] and are replaced one at a time. With
L the cross-entropy of the prompt-based classifier and e_t the embedding at trigger position t, HotFlip's
first-order estimate of the change when token w replaces it is (e_w - e_t)ᵀ ∇_{e_t} L, so the candidates
are the k tokens with the lowest e_wᵀ ∇_{e_t} L; each is tried on a batch and the best is kept when it
lowers the loss.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from zhixing.errors import ConfigError
from zhixing.prompts.cloze import ClozeClassifier, collate
from zhixing.prompts.template import Template, Verbalizer
from zhixing.tasks.data import TextExample


def _word_like(tokenizer: Any) -> torch.Tensor:
    """(vocab,) bool: tokens that can be label words — whole words (no ## / special / bracketed tokens)
    made of letters or CJK characters."""
    keep = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
    special = set(tokenizer.all_special_ids)
    for tok, i in tokenizer.get_vocab().items():
        if i < len(keep) and i not in special and not tok.startswith(("##", "[", "<")) and tok.isalpha():
            keep[i] = True
    return keep


@torch.no_grad()
def mask_log_probs(model: torch.nn.Module, tokenizer: Any, template: Template,
                   examples: Sequence[TextExample], max_len: int = 128, batch_size: int = 32) -> torch.Tensor:
    """(n, vocab) log p(v | T(x)) at the template's single [MASK]."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(examples), batch_size):
        feats = []
        for e in examples[s:s + batch_size]:
            enc = template.encode(tokenizer, e.text, e.pair, [tokenizer.mask_id],
                                  [tokenizer.mask_id] * template.num_triggers, max_len)
            feats.append({"input_ids": [enc.ids], "positions": [enc.slot]})
        batch = {k: v.to(device) for k, v in collate(feats, tokenizer.pad_id).items()}
        ids, mask = batch["input_ids"][:, 0], batch["attention_mask"][:, 0]
        h = model.hidden(ids, mask)
        states = h[torch.arange(len(feats), device=device), batch["positions"][:, 0, 0]]
        out.append(model.mlm(states).float().log_softmax(-1).cpu())
    return torch.cat(out)


def search_label_words(model: torch.nn.Module, tokenizer: Any, template: str | Template,
                       train: Sequence[TextExample], dev: Sequence[TextExample], top_k: int = 10,
                       labels: Sequence[str] | None = None, max_len: int = 128,
                       max_assignments: int = 2000) -> tuple[Verbalizer, dict[str, Any]]:
    """(the verbalizer found, a report: candidates per label, dev accuracy of the chosen assignment)."""
    template = template if isinstance(template, Template) else Template(template)
    if tokenizer.mask_id is None:
        raise ConfigError("label-word search needs a masked LM and a tokenizer with a [MASK] token")
    labels = list(labels) if labels is not None else sorted({e.label for e in train})
    missing = [y for y in labels if not any(e.label == y for e in train)]
    if missing:
        raise ConfigError(f"label-word search: no training examples of {missing}")
    lp_train = mask_log_probs(model, tokenizer, template, train, max_len)
    ok = _word_like(tokenizer)[: lp_train.size(1)]
    overall = lp_train.mean(0)
    cands: dict[str, list[int]] = {}
    for y in labels:
        rows = torch.tensor([i for i, e in enumerate(train) if e.label == y])
        ratio = (lp_train[rows].mean(0) - overall).masked_fill(~ok, -float("inf"))
        cands[y] = ratio.topk(top_k).indices.tolist()
    lp_dev = mask_log_probs(model, tokenizer, template, dev, max_len)
    gold = torch.tensor([labels.index(e.label) for e in dev])
    n_assign = top_k ** len(labels)
    if n_assign <= max_assignments:
        best, best_acc = None, -1.0
        for combo in itertools.product(*(cands[y] for y in labels)):
            if len(set(combo)) < len(combo):
                continue
            acc = float((lp_dev[:, list(combo)].argmax(-1) == gold).float().mean())
            if acc > best_acc:
                best, best_acc = combo, acc
    else:  # many classes: each its best candidate not yet taken
        taken: set[int] = set()
        best = []
        for y in labels:
            w = next(c for c in cands[y] if c not in taken)
            taken.add(w)
            best.append(w)
        best_acc = float((lp_dev[:, best].argmax(-1) == gold).float().mean())
    words = {y: [tokenizer.id_to_token(i)] for y, i in zip(labels, best)}
    report = {"candidates": {y: [tokenizer.id_to_token(i) for i in c] for y, c in cands.items()},
              "dev_accuracy_zero_shot": best_acc, "words": words}
    return Verbalizer(words), report


def search_triggers(classifier: ClozeClassifier, train: Sequence[TextExample], iterations: int = 30,
                    candidates: int = 10, batch_size: int = 16, seed: int = 0) -> dict[str, Any]:
    """AutoPrompt's trigger search on `classifier` (a template with [T]s); sets classifier.triggers to
    the tokens found and returns {"triggers": tokens, "loss": [per accepted step]}."""
    if classifier.template.num_triggers == 0:
        raise ConfigError(f"template {classifier.template.text!r} has no [T] trigger slots")
    model, tok = classifier.model, classifier.tokenizer
    embedding = model.tok_embed
    allowed = _word_like(tok)[: embedding.weight.size(0)].to(embedding.weight.device)
    rng = random.Random(seed)
    device = embedding.weight.device
    history = []
    model.eval()

    def batch_loss(examples: Sequence[TextExample], need_grad: bool = False):
        b = {k: v.to(device) for k, v in collate(classifier.features(examples), tok.pad_id).items()}
        grads: dict[str, torch.Tensor] = {}

        def hook(_, __, out):
            if need_grad:  # the embeddings' output is a leaf when the model is frozen
                out.requires_grad_(True)
                grads["out"] = out
        handle = embedding.register_forward_hook(hook)
        try:
            with torch.set_grad_enabled(need_grad):
                loss = F.cross_entropy(classifier_scores(classifier, b), b["labels"])
                if need_grad:
                    loss.backward()
        finally:
            handle.remove()
        return loss.detach(), grads.get("out"), b

    for p in model.parameters():
        p.requires_grad_(False)
    for it in range(iterations):
        examples = rng.sample(list(train), min(batch_size, len(train)))
        loss, emb_out, _ = batch_loss(examples, need_grad=True)
        feats = classifier.features(examples)
        t = it % classifier.template.num_triggers  # each trigger in turn
        # the gradient at trigger t, summed over the batch's inputs: (dim,)
        g = torch.zeros(embedding.weight.size(1), device=device)
        for i, f in enumerate(feats):
            for j, pos in enumerate(f["triggers"]):
                g += emb_out.grad[i * len(f["triggers"]) + j, pos[t]]
        score = -(embedding.weight @ g)  # first-order decrease of the loss
        score = score.masked_fill(~allowed, -float("inf"))
        best_tok, best_loss = None, loss
        for c in score.topk(candidates).indices.tolist():
            old = classifier.triggers[t]
            classifier.triggers[t] = c
            cand_loss, _, _ = batch_loss(examples)
            classifier.triggers[t] = old
            if cand_loss < best_loss:
                best_tok, best_loss = c, cand_loss
        if best_tok is not None:
            classifier.triggers[t] = best_tok
            history.append(round(float(best_loss), 4))
    for p in model.parameters():
        p.requires_grad_(True)
    return {"triggers": [tok.id_to_token(i) for i in classifier.triggers], "loss": history}


def classifier_scores(classifier: ClozeClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    from zhixing.objectives.prompt import SCORERS

    return SCORERS[classifier.scorer](classifier.model, batch, classifier.words)


__all__ = ["search_label_words", "search_triggers", "mask_log_probs"]
